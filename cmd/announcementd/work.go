package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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

// work is `announcementd worker`: one worker generation. It takes its fds from the supervisor on fd 3, reports
// standby, and serves during each turn the supervisor starts, until the supervisor closes the connection or goes
// away.
//
// Signals: the supervisor decides when a worker stops, so SIGINT and SIGTERM (a terminal's ^C, or systemd signalling
// the whole control group) are ignored while it lives; it will send Yield. When the supervisor dies the worker gets
// SIGTERM (parent-death signal) and stops on its own.
func work(log *zap.Logger, c config) error {
	signal.Ignore(syscall.SIGHUP) // reloads are the supervisor's business
	ctx := context.Background()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	gen, err := strconv.ParseUint(os.Getenv(supervisor.EnvGeneration), 10, 64)
	if err != nil {
		return fmt.Errorf("announcementd worker is started by the supervisor, not by hand ($%s: %v)", supervisor.EnvGeneration, err)
	}
	log = log.With(zap.Uint64("generation", gen))
	self, err := supervisor.FileID("/proc/self/exe")
	if err != nil {
		return err
	}
	conn, err := handoff.FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return err
	}
	defer conn.Close()
	hctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	peer, err := conn.Handshake(hctx, handoff.Hello{Role: handoff.RoleWorker, Generation: gen, Build: buildString(self)})
	if err != nil {
		return err
	}
	parent := os.Getppid()
	if err := conn.CheckPeer(parent, os.Getuid()); err != nil {
		return err
	}
	files, err := conn.RecvFiles(hctx)
	if err != nil {
		return err
	}
	defer files.Close()

	env := turnEnv{c: c, log: log, files: files, gen: gen, build: buildString(self)}
	env.supervisor.PID, env.supervisor.Build = parent, peer.Build
	if err := env.check(); err != nil {
		conn.Send(hctx, handoff.Standby{Reason: err.Error()})
		return err
	}
	if err := conn.Send(hctx, handoff.Standby{Healthy: true}); err != nil {
		return err
	}
	log.Info("worker in standby")

	msgs := make(chan handoff.Message)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := conn.Recv(context.Background())
			if err != nil {
				recvErr <- err
				return
			}
			msgs <- m
		}
	}()
	// A region the writer had to recreate (it was removed or replaced at its path) replaces the one this worker
	// was handed, for its next turn, and goes to the supervisor, which hands it to the next generation.
	replaced := make(chan *os.File, 4)
	env.regionReplaced = func(f *os.File) { replaced <- f }
	var t *turn
	defer func() {
		if t != nil {
			t.end()
		}
	}()
	var failed <-chan error
	for {
		select {
		case sig := <-sigs:
			if os.Getppid() == parent {
				log.Info("signal ignored: the supervisor stops its workers; signal it instead", zap.Stringer("signal", sig), zap.Int("supervisor_pid", parent))
				continue
			}
			log.Info("the supervisor is gone; stopping", zap.Stringer("signal", sig))
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				log.Info("the supervisor closed the connection; stopping")
				return nil
			}
			return fmt.Errorf("supervisor connection: %w", err)
		case err := <-failed:
			return fmt.Errorf("serving failed: %w", err)
		case f := <-replaced:
			files[fileRegion].Close()
			files[fileRegion] = f
			sctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
			err := conn.SendFiles(sctx, handoff.NamedFile{Name: fileRegion, File: f})
			cancel()
			if err != nil {
				return fmt.Errorf("hand the recreated region to the supervisor: %w", err)
			}
			log.Info("handed the recreated region to the supervisor")
		case m := <-msgs:
			sctx, cancel := context.WithTimeout(ctx, handoffTimeout)
			switch m := m.(type) {
			case handoff.Start:
				if t != nil {
					cancel()
					return errors.New("protocol: start while serving")
				}
				var r handoff.Ready
				t, err = env.start(m.VersionFloor)
				if err != nil {
					log.Error("could not start serving", zap.Error(err))
					r = handoff.Ready{Reason: err.Error()}
				} else if r = readyReport(t); r.Healthy {
					failed = t.failed
					log.Info("serving", zap.String("reason", m.Reason), zap.Uint64("version", t.board.Version()))
				} else {
					// Let go of everything before saying so: the supervisor starts the previous generation
					// again, which needs the store and the region, and requests this one accepted are answered.
					log.Error("not ready after starting; stepping back", zap.String("reason", r.Reason))
					t.end()
					t = nil
				}
				err = conn.Send(sctx, r)
			case handoff.Yield:
				y := handoff.Yielded{}
				if t != nil {
					y.LastVersion, err = t.end()
					if err != nil {
						y.Reason = err.Error()
					}
					t, failed = nil, nil
				}
				log.Info("yielded", zap.String("reason", m.Reason), zap.Uint64("last_version", y.LastVersion))
				err = conn.Send(sctx, y)
			default:
				err = fmt.Errorf("protocol: unexpected %v from the supervisor", m.Type())
			}
			cancel()
			if err != nil {
				return err
			}
		}
	}
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

// turnEnv is what a worker keeps between turns: its configuration and the files the supervisor handed it.
type turnEnv struct {
	c          config
	log        *zap.Logger
	files      handoff.Files
	gen        uint64
	build      string
	supervisor struct {
		PID   int
		Build string
	}
	token          string
	regionReplaced func(*os.File) // Config.RegionReplaced of every turn's worker
}

// check does what can be done before the turn without writing anything: the files are there and of the right
// kinds, the token is readable, the state dir is usable.
func (e *turnEnv) check() error {
	region := e.files[fileRegion]
	if region == nil {
		return errors.New("the supervisor did not hand over the region")
	}
	if st, err := region.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("region %s is not a regular file (%v)", e.c.shm, err)
	}
	for _, addr := range e.c.listen {
		if e.files[fileAPI+addr] == nil {
			return fmt.Errorf("the supervisor did not hand over the listener %s", addr)
		}
		if strings.HasPrefix(addr, "tcp:") && e.c.tokenFile == "" {
			return fmt.Errorf("--listen %s needs --token-file", addr)
		}
	}
	if e.c.metrics != "" && e.files[fileMetrics] == nil {
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
	failed   chan error // the API stopped by itself
}

// start takes the store and the region and serves.
func (e *turnEnv) start(floor uint64) (_ *turn, err error) {
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
	region, err := fdutil.Dup(e.files[fileRegion], e.c.shm) // the writer owns and closes its copy
	if err != nil {
		return nil, err
	}
	// A board that shows no version to continue from (created from nothing after a reboot or a removal, or
	// unreadable) continues recreateJump above the floor: the store's floor trails the last publish by the few
	// milliseconds it takes to save, and after a crash versions published in that window may still be in a
	// reader's memory.
	t.board, err = writer.New(region, writer.Options{Size: e.c.shmSize, Generation: e.gen, VersionFloor: floor, RecreateJump: recreateJump})
	if err != nil {
		region.Close()
		return nil, err
	}
	if what := t.board.Opened(); what != "" {
		e.log.Info("region opened", zap.String("found", what), zap.Uint64("floor", floor), zap.Uint64("version", t.board.Version()))
	}
	cfg := worker.Config{Board: t.board, Store: t.st, Log: e.log, Generation: e.gen, Build: e.build, RegionReplaced: e.regionReplaced}
	cfg.Supervisor.PID, cfg.Supervisor.Build = e.supervisor.PID, e.supervisor.Build
	if t.w, err = worker.New(cfg); err != nil {
		return nil, err
	}
	var listeners []worker.Listener
	for _, addr := range e.c.listen {
		l, err := net.FileListener(e.files[fileAPI+addr]) // a duplicate: closing it leaves the supervisor's open
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
	if f := e.files[fileMetrics]; f != nil {
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
	t.ran, t.served, t.failed = make(chan error, 1), make(chan error, 2), make(chan error, 1)
	go func() { t.ran <- t.w.Run(runCtx) }()
	n := 1
	go func() {
		err := t.w.Serve(httpCtx, listeners)
		if httpCtx.Err() == nil { // it stopped by itself
			t.failed <- fmt.Errorf("api: %w", err)
		}
		t.served <- err
	}()
	if metrics != nil {
		n++
		go func() { t.served <- serveMetrics(httpCtx, metrics, e.c.pprof, t.w.Registry()) }()
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
