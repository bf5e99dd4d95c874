package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/handoff"
)

// TestStopIsAStop: Stop ends Run as a cancelled context does: the serving generation yields for a shutdown and
// exits, serving → stopping → stopped, and Run returns nil. A second Stop does nothing.
func TestStopIsAStop(t *testing.T) {
	m := newMachine(t, func(uint64) behaviour { return healthy })
	m.waitState(StateServing, 1)
	m.sup.Stop()
	select {
	case err := <-m.ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		m.ran <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return after Stop; path %q", m.path())
	}
	m.sup.Stop()
	m.expectPath("starting→serving (first)", "serving→stopping (stop)", "stopping→stopped (stop)")
	if p := m.env.proc(1); !strings.Contains(strings.Join(p.calls, ","), "yield shutdown") {
		t.Fatalf("generation 1 was asked %q, not to yield for a shutdown", p.calls)
	}
	select {
	case <-m.sup.Done():
	default:
		t.Fatal("Done is not closed after Run returned")
	}
}

// TestAlive: a loop waiting for events answers at once; a loop inside a step (a reload waiting for its new
// generation) is alive until the step's bound; a loop stuck past it is not; a stopped supervisor is not.
func TestAlive(t *testing.T) {
	hang := make(chan struct{})
	entered := make(chan struct{}, 1)
	m := newMachine(t, func(n uint64) behaviour { return healthy }, func(c *Config) {
		next := c.OnTransition
		c.OnTransition = func(tr Transition) {
			next(tr)
			if tr.To == StateReloading {
				entered <- struct{}{}
				<-hang // the loop is stuck inside the reloading step
			}
		}
	})
	m.waitState(StateServing, 1)
	ctx := context.Background()
	if err := m.sup.Alive(ctx); err != nil {
		t.Fatalf("serving: %v", err)
	}
	go m.sup.Reload(ctx)
	<-entered
	if err := m.sup.Alive(ctx); err != nil {
		t.Fatalf("inside a reload, before its bound: %v", err)
	}
	m.sup.mu.Lock()
	m.sup.stepDeadline = time.Now().Add(-time.Millisecond) // the step has overrun its bound
	m.sup.mu.Unlock()
	err := m.sup.Alive(ctx)
	if err == nil || !strings.Contains(err.Error(), "reloading") {
		t.Fatalf("a loop stuck in reloading past its bound: %v", err)
	}
	close(hang)
	m.waitState(StateServing, 2)
	if err := m.sup.Alive(ctx); err != nil {
		t.Fatalf("serving after the reload: %v", err)
	}
	m.stop()
	<-m.ran
	m.ran <- nil
	if err := m.sup.Alive(ctx); err == nil {
		t.Fatal("a stopped supervisor is alive")
	}
}

// TestOnFilesAfterAReplacement: a worker that sends a new "region" makes the loop call OnFiles with the whole set,
// the new file in it (the service manager's fd store keeps it from then on).
func TestOnFilesAfterAReplacement(t *testing.T) {
	repl, err := os.Create(filepath.Join(t.TempDir(), "recreated"))
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close()
	got := make(chan []handoff.NamedFile, 1)
	m := newMachine(t, func(uint64) behaviour { return behaviour{ready: true, replace: repl} }, func(c *Config) {
		c.OnFiles = func(fs []handoff.NamedFile) { got <- fs }
	})
	m.waitState(StateServing, 1)
	select {
	case fs := <-got:
		if len(fs) != 1 || fs[0].Name != "region" {
			t.Fatalf("OnFiles got %v", fs)
		}
		f, ok := fs[0].File.(*os.File)
		if !ok {
			t.Fatalf("OnFiles got a %T", fs[0].File)
		}
		a, _ := f.Stat()
		b, _ := repl.Stat()
		if !os.SameFile(a, b) {
			t.Fatalf("OnFiles got %s, not the replacement", f.Name())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("OnFiles was not called; path %q", m.path())
	}
}
