package proctest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	Main(m, Roles{
		"echo":         roleEcho,
		"fake-daemon":  roleFakeDaemon,
		"futex-waiter": roleFutexWaiter,
	})
}

// roleEcho prints its arguments and exits with the status its first one names.
func roleEcho(args []string) int {
	fmt.Println(strings.Join(args, " "))
	if len(args) > 0 && args[0] == "fail" {
		return 3
	}
	return 0
}

// A helper gets its arguments (without the test flags) and its exit status is the role's.
func TestCommandRunsTheRole(t *testing.T) {
	out, err := Command(t, "echo", "a", "--b", "-test.c").Output()
	if err != nil || string(out) != "a --b -test.c\n" {
		t.Fatalf("echo: %q, %v", out, err)
	}
	p := Start(t, Command(t, "echo", "fail"))
	if err := p.Wait(10 * time.Second); ExitCode(err) != 3 || p.Output.String() != "fail\n" {
		t.Fatalf("echo fail: %v, output %q", err, p.Output.String())
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends only the calling goroutine.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// An unknown role fails the test that asks for it, before anything starts; and a helper started with one anyway
// exits ExitUnknownRole, saying so, without running the tests.
func TestUnknownRole(t *testing.T) {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Command(r, "no-such-role")
		r.msg = "Command returned"
	}()
	<-done
	if !strings.Contains(r.msg, `no helper role "no-such-role"`) || !strings.Contains(r.msg, "echo, fake-daemon, futex-waiter") {
		t.Errorf("Command of an unknown role: %q", r.msg)
	}

	cmd := Command(t, "echo")
	cmd.Env = append(cmd.Env, EnvRole+"=no-such-role")
	cmd.Args = append(cmd.Args[:1], "-test.run=.", "-test.v") // were it to run the tests, it would say so
	out, err := cmd.CombinedOutput()
	if ExitCode(err) != ExitUnknownRole || !strings.Contains(string(out), `no helper role "no-such-role"`) || strings.Contains(string(out), "=== RUN") {
		t.Errorf("a helper of an unknown role: %v\n%s", err, out)
	}
}

func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
			}
		})
	}
	wg.Wait()
	if b.Len() != 1600 || strings.Count(b.String(), "\n") != 800 || !bytes.Equal(b.Bytes(), []byte(b.String())) {
		t.Fatalf("%d bytes", b.Len())
	}
}

func TestWaitUntil(t *testing.T) {
	n := 0
	WaitUntil(t, 10*time.Second, func() bool { n++; return n == 3 }, "the third call")
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(r, 20*time.Millisecond, func() error { return fmt.Errorf("not yet") }, "nothing")
	}()
	<-done
	if r.msg != "waiting for nothing: not within 20ms; last: not yet" {
		t.Errorf("WaitFor's failure: %q", r.msg)
	}
}

// mapWord maps the first page of a new file shared, as a board's readers do.
func mapWord(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	return mem
}

func futexWaitOn(word *uint32, val uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWait, uintptr(val), 0, 0, 0)
}

func futexWake(word *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), 1, 1<<30, 0, 0, 0)
}

// WaitBlockedInFutex sees a goroutine of this process asleep on the word, and only then.
func TestWaitBlockedInFutexInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board")
	mem := mapWord(t, path)
	word := (*uint32)(unsafe.Pointer(&mem[16]))
	w := FutexWord{Path: path, Offset: 16}
	if ok, why, err := blockedInFutex(os.Getpid(), w); ok || err != nil {
		t.Fatalf("before any waiter: %v, %v (%s)", ok, err, why)
	}
	woke := make(chan struct{})
	go func() {
		defer close(woke)
		for *(*uint32)(unsafe.Pointer(&mem[20])) == 0 { // a spurious wake-up sleeps again
			futexWaitOn(word, 0)
		}
	}()
	WaitBlockedInFutex(t, 10*time.Second, os.Getpid(), w)
	// The same word at another offset is not it.
	if ok, _, _ := blockedInFutex(os.Getpid(), FutexWord{Path: path, Offset: 24}); ok {
		t.Error("a thread reported asleep on offset 24")
	}
	binary.LittleEndian.PutUint32(mem[20:], 1)
	binary.LittleEndian.PutUint32(mem[16:], 1)
	futexWake(word)
	<-woke
}

// roleFutexWaiter maps the file at args[0] and sleeps on its word at 16 until the word changes.
func roleFutexWaiter(args []string) int {
	f, err := os.OpenFile(args[0], os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	word := (*uint32)(unsafe.Pointer(&mem[16]))
	for *(*uint32)(unsafe.Pointer(&mem[16])) == 0 {
		futexWaitOn(word, 0)
	}
	return 0
}

// ... and a thread of another process, through its own mapping of the file.
func TestWaitBlockedInFutexOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board")
	mem := mapWord(t, path)
	p := Start(t, Command(t, "futex-waiter", path))
	WaitBlockedInFutex(t, 10*time.Second, p.PID(), FutexWord{Path: path, Offset: 16})
	binary.LittleEndian.PutUint32(mem[16:], 1)
	futexWake((*uint32)(unsafe.Pointer(&mem[16])))
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("the waiter: %v\n%s", err, p.Output)
	}
}

// roleFakeDaemon speaks sd_notify as announcementd does: args[0] "fail" exits 3 at once; otherwise READY=1, then a
// BARRIER=1 whose fd the manager must close, then STOPPING=1 on SIGTERM. A worker child holds its output until
// the fake exits.
func roleFakeDaemon(args []string) int {
	if len(args) > 0 && args[0] == "fail" {
		fmt.Println("fake: cannot start")
		return 3
	}
	if len(args) > 0 && args[0] == "worker" {
		var buf [1]byte
		os.Stdin.Read(buf[:]) // until the fake (its parent, holding the pipe) exits
		return 0
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	worker := exec.Command(os.Args[0], "worker")
	worker.Stdout, worker.Stderr = os.Stdout, os.Stderr
	in, err := worker.StdinPipe()
	if err != nil || worker.Start() != nil {
		return 1
	}
	defer worker.Wait()
	defer in.Close()
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("fake:", err)
		return 1
	}
	defer unix.Close(sock)
	to := &unix.SockaddrUnix{Name: os.Getenv("NOTIFY_SOCKET")}
	send := func(msg string, oob []byte) error { return unix.Sendmsg(sock, []byte(msg), oob, to, 0) }
	if err := send("READY=1\nSTATUS=serving", nil); err != nil {
		fmt.Println("fake:", err)
		return 1
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 1
	}
	err = send("BARRIER=1", unix.UnixRights(p[1]))
	unix.Close(p[1])
	if err != nil {
		fmt.Println("fake: barrier:", err)
		return 1
	}
	fds := []unix.PollFd{{Fd: int32(p[0]), Events: 0}}
	if n, err := unix.Poll(fds, 10_000); n != 1 || err != nil || fds[0].Revents&unix.POLLHUP == 0 {
		fmt.Println("fake: the barrier was not released:", n, err)
		return 1
	}
	fmt.Println("fake: serving")
	<-term
	send("STOPPING=1", nil)
	fmt.Println("fake: stopping")
	return 0
}

func fakeDaemon(t *testing.T, args ...string) DaemonConfig {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return DaemonConfig{Binary: exe, Args: args, Env: Env(t, "fake-daemon"), ReadyTimeout: 20 * time.Second}
}

// A daemon is ready when it says READY=1; its notifications, fds, children and log are the test's to read; Stop
// waits for every process that holds its output.
func TestDaemon(t *testing.T) {
	d := StartDaemon(t, fakeDaemon(t))
	if n := d.Notifications(); len(n) < 1 || !n[0].Has("READY=1") || n[0].PID != d.PID() || d.MainPID() != d.PID() {
		t.Fatalf("notifications %v, pid %d", n, d.PID())
	}
	if s, _ := d.Notifications()[0].Value("STATUS"); s != "serving" {
		t.Errorf("STATUS %q", s)
	}
	WaitUntil(t, 10*time.Second, func() bool { return strings.Contains(d.Log().String(), "fake: serving") }, "the barrier")
	if n := d.Notifications(); len(n) != 2 || !n[1].Has("BARRIER=1") || n[1].Fds != 1 {
		t.Errorf("notifications %v", n)
	}
	if kids := d.Children(); len(kids) != 1 {
		t.Errorf("children %v, want the fake's worker", kids)
	}
	fds, err := d.Fds()
	if err != nil || len(fds) < 3 || fds[0].Num != 0 {
		t.Errorf("fds %v, %v", fds, err)
	}
	if err := d.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitNotified("STOPPING=1", 1, time.Second); err != nil {
		t.Error(err)
	}
	if !strings.Contains(d.Log().String(), "fake: stopping") {
		t.Errorf("log %q", d.Log())
	}
}

// A start that fails is told by its exit and its log, at once, not by a timeout; Ready says so too.
func TestDaemonStartFails(t *testing.T) {
	d := LaunchDaemon(t, fakeDaemon(t, "fail"))
	code, err := d.ExitBeforeReady(20 * time.Second)
	if err != nil || code != 3 || d.Log().String() != "fake: cannot start\n" {
		t.Fatalf("exit %d, %v, log %q", code, err, d.Log())
	}
	if err := LaunchDaemon(t, fakeDaemon(t, "fail")).Ready(); err == nil || !strings.Contains(err.Error(), "exited (exit status 3) before 1 × READY=1") ||
		!strings.Contains(err.Error(), "fake: cannot start") {
		t.Fatalf("Ready of a start that fails: %v", err)
	}
	if _, err := StartDaemon(t, fakeDaemon(t)).ExitBeforeReady(20 * time.Second); err == nil || !strings.Contains(err.Error(), "said READY=1") {
		t.Fatalf("ExitBeforeReady of a daemon that starts: %v", err)
	}
	// With no service manager: the exit alone.
	cfg := fakeDaemon(t, "fail")
	cfg.NoNotify = true
	d = LaunchDaemon(t, cfg)
	if code, err := d.ExitBeforeReady(20 * time.Second); err != nil || code != 3 || d.Ready() == nil {
		t.Fatalf("with no NOTIFY_SOCKET: exit %d, %v; Ready %v", code, err, d.Ready())
	}
}

// Kill ends the whole group: the worker too.
func TestDaemonKill(t *testing.T) {
	d := StartDaemon(t, fakeDaemon(t))
	WaitUntil(t, 10*time.Second, func() bool { return len(d.Children()) == 1 }, "the fake's worker")
	worker := d.Children()[0]
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if Running(worker) || ExitCode(d.ExitErr()) != -1 {
		t.Fatalf("after Kill: worker running %v, exit %v", Running(worker), d.ExitErr())
	}
	d.Close()
	d.Close()
}

//go:noinline
func receiveFrom(c chan struct{}) { <-c }

// WaitGoroutineBlocked sees a goroutine parked in the function named, and not one that merely has it elsewhere.
func TestWaitGoroutineBlocked(t *testing.T) {
	if ok, _ := goroutineBlocked("github.com/announcementd/announcementd/internal/proctest.receiveFrom"); ok {
		t.Fatal("blocked before any goroutine runs it")
	}
	c := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		receiveFrom(c)
	}()
	WaitGoroutineBlocked(t, 10*time.Second, "github.com/announcementd/announcementd/internal/proctest.receiveFrom")
	close(c)
	<-done
}
