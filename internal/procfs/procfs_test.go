package procfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
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
