// Package sdsandbox boots the machine's own systemd as PID 1 in fresh namespaces for a test (sandbox.sh, a copy
// of the workplace's systemd-sandbox tool; SANDBOX.md is its README), so that tests run `systemctl` against a real
// service manager on machines whose PID 1 is not systemd. It needs root; without it, New skips the test.
//
// The sandbox's root is an overlay over the host's / (nothing written inside reaches the host's disk); /run, /tmp,
// /dev and /etc/systemd/system are its own. A test reaches inside through Sh (a command in the sandbox), and
// through Path, which names a path inside as seen from the host (/proc/PID1/root/...): a Unix socket or a file in
// /dev/shm there can be used directly by the test process.
package sdsandbox

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed sandbox.sh
var script []byte

// Sandbox is one booted systemd.
type Sandbox struct {
	t      testing.TB
	dir    string
	script string
	pid1   int // PID 1's pid on the host
}

// New boots a sandbox for t and stops it (and removes its state) when t ends. It skips t when not run as root.
func New(t testing.TB) *Sandbox {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: boots systemd as PID 1 in new namespaces (CI runs as root)")
	}
	// A short state dir: unit sockets inside must stay under sun_path's 108 bytes when reached from the host.
	dir, err := os.MkdirTemp("", "sdsb")
	if err != nil {
		t.Fatal(err)
	}
	sh := filepath.Join(dir, "sandbox.sh")
	if err := os.WriteFile(sh, script, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{t: t, dir: filepath.Join(dir, "state"), script: sh}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := s.run(nil, "logs"); err == nil {
				t.Logf("sandbox logs (last 150 lines):\n%s", tail(out, 150))
			}
		}
		if out, err := s.run(nil, "down", "--purge"); err != nil {
			t.Errorf("sandbox down: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	if out, err := s.run(nil, "up"); err != nil {
		t.Fatalf("sandbox up: %v\n%s", err, out)
	}
	pid, err := os.ReadFile(filepath.Join(s.dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	if s.pid1, err = strconv.Atoi(strings.TrimSpace(string(pid))); err != nil {
		t.Fatalf("sandbox pid file: %v", err)
	}
	return s
}

func (s *Sandbox) run(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.script, args...)
	cmd.Env = append(os.Environ(), "SANDBOX_DIR="+s.dir, "SANDBOX_QUIET=1")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Sh runs a command inside the sandbox (a clean environment: PATH, HOME=/root) and returns its combined output.
func (s *Sandbox) Sh(args ...string) (string, error) {
	return s.run(nil, append([]string{"sh"}, args...)...)
}

// MustSh is Sh, failing the test on an error.
func (s *Sandbox) MustSh(args ...string) string {
	s.t.Helper()
	out, err := s.Sh(args...)
	if err != nil {
		s.t.Fatalf("in the sandbox: %q: %v\n%s", args, err, out)
	}
	return out
}

// Push copies a host file into the sandbox at dst with mode (written beside, then renamed: a running binary is
// replaced, not overwritten).
func (s *Sandbox) Push(src, dst string, mode os.FileMode) {
	s.t.Helper()
	if out, err := s.run(nil, "push", src, dst, fmt.Sprintf("%04o", mode)); err != nil {
		s.t.Fatalf("push %s %s: %v\n%s", src, dst, err, out)
	}
}

// InstallUnit writes content as /etc/systemd/system/rel inside (a unit, or a drop-in such as
// "announcementd.service.d/x.conf") and reloads systemd.
func (s *Sandbox) InstallUnit(rel string, content []byte) {
	s.t.Helper()
	f := filepath.Join(s.t.TempDir(), filepath.Base(rel))
	if err := os.WriteFile(f, content, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if out, err := s.run(nil, "install-unit", f+":"+rel); err != nil {
		s.t.Fatalf("install-unit %s: %v\n%s", rel, err, out)
	}
}

// Show returns unit's properties (systemctl show -p).
func (s *Sandbox) Show(unit string, props ...string) map[string]string {
	s.t.Helper()
	out := s.MustSh("systemctl", "show", "-p", strings.Join(props, ","), unit)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Path is the host's path to path inside the sandbox (through PID 1's root): a socket there can be connected to,
// a file read, from the test process.
func (s *Sandbox) Path(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", s.pid1, path)
}

// HostPID is the host's pid of a process whose pid inside the sandbox is pid (from /proc/*/status NSpid).
func (s *Sandbox) HostPID(pid int) (int, error) {
	matches, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(strings.TrimPrefix(line, "NSpid:"))
			if !strings.HasPrefix(line, "NSpid:") || len(f) < 2 {
				continue
			}
			inner, _ := strconv.Atoi(f[len(f)-1])
			host, _ := strconv.Atoi(f[0])
			if inner == pid && s.inside(host) {
				return host, nil
			}
		}
	}
	return 0, fmt.Errorf("no process %d in the sandbox", pid)
}

// inside reports whether host pid is in the sandbox's pid namespace.
func (s *Sandbox) inside(host int) bool {
	a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", host))
	b, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", s.pid1))
	return err1 == nil && err2 == nil && a == b
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
