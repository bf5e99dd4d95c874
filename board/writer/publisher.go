package writer

import (
	"fmt"
	"runtime/debug"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/internal/rounds"
)

// Publisher coalesces publishes: callers that ask while a publish is running share the next one, so a burst of N
// changes costs at most two publishes, not N (FORMAT.md §4, "Bursts").
//
// A caller that finds no publish running publishes its own round. When a round ends and another is pending, a
// new goroutine publishes it, so no caller waits for rounds other than its own (internal/rounds); that goroutine is the Publisher's
// and ends when nothing is pending. A panic in the source or the writer fails its round instead of wedging every
// later caller.
type Publisher struct {
	w      *Writer
	source func(full bool) Delta
	// needFull: the next round asks the source for the whole set (the first round, and the one after a round
	// that failed). Only the running round touches it; rounds run one after another.
	needFull bool

	rounds *rounds.Runner[round]
}

type round struct {
	version uint64
	err     error
}

// NewPublisher returns a Publisher that publishes source's set into w. source is called once per publish, under
// no lock of the Publisher's, and must return the set as it is at that moment.
func NewPublisher(w *Writer, source func() []board.Record) *Publisher {
	return newPublisher(w, func(bool) Delta { return Delta{Full: true, Records: source()} }, false)
}

func newPublisher(w *Writer, source func(full bool) Delta, needFull bool) *Publisher {
	p := &Publisher{w: w, source: source, needFull: needFull}
	p.rounds = rounds.New(func(r *round) { r.version, r.err = p.safePublish() })
	return p
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
	return newPublisher(w, source, true)
}

// Sync publishes the source's current set and returns a version that shows every change made before Sync was
// called.
func (p *Publisher) Sync() (uint64, error) {
	r := p.rounds.Join(nil)
	return r.version, r.err
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
