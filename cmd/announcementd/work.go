package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/internal/fdutil"
	"github.com/announcementd/announcementd/internal/securefs"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/supervisor"
	"github.com/announcementd/announcementd/worker"
)

// storeFile is the durable store, in the state dir.
const storeFile = "announcements.db"

// handoffTimeout bounds the worker's side of the handshake and of each answer it sends.
const handoffTimeout = 30 * time.Second

// work is `announcementd worker`: one worker generation. It joins the supervisor on fd 3 (handoff.Join) and answers
// it (handoff.Serve): standby once its checks pass, serving during each turn the supervisor starts, until the
// supervisor closes the connection or goes away.
//
// Signals: the supervisor decides when a worker stops, so SIGINT and SIGTERM (a terminal's ^C, or systemd signalling
// the whole control group) are ignored while it lives; it will send Yield. When the supervisor dies the worker gets
// SIGTERM (parent-death signal) and stops on its own, finishing its requests first.
func work(log *zap.Logger, c config) error {
	signal.Ignore(syscall.SIGHUP) // reloads are the supervisor's business
	n, err := strconv.ParseUint(os.Getenv(supervisor.EnvGeneration), 10, 64)
	if err != nil {
		return fmt.Errorf("announcementd worker is started by the supervisor, not by hand ($%s: %w)", supervisor.EnvGeneration, err)
	}
	log = log.With(zap.Uint64("generation", n))
	self, err := supervisor.FileID("/proc/self/exe")
	if err != nil {
		return err
	}
	conn, err := handoff.FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return err
	}
	defer conn.Close()
	parent := os.Getppid()
	jctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	g := &generation{c: c, log: log, conn: conn, n: n, build: buildString(self)}
	peer, files, err := handoff.Join(jctx, conn, handoff.Hello{Role: handoff.RoleWorker, Generation: n, Build: g.build}, parent, os.Getuid())
	if err != nil {
		return err
	}
	g.files, g.supervisor.PID, g.supervisor.Build = files, parent, peer.Build
	defer g.closeFiles()

	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	g.fail = stop
	done := stopWhenOrphaned(ctx, log, parent, stop)
	defer done()
	err = handoff.Serve(ctx, conn, g, handoff.ServeOptions{Timeout: handoffTimeout})
	switch {
	case err == nil:
		log.Info("the supervisor closed the connection; stopping")
		return nil
	case errors.Is(err, errOrphaned):
		return nil
	}
	return err
}

// errOrphaned ends a worker whose supervisor is gone.
var errOrphaned = errors.New("the supervisor is gone")

// stopWhenOrphaned watches SIGINT and SIGTERM until ctx ends: while the supervisor lives they are ignored (it stops
// its workers), once it is gone stop ends the worker. The returned func stops watching and waits for the watcher.
func stopWhenOrphaned(ctx context.Context, log *zap.Logger, parent int, stop context.CancelCauseFunc) func() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case sig := <-sigs:
				if os.Getppid() == parent {
					log.Info("signal ignored: the supervisor stops its workers; signal it instead", zap.Stringer("signal", sig), zap.Int("supervisor_pid", parent))
					continue
				}
				log.Info("the supervisor is gone; stopping", zap.Stringer("signal", sig))
				stop(errOrphaned)
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
		wg.Wait()
	}
}

// generation is one worker generation, as handoff.Serve drives it: its configuration, the files the supervisor
// handed it, and the turn it serves, if any.
type generation struct {
	c          config
	log        *zap.Logger
	conn       *handoff.Conn
	n          uint64
	build      string
	supervisor struct {
		PID   int
		Build string
	}
	token string
	fail  context.CancelCauseFunc // ends Serve: the turn stopped serving by itself

	mu    sync.Mutex
	files handoff.Files // the region may be replaced (replaceRegion) while a turn serves
	turn  *turn         // owned by Serve's goroutine
}

// Prepare is the check before standby; see check.
func (g *generation) Prepare(context.Context) error {
	err := g.check()
	if err == nil {
		g.log.Info("worker in standby")
	}
	return err
}

// Start takes the store and the region and serves; a turn that is not ready by its own health rules lets go of
// everything before it says so (the supervisor starts the previous generation again, which needs them).
func (g *generation) Start(_ context.Context, m handoff.Start) handoff.Ready {
	t, err := g.start(m.VersionFloor)
	if err != nil {
		g.log.Error("could not start serving", zap.Error(err))
		return handoff.Ready{Reason: err.Error()}
	}
	r := readyReport(t)
	if !r.Healthy {
		g.log.Error("not ready after starting; stepping back", zap.String("reason", r.Reason))
		t.end()
		return r
	}
	g.turn = t
	g.log.Info("serving", zap.String("reason", m.Reason), zap.Uint64("version", t.board.Version()))
	return r
}

// Yield ends the turn: no new requests, in-flight ones answered, the floor saved, the region and store let go.
func (g *generation) Yield(_ context.Context, m handoff.Yield) handoff.Yielded {
	var y handoff.Yielded
	if t := g.turn; t != nil {
		g.turn = nil
		var err error
		if y.LastVersion, err = t.end(); err != nil {
			y.Reason = err.Error()
		}
	}
	g.log.Info("yielded", zap.String("reason", m.Reason), zap.Uint64("last_version", y.LastVersion))
	return y
}

// replaceRegion takes a region the writer had to recreate (it was removed or replaced at its path) in place of the
// one this generation was handed, for its next turns, and sends it to the supervisor, which hands it to the next
// generations. It runs on the writer's repair path: the send is one small frame on a socket the supervisor reads
// all the time.
func (g *generation) replaceRegion(f *os.File) {
	g.mu.Lock()
	old := g.files[fileRegion]
	g.files[fileRegion] = f
	g.mu.Unlock()
	if old != nil {
		old.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	if err := g.conn.SendFiles(ctx, handoff.NamedFile{Name: fileRegion, File: f}); err != nil {
		g.fail(fmt.Errorf("hand the recreated region to the supervisor: %w", err))
		return
	}
	g.log.Info("handed the recreated region to the supervisor")
}

func (g *generation) file(name string) *os.File {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.files[name]
}

func (g *generation) closeFiles() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.files.Close()
}

// readyReport is the worker's answer to Start: its health, checked afresh, which the supervisor shows in its
// status. A worker that is not ready by its own health rules reports unhealthy, and the supervisor rolls back.
func readyReport(t *turn) handoff.Ready {
	h := t.w.Health(true)
	report, _ := json.Marshal(h)
	if !h.Ready {
		return handoff.Ready{RegionVersion: h.Version, Reason: "not ready: " + strings.Join(h.Reasons, "; "), Report: report}
	}
	return handoff.Ready{Healthy: true, RegionVersion: h.Version, Report: report}
}

// check does what can be done before the turn without writing anything: the files are there and of the right
// kinds, the token is readable, the state dir is usable.
func (e *generation) check() error {
	region := e.file(fileRegion)
	if region == nil {
		return errors.New("the supervisor did not hand over the region")
	}
	if st, err := region.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("region %s is not a regular file (%v)", e.c.shm, err)
	}
	for _, addr := range e.c.listen {
		if e.file(fileAPI+addr) == nil {
			return fmt.Errorf("the supervisor did not hand over the listener %s", addr)
		}
		if strings.HasPrefix(addr, "tcp:") && e.c.tokenFile == "" {
			return fmt.Errorf("--listen %s needs --token-file", addr)
		}
	}
	if e.c.metrics != "" && e.file(fileMetrics) == nil {
		return errors.New("the supervisor did not hand over the metrics listener")
	}
	if e.c.tokenFile != "" {
		t, err := readToken(e.c.tokenFile)
		if err != nil {
			return err
		}
		e.token = t
	}
	d, err := securefs.MkdirPrivate(e.c.stateDir, 0o700)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	defer d.Close()
	if err := unix.Access(e.c.stateDir, unix.W_OK); err != nil {
		return fmt.Errorf("state dir %s: %w", e.c.stateDir, err)
	}
	// The store is opened by path (bbolt); the directory being private, nobody else can put another file there
	// after this check.
	if err := d.CheckOurs(storeFile); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// turn is one period of serving: the worker holds the store and writes the region.
type turn struct {
	log      *zap.Logger
	st       *store.Store
	board    *writer.Writer
	w        *worker.Worker
	stopHTTP context.CancelFunc
	stopRun  context.CancelFunc
	served   chan error // Serve's (and the metrics server's) end
	servers  int        // how many will send on served
	ran      chan error // Run's end
}

// start takes the store and the region and serves.
func (e *generation) start(floor uint64) (_ *turn, err error) {
	t := &turn{log: e.log}
	defer func() {
		if err != nil {
			t.release() // t itself, not the nil that the failing return hands back
		}
	}()
	// The previous writer closed the store before it yielded; the wait covers a slow close.
	t.st, err = store.Open(filepath.Join(e.c.stateDir, storeFile), store.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	stored, err := t.st.VersionFloor()
	if err != nil {
		return nil, err
	}
	floor = max(floor, stored)
	region, err := fdutil.Dup(e.file(fileRegion), e.c.shm) // the writer owns and closes its copy
	if err != nil {
		return nil, err
	}
	// A board that shows no version to continue from (created from nothing after a reboot or a removal, or
	// unreadable) continues recreateJump above the floor: the store's floor trails the last publish by the few
	// milliseconds it takes to save, and after a crash versions published in that window may still be in a
	// reader's memory.
	t.board, err = writer.New(region, writer.Options{Size: e.c.shmSize, Generation: e.n, VersionFloor: floor, RecreateJump: recreateJump})
	if err != nil {
		region.Close()
		return nil, err
	}
	if what := t.board.Opened(); what != "" {
		e.log.Info("region opened", zap.String("found", what), zap.Uint64("floor", floor), zap.Uint64("version", t.board.Version()))
	}
	cfg := worker.Config{Board: t.board, Store: t.st, Log: e.log, Generation: e.n, Build: e.build, RegionReplaced: e.replaceRegion}
	cfg.Integrity.NoWatch = !e.c.regionWatch
	cfg.Supervisor.PID, cfg.Supervisor.Build = e.supervisor.PID, e.supervisor.Build
	if t.w, err = worker.New(cfg); err != nil {
		return nil, err
	}
	var listeners []worker.Listener
	for _, addr := range e.c.listen {
		l, err := net.FileListener(e.file(fileAPI + addr)) // a duplicate: closing it leaves the supervisor's open
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, fmt.Errorf("listener %s: %w", addr, err)
		}
		wl := worker.Listener{Listener: l}
		if strings.HasPrefix(addr, "tcp:") {
			wl.Token = e.token
		}
		listeners = append(listeners, wl)
	}
	var metrics net.Listener
	if f := e.file(fileMetrics); f != nil {
		if metrics, err = net.FileListener(f); err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
	}

	// Run (schedule, heartbeat, housekeeping) outlives Serve's drain: requests answered during the drain still get
	// their floor saved and readers still see a heartbeat. It stops only after the last request is answered.
	runCtx, stopRun := context.WithCancel(context.Background())
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	t.stopRun, t.stopHTTP = stopRun, stopHTTP
	t.ran, t.served = make(chan error, 1), make(chan error, 2)
	go func() { t.ran <- t.w.Run(runCtx) }()
	n := 1
	go func() {
		err := t.w.Serve(httpCtx, listeners)
		if httpCtx.Err() == nil { // it stopped by itself: the generation ends
			e.fail(fmt.Errorf("serving failed: api: %w", err))
		}
		t.served <- err
	}()
	if metrics != nil {
		n++
		go func() { t.served <- serveMetrics(httpCtx, metrics, e.c.pprof, t.w.Registry(), e.c.runtimeDir) }()
	}
	t.servers = n
	return t, nil
}

// end stops serving: no new requests, in-flight ones finish, the schedule stops and the floor is saved, then the
// region and the store are let go. It returns the last version published.
func (t *turn) end() (uint64, error) {
	t.stopHTTP()
	var errs []error
	for range t.servers {
		errs = append(errs, <-t.served)
	}
	t.stopRun()
	errs = append(errs, <-t.ran) // Run's last act is saving the floor
	v := t.board.Version()
	errs = append(errs, t.release())
	return v, errors.Join(errs...)
}

// release closes what the turn holds.
func (t *turn) release() error {
	var errs []error
	if t.board != nil {
		errs = append(errs, t.board.Close())
	}
	if t.st != nil {
		errs = append(errs, t.st.Close())
	}
	return errors.Join(errs...)
}
