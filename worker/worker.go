// Package worker holds the announcement set, keeps it durable, publishes it to the board on schedule and serves
// the publishing API. It takes its board writer, store and listeners from its caller (a worker generation of the
// supervisor: cmd/announcementd/work.go), so it never opens the region or the listeners itself.
//
// Invariants:
//   - An announcement is acknowledged only when it is in the store (fsync'ed) and the board shows it (or, if it
//     takes effect later, shows the state as of the acknowledgement).
//   - The set never holds more than the board's capacity: the store checks the result of each change inside its
//     transaction, where writers are serialised.
//   - The in-memory set mirrors the store: after a change commits, the changed ids are re-read from the store
//     under w.mu, so concurrent changes to one id end in the store's order, not in the order of the goroutines.
//   - The board's version never decreases: the first publish continues above both the board's version and the
//     floor the store remembers.
//   - The board shows exactly the announcements visible now; one timer, set to the next effective or expiry time,
//     publishes each change when it is due and removes expired announcements from the store.
//   - The counters (counters.go: publishes, repairs, faults recovered, failed locks) are the service's totals: New
//     continues them from the store, and they are saved with the version floor soon after each count and when
//     Run ends, so a generation that dies loses at most the counts of its last few milliseconds.
//   - Health (health.go, docs/HEALTH.md) is the worst of its checks; the region is checked every 10 s and on
//     demand, and a problem found is repaired where it can be before it is reported.
package worker

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/internal/rounds"
	"github.com/announcementd/announcementd/store"
)

// Config is what the caller hands the worker.
type Config struct {
	Board      *writer.Writer
	Store      *store.Store
	Log        *zap.Logger
	Generation uint64
	Build      string // this binary's build, for status
	// RegionReplaced, when set, is given the new region file after the writer had to recreate it at its path (it
	// was removed or replaced); it owns the file. The process that hands the region to the next writer needs it.
	RegionReplaced func(*os.File)
	// Supervisor is the process that handed this worker its fds, for status.
	Supervisor struct {
		PID   int
		Build string
	}
	// Now is the clock (tests may fake it); default time.Now.
	Now func() time.Time
	// Integrity is how damage to the region is found: a periodic check, and a watch of file events (health.go).
	Integrity Integrity
}

// Worker owns the announcement set.
type Worker struct {
	cfg     Config
	log     *zap.Logger
	pub     *writer.Publisher
	metrics *metrics
	started time.Time

	mu  sync.Mutex
	set map[uint64]announcement.Announcement
	// vis is the board's records, sorted by id, of the announcements visible at every time in [visFrom, visUntil)
	// (visUntil 0: no end), while visOK: no effective or expiry time of the set lies strictly inside that span
	// (visFrom is one at or before it, visUntil one after it, or a time since replaced or deleted, which only
	// narrows it). refresh updates it in place, so a publish neither walks nor sorts the set (changesNow);
	// crossing either end rebuilds it from the set. minExpiry: no announcement expires before it (0: none
	// expires), so removeExpired scans the set only when one may have.
	vis       []board.Record
	visOK     bool
	visFrom   int64
	visUntil  int64
	minExpiry int64
	// changed holds the ids whose record in w.vis may have changed since the publisher last asked (changesNow):
	// a publish is handed only those, not the set; sendFull: hand it the whole set instead (w.vis was rebuilt).
	changed  map[uint64]struct{}
	sendFull bool

	loadedAt   int64         // unix ns just before New's publish: everything due by then is on the board
	reschedule chan struct{} // poked when the set changes
	housework  chan struct{} // poked when expired announcements may need removal, or the floor or counters saving
	floorSaved uint64        // the floor last saved; owned by the housekeeping goroutine
	counters   *counters     // the service's counters (counters.go)

	health *healthcheck.Monitor
	guard  guard

	groups *rounds.Runner[applyGroup] // concurrent Applies share a store commit and a publish (group.go)
}

// New loads the store and publishes it, continuing the board's version.
func New(cfg Config) (*Worker, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	w := &Worker{
		cfg: cfg, log: cfg.Log, started: cfg.Now(),
		set:        map[uint64]announcement.Announcement{},
		changed:    map[uint64]struct{}{},
		reschedule: make(chan struct{}, 1),
		housework:  make(chan struct{}, 1),
	}
	// The counters continue the service's totals. One that does not decode starts from 0, and the next save
	// replaces it: counts are not worth refusing to serve.
	stored, err := cfg.Store.Counters()
	if err != nil {
		w.log.Warn("some of the service's counters could not be read; they start from 0", zap.Error(err))
	}
	w.groups = rounds.New(w.applyGroup)
	w.counters = newCounters(stored, func() { w.poke(w.housework) })
	w.metrics = newMetrics(w.counters)
	all, err := cfg.Store.List()
	if err != nil {
		return nil, fmt.Errorf("load announcements: %w", err)
	}
	for _, a := range all {
		w.set[a.ID] = a
	}
	w.pub = writer.NewDeltaPublisher(cfg.Board, w.changesNow)
	w.loadedAt = cfg.Now().UnixNano()
	v, err := w.pub.Sync()
	if err != nil {
		return nil, fmt.Errorf("publish the stored set: %w", err)
	}
	w.regionMoved() // a board of another geometry, or no longer at its path, moved to a new file on that publish
	w.metrics.observeBoard(v, len(all), cfg.Board.Capacity())
	w.initHealth()
	w.metrics.observeHealth(w)
	w.log.Info("worker loaded", zap.Int("announcements", len(all)), zap.Uint64("version", v))
	return w, nil
}

// regionMoved hands a file the board writer moved to (writer.TakeMoved) to Config.RegionReplaced.
func (w *Worker) regionMoved() {
	f := w.cfg.Board.TakeMoved()
	switch {
	case f == nil:
	case w.cfg.RegionReplaced != nil:
		w.cfg.RegionReplaced(f)
	default:
		f.Close()
	}
}

// changesNow is the Publisher's source: what the board must change to show what is visible at this moment, since
// the previous call (only the ids refresh changed), or, when full is asked for or w.vis had to be rebuilt, the
// whole visible set.
func (w *Worker) changesNow(full bool) writer.Delta {
	now := w.cfg.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.visHolds(now) {
		w.rebuildVisible(now)
	}
	if full || w.sendFull {
		w.sendFull = false
		clear(w.changed)
		return writer.Delta{Full: true, Records: slices.Clone(w.vis)}
	}
	var d writer.Delta
	for id := range w.changed {
		if i, ok := slices.BinarySearchFunc(w.vis, id, byID); ok {
			d.Records = append(d.Records, w.vis[i])
		} else {
			d.Deletes = append(d.Deletes, id)
		}
	}
	clear(w.changed)
	return d
}

func byID(r board.Record, id uint64) int { return cmp.Compare(r.ID, id) }

// visHolds reports whether w.vis is the visible set at now. w.mu is held.
func (w *Worker) visHolds(now int64) bool {
	return w.visOK && w.visFrom <= now && (w.visUntil == 0 || now < w.visUntil)
}

// rebuildVisible computes w.vis and its span from the whole set, at now. w.mu is held.
func (w *Worker) rebuildVisible(now int64) {
	w.vis = announcement.Visible(maps.Values(w.set), now)
	w.visOK, w.visFrom, w.visUntil, w.minExpiry = true, math.MinInt64, 0, 0
	w.sendFull = true
	for _, a := range w.set {
		w.noteTimes(&a, now)
	}
}

// noteTimes narrows the span of w.vis, made at now, to a's effective and expiry times, and lowers minExpiry to
// its expiry. w.mu is held.
func (w *Worker) noteTimes(a *announcement.Announcement, now int64) {
	times := [2]int64{a.EffectiveAt, a.ExpiresAt}
	n := 2
	if a.ExpiresAt == 0 { // never expires
		n = 1
	}
	for _, t := range times[:n] {
		switch {
		case t <= now:
			w.visFrom = max(w.visFrom, t)
		case w.visUntil == 0 || t < w.visUntil:
			w.visUntil = t
		}
	}
	w.noteExpiry(a)
}

// noteExpiry lowers minExpiry to a's expiry. w.mu is held.
func (w *Worker) noteExpiry(a *announcement.Announcement) {
	if a.ExpiresAt != 0 && (w.minExpiry == 0 || a.ExpiresAt < w.minExpiry) {
		w.minExpiry = a.ExpiresAt
	}
}

// updateVisible makes w.vis show a (or, when !ok, not show the announcement id) as of now: one binary search and
// at most one insertion or removal. w.mu is held and w.vis holds at now.
func (w *Worker) updateVisible(id uint64, a announcement.Announcement, ok bool, now int64) {
	i, found := slices.BinarySearchFunc(w.vis, id, byID)
	show := ok && a.VisibleAt(now)
	w.changed[id] = struct{}{}
	switch {
	case show && found:
		w.vis[i] = a.Record()
	case show:
		w.vis = slices.Insert(w.vis, i, a.Record())
	case found:
		w.vis = slices.Delete(w.vis, i, i+1)
	}
	if ok {
		w.noteTimes(&a, now)
	}
}

// Result is the outcome of a change.
type Result struct {
	Version uint64   // the board version that shows the change
	Deleted []uint64 // ids that existed and were deleted
}

// Apply makes puts and deletes durable and visible, atomically: one store transaction, one board version. It
// returns when the board shows the result.
func (w *Worker) Apply(puts []announcement.Announcement, deletes []uint64) (Result, error) {
	start := time.Now()
	res, err := w.apply(puts, deletes)
	w.metrics.observePublish(time.Since(start), err)
	w.counters.inc(counterPublishes + resultOf(err))
	return res, err
}

// refresh re-reads the changed ids from the store into the set (see the package invariants).
func (w *Worker) refresh(puts []announcement.Announcement, deletes []uint64) error {
	ids := make([]uint64, 0, len(puts)+len(deletes))
	for _, a := range puts {
		ids = append(ids, a.ID)
	}
	ids = append(ids, deletes...)
	w.mu.Lock()
	defer w.mu.Unlock()
	got, err := w.cfg.Store.GetMany(ids)
	if err != nil {
		w.visOK = false // the set may be behind the store: rebuild from it when it is read again
		return fmt.Errorf("reload %d announcements: %w", len(ids), err)
	}
	now := w.cfg.Now().UnixNano()
	inc := w.visHolds(now)
	if !inc {
		w.visOK = false
	}
	for _, id := range ids {
		a, ok := got[id]
		if ok {
			w.set[id] = a
		} else {
			delete(w.set, id)
		}
		if inc {
			w.updateVisible(id, a, ok, now) // notes a's times, its expiry too
		} else if ok {
			w.noteExpiry(&a)
		}
	}
	w.metrics.held.Set(float64(len(w.set)))
	return nil
}

func (w *Worker) poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Get returns the announcement with id.
func (w *Worker) Get(id uint64) (announcement.Announcement, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.set[id]
	return a, ok
}

// List returns every announcement held, visible or scheduled, sorted by id.
func (w *Worker) List() []announcement.Announcement {
	w.mu.Lock()
	all := make([]announcement.Announcement, 0, len(w.set))
	for _, a := range w.set {
		all = append(all, a)
	}
	w.mu.Unlock()
	slices.SortFunc(all, func(a, b announcement.Announcement) int { return cmp.Compare(a.ID, b.ID) })
	return all
}

// Version is the board's published version.
func (w *Worker) Version() uint64 { return w.cfg.Board.Version() }

// Run keeps the board on schedule, refreshes its heartbeat and remembers the version in the store, until ctx is
// done. It returns after a last floor update, so the caller cancels ctx only after the last request is answered. Removing expired announcements from the store and saving the floor
// happen in a housekeeping goroutine (an fsync must not delay a scheduled change); Run waits for it to end.
func (w *Worker) Run(ctx context.Context) error {
	saved := make(chan error, 1)
	go func() { saved <- w.housekeep(ctx) }()
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var due int64       // the change the timer is set for, unix ns; 0 = none
	shown := w.loadedAt // every change due up to here is on the board (New published it)
	for {
		select {
		case <-ctx.Done():
			return <-saved
		case <-heartbeat.C:
			w.cfg.Board.Heartbeat()
		case <-w.reschedule:
		case <-timer.C:
			start := w.cfg.Now().UnixNano()
			if err := w.onSchedule(due); err != nil {
				w.log.Error("scheduled publish failed; retrying in a second", zap.Error(err))
				timer.Reset(time.Second)
				continue
			}
			shown = start
		}
		// A change that fell due while this loop was busy is still after shown: its timer fires at once.
		due = w.nextChange(shown)
		timer.Stop()
		if due != 0 {
			timer.Reset(time.Duration(max(0, due-w.cfg.Now().UnixNano())))
		}
	}
}

// nextChange is the earliest time after since at which the visible set changes, or 0.
func (w *Worker) nextChange(since int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.visHolds(since) {
		return w.visUntil // no time of the set lies between (it may be early: a time since replaced)
	}
	return announcement.NextChange(maps.Values(w.set), since)
}

// onSchedule publishes what is visible now; the housekeeping goroutine then removes what expired from the
// store. Nothing on the way to the board waits for an fsync. Visibility comes from the clock, so an expired
// announcement still in the store (removal pending, or a crash in between) stays off the board.
func (w *Worker) onSchedule(due int64) error {
	v, err := w.pub.Sync()
	w.checkPublish(err)
	if err != nil {
		return err
	}
	if due != 0 {
		late := w.cfg.Now().UnixNano() - due // from the due time to the board showing it
		w.metrics.lateness.Observe(float64(late) / 1e9)
	}
	w.metrics.observeBoard(v, w.held(), w.cfg.Board.Capacity())
	w.poke(w.housework)
	return nil
}

// housekeep removes expired announcements from the store and saves the version floor and the counters whenever it
// is poked, and checks the region every guardInterval, until ctx is done, then saves them once more.
func (w *Worker) housekeep(ctx context.Context) error {
	guardTick := time.NewTicker(guardInterval)
	defer guardTick.Stop()
	integrityTick := time.NewTicker(w.cfg.Integrity.interval())
	defer integrityTick.Stop()
	defer w.startWatch()() // the watch of file events on the region is this generation's (watch.go)
	for {
		select {
		case <-ctx.Done():
			return w.saveState()
		case <-guardTick.C:
			w.checkRegion()
			w.checkHeartbeat()
			if w.counters.unsaved() != nil { // refused requests (add)
				if err := w.saveState(); err != nil {
					w.log.Error("remember the board version and the counters", zap.Error(err))
				}
			}
		case <-integrityTick.C:
			w.checkIntegrity()
		case <-w.housework:
			if err := w.removeExpired(); err != nil {
				w.log.Error("remove expired announcements", zap.Error(err))
			}
			if err := w.saveState(); err != nil {
				w.log.Error("remember the board version and the counters", zap.Error(err))
			}
		}
	}
}

// removeExpired deletes the announcements whose time has run out from the store and the set.
func (w *Worker) removeExpired() error {
	now := w.cfg.Now().UnixNano()
	var expired []uint64
	w.mu.Lock()
	if w.minExpiry == 0 || now < w.minExpiry {
		w.mu.Unlock()
		return nil // nothing has expired: no scan
	}
	w.minExpiry = 0 // the expired ones count too: should their removal fail, the next call scans again
	for id, a := range w.set {
		if a.ExpiredAt(now) {
			expired = append(expired, id)
		}
		w.noteExpiry(&a)
	}
	w.mu.Unlock()
	if len(expired) == 0 {
		return nil
	}
	// The store deletes only what is still expired: an id republished since the scan above is kept.
	removed, err := w.cfg.Store.DeleteExpired(expired, now)
	if err != nil {
		return fmt.Errorf("remove %d expired announcements: %w", len(expired), err)
	}
	if err := w.refresh(nil, expired); err != nil {
		return err
	}
	if len(removed) > 0 {
		w.log.Info("announcements expired", zap.Uint64s("ids", removed))
	}
	return nil
}

func (w *Worker) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.set)
}

// saveState remembers the board's version and the service's counters in the store, in one transaction: a board
// recreated from nothing continues above the version, and the next generation continues the counts. What is
// already saved costs no commit. Called only by the housekeeping goroutine.
func (w *Worker) saveState() error {
	v := w.cfg.Board.Version()
	totals := w.counters.unsaved()
	if v == w.floorSaved && totals == nil {
		return nil
	}
	if err := w.cfg.Store.Save(v, totals); err != nil {
		return err
	}
	w.floorSaved = v
	w.counters.markSaved(totals)
	return nil
}
