package writer

import (
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/announcementd/announcementd/board"
)

// Publisher coalesces publishes: callers that ask while a publish is running share the next one, so a burst of N
// changes costs at most two publishes, not N (FORMAT.md §4, "Bursts").
//
// A caller that finds no publish running publishes its own round. When a round ends and another is pending, a
// new goroutine publishes it, so no caller waits for rounds other than its own; that goroutine is the Publisher's
// and ends when nothing is pending. A panic in the source or the writer fails its round instead of wedging every
// later caller.
type Publisher struct {
	w      *Writer
	source func() []board.Record

	mu      sync.Mutex
	pending *round // the round new callers join; nil when none is waiting
	running bool   // a round is being published
}

type round struct {
	done    chan struct{}
	version uint64
	err     error
}

// NewPublisher returns a Publisher that publishes source's set into w. source is called once per publish, under
// no lock of the Publisher's, and must return the set as it is at that moment.
func NewPublisher(w *Writer, source func() []board.Record) *Publisher {
	return &Publisher{w: w, source: source}
}

// Sync publishes the source's current set and returns a version that shows every change made before Sync was
// called.
func (p *Publisher) Sync() (uint64, error) {
	p.mu.Lock()
	if p.pending == nil {
		p.pending = &round{done: make(chan struct{})}
	}
	r := p.pending
	lead := !p.running
	if lead {
		p.running, p.pending = true, nil
	}
	p.mu.Unlock()
	if lead {
		p.publish(r)
	}
	<-r.done
	return r.version, r.err
}

// publish runs round r, then starts the pending round, if any.
func (p *Publisher) publish(r *round) {
	r.version, r.err = p.safePublish()
	close(r.done)
	p.mu.Lock()
	defer p.mu.Unlock()
	if next := p.pending; next != nil {
		p.pending = nil
		go p.publish(next)
		return
	}
	p.running = false
}

func (p *Publisher) safePublish() (v uint64, err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("publish panicked: %v\n%s", rec, debug.Stack())
		}
	}()
	return p.w.Publish(p.source())
}
