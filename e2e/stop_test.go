package e2e_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopCommand: announcementctl stop (the unit's ExecStop) returns once the supervisor has exited, after its
// worker finished; a second stop finds nothing running and succeeds.
func TestStopCommand(t *testing.T) {
	d := newDaemon(t)
	d.mustCtl("publish", "--id", "1", "before the stop")
	b, err := os.ReadFile(filepath.Join(d.runtime, "announcementd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	start := time.Now()
	out := d.mustCtl("stop", "--timeout", "30s")
	if !strings.HasPrefix(out, "stopped: supervisor pid "+strconv.Itoa(pid)+" exited after ") {
		t.Fatalf("stop: %q", out)
	}
	// The supervisor has exited: this test, its parent, has not reaped it, so it is a zombie or gone.
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i < 0 || stat[i+2] != 'Z' {
			t.Fatalf("stop returned after %v, and the supervisor still runs: %s", time.Since(start), stat)
		}
	} else if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Fatalf("stop returned, and kill(%d, 0): %v", pid, err)
	}
	if !strings.Contains(d.logs.String(), "supervisor stopped") {
		t.Errorf("the supervisor did not stop cleanly:\n%s", d.logs)
	}
	if code, out, errs := d.ctl("stop"); code != 0 || !strings.HasPrefix(out, "announcementd is not running") {
		t.Errorf("a second stop: exit %d %q %q", code, out, errs)
	}
}
