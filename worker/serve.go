package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/wire"
)

// Listener is one API listener. Token, when set, is required as a bearer token on every request it serves.
type Listener struct {
	net.Listener
	Token string
}

// Timeouts of the API servers: a slow or stalled client cannot hold a connection or a goroutine for long.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
	// idleLinger is how long, during a drain, a kept-alive connection may sit idle before it is closed. A busy
	// client sends its next request within it, gets its answer with "Connection: close", and moves to a new
	// connection (which the next generation accepts) without ever seeing an error. "Idle" is the client's: a
	// request that has reached the socket, or is being read, keeps the connection open however long the worker
	// took to get to it (connTracker.drain).
	idleLinger = 50 * time.Millisecond
	drainPoll  = 2 * time.Millisecond
)

// Serve serves the API on every listener until ctx is done, then drains, and returns once every connection it
// accepted has been answered and closed (or after 10 s). The listeners are closed when it returns.
//
// The drain never drops a request the worker has accepted. http.Server.Shutdown would: a request read after
// Shutdown began is closed without an answer, on a fresh connection as on a kept-alive one. So the drain stops
// accepting (connections not yet accepted stay in the kernel's backlog for the next generation), turns keep-alive
// off (every request still to come on an open connection is answered with "Connection: close"), closes
// connections that stay idle for idleLinger, and waits for the rest. A client that writes a request on a
// kept-alive connection at the very moment it is closed idle gets a reset, the race every HTTP/1.1 server has
// (RFC 9112 §9.3.1: such a request may be retried).
func (w *Worker) Serve(ctx context.Context, listeners []Listener) error {
	conns := newConnTracker()
	var drainingFlag atomic.Bool
	servers := make([]*http.Server, len(listeners))
	var draining sync.WaitGroup // Serve goroutines still running
	errc := make(chan error, len(listeners))
	for i, l := range listeners {
		srv := &http.Server{
			Handler:           closeWhen(&drainingFlag, w.Handler(l.Token)),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          zap.NewStdLog(w.log.Named("http")),
			ConnState:         conns.track,
		}
		servers[i] = srv
		draining.Add(1)
		go func() {
			defer draining.Done()
			err := srv.Serve(wire.Listener(countReads{l})) // net/http's own refusals (431, 400) are JSON too
			if ctx.Err() == nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
		w.log.Info("api listening", zap.String("addr", l.Addr().Network()+":"+l.Addr().String()), zap.Bool("token", l.Token != ""))
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}

	// Stop accepting. Serve returns once its listener is closed; after that no connection can appear. (Not
	// SetKeepAlivesEnabled(false): it closes idle connections at once, under the feet of busy clients.)
	drainingFlag.Store(true)
	for _, l := range listeners {
		l.Close()
	}
	draining.Wait()
	start := time.Now()
	if !conns.drain(start.Add(shutdownTimeout)) {
		w.log.Warn("requests still running after the drain deadline; closing their connections", zap.Duration("waited", shutdownTimeout))
	}
	for _, srv := range servers {
		srv.Close() // nothing is left but what overran the deadline
	}
	w.log.Info("api drained", zap.Duration("took", time.Since(start)))
	return first
}

// closeWhen answers with "Connection: close" once draining is set, so that the server closes each connection after
// the answer in flight.
func closeWhen(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			rw.Header().Set("Connection", "close")
		}
		next.ServeHTTP(rw, r)
	})
}

// connTracker follows the API's connections through http.Server.ConnState.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]connInfo
}

type connInfo struct {
	state http.ConnState
	since time.Time
	read  *readCounter // the connection's, when it has one (countReads)
	seen  uint64       // what it had read when it became idle
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]connInfo{}} }

func (t *connTracker) track(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, c)
	default:
		info := connInfo{state: s, since: time.Now(), read: counterOf(c)}
		if info.read != nil {
			info.seen = info.read.n.Load()
		}
		t.conns[c] = info
	}
}

// idle reports whether the connection has been idle for idleLinger with nothing of a next request in sight:
// net/http reports a connection active only once it has parsed a request's header, so a connection whose next
// request waits in its socket (the worker was slow to get to it: a loaded machine, a drain that began as it came)
// or is being read is still "idle" to ConnState, and closing it would drop that request without an answer.
func (info connInfo) idle() bool {
	if info.state != http.StateIdle || time.Since(info.since) < idleLinger {
		return false
	}
	if info.read == nil {
		return true
	}
	return info.read.n.Load() == info.seen && !unread(info.read.Conn)
}

// drain waits until every connection is closed, closing those idle for idleLinger, and reports whether that
// happened before the deadline. A client that writes its next request in the moment between idle's look at the
// socket and the close still gets a reset: the race every HTTP/1.1 server has (see Serve), now microseconds wide.
func (t *connTracker) drain(deadline time.Time) bool {
	for {
		t.mu.Lock()
		n := len(t.conns)
		for c, info := range t.conns {
			if info.idle() {
				c.Close() // the server's conn goroutine sees it and reports StateClosed
			}
		}
		t.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(drainPoll)
	}
}

// countReads is a listener whose connections count the bytes they read (readCounter), for the drain.
type countReads struct{ net.Listener }

func (l countReads) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readCounter{Conn: c}, nil
}

// readCounter is a connection that counts the bytes read from it.
type readCounter struct {
	net.Conn
	n atomic.Uint64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(uint64(n))
	return n, err
}

// CloseWrite half-closes the connection, as wire's does (net/http calls it before it closes a connection it
// refused, so that the client reads the answer).
func (c *readCounter) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// counterOf is the readCounter under c: Serve's connections are wire's, each wrapping one (countReads), or nil.
func counterOf(c net.Conn) *readCounter {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn()
	}
	rc, _ := c.(*readCounter)
	return rc
}

// unread reports whether bytes the peer sent wait unread in the connection's socket (SIOCINQ), false when it
// cannot tell.
func unread(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return false
	}
	return n > 0
}
