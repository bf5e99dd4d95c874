package proctest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Command returns the command that runs this test binary as the helper role with args: the test flags, "--",
// then args, which the role gets. Its environment is Env(t, role). It fails t at once if the package's TestMain did
// not register role. The caller may change the command (ExtraFiles, SysProcAttr, Path for a copy of the binary...)
// before running it, or pass it to Start.
func Command(t testing.TB, role string, args ...string) *exec.Cmd {
	t.Helper()
	return CommandContext(context.Background(), t, role, args...)
}

// CommandContext is Command with exec.CommandContext: the helper is killed when ctx is done.
func CommandContext(ctx context.Context, t testing.TB, role string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("proctest: the test binary: %v", err)
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = Env(t, role)
	return cmd
}

// Env is the test's environment with EnvRole set to role, for a helper that something else starts from this test
// binary (a supervisor under test starting its workers). Under the race detector the helper skips the race
// runtime's sleep of a second at exit. It fails t if the package's TestMain did not register role.
func Env(t testing.TB, role string) []string {
	t.Helper()
	useRole(t, role)
	env := make([]string, 0, len(os.Environ())+2)
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		switch name {
		case EnvRole:
			continue
		case "GORACE":
			gorace = strings.TrimSpace(value + " " + gorace)
			continue
		}
		env = append(env, kv)
	}
	return append(env, EnvRole+"="+role, "GORACE="+gorace)
}

// Proc is a process a test started with Start. It is killed (if it still runs) and reaped by the test's cleanup,
// which also logs its output when the test failed.
type Proc struct {
	Cmd *exec.Cmd
	// Output is the process's standard output and error when the command had neither set.
	Output *Buffer

	done chan struct{} // closed once Wait returned
	err  error         // Wait's result; read after done
}

// Start starts cmd and returns it as a Proc; a start that fails fails t. Do not take cmd.StdoutPipe or
// StderrPipe: Start waits for the process in the background, and exec's Wait closes those pipes at the exit; give
// the command an *os.File (os.Pipe) to read a stream that outlives the process.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil && cmd.Stderr == nil {
		p.Output = &Buffer{}
		cmd.Stdout, cmd.Stderr = p.Output, p.Output
	}
	if cmd.WaitDelay == 0 {
		// A grandchild that inherited the output must not hold the reaping up for ever.
		cmd.WaitDelay = 10 * time.Second
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("proctest: start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() && p.Output != nil && p.Output.Len() > 0 {
			t.Logf("process %s (pid %d) said:\n%s", describe(cmd), cmd.Process.Pid, p.Output.String())
		}
	})
	return p
}

// describe names a command for messages: its role when it is a helper, else its program.
func describe(cmd *exec.Cmd) string {
	for _, kv := range cmd.Env {
		if role, ok := strings.CutPrefix(kv, EnvRole+"="); ok {
			return "helper " + role
		}
	}
	return cmd.Path
}

// PID is the process's pid.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited and been reaped (and its output copied).
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (exec.Cmd.Wait's error): nil for exit status 0. Call it after Done.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Wait waits at most timeout for the process to exit and returns how it ended; a process still running then is
// killed, and the error says so.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s (pid %d) did not exit within %v; killed", describe(p.Cmd), p.PID(), timeout)
	}
}

// Kill kills the process with SIGKILL, unless it has exited, and waits until it is reaped. It may be called more
// than once.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		syscall.Kill(p.PID(), syscall.SIGKILL)
	}
	<-p.done
}

// ExitCode is the exit status of a process that has ended (-1 if a signal ended it), from an error of exec's Wait
// or Run; 0 for nil.
func ExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
