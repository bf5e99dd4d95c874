package handoff

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testCtx bounds one test step, so that a broken peer fails the test in seconds.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// verifiedPair returns both ends of a Pair, in this process, handshaken and checked.
func verifiedPair(t testing.TB) (sup, wrk *Conn) {
	t.Helper()
	sup, wrk = greetedPair(t)
	for _, c := range []*Conn{sup, wrk} {
		if err := c.CheckPeer(os.Getpid(), os.Getuid()); err != nil {
			t.Fatal(err)
		}
	}
	return sup, wrk
}

// greetedPair returns both ends of a Pair, handshaken but not checked.
func greetedPair(t testing.TB) (sup, wrk *Conn) {
	t.Helper()
	sup, wrk = newPair(t)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		_, werr = wrk.Handshake(testCtx(t), Hello{Role: RoleWorker, Generation: 1, Build: "test-worker"})
	})
	_, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor, Generation: 1, Build: "test-supervisor"})
	wg.Wait()
	if err != nil || werr != nil {
		t.Fatalf("handshake: supervisor: %v; worker: %v", err, werr)
	}
	return sup, wrk
}

// newPair returns both ends of a Pair, in this process, before the handshake.
func newPair(t testing.TB) (sup, wrk *Conn) {
	t.Helper()
	sup, workerEnd, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	wrk, err = FileConn(workerEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close(); wrk.Close() })
	return sup, wrk
}

// rawPeer plays the worker with hand-made frames, so tests can send what Conn never would.
type rawPeer struct {
	t  testing.TB
	uc *net.UnixConn
}

// rawPair returns a verified supervisor Conn and a raw worker that has done its half of the handshake.
func rawPair(t testing.TB) (*Conn, *rawPeer) {
	t.Helper()
	sup, workerEnd, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.FileConn(workerEnd)
	workerEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, uc: nc.(*net.UnixConn)}
	t.Cleanup(func() { sup.Close(); p.uc.Close() })
	hello, err := encodeFrame(Hello{Protocol: ProtocolName, Version: Version{ProtocolMajor, ProtocolMinor}, Role: RoleWorker, PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	p.send(hello)
	if _, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor}); err != nil {
		t.Fatal(err)
	}
	if m := p.recv(); m.Type() != TypeHello {
		t.Fatalf("raw peer: got %v, want hello", m.Type())
	}
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()); err != nil {
		t.Fatal(err)
	}
	return sup, p
}

// send writes b in one sendmsg, with fds attached.
func (p *rawPeer) send(b []byte, fds ...int) {
	p.t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	p.uc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := p.uc.WriteMsgUnix(b, oob, nil); err != nil {
		p.t.Fatalf("raw peer: send: %v", err)
	}
}

// recv reads one frame (without fds) from the Conn.
func (p *rawPeer) recv() Message {
	p.t.Helper()
	p.uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, HeaderSize)
	if _, err := readFull(p.uc, hdr); err != nil {
		p.t.Fatalf("raw peer: recv: %v", err)
	}
	h, err := parseHeader(hdr)
	if err != nil {
		p.t.Fatal(err)
	}
	frame := append(hdr, make([]byte, h.bodyLen)...)
	if _, err := readFull(p.uc, frame[HeaderSize:]); err != nil {
		p.t.Fatalf("raw peer: recv: %v", err)
	}
	m, err := decodeFrame(frame, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// openFds lists this process's open fds and what they point at.
func openFds(t testing.TB) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[int]string, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fd, _ := strconv.Atoi(e.Name())
		fds[fd] = target
	}
	return fds
}

// checkNoNewFds fails the test if more fds point at something than in before. It compares what the fds point at,
// not their numbers, which move as files are closed and received.
func checkNoNewFds(t testing.TB, before map[int]string) {
	t.Helper()
	count := map[string]int{}
	for _, target := range before {
		count[target]--
	}
	for _, target := range openFds(t) {
		count[target]++
	}
	var leaked []string
	for target, n := range count {
		if n > 0 {
			leaked = append(leaked, fmt.Sprintf("%d × %s", n, target))
		}
	}
	sort.Strings(leaked)
	if len(leaked) > 0 {
		t.Errorf("fds leaked: %v", leaked)
	}
}

// fdFlags reads FD_CLOEXEC and O_NONBLOCK through SyscallConn, never Fd.
func fdFlags(t testing.TB, f syscall.Conn) (cloexec, nonblock bool) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fdfl, fl int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		if fdfl, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0); ferr == nil {
			fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if ferr != nil {
		t.Fatal(ferr)
	}
	return fdfl&unix.FD_CLOEXEC != 0, fl&unix.O_NONBLOCK != 0
}

// pipeFds returns n fds to send: n duplicates of one pipe end, closed at cleanup.
func pipeFds(t testing.TB, n int) []int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	fds := []int{p[0], p[1]}
	for len(fds) < n {
		fd, err := unix.FcntlInt(uintptr(p[0]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	t.Cleanup(func() { closeFds(fds) })
	return fds[:n]
}

// mustFrame encodes m or fails the test.
func mustFrame(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := encodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
