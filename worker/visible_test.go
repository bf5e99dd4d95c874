package worker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/store"
)

// TestVisibleSetFollowsChangesAndTime: the visible set the worker keeps up to date in place (w.vis, its span,
// minExpiry) must be, at every moment, what the whole set says: puts effective now, later or earlier, with and
// without expiry, replacements, deletions, expiry removal, and a clock that moves across those times, jumps
// and goes back. After each step the publish's source, the next change and the expiry floor are compared with
// a computation from the whole set, and so is what the board shows after a publish (handed only the changes).
func TestVisibleSetFollowsChangesAndTime(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bw, err := writer.Open(filepath.Join(dir, "board"), writer.Options{Size: 256 << 10, NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bw.Close() })
	var clock atomic.Int64
	clock.Store(1_000_000)
	w, err := New(Config{Board: bw, Store: st, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reader.Open(filepath.Join(dir, "board"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rng := rand.New(rand.NewPCG(5, 8))
	for step := range 1500 {
		now := clock.Load()
		switch op := rng.IntN(12); {
		case op < 5: // put
			id := uint64(1 + rng.IntN(60))
			a := announcement.Announcement{ID: id, Content: fmt.Sprint("step ", step), EffectiveAt: now}
			switch rng.IntN(4) {
			case 0:
				a.EffectiveAt = now + int64(rng.IntN(2000))
			case 1:
				a.EffectiveAt = now - int64(rng.IntN(2000))
			}
			if rng.IntN(2) == 0 {
				a.ExpiresAt = max(a.EffectiveAt, now) + 1 + int64(rng.IntN(3000))
			}
			if _, err := w.Apply([]announcement.Announcement{a}, nil); err != nil {
				t.Fatal(err)
			}
		case op < 7: // delete
			if _, err := w.Apply(nil, []uint64{uint64(1 + rng.IntN(60))}); err != nil {
				t.Fatal(err)
			}
		case op < 8: // remove what expired
			if err := w.removeExpired(); err != nil {
				t.Fatal(err)
			}
		case op < 11: // time passes
			clock.Add(int64(rng.IntN(400)))
		default: // time jumps, either way
			clock.Add(int64(rng.IntN(6000)) - 2000)
		}
		now = clock.Load()
		if _, err := w.pub.Sync(); err != nil { // what the publisher is handed: the changes, or the whole set
			t.Fatal(err)
		}
		snap, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		got := w.visibleNow()
		since := now - int64(rng.IntN(50))
		next := w.nextChange(since)
		w.mu.Lock()
		want := announcement.Visible(maps.Values(w.set), now)
		wantNext := announcement.NextChange(maps.Values(w.set), since)
		expiryOK := true
		for _, a := range w.set {
			if a.ExpiresAt != 0 && (w.minExpiry == 0 || a.ExpiresAt < w.minExpiry) {
				expiryOK = false
			}
		}
		w.mu.Unlock()
		if !slices.Equal(snap.Records, want) {
			t.Fatalf("step %d at %d: the board shows %d records, the set says %d:\n%v\n%v", step, now, len(snap.Records), len(want), snap.Records, want)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d at %d: the source gives %d records, the set says %d:\n%v\n%v", step, now, len(got), len(want), got, want)
		}
		// The next change may come early (a time since replaced or deleted), never late.
		if wantNext != 0 && (next == 0 || next > wantNext) || next != 0 && next <= since {
			t.Fatalf("step %d: next change after %d is %d, the set says %d", step, since, next, wantNext)
		}
		if !expiryOK {
			t.Fatalf("step %d: minExpiry %d is after an expiry in the set", step, w.minExpiry)
		}
	}
}

// visibleNow is the records the board must show at this moment (a copy of w.vis, rebuilt first when now is
// outside its span): what changesNow's changes add up to.
func (w *Worker) visibleNow() []board.Record {
	now := w.cfg.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.visHolds(now) {
		w.rebuildVisible(now)
	}
	return slices.Clone(w.vis)
}
