package writer

import (
	"sync"

	"github.com/announcementd/announcementd/board"
)

// Publisher coalesces publishes: callers that ask while a publish is running share the next one, so a burst of N
// changes costs at most two publishes, not N (FORMAT.md §4, "Bursts").
//
// The caller that finds no publish running becomes the leader: it publishes, then keeps publishing for callers
// that queued meanwhile, until none is waiting. No goroutine is started; nothing outlives the calls.
type Publisher struct {
	w      *Writer
	source func() []board.Record

	mu      sync.Mutex
	pending *round // the round new callers join; nil when none is waiting
	running bool
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
	if p.running {
		p.mu.Unlock()
		<-r.done
		return r.version, r.err
	}
	p.running = true
	for p.pending != nil {
		cur := p.pending
		p.pending = nil
		p.mu.Unlock()
		cur.version, cur.err = p.w.Publish(p.source())
		close(cur.done)
		p.mu.Lock()
	}
	p.running = false
	p.mu.Unlock()
	return r.version, r.err
}
