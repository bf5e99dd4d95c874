// Package rounds runs work in rounds that concurrent callers share, so that N callers arriving together cost one
// round (one fsync, one publish), not N.
//
// A caller that finds no round running runs its own at once, with whoever already joined it; callers that arrive
// while a round runs join the next one, which starts as soon as that one ends, on a new goroutine (so no caller
// waits for rounds other than its own; that goroutine ends when nothing is pending). Invariants: rounds never
// overlap (run is called by one goroutine at a time, one round after the other), and a caller returns only once
// the round it joined has run, every change it brought to that round made before the round started.
package rounds

import "sync"

// Runner runs rounds of type R with its run function.
type Runner[R any] struct {
	run func(*R)

	mu      sync.Mutex
	pending *round[R] // the round new callers join; nil when none is waiting
	running bool      // a round is being run
}

type round[R any] struct {
	r    R
	done chan struct{}
}

// New returns a Runner whose rounds run is called on. run must not panic (recover and record it in the round):
// a panic would leave the round's callers waiting for ever.
func New[R any](run func(*R)) *Runner[R] { return &Runner[R]{run: run} }

// Join adds the caller to the pending round (join, when not nil, records what the caller brings, under the
// Runner's lock) and returns that round once it has run.
func (x *Runner[R]) Join(join func(*R)) *R {
	x.mu.Lock()
	if x.pending == nil {
		x.pending = &round[R]{done: make(chan struct{})}
	}
	g := x.pending
	if join != nil {
		join(&g.r)
	}
	lead := !x.running
	if lead {
		x.running, x.pending = true, nil
	}
	x.mu.Unlock()
	if lead {
		x.runFrom(g)
	}
	<-g.done
	return &g.r
}

// runFrom runs g, then hands the pending round, if any, to a new goroutine, or marks the Runner idle.
func (x *Runner[R]) runFrom(g *round[R]) {
	x.run(&g.r)
	close(g.done)
	x.mu.Lock()
	defer x.mu.Unlock()
	if next := x.pending; next != nil {
		x.pending = nil
		go x.runFrom(next)
		return
	}
	x.running = false
}
