package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/procfs"
)

// TestMain lets the test binary run as the daemon (re-exec with ANNOUNCEMENTD_TEST_DAEMON=1), and so also as the
// workers the daemon starts from it: the test flags are dropped, the daemon's own kept.
func TestMain(m *testing.M) {
	if os.Getenv("ANNOUNCEMENTD_TEST_DAEMON") == "1" {
		args := os.Args[:1]
		for _, a := range os.Args[1:] {
			if !strings.HasPrefix(a, "-test.") {
				args = append(args, a)
			}
		}
		os.Args = args
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startDaemon(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), "ANNOUNCEMENTD_TEST_DAEMON=1")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &logs
}

func TestDaemonOwnsBoard(t *testing.T) {
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_test_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	args := []string{"--shm", path, "--shm-size", "64KiB", "--state-dir", dir + "/state", "--runtime-dir", dir + "/run"}
	d, logs := startDaemon(t, args...)

	var b *reader.Board
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if b, err = reader.Open(path); err == nil && b.Version() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no board at %s: %v\n%s", path, err, logs)
		}
	}
	defer b.Close()
	s, err := b.Snapshot()
	if err != nil || parentOf(t, int(s.WriterPID)) != d.Process.Pid || s.Header.RegionSize != 64<<10 {
		t.Fatalf("snapshot %+v, %v; the writer should be a worker of daemon pid %d", s, err, d.Process.Pid)
	}

	// A second daemon on the same board is refused.
	second, logs2 := startDaemon(t, "--shm", path, "--shm-size", "64KiB", "--state-dir", dir+"/state2", "--runtime-dir", dir+"/run2")
	if err := second.Wait(); err == nil || !strings.Contains(logs2.String(), "in use by another announcementd") {
		t.Fatalf("second daemon: %v\n%s", err, logs2)
	}

	// SIGTERM stops it cleanly; the board stays readable at its version.
	v := b.Version()
	d.Process.Signal(syscall.SIGTERM)
	if err := d.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, logs)
	}
	if s, err := b.Snapshot(); err != nil || s.Version != v {
		t.Fatalf("after stop: %+v %v", s, err)
	}

	// A restarted daemon keeps the version.
	again, _ := startDaemon(t, args...)
	waitReady(t, dir+"/run", again.Process.Pid)
	s, err = b.Snapshot()
	if err != nil || parentOf(t, int(s.WriterPID)) != again.Process.Pid || s.Version < v {
		t.Fatalf("after a restart: %+v, %v; version was %d, new daemon pid %d", s, err, v, again.Process.Pid)
	}
}

func TestBadFlags(t *testing.T) {
	d, logs := startDaemon(t, "--shm-size", "lots")
	if err := d.Wait(); err == nil || !strings.Contains(logs.String(), `--shm-size "lots"`) {
		t.Fatalf("bad size: %v %s", err, logs)
	}
}

// parentOf returns pid's parent pid.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	s, err := procfs.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s.PPID
}

// waitReady waits for the daemon's pid file, which it writes once its first worker serves.
func waitReady(t *testing.T, runtimeDir string, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(runtimeDir + "/announcementd.pid"); err == nil && string(b) == strconv.Itoa(pid) {
			return
		}
	}
	t.Fatalf("daemon %d did not get ready", pid)
}

// Passing listeners around must never leave them in blocking mode: a blocking listener hangs its worker's accept
// and its Close. After many reloads every socket the supervisor and its worker hold is still O_NONBLOCK, and the
// daemon stops promptly.
func TestListenersStayNonBlockingAcrossReloads(t *testing.T) {
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_nb_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	d, logs := startDaemon(t, "--shm", path, "--shm-size", "64KiB", "--state-dir", dir+"/state", "--runtime-dir", dir+"/run",
		"--metrics", "127.0.0.1:0")
	waitReady(t, dir+"/run", d.Process.Pid)
	control := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", dir+"/run/control.sock")
	}}}
	const reloads = 10
	for i := range reloads {
		resp, err := control.Post("http://supervisor/v1/reload?wait=1", "", nil)
		if err != nil {
			t.Fatalf("reload %d: %v\n%s", i, err, logs)
		}
		var res struct{ OK bool }
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || !res.OK {
			t.Fatalf("reload %d: %v %+v\n%s", i, err, res, logs)
		}
	}
	worker := childrenOf(d.Process.Pid)
	if len(worker) != 1 {
		t.Fatalf("supervisor has %d children after %d reloads, want 1 worker", len(worker), reloads)
	}
	for _, pid := range []int{d.Process.Pid, worker[0]} {
		if n := checkSocketsNonBlocking(t, pid); n < 3 { // api, metrics, control (the supervisor), handoff
			t.Fatalf("pid %d holds %d sockets; the check saw too few to mean anything", pid, n)
		}
	}
	d.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.Process.Pid, syscall.SIGKILL)
		d.Process.Kill()
		<-done // before Cleanup's Wait
		t.Fatalf("the daemon did not stop after SIGTERM (a listener in blocking mode?)\n%s", logs)
	}
}

// checkSocketsNonBlocking fails the test for any socket pid holds without O_NONBLOCK, and returns how many it saw.
func checkSocketsNonBlocking(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var flags int64
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ = strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			}
		}
		if flags&syscall.O_NONBLOCK == 0 {
			t.Errorf("pid %d fd %s (%s) is in blocking mode (flags %o)", pid, fd.Name(), target, flags)
		}
		n++
	}
	return n
}

// childrenOf lists pid's running child processes.
func childrenOf(pid int) []int {
	var kids []int
	for _, s := range procfs.Children(pid) {
		if s.Running() {
			kids = append(kids, s.PID)
		}
	}
	return kids
}
