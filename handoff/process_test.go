package handoff

// Tests with real processes: the test binary re-executes itself as a worker (a proctest role of TestMain) and gets
// its end of the socketpair as fd 3, the way announcementd's workers do.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/internal/proctest"
)

// roles are the worker behaviours a test can start, by name.
var roles = proctest.Roles{
	"worker":      helperRole(helperWorker),
	"wrong-peer":  helperRole(helperWrongPeer),
	"bad-version": helperRole(helperBadVersion),
	"echo-files":  helperRole(helperEchoFiles),
	"intruder":    helperRole(helperIntruder),
}

func TestMain(m *testing.M) { proctest.Main(m, roles) }

// helperRole makes a role of a helper that returns nil for exit status 0; its error goes to stderr.
func helperRole(f func(ctx context.Context) error) proctest.Role {
	return func([]string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "helper: %v\n", err)
			return 1
		}
		return 0
	}
}

// helperProc is a started helper: its Conn, and its process.
type helperProc struct {
	conn *Conn
	*proctest.Proc
}

// startHelper starts the test binary as the helper name, with the worker's end of a fresh Pair as fd 3. The child
// is killed and reaped at cleanup if it is still running.
func startHelper(t *testing.T, name string) *helperProc {
	t.Helper()
	conn, workerEnd, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cmd := proctest.Command(t, name)
	cmd.ExtraFiles = []*os.File{workerEnd}
	p := &helperProc{conn: conn}
	p.Proc = proctest.Start(t, cmd)
	workerEnd.Close() // only the child holds the worker's end now: its exit is EOF here
	return p
}

// wait waits for the helper to exit and fails the test unless it exited 0.
func (p *helperProc) wait(t *testing.T) {
	t.Helper()
	if err := p.Wait(15 * time.Second); err != nil {
		t.Fatalf("helper: %v: %s", err, p.Output)
	}
}

// handshake does the supervisor's half: Handshake, then CheckPeer against the child.
func (p *helperProc) handshake(t *testing.T) Hello {
	t.Helper()
	peer, err := p.conn.Handshake(testCtx(t), Hello{Role: RoleSupervisor, Generation: 7, Build: "test-supervisor"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.conn.CheckPeer(p.PID(), os.Getuid()); err != nil {
		t.Fatal(err)
	}
	return peer
}

// inherited is the worker's side of the start: fd 3, handshake, check the parent.
func inherited(ctx context.Context) (*Conn, error) {
	c, err := FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return nil, err
	}
	if _, err := c.Handshake(ctx, Hello{Role: RoleWorker, Generation: 7, Build: "test-worker"}); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.CheckPeer(os.Getppid(), os.Getuid()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// workerReport is what helperWorker tells the test in its Ready.
type workerReport struct {
	CloseOnExec map[string]bool `json:"cloexec"`
	Nonblocking bool            `json:"api_nonblocking"`
	StartFds    []string        `json:"start_fds"` // fds ≥ 3 at start, by kind
	ServingFds  []string        `json:"serving_fds"`
}

// helperWorker is the worker of TestHandoffToWorkerProcess: it takes the region and the listener, proves both work,
// reports Ready, and answers Yield.
func helperWorker(ctx context.Context) error {
	report := workerReport{StartFds: fdKinds(), CloseOnExec: map[string]bool{}}
	c, err := inherited(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	files, err := c.RecvFiles(ctx)
	if err != nil {
		return err
	}
	region, api := files["region"], files["api"]
	if len(files) != 2 || region == nil || api == nil {
		files.Close()
		return fmt.Errorf("received %v", files.names())
	}
	defer region.Close()
	for name, f := range files {
		report.CloseOnExec[name] = rawFlags(f, unix.F_GETFD)&unix.FD_CLOEXEC != 0
	}
	report.Nonblocking = rawFlags(api, unix.F_GETFL)&unix.O_NONBLOCK != 0
	if _, err := region.WriteAt([]byte(fmt.Sprintf("written by worker %d", os.Getpid())), 64); err != nil {
		return err
	}
	ln, err := net.FileListener(api)
	api.Close()
	if err != nil {
		return err
	}
	defer ln.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	fmt.Fprintf(conn, "hello from worker %d\n", os.Getpid())
	conn.Close()
	report.ServingFds = fdKinds()
	rep, _ := json.Marshal(report)
	if err := c.Send(ctx, Ready{RegionVersion: 42, Healthy: true, Report: rep}); err != nil {
		return err
	}
	m, err := c.Recv(ctx)
	if err != nil {
		return err
	}
	if _, ok := m.(Yield); !ok {
		return fmt.Errorf("got %v, want yield", m.Type())
	}
	return c.Send(ctx, Yielded{LastVersion: 42})
}

// rawFlags reads fcntl flags through SyscallConn.
func rawFlags(f *os.File, cmd int) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1
	}
	fl := -1
	rc.Control(func(fd uintptr) { fl, _ = unix.FcntlInt(fd, cmd, 0) })
	return fl
}

// fdKinds lists this process's fds from 3 up by what they are: "socket", "anon_inode:[eventpoll]", a path...
func fdKinds() []string {
	fds, _ := proctest.Fds(os.Getpid())
	var kinds []string
	for _, fd := range fds {
		target := fd.Target
		if fd.Num < 3 {
			continue
		}
		if strings.HasPrefix(target, "socket:") {
			target = "socket"
		}
		kinds = append(kinds, target)
	}
	sort.Strings(kinds)
	return kinds
}

// The whole path with a real child: it inherits the socket, checks its parent, gets a region file and a listening
// TCP socket by name, writes through the one and accepts on the other, and reports back.
func TestHandoffToWorkerProcess(t *testing.T) {
	ctx := testCtx(t)
	p := startHelper(t, "worker")
	peer := p.handshake(t)
	if peer.Role != RoleWorker || peer.Generation != 7 || peer.PID != p.PID() {
		t.Errorf("worker's hello: %+v", peer)
	}
	region := tempFile(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := p.conn.SendFiles(ctx, NamedFile{"region", region}, NamedFile{"api", ln.(*net.TCPListener)}); err != nil {
		t.Fatal(err)
	}

	// Only the worker accepts: the greeting proves the passed listener works there.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting, err := io.ReadAll(c)
	c.Close()
	if want := fmt.Sprintf("hello from worker %d\n", p.PID()); string(greeting) != want || err != nil {
		t.Errorf("the worker's listener said %q, %v; want %q", greeting, err, want)
	}

	m, err := p.conn.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ready, ok := m.(Ready)
	if !ok || !ready.Healthy || ready.RegionVersion != 42 {
		t.Fatalf("got %#v, want a healthy Ready at 42", m)
	}
	var rep workerReport
	if err := json.Unmarshal(ready.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.CloseOnExec["region"] || !rep.CloseOnExec["api"] || !rep.Nonblocking {
		t.Errorf("in the worker: close-on-exec %v, listener non-blocking %v", rep.CloseOnExec, rep.Nonblocking)
	}
	// The worker inherited the handoff socket and nothing of ours; later it holds that socket, the listener and the
	// region, and never a second copy of any. (Other fds belong to the Go runtime or to whatever ran the test.)
	ours := func(kinds []string) []string {
		var out []string
		for _, k := range kinds {
			if k == "socket" || k == region.Name() {
				out = append(out, k)
			}
		}
		return out
	}
	if got := ours(rep.StartFds); !equal(got, []string{"socket"}) {
		t.Errorf("the worker started with fds %v; want one socket (the handoff) and no region", rep.StartFds)
	}
	if got := ours(rep.ServingFds); !equal(got, []string{region.Name(), "socket", "socket"}) {
		t.Errorf("the serving worker holds fds %v; want the region once and two sockets", rep.ServingFds)
	}

	buf := make([]byte, 64)
	n, _ := region.ReadAt(buf, 64)
	if want := fmt.Sprintf("written by worker %d", p.PID()); !strings.HasPrefix(string(buf[:n]), want) {
		t.Errorf("region at 64: %q, want %q", buf[:n], want)
	}

	if err := p.conn.Send(ctx, Yield{Reason: "test", Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	if m, err := p.conn.Recv(ctx); err != nil || m != (Yielded{LastVersion: 42}) {
		t.Fatalf("after yield: %#v, %v", m, err)
	}
	p.wait(t)
	if _, err := p.conn.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the worker exited: %v; want EOF", err)
	}
	// The supervisor's listener is as it was: non-blocking, and still accepting.
	if _, nb := fdFlags(t, ln.(*net.TCPListener)); !nb {
		t.Error("the supervisor's listener became blocking")
	}
	acceptOne(t, ln, ln.Addr().String())
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// helperWrongPeer checks its parent correctly, then expects nothing but EOF: the parent's check of it fails.
func helperWrongPeer(ctx context.Context) error {
	c, err := inherited(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := c.Recv(ctx)
	if !errors.Is(err, io.EOF) {
		discard(m)
		return fmt.Errorf("got %v, %v; want EOF and no fds", m, err)
	}
	return nil
}

// The supervisor expects another pid: CheckPeer fails, nothing is sent, and the child sees only EOF.
func TestWrongPeerGetsNoFds(t *testing.T) {
	p := startHelper(t, "wrong-peer")
	if _, err := p.conn.Handshake(testCtx(t), Hello{Role: RoleSupervisor}); err != nil {
		t.Fatal(err)
	}
	err := p.conn.CheckPeer(p.PID()+1, os.Getuid())
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", p.PID())) {
		t.Fatalf("CheckPeer with the wrong pid: %v", err)
	}
	if err := p.conn.SendFiles(testCtx(t), NamedFile{"region", tempFile(t)}); !errors.Is(err, ErrPeer) {
		t.Fatalf("SendFiles after the failed check: %v; want ErrPeer", err)
	}
	p.conn.Close()
	p.wait(t) // the child exits 0 only if it read EOF with nothing before it
}

// helperBadVersion speaks a protocol major from the future.
func helperBadVersion(ctx context.Context) error {
	c, err := FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return err
	}
	defer c.Close()
	c.version = Version{Major: ProtocolMajor + 1, Minor: 0}
	_, err = c.Handshake(ctx, Hello{Role: RoleWorker, Build: "from-the-future"})
	if !errors.Is(err, ErrVersion) {
		return fmt.Errorf("handshake: %v; want ErrVersion", err)
	}
	return nil
}

func TestIncompatibleVersionProcess(t *testing.T) {
	p := startHelper(t, "bad-version")
	_, err := p.conn.Handshake(testCtx(t), Hello{Role: RoleSupervisor, Build: "today"})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("handshake with a worker of major %d: %v; want ErrVersion", ProtocolMajor+1, err)
	}
	t.Logf("the operator reads: %v", err)
	for _, s := range []string{
		fmt.Sprintf("pid %d", p.PID()),
		fmt.Sprintf("speaks %d.0", ProtocolMajor+1),
		fmt.Sprintf("speaks %d.%d", ProtocolMajor, ProtocolMinor),
		`"from-the-future"`,
		fmt.Sprintf("run the supervisor from a build that speaks %d.x", ProtocolMajor+1),
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not say %q", s)
		}
	}
	p.wait(t)
}

// helperEchoFiles sends back every Files it gets, checking each socket arrived non-blocking, until Yield.
func helperEchoFiles(ctx context.Context) error {
	c, err := inherited(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case Files:
			for name, f := range m {
				if rawFlags(f, unix.F_GETFL)&unix.O_NONBLOCK == 0 || rawFlags(f, unix.F_GETFD)&unix.FD_CLOEXEC == 0 {
					m.Close()
					return fmt.Errorf("%s arrived blocking or inheritable", name)
				}
			}
			err := c.SendFiles(ctx, m.Named()...)
			m.Close()
			if err != nil {
				return err
			}
		case Yield:
			return c.Send(ctx, Yielded{})
		default:
			return fmt.Errorf("unexpected %v", m.Type())
		}
	}
}

// A listener passed to another process and back 100 times stays non-blocking (on both sides: they share the open
// file description), still accepts, and its Close interrupts a pending Accept. No fd piles up.
func TestListenerRoundTrips(t *testing.T) {
	ctx := testCtx(t)
	p := startHelper(t, "echo-files")
	p.handshake(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var cur syscall.Conn = ln.(*net.TCPListener)
	var held *os.File
	var before map[int]string
	for i := range 100 {
		if i == 1 {
			before = openFds(t) // after one round: the runtime's lazy fds exist, one received file is held
		}
		if err := p.conn.SendFiles(ctx, NamedFile{"api", cur}); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		got, err := p.conn.RecvFiles(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		f := got["api"]
		if cloexec, nb := fdFlags(t, f); !cloexec || !nb {
			t.Fatalf("round %d: close-on-exec %v, non-blocking %v", i, cloexec, nb)
		}
		if held != nil {
			held.Close()
		}
		held, cur = f, f
	}
	checkNoNewFds(t, before)
	if err := p.conn.Send(ctx, Yield{}); err != nil {
		t.Fatal(err)
	}
	if m, err := p.conn.Recv(ctx); err != nil || m.Type() != TypeYielded {
		t.Fatalf("after yield: %v, %v", m, err)
	}
	p.wait(t)

	if _, nb := fdFlags(t, ln.(*net.TCPListener)); !nb {
		t.Error("the original listener became blocking")
	}
	final, err := net.FileListener(held)
	held.Close()
	if err != nil {
		t.Fatal(err)
	}
	acceptOne(t, final, ln.Addr().String())
	for name, l := range map[string]net.Listener{"the listener after 100 trips": final, "the original listener": ln} {
		closeInterruptsAccept(t, name, l)
	}
}

// closeInterruptsAccept blocks in Accept, closes l, and expects Accept to return at once.
func closeInterruptsAccept(t *testing.T, name string, l net.Listener) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	proctest.WaitGoroutineBlocked(t, 10*time.Second, "net.(*TCPListener).Accept")
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s: Accept after Close: %v; want net.ErrClosed", name, err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%s: Close did not interrupt Accept within 3s (blocking mode?)", name)
	}
	<-closed
}

// helperIntruder writes a well-formed frame to fd 3 without a handshake: it is not the process that said hello.
func helperIntruder(ctx context.Context) error {
	frame, err := encodeFrame(Ready{RegionVersion: 1 << 40, Healthy: true})
	if err != nil {
		return err
	}
	_, err = unix.Write(3, frame)
	return err
}

// A frame from a process other than the one that said hello is refused, even on a checked connection.
func TestFrameFromAnotherProcess(t *testing.T) {
	sup, workerEnd, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	rc, err := workerEnd.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	dup := -1
	rc.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	wrk, err := FileConn(os.NewFile(uintptr(dup), "handoff-worker-dup"))
	if err != nil {
		t.Fatal(err)
	}
	defer wrk.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := wrk.Handshake(testCtx(t), Hello{Role: RoleWorker}); err != nil {
			t.Error(err)
		}
	})
	if _, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()); err != nil {
		t.Fatal(err)
	}

	cmd := proctest.Command(t, "intruder")
	cmd.ExtraFiles = []*os.File{workerEnd}
	out, err := cmd.CombinedOutput()
	workerEnd.Close()
	if err != nil {
		t.Fatalf("intruder: %v: %s", err, out)
	}
	_, err = sup.Recv(testCtx(t))
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Errorf("a frame from pid %d: %v; want ErrPeer naming it", cmd.Process.Pid, err)
	}
}
