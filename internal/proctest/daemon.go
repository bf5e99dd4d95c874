package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DaemonConfig says how to start announcementd.
type DaemonConfig struct {
	// Binary is the announcementd to run (a test that builds its own passes that; the test binary itself when Env
	// selects a role that runs the daemon's main).
	Binary string
	// Ctl is the announcementctl that Ctl runs; default: the one beside Binary.
	Ctl string
	// Shm, StateDir and RuntimeDir are passed as --shm, --state-dir and --runtime-dir, each when set, before Args.
	// Ctl gives announcementctl the same --runtime-dir.
	Shm, StateDir, RuntimeDir string
	Args                      []string
	// Env is the daemon's environment; nil: the test's. NOTIFY_SOCKET is the harness's in either case (none with
	// NoNotify).
	Env []string
	// Cred runs the daemon, and Ctl, as another user.
	Cred *syscall.Credential
	// ReadyTimeout bounds the wait for READY=1; default 30 s.
	ReadyTimeout time.Duration
	// NoNotify starts the daemon with no service manager (no NOTIFY_SOCKET), as a start by hand: for a start that
	// must fail (ExitBeforeReady), since a daemon under a service manager behaves as one (it leaves its sockets'
	// paths to the fd store it believes it has). Ready is an error then.
	NoNotify bool
}

// Daemon is a started announcementd: one process, in a process group of its own with its workers, its output in a
// Buffer, and the sd_notify socket it was given. After a self-upgrade the service's main process is another one
// (MainPID), in the same group; Stop and Signal go to that one.
type Daemon struct {
	cfg    DaemonConfig
	cmd    *exec.Cmd
	log    *Buffer
	notify *notifySocket

	exited  chan struct{} // closed once the process is reaped
	exitErr error         // Wait's result; read after exited
	output  *os.File      // the read end of the daemon's stdout and stderr
	logDone chan struct{} // closed once every holder of the output has closed it (or Close gave up on them)

	closeOnce sync.Once
}

// LaunchDaemon starts the daemon and returns without waiting for it (for a start that must fail: see
// ExitBeforeReady; or call Ready). The daemon is killed and its files closed at t's cleanup, which also logs the
// end of its log when t failed.
func LaunchDaemon(t testing.TB, cfg DaemonConfig) *Daemon {
	t.Helper()
	d, err := Launch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		if t.Failed() {
			t.Logf("the end of the log of announcementd pid %d:\n%s", d.PID(), tail(d.log.String(), 40))
		}
	})
	return d
}

// StartDaemon starts the daemon and waits until it says READY=1; it fails t, with the daemon's log, if the daemon
// exits first or is not ready within cfg.ReadyTimeout. The daemon is killed at t's cleanup.
func StartDaemon(t testing.TB, cfg DaemonConfig) *Daemon {
	t.Helper()
	d := LaunchDaemon(t, cfg)
	if err := d.Ready(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Launch starts the daemon and returns at once: the non-test form of LaunchDaemon (the caller must Close it).
func Launch(cfg DaemonConfig) (d *Daemon, err error) {
	if cfg.Ctl == "" {
		cfg.Ctl = filepath.Join(filepath.Dir(cfg.Binary), "announcementctl")
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	var args []string
	for _, f := range [][2]string{{"--shm", cfg.Shm}, {"--state-dir", cfg.StateDir}, {"--runtime-dir", cfg.RuntimeDir}} {
		if f[1] != "" {
			args = append(args, f[0], f[1])
		}
	}
	d = &Daemon{cfg: cfg, log: &Buffer{}, exited: make(chan struct{}), logDone: make(chan struct{})}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = withoutVar(env, "NOTIFY_SOCKET")
	if !cfg.NoNotify {
		if d.notify, err = listenNotify(cfg.Cred); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				d.notify.close()
			}
		}()
		env = append(env, "NOTIFY_SOCKET="+d.notify.path)
	}

	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(cfg.Binary, append(args, cfg.Args...)...)
	d.cmd.Env = env
	// An *os.File, so that Wait returns when the process exits, not when the last worker holding its output does.
	d.cmd.Stdout, d.cmd.Stderr = w, w
	// Its own process group, which Kill ends whole (as systemd ends a service's cgroup); killed with the test
	// process (Pdeathsig fires when the thread that started it ends; Go ends a thread only under a goroutine that
	// locked it and returned).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cfg.Cred}
	err = d.cmd.Start()
	w.Close() // the daemon and its workers hold it now: EOF once they have all exited
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("proctest: start %s: %w", cfg.Binary, err)
	}
	d.output = r
	go func() {
		defer close(d.logDone)
		io.Copy(d.log, r)
	}()
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	return d, nil
}

func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// PID is the pid of the process started (the supervisor; its process group's id).
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// MainPID is the service's main process: the last MAINPID= the daemon sent (a supervisor that took over in a
// self-upgrade says so), else PID.
func (d *Daemon) MainPID() int {
	msgs, _ := d.notify.snapshot()
	for i := len(msgs) - 1; i >= 0; i-- {
		if v, ok := msgs[i].Value("MAINPID"); ok {
			if pid, err := strconv.Atoi(v); err == nil {
				return pid
			}
		}
	}
	return d.PID()
}

// Log is the daemon's standard output and error: the supervisor's and its workers'.
func (d *Daemon) Log() *Buffer { return d.log }

// Config is the configuration the daemon was started with (with the defaults filled in).
func (d *Daemon) Config() DaemonConfig { return d.cfg }

// Notifications returns the sd_notify datagrams received so far, in order.
func (d *Daemon) Notifications() []Notification {
	msgs, _ := d.notify.snapshot()
	return msgs
}

// Exited is closed once the process started has exited and been reaped.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// ExitErr is how the process started ended (exec's Wait error; nil for status 0). Call it after Exited.
func (d *Daemon) ExitErr() error {
	<-d.exited
	return d.exitErr
}

// Ready waits until the daemon has sent READY=1 (once the first generation serves), at most cfg.ReadyTimeout. It
// fails early, with the exit status and the log, if the process exits first.
func (d *Daemon) Ready() error {
	if d.cfg.NoNotify {
		return fmt.Errorf("proctest: announcementd pid %d runs with no NOTIFY_SOCKET (NoNotify): it cannot say it is ready", d.PID())
	}
	return d.WaitNotified("READY=1", 1, d.cfg.ReadyTimeout)
}

// WaitNotified waits until n datagrams with the line kv ("READY=1", "RELOADING=1") have arrived since the start,
// at most timeout. The process exiting first is an error (after a self-upgrade, the first process exits on
// purpose: wait for MAINPID's READY=1 before that, or use Notifications).
func (d *Daemon) WaitNotified(kv string, n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		msgs, changed := d.notify.snapshot()
		count := 0
		for _, m := range msgs {
			if m.Has(kv) {
				count++
			}
		}
		if count >= n {
			return nil
		}
		select {
		case <-changed:
		case <-d.exited:
			// The datagram may have been sent right before the exit.
			if msgs, _ := d.notify.snapshot(); countHas(msgs, kv) >= n {
				return nil
			}
			d.settleLog(5 * time.Second)
			return fmt.Errorf("proctest: announcementd pid %d exited (%v) before %d × %s; notifications %v; its log:\n%s",
				d.PID(), d.exitErr, n, kv, msgs, d.log)
		case <-deadline:
			return fmt.Errorf("proctest: announcementd pid %d: no %d × %s within %v; notifications %v; its log:\n%s",
				d.PID(), n, kv, timeout, msgs, d.log)
		}
	}
}

func countHas(msgs []Notification, kv string) int {
	c := 0
	for _, m := range msgs {
		if m.Has(kv) {
			c++
		}
	}
	return c
}

// ExitBeforeReady waits, at most timeout, for a start that must fail: the daemon exits without saying READY=1. It
// returns the exit status (the log is complete by then); it is an error if the daemon says READY=1 first or is
// still running at the timeout (then it is killed).
func (d *Daemon) ExitBeforeReady(timeout time.Duration) (int, error) {
	deadline := time.After(timeout)
	for {
		msgs, changed := d.notify.snapshot()
		if countHas(msgs, "READY=1") > 0 {
			return 0, fmt.Errorf("proctest: announcementd pid %d said READY=1; it should have failed to start:\n%s", d.PID(), d.log)
		}
		select {
		case <-changed:
		case <-d.exited:
			d.settleLog(10 * time.Second)
			return ExitCode(d.exitErr), nil
		case <-deadline:
			d.Kill()
			return 0, fmt.Errorf("proctest: announcementd pid %d neither failed nor got ready within %v; killed:\n%s", d.PID(), timeout, d.log)
		}
	}
}

// settleLog waits at most limit for every holder of the daemon's output to close it, so that the log is whole.
func (d *Daemon) settleLog(limit time.Duration) bool {
	select {
	case <-d.logDone:
		return true
	case <-time.After(limit):
		return false
	}
}

// Signal sends sig to the main process.
func (d *Daemon) Signal(sig syscall.Signal) error {
	return syscall.Kill(d.MainPID(), sig)
}

// Stop stops the service as a service manager does: SIGTERM to the main process, then WaitGone. A daemon still
// running at the timeout is killed (Kill) and the error says so. The error is also the exit status of the process
// started, when it is not 0.
func (d *Daemon) Stop(timeout time.Duration) error {
	main := d.MainPID()
	if err := syscall.Kill(main, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if err := d.WaitGone(timeout); err != nil {
		d.Kill()
		return fmt.Errorf("%w after SIGTERM to pid %d; killed", err, main)
	}
	if d.exitErr != nil {
		return fmt.Errorf("proctest: announcementd pid %d ended with %v after SIGTERM:\n%s", d.PID(), d.exitErr, tail(d.log.String(), 40))
	}
	return nil
}

// WaitGone waits, at most timeout, until the process started has exited, and the main process, every process of
// its group and every holder of its output (its workers) have too. It only waits: the error lists what still runs.
func (d *Daemon) WaitGone(timeout time.Duration) error {
	main := d.MainPID()
	if Poll(timeout, func() bool {
		select {
		case <-d.exited:
		default:
			return false
		}
		select {
		case <-d.logDone:
		default:
			return false
		}
		return !Running(main) && len(Group(d.PID())) == 0
	}) {
		return nil
	}
	return fmt.Errorf("proctest: announcementd (main pid %d) still runs after %v: its processes %v:\n%s",
		main, timeout, Group(d.PID()), tail(d.log.String(), 40))
}

// Kill ends the daemon's whole process group with SIGKILL (the supervisor and its workers, as a crash of the
// service) and waits until the process is reaped and every process of the group has exited, its files closed (at
// most 30 s; the error lists those left). It may be called more than once.
func (d *Daemon) Kill() error {
	select {
	case <-d.exited:
		select {
		case <-d.logDone:
			if len(Group(d.PID())) == 0 {
				return nil // nothing of the group is left (and its id may be another's by now)
			}
		default:
		}
	default:
	}
	syscall.Kill(-d.PID(), syscall.SIGKILL)
	<-d.exited
	// A process closes its output before its other files (the store's lock...): once no process of the group
	// runs (a zombie has released its files), they are all closed.
	if !d.settleLog(30*time.Second) || !Poll(30*time.Second, func() bool { return len(Group(d.PID())) == 0 }) {
		return fmt.Errorf("proctest: 30 s after SIGKILL to process group %d, its processes %v still run", d.PID(), Group(d.PID()))
	}
	return nil
}

// Close kills the daemon if it still runs, and releases what the harness holds for it: its notify socket, the
// goroutines that read its output and its exit. It may be called more than once.
func (d *Daemon) Close() {
	d.closeOnce.Do(func() {
		d.Kill()
		d.output.Close() // ends the copy even if some process outside the group still holds the output
		<-d.logDone
		d.notify.close()
	})
}

// Ctl runs the daemon's announcementctl (as cfg.Cred) with --runtime-dir and args, killed after timeout, and
// returns its exit status and output; status -1 when it did not run or finish (stderr says why).
func (d *Daemon) Ctl(timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if d.cfg.RuntimeDir != "" {
		args = append([]string{"--runtime-dir", d.cfg.RuntimeDir}, args...)
	}
	cmd := exec.CommandContext(ctx, d.cfg.Ctl, args...)
	if d.cfg.Cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: d.cfg.Cred}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, out.String(), errb.String() + fmt.Sprintf("(killed after %v)", timeout)
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		return -1, out.String(), err.Error()
	}
	return 0, out.String(), errb.String()
}

// Fds lists the fds the main process holds.
func (d *Daemon) Fds() ([]FD, error) { return Fds(d.MainPID()) }

// Children lists the main process's running children: its workers.
func (d *Daemon) Children() []int { return Children(d.MainPID()) }

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
