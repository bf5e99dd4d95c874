package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/healthcheck"
)

// EnvGeneration tells a worker its generation number, and a supervisor started by a self-upgrade the number of its
// first generation.
const EnvGeneration = "ANNOUNCEMENTD_GENERATION"

// Defaults of Config.
const (
	DefaultReadyTimeout   = 30 * time.Second
	DefaultDrainTimeout   = 15 * time.Second
	DefaultRestartLimit   = 10
	DefaultRestartBackoff = 5 * time.Second

	firstBackoff = 50 * time.Millisecond
	// A generation that served this long before it died resets the crash count: it was not a crash loop.
	crashForgiveness = 30 * time.Second
)

// Upgrader replaces the running supervisor with the binary on disk, carrying the fds along; *tableflip.Upgrader
// is one. Upgrade starts the new supervisor and returns once it has called Ready; Ready tells the process that
// started this one (if any) that it may hand over, and writes the pid file.
type Upgrader interface {
	Upgrade() error
	Ready() error
}

// Config is what the supervisor supervises.
type Config struct {
	// Binary is started as `Binary worker WorkerArgs...` for each generation. It is looked up at each start, so
	// a new file at this path is what the next generation runs.
	Binary     string
	WorkerArgs []string
	// Files are handed to every generation, in this order. The supervisor never interprets them, and owns them from
	// New on: a worker may send a file of the same name to replace one (say, a region it had to recreate), and the
	// supervisor closes the one it replaces.
	Files []handoff.NamedFile
	// Build names the running supervisor (shown in status and sent in Hello); Self identifies its executable's
	// contents (FileID), to tell when Binary has changed.
	Build, Self string
	Log         *zap.Logger

	ReadyTimeout time.Duration // for a new worker to reach standby, and again to serve once started
	DrainTimeout time.Duration // for a worker to yield (finish in-flight requests) and to exit after it
	// RestartLimit: after this many crashes in a row (since the last reload that reached serving) the supervisor
	// gives up and Run fails, so that the service manager's restart policy acts. Negative: never give up. RestartBackoff caps the delay between restarts,
	// which starts at 50 ms and doubles with each crash in a row.
	RestartLimit   int
	RestartBackoff time.Duration

	// Upgrader, when set, lets a reload replace the supervisor itself when Binary's contents differ from Self
	// (upgrade.go). Parent is set in a supervisor started that way (DialParent).
	Upgrader Upgrader
	Parent   *Parent
	// PIDFile, when set, is rewritten with this process's pid after a self-upgrade was rolled back (the new
	// supervisor had written its own).
	PIDFile string
	// FirstGeneration is the number of the first worker generation; default 1.
	FirstGeneration uint64
}

// Supervisor runs one worker generation at a time and replaces it on reload or crash.
type Supervisor struct {
	cfg     Config
	log     *zap.Logger
	started time.Time
	reloads chan chan ReloadResult // the loop takes one request per reload and answers every one it took
	files   []handoff.NamedFile    // Config.Files, as replaced since; owned by the loop
	done    chan struct{}          // closed when Run returns

	// Owned by the loop goroutine.
	next    uint64 // the next generation number
	current *generation
	crashes int // in a row: since the last reload that reached serving, or the last generation that served 30 s
	binary  fileIDCache
	// upgradeSpent: a self-upgrade got as far as tableflip's hand-over and was then rolled back; tableflip cannot
	// upgrade this process again, so reloads roll the worker only.
	upgradeSpent bool
	stopping     func() bool // whether Run's ctx is done (a reload runs without it)

	mu     sync.Mutex
	view   Status               // what Status returns; the loop updates it at each transition
	health *healthcheck.Monitor // the supervisor's own checks, updated with the view
}

// New checks cfg and returns a supervisor; Run starts it.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Binary == "" {
		return nil, errors.New("supervisor: no worker binary")
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	cfg.ReadyTimeout = cmp.Or(cfg.ReadyTimeout, DefaultReadyTimeout)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout)
	cfg.RestartLimit = cmp.Or(cfg.RestartLimit, DefaultRestartLimit)
	cfg.RestartBackoff = cmp.Or(cfg.RestartBackoff, DefaultRestartBackoff)
	cfg.FirstGeneration = cmp.Or(cfg.FirstGeneration, 1)
	s := &Supervisor{
		cfg: cfg, log: cfg.Log, started: time.Now(),
		reloads: make(chan chan ReloadResult),
		done:    make(chan struct{}),
		next:    cfg.FirstGeneration,
		files:   slices.Clone(cfg.Files),
		health:  healthcheck.NewMonitor(time.Now),
	}
	s.view = Status{PID: os.Getpid(), Build: cfg.Build, Binary: cfg.Binary, StartedAt: s.started.UTC()}
	s.publish()
	return s, nil
}

// ErrGaveUp is matched by Run's error when workers kept crashing past Config.RestartLimit.
var ErrGaveUp = errors.New("worker keeps crashing")

// Run starts the first generation and supervises until ctx is done, when the serving generation yields (finishing
// its requests) and exits. It returns early with an error when the first generation cannot start, or when
// workers crash more than RestartLimit times in a row, and with nil after handing over to a new supervisor
// (self-upgrade). No worker outlives Run.
func (s *Supervisor) Run(ctx context.Context) error {
	defer close(s.done)
	s.stopping = func() bool { return ctx.Err() != nil }
	if err := s.first(ctx); err != nil {
		return err
	}
	for {
		if s.current == nil {
			if err := s.restart(ctx); err != nil {
				return err
			}
			if s.current == nil { // ctx ended during the backoff
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-s.current.exited:
			s.crashed()
		case in := <-s.current.inbox:
			switch m := in.m.(type) {
			case handoff.Files:
				s.replaceFiles(m)
			case nil: // the connection ended: the exit follows
			default:
				s.current.log.Warn("unexpected message from the serving worker", zap.Stringer("type", m.Type()))
			}
		case req := <-s.reloads:
			waiters := append([]chan ReloadResult{req}, s.takeWaiting()...)
			// A stop asked for during a reload waits for it: cutting it short would kill workers mid-handover.
			res := s.reload(context.WithoutCancel(ctx))
			for _, w := range waiters {
				w <- res
			}
			if res.Outcome == OutcomeUpgraded {
				return nil
			}
		}
	}
}

// first starts generation one of this supervisor. After a self-upgrade the old supervisor's worker serves until
// this one's is in standby; then the old one yields, and only then may this one's take the store (takeOver).
func (s *Supervisor) first(ctx context.Context) error {
	g, err := s.spawn(ctx, s.take())
	if err != nil {
		s.cfg.Parent.Fail(err)
		return err
	}
	if s.cfg.Parent != nil {
		if err := s.takeOver(ctx, g); err != nil {
			g.kill()
			return err
		}
		s.publish()
		return nil
	}
	if err := s.serve(ctx, g, "first"); err != nil {
		return err
	}
	if s.cfg.Upgrader != nil {
		return s.cfg.Upgrader.Ready() // writes the pid file
	}
	return nil
}

// replaceFiles takes files a worker sent in place of the files of the same names, for the next generations, and
// closes the ones replaced. A name the supervisor does not hand out is refused.
func (s *Supervisor) replaceFiles(files handoff.Files) {
	for name, f := range files {
		i := slices.IndexFunc(s.files, func(nf handoff.NamedFile) bool { return nf.Name == name })
		if i < 0 {
			s.log.Warn("a worker sent a file the supervisor does not hand out; closed", zap.String("name", name))
			f.Close()
			continue
		}
		if c, ok := s.files[i].File.(io.Closer); ok {
			c.Close()
		}
		s.files[i].File = f
		s.log.Info("a worker replaced a file; the next generations get the new one", zap.String("name", name))
	}
}

// serve starts g, with no previous writer to follow, and makes it the serving generation; g is killed if it
// fails.
func (s *Supervisor) serve(ctx context.Context, g *generation, reason string) error {
	if _, err := g.start(ctx, s.cfg.ReadyTimeout, reason, 0); err != nil {
		g.kill()
		return err
	}
	s.current = g
	s.publish()
	return nil
}

// take returns the next generation number and consumes it.
func (s *Supervisor) take() uint64 {
	n := s.next
	s.next++
	return n
}

// takeWaiting collects reload requests already queued: one reload answers all of them.
func (s *Supervisor) takeWaiting() []chan ReloadResult {
	var ws []chan ReloadResult
	for {
		select {
		case w := <-s.reloads:
			ws = append(ws, w)
		default:
			return ws
		}
	}
}

// crashed handles the exit of the serving generation, which was not asked to go.
func (s *Supervisor) crashed() {
	g := s.current
	s.current = nil
	if time.Since(g.serving) >= crashForgiveness {
		s.crashes = 0
	}
	s.crashes++
	g.close()
	g.log.Error("worker exited unexpectedly", zap.String("status", exitString(g.exitErr)), zap.Int("crashes_in_a_row", s.crashes))
	s.mu.Lock()
	s.view.Restarts++
	s.mu.Unlock()
	s.publish()
}

// restart starts a new generation after a crash, after the backoff. A generation that fails to start counts as
// another crash.
func (s *Supervisor) restart(ctx context.Context) error {
	for {
		if s.cfg.RestartLimit > 0 && s.crashes > s.cfg.RestartLimit {
			return fmt.Errorf("%w: %d times in a row (limit %d)", ErrGaveUp, s.crashes, s.cfg.RestartLimit)
		}
		delay := min(firstBackoff<<min(max(s.crashes-1, 0), 20), s.cfg.RestartBackoff)
		s.log.Info("restarting the worker", zap.Duration("after", delay))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		g, err := s.spawn(ctx, s.take())
		if err == nil {
			err = s.serve(ctx, g, "restart")
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		s.crashes++
		s.log.Error("restart failed", zap.Error(err), zap.Int("crashes_in_a_row", s.crashes))
	}
}

// reload replaces the serving generation with one from the binary on disk, or rolls back to it.
func (s *Supervisor) reload(ctx context.Context) ReloadResult {
	old := s.current
	res := ReloadResult{Kind: "reload", StartedAt: time.Now().UTC(), From: old.n}
	if s.cfg.Upgrader != nil {
		changed, err := s.binary.differs(s.cfg.Binary, s.cfg.Self)
		switch {
		case err != nil:
			return s.record(res.finish(OutcomeFailed, err.Error()))
		case changed && s.upgradeSpent:
			s.log.Warn("the binary changed, but this supervisor cannot replace itself any more (a self-upgrade was rolled back); rolling the worker only. Restart the service to upgrade the supervisor.")
		case changed:
			return s.upgrade(ctx, res)
		}
	}
	s.log.Info("reload: starting a new generation", zap.Uint64("from", old.n))
	next, err := s.spawn(ctx, s.take())
	res.To = s.next - 1
	if err != nil {
		// The old generation never stopped serving.
		s.log.Warn("reload failed; the serving generation continues", zap.Error(err))
		return s.record(res.finish(OutcomeFailed, err.Error()))
	}
	res.Build = next.build
	s.publishCandidate(next)

	// One writer at a time: the old generation finishes its requests and lets go of the store and the region
	// before the new one takes them. Connections that arrive meanwhile wait in the listen backlog.
	y, err := old.yield(ctx, "reload", s.cfg.DrainTimeout)
	if err != nil {
		s.log.Error("the serving generation did not yield; killing it", zap.Error(err))
		old.kill()
	}
	if _, err := next.start(ctx, s.cfg.ReadyTimeout, "reload", y.LastVersion); err != nil {
		next.kill()
		return s.record(s.rollback(ctx, old, res, err))
	}
	s.current = next
	// A reload that reaches serving starts a new crash streak: a new build serves, by an operator's decision,
	// and the crashes of the build it replaced say nothing about it. A rollback or a failed reload leaves the
	// streak alone (the build that was crashing is still the one serving).
	if s.crashes > 0 {
		s.log.Info("a new generation serves after a reload; the crash streak starts again", zap.Int("crashes_before", s.crashes))
		s.crashes = 0
	}
	res = res.finish(OutcomeServing, "")
	s.record(res)
	old.stop(s.cfg.DrainTimeout)
	s.publish()
	return res
}

// rollback resumes old after the new generation failed once started.
func (s *Supervisor) rollback(ctx context.Context, old *generation, res ReloadResult, cause error) ReloadResult {
	s.log.Error("reload failed; rolling back", zap.Error(cause))
	if !old.alive() {
		s.current = nil // the crash path restarts from the binary on disk
		return res.finish(OutcomeFailed, cause.Error()+"; the old generation is gone too, restarting")
	}
	if _, err := old.start(ctx, s.cfg.ReadyTimeout, "rollback", 0); err != nil {
		old.kill()
		s.current = nil
		return res.finish(OutcomeFailed, fmt.Sprintf("%v; rollback failed: %v", cause, err))
	}
	s.current = old
	return res.finish(OutcomeRolledBack, cause.Error())
}

// shutdown lets the serving generation finish its requests and exit.
func (s *Supervisor) shutdown() {
	g := s.current
	s.current = nil
	if _, err := g.yield(context.Background(), "shutdown", s.cfg.DrainTimeout); err != nil {
		g.log.Warn("worker did not yield cleanly", zap.Error(err))
	}
	g.stop(s.cfg.DrainTimeout)
	s.publish()
}

// Reload asks for a reload and waits for its outcome. A reload asked for while another runs waits for it to end
// and then starts a fresh one, so it always runs the binary on disk at the time it was asked; requests queued
// together share one reload.
func (s *Supervisor) Reload(ctx context.Context) (ReloadResult, error) {
	w := make(chan ReloadResult, 1)
	select {
	case s.reloads <- w:
	case <-s.done:
		return ReloadResult{}, errors.New("the supervisor is stopping")
	case <-ctx.Done():
		return ReloadResult{}, ctx.Err()
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		return ReloadResult{}, fmt.Errorf("waiting for the reload: %w", ctx.Err())
	}
}
