// Package sandbox runs part of a test in a child process — the test binary itself, re-executed — inside new user
// and mount namespaces. There the child is root of its own namespace but holds no capability in the host's: mlock
// is bound by RLIMIT_MEMLOCK even when the test runs as root (CAP_IPC_LOCK is checked against the host's
// namespace), and the child can mount a tmpfs of its own, e.g. a small one to fill. Nothing it mounts is seen
// outside it. files.go has the helpers such a child uses to take memory away from a region.
//
// The child is a helper role of the package's TestMain (internal/proctest), which Run starts:
//
//	func TestMain(m *testing.M) { proctest.Main(m, proctest.Roles{"lock": helperLock}) }
//	...
//	out := sandbox.Run(t, "lock", "GUARD_DIR="+dir)
package sandbox

import (
	"bytes"
	"os"
	"syscall"
	"testing"

	"github.com/announcementd/announcementd/internal/proctest"
)

// Run starts the helper role (proctest.Command) in a sandboxed child with env added to its environment, waits for
// it, and returns its standard output. It fails the test when the helper fails, and skips it when the kernel
// refuses the namespaces (user namespaces disabled, or a seccomp policy).
func Run(t testing.TB, role string, env ...string) []byte {
	t.Helper()
	cmd := proctest.Command(t, role)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a helper in new user and mount namespaces (%v): this test needs them to take CAP_IPC_LOCK away even from root", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper %s: %v\nstdout:\n%s\nstderr:\n%s", role, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}
