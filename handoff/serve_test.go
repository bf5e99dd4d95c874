package handoff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
)

// recorder is a Worker that records what Serve asked of it. The test changes healthy and yieldAt while Serve runs:
// they are read under mu (a message through the socket orders the two for the kernel, not for the race detector).
type recorder struct {
	mu       sync.Mutex
	calls    []string
	prepare  error
	healthy  bool   // mu
	yieldAt  uint64 // mu
	prepared chan struct{}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) Prepare(context.Context) error {
	r.add("prepare")
	if r.prepared != nil {
		close(r.prepared)
	}
	return r.prepare
}

func (r *recorder) Start(_ context.Context, m Start) Ready {
	r.add("start " + m.Reason)
	r.mu.Lock()
	healthy := r.healthy
	r.mu.Unlock()
	if !healthy {
		return Ready{Reason: "not today"}
	}
	return Ready{Healthy: true, RegionVersion: m.VersionFloor + 1}
}

func (r *recorder) Yield(_ context.Context, m Yield) Yielded {
	r.add("yield " + m.Reason)
	r.mu.Lock()
	defer r.mu.Unlock()
	return Yielded{LastVersion: r.yieldAt}
}

// joined returns the supervisor's end and the worker's, after Join (the supervisor sent one file).
func joined(t *testing.T) (sup, wrk *Conn) {
	t.Helper()
	sup, wrk = newPair(t)
	ctx := testCtx(t)
	errc := make(chan error, 1)
	go func() {
		_, files, err := Join(ctx, wrk, Hello{Role: RoleWorker, Generation: 1}, os.Getpid(), os.Getuid())
		files.Close()
		errc <- err
	}()
	if _, err := sup.Handshake(ctx, Hello{Role: RoleSupervisor, Generation: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sup.CheckPeer(os.Getpid(), os.Getuid()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if err := sup.SendFiles(ctx, NamedFile{Name: "null", File: f}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return sup, wrk
}

func serve(t *testing.T, wrk *Conn, w Worker, opts ServeOptions) (context.CancelCauseFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, wrk, w, opts) }()
	return cancel, done
}

func expect[T Message](t *testing.T, c *Conn) T {
	t.Helper()
	m, err := c.Recv(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("got %v, want %T", m.Type(), v)
	}
	return v
}

// The states of the diagram in serve.go: standby, a failed Start back to standby, serving, a Yield back to
// standby, a Yield in standby answered without asking the worker, and the end of the connection.
func TestServeDrivesTheWorker(t *testing.T) {
	sup, wrk := joined(t)
	r := &recorder{}
	_, done := serve(t, wrk, r, ServeOptions{})
	ctx := testCtx(t)
	if sb := expect[Standby](t, sup); !sb.Healthy {
		t.Fatalf("standby: %+v", sb)
	}
	sup.Send(ctx, Start{Reason: "first", VersionFloor: 7})
	if rd := expect[Ready](t, sup); rd.Healthy || rd.Reason != "not today" {
		t.Fatalf("ready: %+v", rd)
	}
	sup.Send(ctx, Yield{Reason: "in standby"})
	if y := expect[Yielded](t, sup); y.LastVersion != 0 {
		t.Fatalf("yielded in standby: %+v", y)
	}
	r.mu.Lock()
	r.healthy, r.yieldAt = true, 42
	r.mu.Unlock()
	sup.Send(ctx, Start{Reason: "rollback", VersionFloor: 7})
	if rd := expect[Ready](t, sup); !rd.Healthy || rd.RegionVersion != 8 {
		t.Fatalf("ready: %+v", rd)
	}
	f, _ := os.Open(os.DevNull)
	sup.SendFiles(ctx, NamedFile{Name: "late", File: f}) // closed by Serve, not passed on
	f.Close()
	sup.Send(ctx, Yield{Reason: "reload"})
	if y := expect[Yielded](t, sup); y.LastVersion != 42 {
		t.Fatalf("yielded: %+v", y)
	}
	sup.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after the supervisor closed: %v", err)
	}
	want := []string{"prepare", "start first", "start rollback", "yield reload"}
	if got := r.got(); !slices.Equal(got, want) {
		t.Fatalf("the worker was asked %q, want %q", got, want)
	}
}

// A Prepare that fails answers an unhealthy Standby with its reason, and Serve returns its error.
func TestServeUnhealthyStandby(t *testing.T) {
	sup, wrk := joined(t)
	bad := errors.New("the state dir is gone")
	_, done := serve(t, wrk, &recorder{prepare: bad}, ServeOptions{})
	if sb := expect[Standby](t, sup); sb.Healthy || sb.Reason != bad.Error() {
		t.Fatalf("standby: %+v", sb)
	}
	if err := <-done; !errors.Is(err, bad) {
		t.Fatalf("Serve: %v", err)
	}
}

// A worker that serves when the connection ends (or its context does) yields before Serve returns; Serve returns
// the context's cause.
func TestServeYieldsWhenItEnds(t *testing.T) {
	for _, how := range []string{"eof", "cancel"} {
		t.Run(how, func(t *testing.T) {
			sup, wrk := joined(t)
			r := &recorder{healthy: true}
			cancel, done := serve(t, wrk, r, ServeOptions{})
			expect[Standby](t, sup)
			sup.Send(testCtx(t), Start{Reason: "first"})
			expect[Ready](t, sup)
			gone := errors.New("the supervisor is gone")
			if how == "eof" {
				sup.Close()
			} else {
				cancel(gone)
			}
			err := <-done
			if (how == "eof" && err != nil) || (how == "cancel" && !errors.Is(err, gone)) {
				t.Fatalf("Serve: %v", err)
			}
			if got := r.got(); len(got) != 3 || got[2][:6] != "yield " {
				t.Fatalf("the worker was asked %q: want a last yield", got)
			}
		})
	}
}

// A second Start while serving is a protocol error.
func TestServeStartWhileServing(t *testing.T) {
	sup, wrk := joined(t)
	_, done := serve(t, wrk, &recorder{healthy: true}, ServeOptions{})
	expect[Standby](t, sup)
	sup.Send(testCtx(t), Start{Reason: "first"})
	expect[Ready](t, sup)
	sup.Send(testCtx(t), Start{Reason: "again"})
	if err := <-done; !errors.Is(err, ErrStartWhileServing) {
		t.Fatalf("Serve: %v", err)
	}
}

// With Once, Serve returns after answering the first Start, without yielding: what serves is the caller's.
func TestServeOnce(t *testing.T) {
	sup, wrk := joined(t)
	r := &recorder{healthy: true}
	var sent []Type
	_, done := serve(t, wrk, r, ServeOptions{Once: true, Sent: func(m Message) { sent = append(sent, m.Type()) }})
	expect[Standby](t, sup)
	sup.Send(testCtx(t), Start{Reason: "upgrade"})
	expect[Ready](t, sup)
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := r.got(); !slices.Equal(got, []string{"prepare", "start upgrade"}) || !slices.Equal(sent, []Type{TypeStandby, TypeReady}) {
		t.Fatalf("asked %q, sent %v", got, sent)
	}
}

// Serve's reading goroutine ends with Serve: nothing is left blocked on a channel nobody reads.
func TestServeLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		sup, wrk := joined(t)
		cancel, done := serve(t, wrk, &recorder{}, ServeOptions{})
		expect[Standby](t, sup)
		sup.Send(testCtx(t), Yield{Reason: "unread"}) // in flight when Serve ends
		cancel(errors.New("stop"))
		<-done
		sup.Close()
	}
	proctest.WaitFor(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	}, "Serve's goroutines to end")
}
