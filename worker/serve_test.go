package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// A hand-over between two Serves of one listening socket fails no request. Clients hammer the API, half on
// kept-alive connections and half on a new connection per request, while the first Serve drains; the socket's
// other descriptor (the supervisor's, here the test's) keeps the backlog, and a second Serve on it takes over,
// as the next generation does. http.Server.Shutdown fails this test: it drops requests it reads after it began.
func TestServeHandOverFailsNoRequest(t *testing.T) {
	w, _ := newWorker(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	next := dupListener(t, l)
	defer next.Close()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, []Listener{{Listener: l}}) }()

	var answered, refused, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DisableKeepAlives: i%2 == 1, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := c.Get("http://announcementd/v1/status")
				switch {
				case err == nil:
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						answered.Add(1)
					} else {
						failed.Add(1)
					}
				case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
					refused.Add(1)
				default:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	waitAnswered := func(n int64) {
		t.Helper()
		proctest.WaitUntil(t, time.Minute, func() bool { return answered.Load() >= n }, fmt.Sprintf("%d answered requests", n))
	}
	waitAnswered(500)
	stop()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	atDrain := answered.Load()
	ctx2, stop2 := context.WithCancel(context.Background())
	go func() { served <- w.Serve(ctx2, []Listener{{Listener: next}}) }()
	waitAnswered(atDrain + 500)
	close(done)
	wg.Wait()
	stop2()
	<-served
	if failed.Load() != 0 || refused.Load() != 0 {
		t.Fatalf("%d requests failed (first: %v), %d refused; %d answered", failed.Load(), firstFailure.Load(), refused.Load(), answered.Load())
	}
	t.Logf("%d answered (%d before the hand-over), none failed", answered.Load(), atDrain)
}

// dupListener returns a second listener on l's socket, made without (*os.File).Fd, which would put the shared
// socket in blocking mode.
func dupListener(t *testing.T, l net.Listener) net.Listener {
	t.Helper()
	rc, err := l.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	var dupErr error
	rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	if dupErr != nil {
		t.Fatal(dupErr)
	}
	f := os.NewFile(uintptr(fd), "next")
	defer f.Close()
	next, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// Every error the API answers is JSON, on a real listener through Serve: a path or a method it does not have (a
// 404, never a 405: docs/API.md), a missing token, and header fields over the 16 KiB limit, which net/http refuses
// before any handler runs.
func TestServeAnswersEveryErrorAsJSON(t *testing.T) {
	w, _ := newWorker(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, []Listener{{Listener: l, Token: "s3cret"}}) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	c := proctest.UnixClient(sock, 10*time.Second, true)
	for _, tc := range []struct {
		method, path, token string
		header              int // bytes of an extra header field
		status              int
		code                string
	}{
		{"GET", "/v2/nothing", "s3cret", 0, 404, wire.CodeNotFound},
		{"POST", "/v1/status", "s3cret", 0, 404, wire.CodeNotFound},
		{"GET", "/v1/status", "wrong", 0, 401, wire.CodeUnauthorized},
		{"GET", "/v1/status", "s3cret", 24 << 10, 431, wire.CodeHeadersTooLarge}, // net/http allows 4 KiB of slack
		{"GET", "/v1/status", "s3cret", 0, 200, ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://announcementd"+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		if tc.header > 0 {
			req.Header.Set("X-Padding", strings.Repeat("p", tc.header))
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e wire.Error
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Code != tc.code {
			t.Errorf("%s %s (%d header bytes): %d %q %s; want %d as JSON with code %q", tc.method, tc.path, tc.header,
				resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code)
		}
	}
}

// The drain closes a kept-alive connection that has been idle for idleLinger, and only that: not one whose next
// request waits unread in its socket, nor one whose request is being read (net/http calls both idle until it has
// parsed the header). The first two are what a worker that is slow to get to its connections (a loaded machine)
// sees; closing them dropped the requests without an answer (EOF at the clients).
func TestDrainClosesOnlyIdleConnections(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	wl := wire.Listener(countReads{l}) // as Serve wraps its listeners
	request := []byte("PUT /v1/announcements/1 HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\n{}")
	for _, tc := range []struct {
		name      string
		client    func(net.Conn) // after the connection went idle
		server    func(net.Conn) // likewise: what the server's connection goroutine did (the whole request read: the socket is empty)
		wantClose bool
	}{
		{"nothing sent", func(net.Conn) {}, func(net.Conn) {}, true},
		{"a request in the socket", func(c net.Conn) { c.Write(request) }, func(net.Conn) {}, false},
		{"a request being read", func(c net.Conn) { c.Write(request) }, func(c net.Conn) { io.ReadFull(c, make([]byte, len(request))) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := net.Dial("unix", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := wl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			tr := newConnTracker()
			tr.track(server, http.StateIdle)
			info := tr.conns[server]
			info.since = time.Now().Add(-time.Second) // idle for longer than idleLinger
			tr.conns[server] = info
			tc.client(client)
			tc.server(server)
			tr.drain(time.Now().Add(10 * time.Millisecond)) // nothing reports StateClosed here: it runs to its deadline
			server.SetReadDeadline(time.Now().Add(time.Second))
			_, err = server.Read(make([]byte, 1))
			if closed := errors.Is(err, net.ErrClosed); closed != tc.wantClose {
				t.Fatalf("closed by the drain: %v, want %v (read: %v)", closed, tc.wantClose, err)
			}
		})
	}
}
