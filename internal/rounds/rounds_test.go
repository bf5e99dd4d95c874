package rounds

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m, nil) }

type batch struct {
	ids []int
	n   int // which round it was
}

// While one round runs, every caller that arrives joins the next one: N callers blocked behind a round cost one
// more round, each caller gets the round that holds its id, and rounds never overlap.
func TestCallersArrivingDuringARoundShareTheNext(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var rounds, inside atomic.Int32
	x := New(func(b *batch) {
		if inside.Add(1) != 1 {
			t.Error("two rounds ran at once")
		}
		b.n = int(rounds.Add(1))
		if b.n == 1 {
			started <- struct{}{}
			<-release
		}
		inside.Add(-1)
	})
	first := make(chan *batch)
	go func() { first <- x.Join(func(b *batch) { b.ids = append(b.ids, 0) }) }()
	<-started // round 1 runs, holding caller 0

	const callers = 50
	var wg sync.WaitGroup
	got := make([]*batch, callers+1)
	for i := 1; i <= callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = x.Join(func(b *batch) { b.ids = append(b.ids, i) })
		}()
	}
	// Every caller has joined the pending round when it holds all their ids (join runs under the lock).
	proctest.WaitUntil(t, 10*time.Second, func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.pending != nil && len(x.pending.r.ids) == callers
	}, "every caller in the pending round")
	close(release)
	wg.Wait()
	got[0] = <-first

	if got[0].n != 1 || len(got[0].ids) != 1 {
		t.Fatalf("caller 0 got round %d with %v, want round 1 with itself alone", got[0].n, got[0].ids)
	}
	for i := 1; i <= callers; i++ {
		if got[i] != got[1] || got[i].n != 2 {
			t.Fatalf("caller %d got round %d, want round 2, shared with every later caller", i, got[i].n)
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Fatalf("%d rounds for %d callers, want 2", n, callers+1)
	}
	// Idle again: a lone caller runs its own round at once.
	if b := x.Join(nil); b.n != 3 {
		t.Fatalf("a lone caller got round %d, want 3", b.n)
	}
}
