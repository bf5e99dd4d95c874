package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
)

// TestMain lets the test binary run as the daemon: the proctest role "daemon" runs main with the role's arguments.
// The daemon starts its workers from the same binary with the same environment, so they play the daemon too
// (`announcementd worker ...`).
func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{"daemon": func(args []string) int {
		os.Args = append(os.Args[:1:1], args...)
		main()
		return 0
	}})
}

// daemonConfig runs this test binary as announcementd on the region at shm, with state and runtime dirs under dir.
func daemonConfig(t *testing.T, shm, dir string, args ...string) proctest.DaemonConfig {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return proctest.DaemonConfig{Binary: self, Env: proctest.Env(t, "daemon"), Shm: shm, StateDir: dir + "/state",
		RuntimeDir: dir + "/run", Args: append([]string{"--shm-size", "64KiB"}, args...)}
}

func TestDaemonOwnsBoard(t *testing.T) {
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_test_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	d := proctest.StartDaemon(t, daemonConfig(t, path, dir))
	// READY=1 came after the pid file was written: whoever reads it then finds the supervisor.
	if pid, err := os.ReadFile(dir + "/run/announcementd.pid"); err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(d.PID()) {
		t.Fatalf("the pid file at READY=1: %q, %v; the supervisor is %d", pid, err, d.PID())
	}

	var b *reader.Board
	proctest.WaitFor(t, 10*time.Second, func() (err error) {
		if b, err = reader.Open(path); err == nil && b.Version() == 0 {
			b.Close()
			err = errors.New("version 0")
		}
		return err
	}, "a board at "+path)
	defer b.Close()
	s, err := b.Snapshot()
	if err != nil || parentOf(t, int(s.WriterPID)) != d.PID() || s.Header.RegionSize != 64<<10 {
		t.Fatalf("snapshot %+v, %v; the writer should be a worker of daemon pid %d", s, err, d.PID())
	}

	// A second daemon on the same board is refused.
	second := proctest.LaunchDaemon(t, daemonConfig(t, path, dir+"/2"))
	if code, err := second.ExitBeforeReady(30 * time.Second); err != nil || code == 0 || !strings.Contains(second.Log().String(), "in use by another announcementd") {
		t.Fatalf("second daemon: exit %d, %v\n%s", code, err, second.Log())
	}

	// SIGTERM stops it cleanly; the board stays readable at its version.
	v := b.Version()
	if err := d.Stop(30 * time.Second); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if s, err := b.Snapshot(); err != nil || s.Version != v {
		t.Fatalf("after stop: %+v %v", s, err)
	}

	// A restarted daemon keeps the version.
	again := proctest.StartDaemon(t, daemonConfig(t, path, dir))
	s, err = b.Snapshot()
	if err != nil || parentOf(t, int(s.WriterPID)) != again.PID() || s.Version < v {
		t.Fatalf("after a restart: %+v, %v; version was %d, new daemon pid %d", s, err, v, again.PID())
	}
}

func TestBadFlags(t *testing.T) {
	d := proctest.LaunchDaemon(t, proctest.DaemonConfig{Binary: daemonConfig(t, "", "").Binary, Env: proctest.Env(t, "daemon"),
		Args: []string{"--shm-size", "lots"}})
	if code, err := d.ExitBeforeReady(30 * time.Second); err != nil || code == 0 || !strings.Contains(d.Log().String(), `--shm-size "lots"`) {
		t.Fatalf("bad size: exit %d, %v %s", code, err, d.Log())
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

// Passing listeners around must never leave them in blocking mode: a blocking listener hangs its worker's accept
// and its Close. After many reloads every socket the supervisor and its worker hold is still O_NONBLOCK, and the
// daemon stops promptly.
func TestListenersStayNonBlockingAcrossReloads(t *testing.T) {
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_nb_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	d := proctest.StartDaemon(t, daemonConfig(t, path, dir, "--metrics", "127.0.0.1:0"))
	logs := d.Log()
	control := proctest.UnixClient(dir+"/run/control.sock", 0, true)
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
	worker := d.Children()
	if len(worker) != 1 {
		t.Fatalf("supervisor has %d children after %d reloads, want 1 worker", len(worker), reloads)
	}
	for _, pid := range []int{d.PID(), worker[0]} {
		if n := checkSocketsNonBlocking(t, pid); n < 3 { // api, metrics, control (the supervisor), handoff
			t.Fatalf("pid %d holds %d sockets; the check saw too few to mean anything", pid, n)
		}
	}
	if err := d.Stop(30 * time.Second); err != nil {
		t.Fatalf("the daemon did not stop cleanly after SIGTERM (a listener in blocking mode?): %v", err)
	}
}

// checkSocketsNonBlocking fails the test for any socket pid holds without O_NONBLOCK, and returns how many it saw.
func checkSocketsNonBlocking(t *testing.T, pid int) int {
	t.Helper()
	fds, err := proctest.Fds(pid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if !strings.HasPrefix(fd.Target, "socket:") {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd.Num))
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
			t.Errorf("pid %d fd %d (%s) is in blocking mode (flags %o)", pid, fd.Num, fd.Target, flags)
		}
		n++
	}
	return n
}
