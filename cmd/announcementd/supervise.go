package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/internal/buildinfo"
	"github.com/announcementd/announcementd/internal/securefs"
	"github.com/announcementd/announcementd/supervisor"
	"github.com/announcementd/announcementd/systemd"
	"github.com/announcementd/announcementd/wire"
)

// The files the supervisor hands each worker generation.
const (
	fileRegion  = "region"
	fileMetrics = "metrics"
	fileAPI     = "api:" // + the --listen address
)

// supervise runs the supervisor until ctx is done or a self-upgrade hands the service to a new process. args are
// its own flags, passed on to every worker. Its steps: what systemd passed, this binary, tableflip and the old
// supervisor (after a self-upgrade), the files every generation gets (serviceFiles), the supervisor with its
// service-manager hooks, then the control socket, SIGHUP and the watchdog around Run (serve).
func supervise(ctx context.Context, log *zap.Logger, c config, args []string) (err error) {
	// A reload asked for while this process starts waits for it; it must not kill it (SIGHUP's default).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// What systemd passed (LISTEN_FDS: its fd store, socket activation), before anything else takes fds; what is
	// not used by the end of the start is closed.
	in := inherited{systemd.Inherit()}
	defer in.Close()
	binary, self, err := ownBinary()
	if err != nil {
		return err
	}
	if err := checkRuntimeDir(c.runtimeDir); err != nil {
		return err
	}
	// tableflip carries every fd the supervisor owns to a new supervisor on self-upgrade, and writes the pid file.
	pidFile := filepath.Join(c.runtimeDir, "announcementd.pid")
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: 2 * c.readyTimeout, PIDFile: pidFile})
	if err != nil {
		return err
	}
	ready := &readyUpgrader{Upgrader: upg}
	// Started by a self-upgrade: reach the old supervisor first, so that it hears why if this one cannot take over.
	upgradeSocket := filepath.Join(c.runtimeDir, "upgrade.sock")
	var parent *supervisor.Parent
	if upg.HasParent() {
		// tableflip passes its two pipes as fds 3 and 4 without close-on-exec: keep them from the workers.
		syscall.CloseOnExec(3)
		syscall.CloseOnExec(4)
		if parent, err = supervisor.DialParent(ctx, upgradeSocket); err != nil {
			return err
		}
	}
	stored := false // the service manager's fd store keeps the sockets
	defer func() {
		// Stop closes the fds, and removes the sockets' paths unless a new supervisor took them. A supervisor
		// started by a self-upgrade that did not take over must leave them alone: the old supervisor carries on with
		// them. Nor are they removed while the fd store keeps the sockets: a restart of the service takes them back,
		// and their paths must still lead to them (after the store is emptied, a path left is a stale socket that
		// the next start replaces); the fds close as the process exits.
		if (parent == nil || (ready.done.Load() && !errors.Is(err, supervisor.ErrHandedBack))) && !stored {
			upg.Stop()
			<-upg.Exit() // Stop only asks: the sockets are closed and removed by tableflip's goroutine
		}
	}()
	fail := func(err error) error {
		parent.Fail(err)
		return err
	}

	files, control, err := serviceFiles(log, upg, parent, in, c)
	if err != nil {
		return fail(err)
	}
	// The service manager keeps the fds from now on, so that a restart of the main process (kill -9, watchdog)
	// takes them back: no connection refused meanwhile, the board's file and version kept.
	store := systemd.NewFDStore(log)
	stored = keepFiles(log, store, files, control.(syscall.Conn))
	in.Close() // what the service manager passed that this start does not use (a --listen since removed)
	watchdog, err := systemd.NewWatchdog(log, parent != nil)
	if err != nil {
		return fail(err)
	}
	sup, err := supervisor.New(supervisor.Config{
		Binary: binary, WorkerArgs: args, WorkerEnv: systemd.WorkerEnv(os.Environ()), Files: files,
		Build: buildString(self), Self: self, Log: log,
		ReadyTimeout: c.readyTimeout, DrainTimeout: c.drainTimeout,
		RestartLimit: c.restartLimit, RestartBackoff: c.restartBackoff,
		Upgrader: ready, UpgradeSocket: upgradeSocket, Parent: parent, PIDFile: pidFile,
		OnTransition: systemd.NewNotifier(log).Observe,
		OnFiles:      func(fs []handoff.NamedFile) { keepRegion(log, store, fs) },
	})
	if err != nil {
		return fail(err)
	}
	log.Info("supervisor starting", zap.String("build", buildString(self)), zap.String("binary", binary),
		zap.String("region", c.shm), zap.Bool("upgraded", parent != nil))
	err = serve(ctx, log, sup, control, hup, watchdog)
	if last := sup.Status().LastReload; last != nil && last.Outcome == wire.OutcomeUpgraded {
		log.Info("handed over to the new supervisor")
		return err
	}
	if errors.Is(err, supervisor.ErrHandedBack) {
		return err // the pid file and the sockets are the old supervisor's again
	}
	if pid, _ := os.ReadFile(pidFile); strings.TrimSpace(string(pid)) == strconv.Itoa(os.Getpid()) {
		os.Remove(pidFile)
	}
	log.Info("supervisor stopped")
	return err
}

// ownBinary is the path this process runs from (what workers and a self-upgrade run) and its content ID.
func ownBinary() (binary, self string, err error) {
	binary, err = exec.LookPath(os.Args[0])
	if err == nil {
		binary, err = filepath.Abs(binary)
	}
	if err != nil {
		return "", "", fmt.Errorf("find my own binary: %w", err)
	}
	if self, err = supervisor.FileID("/proc/self/exe"); err != nil {
		return "", "", fmt.Errorf("identify my own binary: %w", err)
	}
	return binary, self, nil
}

// serviceFiles are the files every generation gets (openFiles) and the control socket.
func serviceFiles(log *zap.Logger, upg *tableflip.Upgrader, parent *supervisor.Parent, in inherited, c config) ([]handoff.NamedFile, net.Listener, error) {
	files, err := openFiles(log, upg, parent, in, c)
	if err != nil {
		return nil, nil, err
	}
	controlPath := filepath.Join(c.runtimeDir, "control.sock")
	control, err := listener(log, upg, in, systemd.NameControl, "unix", controlPath, func() (net.Listener, error) {
		return upg.ListenWithCallback("unix", controlPath, listenUnixAt)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: %w", err)
	}
	return files, control, nil
}

// serve runs the supervisor until it returns, with its control API on control, a reload for each SIGHUP, and the
// watchdog's pings; then answers a reload --wait still being written and stops serving control requests.
func serve(ctx context.Context, log *zap.Logger, sup *supervisor.Supervisor, control net.Listener, hup <-chan os.Signal,
	watchdog *systemd.Watchdog) error {
	srv := &http.Server{Handler: supervisor.ControlHandler(sup), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(wire.Listener(control)) // net/http's own refusals (431, 400) are JSON too
	go func() {
		for {
			select {
			case <-hup:
				go func() {
					res, err := sup.Reload(ctx)
					if err != nil || !res.OK {
						log.Warn("SIGHUP reload did not succeed", zap.Error(err), zap.String("outcome", res.Outcome), zap.String("reason", res.Reason))
					}
				}()
			case <-sup.Done():
				return
			}
		}
	}()
	wctx, stopWatchdog := context.WithCancel(context.Background())
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		watchdog.Run(wctx, sup.Alive)
	}()
	err := sup.Run(ctx)
	stopWatchdog()
	<-watchdogDone
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return err
}

// readyUpgrader is tableflip's Upgrader, remembering whether Ready succeeded: from then on a new supervisor owns
// the fds it inherited, the old one having handed them over.
type readyUpgrader struct {
	*tableflip.Upgrader
	done atomic.Bool
}

func (u *readyUpgrader) Ready() error {
	err := u.Upgrader.Ready()
	if err == nil {
		u.done.Store(true)
	}
	return err
}

// openFiles returns the files every worker gets: the region, the API listeners and the metrics listener. Each comes
// from the previous supervisor when there was one (self-upgrade), else from the service manager (its fd store, or
// socket activation: files.go), else it is opened here. An activated socket that no --listen names is served as
// an API listener too: the .socket unit asked for it.
func openFiles(log *zap.Logger, upg *tableflip.Upgrader, parent *supervisor.Parent, in inherited, c config) ([]handoff.NamedFile, error) {
	if c.tokenFile != "" {
		if _, err := readToken(c.tokenFile); err != nil { // fail at start, not in every worker
			return nil, err
		}
	}
	var region *os.File
	var err error
	if parent != nil { // the old supervisor's, as it is now; the listeners come from tableflip
		for name, f := range parent.Files() {
			if name == fileRegion {
				region = f
			} else {
				f.Close()
			}
		}
		if region == nil {
			return nil, errors.New("the old supervisor did not hand over the region")
		}
	} else if stored := in.Take(systemd.NameRegion); len(stored) > 0 {
		for _, extra := range stored[1:] {
			extra.Close()
		}
		if region, err = adoptRegion(log, stored[0]); err != nil {
			stored[0].Close()
			return nil, err
		}
	} else if region, err = openRegion(log, c.shm); err != nil {
		return nil, err
	}
	files := []handoff.NamedFile{{Name: fileRegion, File: region}}
	listen := slices.Clone(c.listen)
	for _, f := range in.Activated { // an activated socket --listen does not name
		if network, addr, err := boundAddress(f); err == nil && !slices.ContainsFunc(listen, func(l string) bool {
			n, a, _ := strings.Cut(l, ":")
			return n == network && sameAddress(network, addr, a)
		}) {
			log.Info("socket activation: a socket that no --listen names is served as an API listener", zap.String("address", network+":"+addr))
			listen = append(listen, network+":"+addr)
		}
	}
	for _, addr := range listen {
		network, rest, _ := strings.Cut(addr, ":")
		var l net.Listener
		switch network {
		case "unix":
			l, err = listener(log, upg, in, systemd.NameAPI, "unix", rest, func() (net.Listener, error) {
				return upg.ListenWithCallback("unix", rest, listenUnixAt)
			})
		case "tcp":
			if c.tokenFile == "" {
				return nil, fmt.Errorf("--listen %s: a TCP listener needs --token-file (anyone who can reach it could publish)", addr)
			}
			l, err = listener(log, upg, in, systemd.NameAPI, "tcp", rest, func() (net.Listener, error) {
				return upg.Listen("tcp", rest)
			})
		default:
			return nil, fmt.Errorf("--listen %q: want unix:PATH or tcp:HOST:PORT", addr)
		}
		if err != nil {
			return nil, fmt.Errorf("--listen %s: %w", addr, err)
		}
		files = append(files, handoff.NamedFile{Name: fileAPI + addr, File: l.(syscall.Conn)})
	}
	if c.metrics != "" {
		l, err := listener(log, upg, in, systemd.NameMetrics, "tcp", c.metrics, func() (net.Listener, error) {
			return upg.Listen("tcp", c.metrics)
		})
		if err != nil {
			return nil, fmt.Errorf("--metrics %s: %w", c.metrics, err)
		}
		files = append(files, handoff.NamedFile{Name: fileMetrics, File: l.(syscall.Conn)})
	}
	return files, nil
}

// openRegion opens the region file the workers write (securefs.OpenOrCreate): an existing file of ours as it is
// (the worker repairs what is damaged), or a new file without a name, which the first worker's first publish puts
// at the path, so that readers never find a board that holds no version, and a start that fails leaves nothing
// there. It never follows a symlink at the path nor opens another user's file: such a file is replaced when this
// process may (root), refused with its owner named otherwise. The supervisor's lock on the file keeps a second
// daemon away for the life of the service; the workers get the same open file description, so the lock is theirs
// too. Mode 0644: readers need read access only.
func openRegion(log *zap.Logger, path string) (*os.File, error) {
	f, replacing, err := securefs.OpenOrCreate(path, 0o644)
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	if replacing != nil {
		log.Warn("the region's path holds a file that is not the daemon's: it will be replaced by a new board", zap.NamedError("found", replacing))
	}
	if err := lockRegion(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("region: %w", err)
	}
	return f, nil
}

// regionLockWait is how long a starting supervisor waits for the region's lock: a worker whose supervisor died
// finishes its requests and lets go within moments, a daemon that runs does not.
const regionLockWait = 3 * time.Second

func lockRegion(f *os.File) error {
	deadline := time.Now().Add(regionLockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is in use by another announcementd (waited %v for its lock)", f.Name(), regionLockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildString names this build for status and logs: its version (VCS revision), Go version, and the binary's
// content ID.
func buildString(id string) string { return buildinfo.Read().String() + " sha256:" + id }

// listenUnixAt is listenUnix in the shape tableflip's ListenWithCallback takes.
func listenUnixAt(_, path string) (net.Listener, error) { return listenUnix(path) }

// checkRuntimeDir makes the runtime directory (sockets, pid file) if need be and checks that it is private: the
// daemon's own, writable by nobody else, on a trusted path (securefs).
func checkRuntimeDir(dir string) error {
	d, err := securefs.MkdirPrivate(dir, 0o755)
	if err != nil {
		return fmt.Errorf("runtime dir: %w", err)
	}
	return d.Close()
}
