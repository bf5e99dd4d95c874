package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	// pid (comm) state ppid ...; comm may hold spaces, so count from the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
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
