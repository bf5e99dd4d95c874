package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
)

// TestMain lets the test binary run as the daemon (re-exec with ANNOUNCEMENTD_TEST_DAEMON=1).
func TestMain(m *testing.M) {
	if os.Getenv("ANNOUNCEMENTD_TEST_DAEMON") == "1" {
		os.Args = append([]string{"announcementd"}, os.Args[2:]...)
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
	if err != nil || s.WriterPID != uint32(d.Process.Pid) || s.Header.RegionSize != 64<<10 {
		t.Fatalf("snapshot %+v, %v; daemon pid %d", s, err, d.Process.Pid)
	}

	// A second daemon on the same board is refused, naming the first.
	second, logs2 := startDaemon(t, "--shm", path, "--shm-size", "64KiB", "--state-dir", dir+"/state2", "--runtime-dir", dir+"/run2")
	if err := second.Wait(); err == nil || !strings.Contains(logs2.String(), fmt.Sprintf("pid %d", d.Process.Pid)) {
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
	waitSocket(t, dir+"/run/api.sock")
	s, err = b.Snapshot()
	if err != nil || s.WriterPID != uint32(again.Process.Pid) || s.Version < v {
		t.Fatalf("after a restart: %+v, %v; version was %d, new daemon pid %d", s, err, v, again.Process.Pid)
	}
}

func TestBadFlags(t *testing.T) {
	d, logs := startDaemon(t, "--shm-size", "lots")
	if err := d.Wait(); err == nil || !strings.Contains(logs.String(), `--shm-size "lots"`) {
		t.Fatalf("bad size: %v %s", err, logs)
	}
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("no API socket at %s", path)
}
