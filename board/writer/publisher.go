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
	source func(full bool) Delta
	// needFull: the next round asks the source for the whole set (the first round, and the one after a round
	// that failed). Only the running round touches it; rounds run one after another.
	needFull bool

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
	return &Publisher{w: w, source: func(bool) Delta { return Delta{Full: true, Records: source()} }}
}

// Delta is what a delta source hands a publish: the whole set (Full: Records, for Writer.Publish), or what
// changed since the source's previous call (Records put, Deletes removed, for Writer.Update).
type Delta struct {
	Full    bool
	Records []board.Record
	Deletes []uint64
}

// NewDeltaPublisher returns a Publisher whose source returns, once per publish, what changed since its previous
// call, or the whole set (Full), so that a publish need not be handed the whole set. full asks for the whole
// set: on the first call, and after a publish failed (a change refused whole, such as an invalid put, is not in
// the Writer); the source may return it at other times too.
func NewDeltaPublisher(w *Writer, source func(full bool) Delta) *Publisher {
	return &Publisher{w: w, source: source, needFull: true}
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
		if err != nil {
			p.needFull = true
		}
	}()
	d := p.source(p.needFull)
	if d.Full {
		v, err = p.w.Publish(d.Records)
		p.needFull = false
		return v, err
	}
	return p.w.Update(d.Records, d.Deletes)
}
