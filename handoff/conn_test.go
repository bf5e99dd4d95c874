package handoff

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/internal/proctest"
)

func TestMessagesRoundTrip(t *testing.T) {
	sup, wrk := verifiedPair(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		from, to *Conn
		m        Message
	}{
		{wrk, sup, Ready{RegionVersion: 42, Healthy: true, Report: json.RawMessage(`{"records":3}`)}},
		{wrk, sup, Ready{RegionVersion: 41, Reason: "store: open: permission denied"}},
		{sup, wrk, Yield{Reason: "reload", Grace: 5 * time.Second}},
		{wrk, sup, Yielded{LastVersion: 42}},
		{wrk, sup, Raw{Kind: TypeCustom + 1, Body: []byte(`{"anything":true}`)}},
		{sup, wrk, Raw{Kind: 255, Body: []byte{}}},
	} {
		if err := tc.from.Send(ctx, tc.m); err != nil {
			t.Fatal(err)
		}
		got, err := tc.to.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.m) {
			t.Errorf("sent %#v, received %#v", tc.m, got)
		}
	}
}

func TestHandshakeReturnsPeerHello(t *testing.T) {
	sup, wrk := newPair(t)
	done := make(chan Hello, 1)
	go func() {
		h, err := wrk.Handshake(testCtx(t), Hello{Role: RoleWorker, Generation: 9, Build: "w"})
		if err != nil {
			t.Error(err)
		}
		done <- h
	}()
	got, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor, Generation: 9, Build: "s", PID: 77})
	if err != nil {
		t.Fatal(err)
	}
	want := Hello{Protocol: ProtocolName, Version: Version{ProtocolMajor, ProtocolMinor}, Role: RoleWorker, Generation: 9, Build: "w", PID: os.Getpid()}
	if got != want {
		t.Errorf("supervisor got %+v, want %+v", got, want)
	}
	if h := <-done; h.PID != 77 || h.Role != RoleSupervisor {
		t.Errorf("worker got %+v; want the supervisor's hello with pid 77 as given", h)
	}
}

// The order is Handshake, CheckPeer, then the rest; nothing goes out of order.
func TestCallOrderIsEnforced(t *testing.T) {
	ctx := testCtx(t)
	sup, wrk := newPair(t)
	if err := sup.Send(ctx, Yield{}); !errors.Is(err, ErrPeer) {
		t.Errorf("Send before Handshake: %v, want ErrPeer", err)
	}
	if _, err := sup.Recv(ctx); !errors.Is(err, ErrPeer) {
		t.Errorf("Recv before Handshake: %v, want ErrPeer", err)
	}
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()); !errors.Is(err, ErrPeer) {
		t.Errorf("CheckPeer before Handshake: %v, want ErrPeer", err)
	}
	if err := sup.Send(ctx, Hello{Role: RoleSupervisor}); !errors.Is(err, ErrProtocol) {
		t.Errorf("Send(Hello): %v, want ErrProtocol", err)
	}

	sup, wrk = greetedPair(t)
	f := tempFile(t)
	if err := sup.SendFiles(ctx, NamedFile{"region", f}); !errors.Is(err, ErrPeer) {
		t.Errorf("SendFiles before CheckPeer: %v, want ErrPeer", err)
	}
	if _, err := wrk.RecvFiles(ctx); !errors.Is(err, ErrPeer) {
		t.Errorf("RecvFiles before CheckPeer: %v, want ErrPeer", err)
	}
	if _, err := sup.Handshake(ctx, Hello{Role: RoleSupervisor}); !errors.Is(err, ErrProtocol) {
		t.Errorf("second Handshake: %v, want ErrProtocol", err)
	}
}

func TestSendFilesInProcess(t *testing.T) {
	ctx := testCtx(t)
	sup, wrk := verifiedPair(t)
	region := tempFile(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File() // a dup, as a caller might hold it
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	before := openFds(t)

	// A listener goes as it is, or as an *os.File; neither may be switched to blocking mode by the send.
	if err := sup.SendFiles(ctx, NamedFile{"region", region}, NamedFile{"api", ln.(*net.TCPListener)}, NamedFile{"api-file", lnFile}); err != nil {
		t.Fatal(err)
	}
	if _, nb := fdFlags(t, ln.(*net.TCPListener)); !nb {
		t.Error("the sender's listener is blocking after SendFiles")
	}
	files, err := wrk.RecvFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := files.names(); !reflect.DeepEqual(got, []string{"api", "api-file", "region"}) {
		t.Fatalf("received %v", got)
	}
	for name, f := range files {
		cloexec, nb := fdFlags(t, f)
		if !cloexec {
			t.Errorf("%s: received without FD_CLOEXEC", name)
		}
		if name != "region" && !nb {
			t.Errorf("%s: received socket is blocking", name)
		}
	}
	if _, err := files["region"].WriteAt([]byte("via the passed fd"), 100); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 17)
	if _, err := region.ReadAt(buf, 100); err != nil || string(buf) != "via the passed fd" {
		t.Errorf("region reads %q, %v", buf, err)
	}
	rl, err := net.FileListener(files["api"])
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	if _, nb := fdFlags(t, files["api"]); !nb {
		t.Error("net.FileListener switched the received socket to blocking")
	}
	acceptOne(t, rl, ln.Addr().String())
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	rl.Close()
	checkNoNewFds(t, before)
}

// acceptOne dials addr and accepts the connection on l, within a deadline.
func acceptOne(t testing.TB, l net.Listener, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(5 * time.Second))
	a, err := l.Accept()
	if err != nil {
		t.Fatalf("accept on the passed listener: %v", err)
	}
	a.Close()
}

func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "region"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A wrong expected pid fails CheckPeer for good, and no fd goes out afterwards.
func TestCheckPeerMismatchSendsNothing(t *testing.T) {
	ctx := testCtx(t)
	sup, wrk := greetedPair(t)
	if err := wrk.CheckPeer(os.Getpid(), os.Getuid()); err != nil {
		t.Fatal(err)
	}
	err := sup.CheckPeer(os.Getpid()+1, os.Getuid())
	if !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "want pid") {
		t.Fatalf("CheckPeer with a wrong pid: %v", err)
	}
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()); !errors.Is(err, ErrPeer) {
		t.Errorf("CheckPeer after a mismatch: %v, want ErrPeer (a mismatch is final)", err)
	}
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()+1); !errors.Is(err, ErrPeer) {
		t.Errorf("CheckPeer with a wrong uid: %v, want ErrPeer", err)
	}
	if err := sup.SendFiles(ctx, NamedFile{"region", tempFile(t)}); !errors.Is(err, ErrPeer) {
		t.Fatalf("SendFiles after a failed CheckPeer: %v, want ErrPeer", err)
	}
	before := openFds(t)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if m, err := wrk.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the peer received %v, %v; want nothing before the deadline", m, err)
	}
	checkNoNewFds(t, before)
}

func TestFrameTooLarge(t *testing.T) {
	ctx := testCtx(t)
	t.Run("send", func(t *testing.T) {
		sup, wrk := verifiedPair(t)
		err := sup.Send(ctx, Raw{Kind: TypeCustom, Body: make([]byte, MaxBodySize+1)})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Send of %d bytes: %v, want ErrTooLarge", MaxBodySize+1, err)
		}
		// Nothing went out: the Conn still works, and the largest frame passes.
		largest := Raw{Kind: TypeCustom, Body: bytes.Repeat([]byte("x"), MaxBodySize)}
		go sup.Send(ctx, largest)
		m, err := wrk.Recv(ctx)
		if err != nil || len(m.(Raw).Body) != MaxBodySize {
			t.Fatalf("after the refused frame: %v", err)
		}
		tooMany := make([]NamedFile, MaxFiles+1)
		f := tempFile(t)
		for i := range tooMany {
			tooMany[i] = NamedFile{Name: string(rune('a'+i%26)) + strings.Repeat("x", i/26), File: f}
		}
		if err := sup.SendFiles(ctx, tooMany...); !errors.Is(err, ErrTooLarge) {
			t.Errorf("SendFiles of %d files: %v, want ErrTooLarge", len(tooMany), err)
		}
	})
	t.Run("recv", func(t *testing.T) {
		sup, peer := rawPair(t)
		hdr := make([]byte, HeaderSize)
		binary.LittleEndian.PutUint32(hdr, MaxBodySize+1)
		hdr[offType] = byte(TypeCustom)
		peer.send(hdr)
		_, err := sup.Recv(ctx)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Recv of an oversized frame: %v, want ErrTooLarge", err)
		}
		// The stream is out of step now: the Conn stays broken.
		peer.send(mustFrame(t, Yielded{}))
		if _, err2 := sup.Recv(ctx); !errors.Is(err2, ErrTooLarge) || !strings.Contains(err2.Error(), "unusable") {
			t.Errorf("Recv after the oversized frame: %v, want the same error again", err2)
		}
	})
}

// Every fd that arrives with a bad frame is closed before Recv returns.
func TestBadFramesCloseTheirFds(t *testing.T) {
	files := func(n int, names ...string) []byte {
		body, _ := json.Marshal(filesBody{Names: names})
		hdr := make([]byte, HeaderSize)
		binary.LittleEndian.PutUint32(hdr, uint32(len(body)))
		hdr[offType] = byte(TypeFiles)
		binary.LittleEndian.PutUint16(hdr[offFileCount:], uint16(n))
		return append(hdr, body...)
	}
	withCount := func(frame []byte, n int) []byte {
		frame = bytes.Clone(frame)
		binary.LittleEndian.PutUint16(frame[offFileCount:], uint16(n))
		return frame
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		nfds  int
		want  error
	}{
		{"more fds than names", files(2, "a", "b"), 3, ErrFileCount},
		{"fewer fds than names", files(2, "a", "b"), 1, ErrFileCount},
		{"header counts more than names", files(3, "a", "b"), 3, ErrFileCount},
		{"header counts fewer than names", files(1, "a", "b"), 1, ErrFileCount},
		{"no fds for names", files(2, "a", "b"), 0, ErrFileCount},
		{"fds on a ready", withCount(mustFrame(t, Ready{Healthy: true}), 1), 1, ErrFileCount},
		{"fds on a ready, header says none", mustFrame(t, Ready{Healthy: true}), 2, ErrFileCount},
		{"duplicate names", files(2, "a", "a"), 2, ErrProtocol},
		{"empty name", files(2, "a", ""), 2, ErrProtocol},
		{"body not JSON", append([]byte{2, 0, 0, 0, byte(TypeFiles), 0, 2, 0}, "{{"...), 2, ErrProtocol},
		{"unknown type", []byte{0, 0, 0, 0, 77, 0, 1, 0}, 1, ErrProtocol},
		{"flags set", append([]byte{2, 0, 0, 0, byte(TypeFiles), 1, 1, 0}, "{}"...), 1, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sup, peer := rawPair(t)
			fds := pipeFds(t, tc.nfds)
			before := openFds(t)
			peer.send(tc.frame, fds...)
			m, err := sup.Recv(testCtx(t))
			if !errors.Is(err, tc.want) {
				discard(m)
				t.Fatalf("Recv: %v, %v; want %v", m, err, tc.want)
			}
			checkNoNewFds(t, before)
		})
	}
}

// More fds than the control buffer holds: MSG_CTRUNC, an error, and the fds that did arrive closed.
func TestControlTruncationClosesFds(t *testing.T) {
	for _, n := range []int{MaxFiles + 1, 100, 253} { // 253 is the kernel's SCM_MAX_FD
		sup, peer := rawPair(t)
		names := make([]string, n)
		for i := range names {
			names[i] = "f" + string(rune('0'+i/100)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
		}
		body, _ := json.Marshal(filesBody{Names: names})
		frame := append([]byte{0, 0, 0, 0, byte(TypeFiles), 0, byte(n), 0}, body...)
		binary.LittleEndian.PutUint32(frame, uint32(len(body)))
		fds := pipeFds(t, 1)
		rights := make([]int, n)
		for i := range rights {
			rights[i] = fds[0] // the kernel installs a new fd for each
		}
		before := openFds(t)
		peer.send(frame, rights...)
		m, err := sup.Recv(testCtx(t))
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "MSG_CTRUNC") {
			discard(m)
			t.Fatalf("%d fds: Recv: %v, want ErrTruncated (MSG_CTRUNC)", n, err)
		}
		checkNoNewFds(t, before)
	}

	// The largest legal set passes.
	sup, wrk := verifiedPair(t)
	f := tempFile(t)
	named := make([]NamedFile, MaxFiles)
	for i := range named {
		named[i] = NamedFile{Name: "f" + string(rune('A'+i/26)) + string(rune('a'+i%26)), File: f}
	}
	before := openFds(t)
	if err := sup.SendFiles(testCtx(t), named...); err != nil {
		t.Fatal(err)
	}
	got, err := wrk.RecvFiles(testCtx(t))
	if err != nil || len(got) != MaxFiles {
		t.Fatalf("%d files: %v, %v", MaxFiles, len(got), err)
	}
	got.Close()
	checkNoNewFds(t, before)
}

func TestRecvDeadline(t *testing.T) {
	sup, wrk := verifiedPair(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sup.Recv(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv on a silent peer: %v; want a deadline error", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 3*time.Second {
		t.Errorf("Recv returned after %v; want about 100ms", d)
	}
	// Nothing was consumed, so the Conn is still good.
	if err := wrk.Send(testCtx(t), Yielded{LastVersion: 3}); err != nil {
		t.Fatal(err)
	}
	if m, err := sup.Recv(testCtx(t)); err != nil || m != (Yielded{LastVersion: 3}) {
		t.Errorf("Recv after a timeout: %v, %v", m, err)
	}
}

func TestRecvCancel(t *testing.T) {
	sup, _ := verifiedPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := sup.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with a cancelled ctx: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Recv returned %v after the cancel", d)
	}
}

// A deadline in the middle of a frame leaves the stream out of step, so the Conn stays broken.
func TestTimeoutMidFrameBreaksConn(t *testing.T) {
	sup, peer := rawPair(t)
	frame := mustFrame(t, Yielded{LastVersion: 5})
	peer.send(frame[:HeaderSize+2])
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	if _, err := sup.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv of half a frame: %v", err)
	}
	peer.send(frame[HeaderSize+2:])
	if _, err := sup.Recv(testCtx(t)); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("Recv after a mid-frame timeout: %v; want the Conn broken", err)
	}
}

func TestRecvEOF(t *testing.T) {
	sup, wrk := verifiedPair(t)
	wrk.Close()
	if _, err := sup.Recv(testCtx(t)); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after the peer closed: %v; want io.EOF", err)
	}
	if err := wrk.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	sup, _ := verifiedPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := sup.Recv(context.Background())
		errc <- err
	}()
	proctest.WaitGoroutineBlocked(t, 10*time.Second, "github.com/announcementd/announcementd/handoff.(*Conn).Recv")
	sup.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Recv after Close: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Recv")
	}
}

func TestHandshakeVersions(t *testing.T) {
	for _, tc := range []struct {
		worker Version
		want   error
	}{
		{Version{ProtocolMajor, ProtocolMinor + 7}, nil}, // a later minor talks to us
		{Version{ProtocolMajor + 1, 0}, ErrVersion},      // a later major does not
		{Version{ProtocolMajor + 2, 5}, ErrVersion},
	} {
		sup, wrk := newPair(t)
		wrk.version = tc.worker
		var werr error
		var wg sync.WaitGroup
		wg.Go(func() { _, werr = wrk.Handshake(testCtx(t), Hello{Role: RoleWorker, Build: "new"}) })
		remote, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor, Build: "old"})
		wg.Wait()
		if !errors.Is(err, tc.want) || !errors.Is(werr, tc.want) {
			t.Fatalf("worker %v: supervisor %v, worker %v; want %v", tc.worker, err, werr, tc.want)
		}
		if remote.Version != tc.worker {
			t.Errorf("supervisor saw version %v, want %v", remote.Version, tc.worker)
		}
		if tc.want == nil {
			continue
		}
		for _, s := range []string{"speaks " + tc.worker.String(), "speaks 1.0", `build "new"`, `build "old"`, "run the supervisor from a build that speaks"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("version error %q does not say %q", err, s)
			}
		}
		if err := sup.CheckPeer(os.Getpid(), os.Getuid()); !errors.Is(err, ErrPeer) {
			t.Errorf("CheckPeer after a failed handshake: %v", err)
		}
	}
}

func TestHandshakeSameRole(t *testing.T) {
	sup, wrk := newPair(t)
	var wg sync.WaitGroup
	wg.Go(func() { wrk.Handshake(testCtx(t), Hello{Role: RoleSupervisor}) })
	_, err := sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor})
	wg.Wait()
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "both ends") {
		t.Errorf("two supervisors: %v", err)
	}
}

// Something that is not a handoff peer fails the handshake quickly and clearly.
func TestHandshakeWithAStranger(t *testing.T) {
	for name, junk := range map[string][]byte{
		"http":        []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"other proto": mustFrame(t, Raw{Kind: 200, Body: []byte("{}")}),
		"not ours":    append([]byte{16, 0, 0, 0, 1, 0, 0, 0}, `{"protocol":"x"}`...),
	} {
		sup, workerEnd, err := Pair()
		if err != nil {
			t.Fatal(err)
		}
		nc, _ := net.FileConn(workerEnd)
		workerEnd.Close()
		nc.Write(junk)
		_, err = sup.Handshake(testCtx(t), Hello{Role: RoleSupervisor})
		if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: handshake: %v, want a protocol error", name, err)
		}
		sup.Close()
		nc.Close()
	}
}

func TestConcurrentSends(t *testing.T) {
	sup, wrk := verifiedPair(t)
	ctx := testCtx(t)
	const writers, each = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				body, _ := json.Marshal([2]int{w, i})
				if err := wrk.Send(ctx, Raw{Kind: TypeCustom, Body: body}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, writers)
	for range writers * each {
		m, err := sup.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wi [2]int
		if err := json.Unmarshal(m.(Raw).Body, &wi); err != nil {
			t.Fatal(err)
		}
		if wi[1] != next[wi[0]] {
			t.Fatalf("writer %d: got message %d, want %d", wi[0], wi[1], next[wi[0]])
		}
		next[wi[0]]++
	}
	wg.Wait()
}

func TestFileConnRejectsOtherFds(t *testing.T) {
	if _, err := FileConn(tempFile(t)); err == nil {
		t.Error("FileConn accepted a regular file")
	}
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := FileConn(os.NewFile(uintptr(fd), "not-a-stream")); err == nil || !strings.Contains(err.Error(), "SOCK_STREAM") {
			t.Errorf("FileConn on socket type %d: %v; want a SOCK_STREAM error", typ, err)
		}
	}
}

// The trap this package avoids: Fd on a listener's *os.File turns the shared open file description blocking, for the
// listener too. If this ever stops being true, the non-blocking checks here prove less than they claim.
func TestFdSwitchesSharedSocketToBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Fd()
	if _, nb := fdFlags(t, ln.(*net.TCPListener)); nb {
		t.Skip("Fd no longer switches a socket to blocking mode")
	}
}

// A socket that left the sender in blocking mode (say, a listener from a C program, or after someone called Fd)
// arrives non-blocking; a regular file keeps its flags.
func TestReceivedSocketsAreNonblocking(t *testing.T) {
	sup, wrk := verifiedPair(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) // blocking
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	blocking := os.NewFile(uintptr(fd), "blocking-listener")
	defer blocking.Close()
	region := tempFile(t)
	if _, nb := fdFlags(t, blocking); nb {
		t.Fatal("the test listener is already non-blocking")
	}
	if err := sup.SendFiles(testCtx(t), NamedFile{"api", blocking}, NamedFile{"region", region}); err != nil {
		t.Fatal(err)
	}
	files, err := wrk.RecvFiles(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if _, nb := fdFlags(t, files["api"]); !nb {
		t.Error("a blocking socket arrived blocking")
	}
	if _, nb := fdFlags(t, files["region"]); nb {
		t.Error("a regular file arrived with O_NONBLOCK set")
	}
	l, err := net.FileListener(files["api"])
	if err != nil {
		t.Fatal(err)
	}
	closeInterruptsAccept(t, "a listener that was sent in blocking mode", l)
}
