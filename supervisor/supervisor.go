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
	"github.com/announcementd/announcementd/wire"
)

// EnvGeneration tells a worker its generation number.
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
	// WorkerEnv is the workers' environment (with EnvGeneration added); default os.Environ(). The caller leaves out
	// what is the supervisor's alone (the service manager's variables).
	WorkerEnv []string
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
	// (upgrade.go); the two supervisors meet at UpgradeSocket, a path in a private directory. Parent is set in a
	// supervisor started that way (DialParent).
	Upgrader      Upgrader
	UpgradeSocket string
	Parent        *Parent
	// PIDFile, when set, is rewritten with this process's pid after a self-upgrade was rolled back (the new
	// supervisor had written its own).
	PIDFile string
	// FirstGeneration is the number of the first worker generation; default 1, or what Parent says.
	FirstGeneration uint64
	// OnTransition, when set, is called by the loop at each change of state (state.go), before the loop goes on:
	// it must not block. The service manager's adapter (sd_notify) hangs on it.
	OnTransition func(Transition)
	// OnFiles, when set, is called by the loop with the whole set of files it hands out each time a worker replaced
	// one (say, a region it had to recreate), before the loop goes on: it must not block. The files stay the
	// supervisor's; the callee may duplicate them (the service manager's fd store does).
	OnFiles func([]handoff.NamedFile)
}

// Supervisor runs one worker generation at a time and replaces it on reload or crash.
type Supervisor struct {
	cfg     Config
	env     env
	log     *zap.Logger
	started time.Time
	reloads chan chan wire.ReloadResult // the loop takes one request per reload and answers every one it took
	pings   chan struct{}               // Alive: the loop takes one whenever it waits for the next event
	done    chan struct{}               // closed when Run returns

	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop: Run stops as when its ctx is done

	// Owned by the loop goroutine.
	state   State
	files   []handoff.NamedFile // Config.Files, as replaced since
	next    uint64              // the next generation number
	current *generation         // the serving generation; nil in starting, restarting and stopped
	crashes int                 // in a row: since the last reload that reached serving, or the last generation that served 30 s
	// announced: a generation of this supervisor has served, so its pid file is written (the first promote writes
	// it, before the transition that tells the service manager READY=1).
	announced bool
	binary    fileIDCache
	// noUpgrade, when set, says why this supervisor cannot replace itself any more (a self-upgrade got as far as
	// tableflip's hand-over and was then rolled back: tableflip upgrades a process once); reloads then roll the
	// worker only.
	noUpgrade error

	mu   sync.Mutex
	view wire.SupervisorStatus // what Status returns; the loop updates it at each transition
	// stepDeadline bounds the step the loop entered at its last transition (stepBound): until then, a loop that does
	// not take pings is busy (starting, reloading, stopping a generation), not hung.
	stepDeadline time.Time
	health       *healthcheck.Monitor // the supervisor's own checks, updated with the view
}

// New checks cfg and returns a supervisor; Run starts it.
func New(cfg Config) (*Supervisor, error) { return newSupervisor(cfg, osEnv) }

func newSupervisor(cfg Config, e env) (*Supervisor, error) {
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
	if cfg.FirstGeneration == 0 && cfg.Parent != nil {
		cfg.FirstGeneration = cfg.Parent.generation
	}
	cfg.FirstGeneration = cmp.Or(cfg.FirstGeneration, 1)
	s := &Supervisor{
		cfg: cfg, env: e, log: cfg.Log, started: time.Now(),
		reloads: make(chan chan wire.ReloadResult),
		pings:   make(chan struct{}),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		state:   StateStarting,
		next:    cfg.FirstGeneration,
		files:   slices.Clone(cfg.Files),
		health:  healthcheck.NewMonitor(time.Now),
	}
	s.view = wire.SupervisorStatus{PID: os.Getpid(), Build: cfg.Build, Binary: cfg.Binary, StartedAt: s.started.UTC(),
		Reloads: map[string]uint64{}}
	s.stepDeadline = s.started.Add(s.stepBound())
	s.publish()
	return s, nil
}

// ErrGaveUp is matched by Run's error when workers kept crashing past Config.RestartLimit.
var ErrGaveUp = errors.New("worker keeps crashing")

// Run starts the first generation and supervises until ctx is done, when the serving generation yields (finishing
// its requests) and exits. It returns early with an error when the first generation cannot start, or when
// workers crash more than RestartLimit times in a row, and with nil after handing over to a new supervisor
// (self-upgrade). No worker outlives Run. Each state's step runs until the state changes (state.go).
func (s *Supervisor) Run(ctx context.Context) (err error) {
	defer close(s.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stopped:
			cancel()
		case <-s.done:
		}
	}()
	defer func() {
		if s.state != StateStopped {
			s.enter(StateStopped, stopReason(err), nil)
		}
	}()
	if err := s.starting(ctx); err != nil {
		return err
	}
	for {
		switch s.state {
		case StateServing:
			s.serving(ctx)
		case StateRestarting:
			if err := s.restarting(ctx); err != nil {
				return err
			}
		case StateStopped:
			return nil
		default:
			panic("supervisor: the loop is in " + string(s.state)) // the other states run inside these steps
		}
	}
}

func stopReason(err error) string {
	switch {
	case err == nil:
		return "stop"
	case errors.Is(err, ErrGaveUp):
		return "gave up"
	case errors.Is(err, ErrHandedBack):
		return "handed back"
	}
	return "failed: " + err.Error()
}

// starting brings generation one of this supervisor to serving. After a self-upgrade the old supervisor's worker
// serves until this one's is in standby; then the old one yields, and only then may this one's take the store
// (takeOver).
//
// A first generation that a signal ends on its way to serving (kill -9, the OOM killer) is a crash: starting →
// restarting, counted against --restart-limit like any other. One that fails or exits by itself (a store it
// cannot open, a panic) ends the start: trying again would fail again.
func (s *Supervisor) starting(ctx context.Context) error {
	g, err := s.spawn(ctx, s.take())
	if err != nil {
		s.cfg.Parent.Fail(err)
	}
	if err == nil && s.cfg.Parent != nil {
		return s.takeOver(ctx, g)
	}
	if err == nil {
		err = s.promote(ctx, g, reasonFirst, 0)
	}
	if err != nil && s.cfg.Parent == nil && errors.Is(err, errWorkerKilled) && ctx.Err() == nil {
		s.crashes++
		s.log.Error("the first generation was killed before it served", zap.Error(err), zap.Int("crashes_in_a_row", s.crashes))
		s.enter(StateRestarting, "crash", nil)
		return nil
	}
	return err
}

// promote starts g, continuing above floor, and once it answers a healthy Ready makes it the serving generation
// and enters serving. It is the one way a generation comes to serve: the first start, a take-over, a restart, a
// reload and a rollback all go through it. On failure g is killed and the error returned; the state is left to
// the caller.
//
// A reload that reaches serving starts a new crash streak: a new build serves, by an operator's decision, and the
// crashes of the build it replaced say nothing about it. A rollback or a restart leaves the streak alone (the
// build that was crashing is still the one serving).
func (s *Supervisor) promote(ctx context.Context, g *generation, reason string, floor uint64, reload ...wire.ReloadResult) error {
	if _, err := g.start(ctx, s.cfg.ReadyTimeout, reason, floor); err != nil {
		g.kill()
		return err
	}
	if !s.announced && s.cfg.Parent == nil && s.cfg.Upgrader != nil {
		// The pid file (tableflip's Ready writes it) names this process before the service says it is ready:
		// whoever reads it after READY=1 finds it.
		if err := s.cfg.Upgrader.Ready(); err != nil {
			g.kill()
			return err
		}
	}
	s.current, s.announced = g, true
	if reason == reasonReload && s.crashes > 0 {
		s.log.Info("a new generation serves after a reload; the crash streak starts again", zap.Int("crashes_before", s.crashes))
		s.crashes = 0
	}
	var r *wire.ReloadResult
	if len(reload) > 0 {
		r = &reload[0]
	}
	s.enter(StateServing, reason, r)
	return nil
}

// Reasons a generation is started with (handoff.Start's reason) and transitions are made for.
const (
	reasonFirst    = "first"
	reasonReload   = "reload"
	reasonRestart  = "restart"
	reasonRollback = "rollback"
)

// serving waits for the next event while a generation serves, and handles it.
func (s *Supervisor) serving(ctx context.Context) {
	g := s.current
	select {
	case <-ctx.Done():
		s.stopping()
	case <-g.exited:
		s.crashed()
	case in := <-g.inbox:
		switch m := in.m.(type) {
		case handoff.Files:
			s.replaceFiles(m)
		case nil: // the connection ended: the exit follows
		default:
			g.log.Warn("unexpected message from the serving worker", zap.Stringer("type", m.Type()))
		}
	case <-s.pings:
	case req := <-s.reloads:
		waiters := append([]chan wire.ReloadResult{req}, s.takeWaiting()...)
		// A stop asked for during a reload waits for it: cutting it short would kill workers mid-handover.
		res := s.reload(context.WithoutCancel(ctx), ctx)
		for _, w := range waiters {
			w <- res
		}
	}
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
	if s.cfg.OnFiles != nil {
		s.cfg.OnFiles(slices.Clone(s.files))
	}
}

// take returns the next generation number and consumes it.
func (s *Supervisor) take() uint64 {
	n := s.next
	s.next++
	return n
}

// takeWaiting collects reload requests already queued: one reload answers all of them.
func (s *Supervisor) takeWaiting() []chan wire.ReloadResult {
	var ws []chan wire.ReloadResult
	for {
		select {
		case w := <-s.reloads:
			ws = append(ws, w)
		default:
			return ws
		}
	}
}

// crashed handles the exit of the serving generation, which was not asked to go: serving → restarting.
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
	s.enter(StateRestarting, "crash", nil)
}

// restarting starts a new generation after the backoff: restarting → serving, or stopped when ctx ends or the
// crashes pass the limit. A generation that fails to start counts as another crash.
func (s *Supervisor) restarting(ctx context.Context) error {
	for {
		if s.cfg.RestartLimit > 0 && s.crashes > s.cfg.RestartLimit {
			return fmt.Errorf("%w: %d times in a row (limit %d)", ErrGaveUp, s.crashes, s.cfg.RestartLimit)
		}
		delay := min(firstBackoff<<min(max(s.crashes-1, 0), 20), s.cfg.RestartBackoff)
		s.log.Info("restarting the worker", zap.Duration("after", delay))
		wait := time.NewTimer(delay)
	backoff:
		for {
			select {
			case <-ctx.Done():
				wait.Stop()
				s.enter(StateStopped, "stop", nil)
				return nil
			case <-s.pings:
			case <-wait.C:
				break backoff
			}
		}
		g, err := s.spawn(ctx, s.take())
		if err == nil {
			err = s.promote(ctx, g, reasonRestart, 0)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			s.enter(StateStopped, "stop", nil)
			return nil
		}
		s.crashes++
		s.log.Error("restart failed", zap.Error(err), zap.Int("crashes_in_a_row", s.crashes))
		s.publish()
	}
}

// reload replaces the serving generation with one from the binary on disk, or rolls back to it: serving →
// reloading → serving (the new generation, or the old one still or again), or restarting when neither serves.
// When the binary changed it is a self-upgrade instead (upgrade.go). stop is Run's ctx: a stop asked for meanwhile
// is passed on to a new supervisor.
func (s *Supervisor) reload(ctx, stop context.Context) wire.ReloadResult {
	old := s.current
	res := wire.ReloadResult{Kind: wire.KindReload, StartedAt: time.Now().UTC(), From: old.n}
	if s.cfg.Upgrader != nil {
		changed, err := s.binary.differs(s.cfg.Binary, s.cfg.Self)
		switch {
		case err != nil:
			return s.record(finish(res, wire.OutcomeFailed, err.Error()))
		case changed && s.noUpgrade != nil:
			s.log.Warn("the binary changed, but this supervisor cannot replace itself; rolling the worker only. Restart the service to upgrade the supervisor.", zap.NamedError("because", s.noUpgrade))
		case changed:
			return s.upgrade(ctx, stop, res)
		}
	}
	s.enter(StateReloading, reasonReload, nil)
	s.log.Info("reload: starting a new generation", zap.Uint64("from", old.n))
	res.To = s.take()
	next, err := s.spawn(ctx, res.To)
	if err != nil {
		// The old generation never stopped serving.
		s.log.Warn("reload failed; the serving generation continues", zap.Error(err))
		res = finish(res, wire.OutcomeFailed, err.Error())
		s.enter(StateServing, "reload failed", &res)
		return res
	}
	res.Build = next.build
	s.publishCandidate(next)

	// One writer at a time: the old generation finishes its requests and lets go of the store and the region
	// before the new one takes them. Connections that arrive meanwhile wait in the listen backlog.
	y, err := old.yield(ctx, reasonReload, s.cfg.DrainTimeout)
	if err != nil {
		s.log.Error("the serving generation did not yield; killing it", zap.Error(err))
		old.kill()
	}
	done := finish(res, wire.OutcomeServing, "")
	if err := s.promote(ctx, next, reasonReload, y.LastVersion, done); err != nil {
		return s.rollback(ctx, old, res, err)
	}
	old.stop(s.cfg.DrainTimeout)
	s.publish()
	return done
}

// rollback starts old again after the new generation failed once started: → serving ("rolled back"), or
// restarting when old cannot serve either.
func (s *Supervisor) rollback(ctx context.Context, old *generation, res wire.ReloadResult, cause error) wire.ReloadResult {
	s.log.Error("reload failed; rolling back", zap.Error(cause))
	s.current = nil
	if !old.alive() {
		res = finish(res, wire.OutcomeFailed, cause.Error()+"; the old generation is gone too, restarting")
		s.enter(StateRestarting, "reload failed", &res)
		return res
	}
	rolled := finish(res, wire.OutcomeRolledBack, cause.Error())
	if err := s.promote(ctx, old, reasonRollback, 0, rolled); err != nil {
		res = finish(res, wire.OutcomeFailed, fmt.Sprintf("%v; rollback failed: %v", cause, err))
		s.enter(StateRestarting, "rollback failed", &res)
		return res
	}
	return rolled
}

// stopping lets the serving generation finish its requests and exit: serving → stopping → stopped.
func (s *Supervisor) stopping() {
	s.enter(StateStopping, "stop", nil)
	g := s.current
	s.current = nil
	if _, err := g.yield(context.Background(), "shutdown", s.cfg.DrainTimeout); err != nil {
		g.log.Warn("worker did not yield cleanly", zap.Error(err))
	}
	g.stop(s.cfg.DrainTimeout)
	s.enter(StateStopped, "stop", nil)
}

// Stop asks Run to stop as when its ctx is done: the serving generation finishes its requests and exits. It
// returns at once; Run returns when the stop is complete. Stopping twice, or after Run returned, does nothing.
func (s *Supervisor) Stop() { s.stopOnce.Do(func() { close(s.stopped) }) }

// Done is closed when Run has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// aliveWait is how long Alive waits for the loop to take its ping.
const aliveWait = time.Second

// Alive reports whether the supervisor's loop is alive: it takes a ping whenever it waits for the next event
// (serving, or the backoff before a restart), and a loop in a step that does not wait (starting, reloading,
// upgrading or stopping a generation) is alive until the step's bound (stepBound) has passed. A watchdog pings the
// service manager only while this returns nil, so a hung supervisor is restarted. It returns an error once Run
// has returned.
func (s *Supervisor) Alive(ctx context.Context) error {
	t := time.NewTimer(aliveWait)
	defer t.Stop()
	select {
	case s.pings <- struct{}{}:
		return nil
	case <-s.done:
		return errors.New("the supervisor has stopped")
	case <-ctx.Done():
	case <-t.C:
	}
	s.mu.Lock()
	state, deadline := s.view.State, s.stepDeadline
	s.mu.Unlock()
	if time.Now().Before(deadline) {
		return nil
	}
	return fmt.Errorf("the supervisor's loop has not answered in state %s for longer than its step may take (until %s)",
		state, deadline.Format(time.RFC3339Nano))
}

// stepBound is the longest a step of the loop may take without waiting for an event: bringing a generation to
// standby and then to serving, while the old one drains and exits, with room to spare.
func (s *Supervisor) stepBound() time.Duration {
	return 2*s.cfg.ReadyTimeout + 2*s.cfg.DrainTimeout + 10*time.Second
}

// Reload asks for a reload and waits for its outcome. A reload asked for while another runs waits for it to end
// and then starts a fresh one, so it always runs the binary on disk at the time it was asked; requests queued
// together share one reload.
func (s *Supervisor) Reload(ctx context.Context) (wire.ReloadResult, error) {
	w := make(chan wire.ReloadResult, 1)
	select {
	case s.reloads <- w:
	case <-s.done:
		return wire.ReloadResult{}, errors.New("the supervisor is stopping")
	case <-ctx.Done():
		return wire.ReloadResult{}, ctx.Err()
	}
	select {
	case r := <-w:
		return r, nil
	case <-ctx.Done():
		return wire.ReloadResult{}, fmt.Errorf("waiting for the reload: %w", ctx.Err())
	}
}
