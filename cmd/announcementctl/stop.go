package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/wire"
)

// stop is the unit's ExecStop. It asks the supervisor to stop (POST /v1/stop on control.sock, docs/SUPERVISOR.md),
// which it then does as on SIGTERM: the serving generation finishes its requests and exits, then the supervisor.
// stop returns only once the supervisor's process has exited, so that systemd, which signals what is left of the
// service when ExecStop returns, never cuts the drain short (after a self-upgrade the supervisor is not the
// process systemd started). systemd also runs ExecStop when the service has already exited on its own; a service
// that is not running (nothing listens on control.sock, or the pid file names a process that has exited) is
// therefore a success, with a line that says so.
func stop(ctx context.Context, c *call) error {
	fs := c.flags()
	timeout := fs.Duration("timeout", 90*time.Second, "give up (exit 1) when the supervisor has not exited after this long")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return err
	}
	if c.g.addr != "" {
		return usageError{"stop goes through the local control socket (--runtime-dir), not --addr"}
	}
	if *timeout <= 0 {
		return usageError{fmt.Sprintf("stop: --timeout %v: want a positive duration", *timeout)}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cc := newControlClient(c.g)
	pidFile := filepath.Join(c.g.runtimeDir, "announcementd.pid")
	if pid, ok := deadPID(pidFile); ok {
		// Its sockets may still take connections (systemd's fd store keeps them for the next start), and nobody
		// would answer.
		fmt.Fprintf(c.stdout, "announcementd is not running: the supervisor in %s (pid %d) has exited\n", pidFile, pid)
		return nil
	}
	actx, acancel := context.WithTimeout(ctx, min(*timeout, answerTimeout))
	defer acancel()
	var res wire.StopAccepted
	err := cc.do(actx, "POST", "/v1/stop", nil, &res)
	var u *unreachableError
	switch {
	case errors.As(err, &u) && u.notRunning():
		fmt.Fprintf(c.stdout, "announcementd is not running: nothing listens on %s\n", cc.where.addr)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("stop: %s at %s did not answer within %v: is it hung? (its log says; systemd signals it next)",
			cc.where.what, cc.where.addr, min(*timeout, answerTimeout))
	case err != nil:
		return fmt.Errorf("stop: %w", err)
	case !res.Accepted || res.PID <= 0:
		return fmt.Errorf("stop: %s answered accepted=%v pid=%d: not a stop to wait for", cc.where.what, res.Accepted, res.PID)
	}
	switch err := waitExit(ctx, res.PID); {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("stop: the supervisor (pid %d) has not exited after %v: still finishing requests, or hung (see its log); it was asked to stop and will not be asked again",
			res.PID, *timeout)
	case err != nil:
		return fmt.Errorf("stop: waiting for the supervisor (pid %d) to exit: %w", res.PID, err)
	}
	fmt.Fprintf(c.stdout, "stopped: supervisor pid %d exited after %v\n", res.PID, time.Since(start).Round(time.Millisecond))
	return nil
}

// answerTimeout bounds the wait for the supervisor's answer, which it gives at once: a socket that takes the
// connection but does not answer is held by no live supervisor, or by a hung one.
const answerTimeout = 10 * time.Second

// deadPID reads the supervisor's pid file and reports whether the process it names has exited: the supervisor
// died without removing it (kill -9, a crash). A missing or unreadable file says nothing (false).
func deadPID(pidFile string) (int, bool) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, exited(pid)
}

// pollInterval is how often waitExit looks at a process it has no pidfd for.
const pollInterval = 20 * time.Millisecond

// waitExit returns nil once the process pid has exited (it may not have been reaped yet), or ctx's error first.
// It waits on a pidfd (pidfd_open(2), Linux 5.3), which becomes readable when the process exits; where there is
// none (an older kernel, a seccomp filter that refuses the call), it looks every 20 ms (pollExit).
func waitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone already
	}
	if err != nil {
		return pollExit(ctx, pid)
	}
	defer unix.Close(fd)
	for {
		// The poll's timeout bounds how late a cancelled ctx is noticed, not how late the exit is. A deadline that
		// passed gives 0, never a negative timeout: poll(2) would wait for the exit with no limit.
		timeout := 100
		if d, ok := ctx.Deadline(); ok {
			timeout = max(0, int(min(time.Until(d), 100*time.Millisecond).Milliseconds())+1)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, timeout)
		switch {
		case err != nil && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("poll pidfd: %w", err)
		case n > 0:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
	}
}

// pollExit returns nil once the process pid has exited: kill(pid, 0) fails with ESRCH, or the process is a zombie
// (it has exited; its parent has not reaped it yet). It looks every pollInterval.
func pollExit(ctx context.Context, pid int) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if exited(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func exited(pid int) bool {
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	} // EPERM: it is there, and not ours
	// /proc/PID/stat: "PID (COMM) STATE ...", where COMM may hold anything but the last ')'.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}
