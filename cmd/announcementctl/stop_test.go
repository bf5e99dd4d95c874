package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/wire"
)

// startChild starts a process that lives until it is killed, and reaps it at the end of the test.
func startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// serveStop is a fake supervisor's control.sock: POST /v1/stop answers 202 with pid, and calls onStop.
func serveStop(t *testing.T, pid int, onStop func()) string {
	t.Helper()
	dir := shortDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/stop", func(rw http.ResponseWriter, r *http.Request) {
		onStop()
		wire.WriteJSON(rw, http.StatusAccepted, wire.StopAccepted{Accepted: true, PID: pid})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return dir
}

// TestStopWaitsForTheSupervisor: stop returns only once the process the supervisor named has exited. The process
// exits 300 ms after the request and is left a zombie (as a supervisor whose parent has not reaped it yet), which
// counts as exited.
func TestStopWaitsForTheSupervisor(t *testing.T) {
	child := startChild(t)
	killed := make(chan time.Time, 1)
	dir := serveStop(t, child.Process.Pid, func() {
		time.AfterFunc(300*time.Millisecond, func() {
			killed <- time.Now()
			child.Process.Kill()
		})
	})
	code, out, errs := ctl("--runtime-dir", dir, "stop", "--timeout", "10s")
	returned := time.Now()
	if code != 0 || !strings.HasPrefix(out, "stopped: supervisor pid ") || errs != "" {
		t.Fatalf("stop: exit %d %q %q", code, out, errs)
	}
	select {
	case k := <-killed:
		if returned.Before(k) {
			t.Fatalf("stop returned %v before the supervisor exited", k.Sub(returned))
		}
	default:
		t.Fatal("stop returned before the supervisor was killed")
	}
}

// TestStopTimesOut: a supervisor that does not exit within --timeout is an error that says so.
func TestStopTimesOut(t *testing.T) {
	child := startChild(t)
	dir := serveStop(t, child.Process.Pid, func() {})
	start := time.Now()
	code, _, errs := ctl("--runtime-dir", dir, "stop", "--timeout", "200ms")
	if code != exitError || !strings.Contains(errs, "has not exited after 200ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("stop: exit %d %q after %v", code, errs, time.Since(start))
	}
}

// TestWaitExitPastDeadline: a deadline that passed before waitExit looks at the process returns at once. (It
// computed poll(2)'s timeout from the time left, and a deadline passed by more than 1 ms gave a negative one: no
// limit. TestStopTimesOut, on a loaded machine, waited 60 s for its child to exit instead of 200 ms.)
func TestWaitExitPastDeadline(t *testing.T) {
	child := startChild(t)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- waitExit(ctx, child.Process.Pid) }()
	select {
	case err := <-done:
		if err != context.DeadlineExceeded {
			t.Fatalf("waitExit: %v, want the deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitExit is still waiting 10 s after its deadline passed")
	}
}

// TestStopNotRunning: nothing listens on control.sock: the service is stopped already (systemd runs ExecStop
// after a main process that exited on its own too), exit 0. A runtime dir that does not exist is an error.
func TestStopNotRunning(t *testing.T) {
	dir := shortDir(t)
	code, out, errs := ctl("--runtime-dir", dir, "stop")
	if code != 0 || out != "announcementd is not running: nothing listens on "+filepath.Join(dir, "control.sock")+"\n" {
		t.Errorf("stop: exit %d %q %q", code, out, errs)
	}
	code, _, errs = ctl("--runtime-dir", filepath.Join(dir, "nope"), "stop")
	if code != exitError || !strings.Contains(errs, "does not exist") {
		t.Errorf("stop, no runtime dir: exit %d %q", code, errs)
	}
	if code, _, errs := ctl("--addr", "tcp:127.0.0.1:1", "stop"); code != exitUsage || !strings.Contains(errs, "not --addr") {
		t.Errorf("stop --addr: exit %d %q", code, errs)
	}
}

// TestPollExit is the fallback without pidfd_open: a live process is waited for, a zombie and a process that is
// gone have exited.
func TestPollExit(t *testing.T) {
	child := startChild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := pollExit(ctx, child.Process.Pid); err != context.DeadlineExceeded {
		t.Fatalf("a live process: %v", err)
	}
	child.Process.Kill()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pollExit(ctx, child.Process.Pid); err != nil { // a zombie: not reaped yet
		t.Fatalf("a zombie: %v", err)
	}
	child.Wait()
	if err := pollExit(ctx, child.Process.Pid); err != nil {
		t.Fatalf("a reaped process: %v", err)
	}
	if err := waitExit(ctx, child.Process.Pid); err != nil {
		t.Fatalf("waitExit, a reaped process: %v", err)
	}
}

// TestStopAfterACrash: the supervisor died (its pid file names a process that has exited) while its control
// socket still takes connections, as systemd's fd store keeps it: not running, exit 0, at once. Without the pid
// file the same socket is a supervisor that does not answer: an error once --timeout (or 10 s) passes.
func TestStopAfterACrash(t *testing.T) {
	dir := shortDir(t)
	l, err := net.Listen("unix", filepath.Join(dir, "control.sock")) // never accepts
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errs := ctl("--runtime-dir", dir, "stop", "--timeout", "300ms")
	if code != exitError || !strings.Contains(errs, "did not answer within 300ms") {
		t.Errorf("no answer: exit %d %q", code, errs)
	}

	child := startChild(t)
	child.Process.Kill()
	child.Wait()
	os.WriteFile(filepath.Join(dir, "announcementd.pid"), []byte(strconv.Itoa(child.Process.Pid)), 0o644)
	start := time.Now()
	code, out, errs := ctl("--runtime-dir", dir, "stop")
	if code != 0 || !strings.Contains(out, "announcementd is not running: the supervisor in") || time.Since(start) > time.Second {
		t.Errorf("stale pid file: exit %d %q %q after %v", code, out, errs, time.Since(start))
	}
}
