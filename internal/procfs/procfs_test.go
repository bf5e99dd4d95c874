package procfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestReadStatAndChildren(t *testing.T) {
	self, err := ReadStat(os.Getpid())
	if err != nil || self.PID != os.Getpid() || self.PPID != os.Getppid() || !self.Running() {
		t.Fatalf("self: %+v, %v", self, err)
	}
	// A child whose command name holds spaces and parentheses.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) (b c")
	if err := os.WriteFile(odd, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	kids := Children(os.Getpid())
	i := slices.IndexFunc(kids, func(s Stat) bool { return s.PID == cmd.Process.Pid })
	if i < 0 || kids[i].PPID != os.Getpid() {
		t.Fatalf("children %+v; want pid %d", kids, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := ReadStat(cmd.Process.Pid); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a reaped child: %v", err)
	}
}

// ReadCPU counts the CPU this process burns (both clocks move), and a process that is not there is ErrNotExist;
// ReadHost's busy time is part of its total.
func TestReadCPUAndHost(t *testing.T) {
	c0, err := ReadCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self0 := SelfCPU()
	c1 := c0
	for c1.Stat-c0.Stat < 50*time.Millisecond { // burn CPU until the coarse clock has seen it
		for i := 0; i < 1e6; i++ {
			sink += i
		}
		if c1, err = ReadCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if d := c1.Sub(c0); d.Sched <= 0 {
		t.Fatalf("utime+stime moved by %v, the threads' schedstat by %v", d.Stat, d.Sched)
	}
	if SelfCPU() <= self0 {
		t.Fatal("getrusage did not count the CPU burnt")
	}
	if _, err := ReadCPU(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a pid that is not there: %v", err)
	}
	h, err := ReadHost()
	if err != nil || h.Total <= 0 || h.Busy < 0 || h.Busy > h.Total {
		t.Fatalf("host %+v, %v", h, err)
	}
}

var sink int
