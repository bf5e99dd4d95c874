package worker

import (
	"fmt"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/store"
)

// Concurrent Applies are applied in groups (internal/rounds): a caller that finds no group running runs its own at
// once, with any callers already waiting; callers that arrive meanwhile form the next group, run as soon as that
// one ends. A group
// is one store commit (each change still atomic and refused on its own: store.ApplyAll), one reload of the changed
// ids into the set, and one board publish, which shows every change of the group. So N concurrent requests cost
// one fsync and one publish, not N of each (the board shows the latest set: one version showing them all is what
// N versions in a row would end on), and each is acknowledged only once its group is durable and on the board.

type applyCall struct {
	change store.Change
	res    Result
	err    error
}

type applyGroup struct {
	calls []*applyCall
}

// apply makes one change durable and visible, in a group with concurrent ones (see above).
func (w *Worker) apply(puts []announcement.Announcement, deletes []uint64) (Result, error) {
	for i := range puts {
		if err := puts[i].Validate(); err != nil {
			return Result{}, fmt.Errorf("announcement %d: %w", puts[i].ID, err)
		}
	}
	c := &applyCall{change: store.Change{Puts: puts, Deletes: deletes}}
	w.groups.Join(func(g *applyGroup) { g.calls = append(g.calls, c) })
	return c.res, c.err
}

// applyGroup stores every change of g in one commit, reloads what the stored ones changed, and publishes once.
func (w *Worker) applyGroup(g *applyGroup) {
	defer func() {
		if r := recover(); r != nil { // a panic fails its group, not every later caller
			for _, c := range g.calls {
				c.res, c.err = Result{}, fmt.Errorf("apply panicked: %v", r)
			}
		}
	}()
	changes := make([]store.Change, len(g.calls))
	for i, c := range g.calls {
		changes[i] = c.change
	}
	results := w.cfg.Store.ApplyAll(changes, w.cfg.Board.Capacity()) // a *board.FullError says so
	var puts []announcement.Announcement
	var deletes []uint64
	stored := g.calls[:0:0]
	for i, c := range g.calls {
		if c.err = results[i].Err; c.err != nil {
			continue
		}
		c.res.Deleted = results[i].Deleted
		puts = append(puts, c.change.Puts...)
		deletes = append(deletes, c.change.Deletes...)
		stored = append(stored, c)
	}
	if len(stored) == 0 {
		return
	}
	fail := func(err error) {
		for _, c := range stored {
			c.res, c.err = Result{}, err
		}
	}
	if err := w.refresh(puts, deletes); err != nil {
		fail(err)
		return
	}
	// The scheduler's next change moves only if a put brings a time still to come (a deletion can only put it
	// later, and the timer firing early publishes nothing new); an announcement effective now is on the board
	// with this publish.
	now := w.cfg.Now().UnixNano()
	for i := range puts {
		if puts[i].EffectiveAt > now || puts[i].ExpiresAt != 0 {
			w.poke(w.reschedule)
			break
		}
	}
	v, err := w.pub.Sync()
	w.checkPublish(err)
	if err != nil {
		fail(fmt.Errorf("the change is stored, but the board could not be updated (it will be at the next publish): %w", err))
		return
	}
	w.metrics.observeBoard(v, w.held(), w.cfg.Board.Capacity())
	w.poke(w.housework)
	for _, c := range stored {
		c.res.Version = v
	}
}
