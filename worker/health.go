package worker

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/wire"
)

// The worker's health checks (docs/HEALTH.md). Later guards (a remapped or recreated region, repaired content)
// add their checks beside these and count their repairs by kind.
const (
	CheckLock      = "region.lock"      // the mapping is locked in memory
	CheckResidency = "region.residency" // every page of the region is in memory
	CheckHeartbeat = "heartbeat"        // readers see a fresh heartbeat
	CheckPublish   = "publish"          // the last publish reached the board (critical: the board lags otherwise)
	CheckIntegrity = "region.integrity" // the file at the path is the region, whole, with the bytes the writer wrote
)

// Repair kinds: the kind label of announcementd_region_repairs_total and the keys of status' guard.repairs.
const (
	RepairResidency = "residency" // pages found missing were brought back into memory
	// and the writer's damage kinds (board/writer heal.go): fault, size, replaced, overwritten.
)

var repairKinds = []string{RepairResidency, writer.DamageFault, writer.DamageSize, writer.DamageReplaced, writer.DamageOverwritten}

// Integrity is how the worker finds damage to the region (Config.Integrity): a periodic check, and a watch of
// file events (watch.go) that runs the same check the moment the file is removed, renamed over, truncated, grown
// or written with write(2).
type Integrity struct {
	// Interval is the periodic check's (0: integrityInterval). Bytes overwritten through a mapping raise no file
	// event: this check is what finds them.
	Interval time.Duration
	// NoWatch turns the watch off, leaving the periodic check alone (announcementd --region-watch=false; healbench
	// measures both in one run).
	NoWatch bool
}

func (i Integrity) interval() time.Duration {
	if i.Interval > 0 {
		return i.Interval
	}
	return integrityInterval
}

const (
	// integrityInterval is how often the region's file, size and bytes are checked against what the writer wrote
	// (a few µs for a 4 MiB region) and repaired; file events are seen at once by the region watch (watch.go).
	integrityInterval = 250 * time.Millisecond
	// guardInterval is how often Run checks the region (residency, and the lock while it does not hold); it is
	// also the shortest time between two attempts to lock.
	guardInterval = 10 * time.Second
	// A heartbeat older than this is degraded (the writer refreshes it every second) ...
	heartbeatDegraded = 5 * time.Second
	// ... and older than this failed: readers may take the writer for dead.
	heartbeatFailed = 30 * time.Second
)

// guard is the state of the region checks. mu makes one check at a time and guards the fields.
type guard struct {
	mu         sync.Mutex
	lockTried  time.Time // the last attempt to lock the mapping
	lockWarned bool      // a refused lock was logged (once)
	residency  writer.Residency
	faults     uint64       // this writer's count of the faults it caught and repaired (writer.Faults), as last counted
	watch      *regionWatch // the generation's watch of file events on the region (watch.go); nil when none
	// checked, when set (tests), is called after each integrity check with what it found; afterHeal right after
	// the repair, before the watch follows the writer to a new file.
	checked   func(writer.Damage, error)
	afterHeal func(writer.Damage)
}

// initHealth records the state New left: published, and the board's lock and residency.
func (w *Worker) initHealth() {
	w.health = healthcheck.NewMonitor(w.cfg.Now)
	w.health.Set(healthcheck.Check{Name: CheckPublish, Critical: true})
	w.health.Set(healthcheck.Check{Name: CheckIntegrity})
	w.guard.lockTried = w.cfg.Now()
	locked, err := w.cfg.Board.Locked()
	if err != nil { // the writer's attempt at map time
		w.counters.inc(counterMlock)
	}
	w.setLock(locked, err)
	w.checkRegion()
	w.checkHeartbeat()
}

// setLock records the lock's state; a refusal is logged once.
func (w *Worker) setLock(locked bool, err error) {
	w.metrics.locked.Set(boolFloat(locked))
	c := healthcheck.Check{Name: CheckLock}
	switch {
	case err != nil:
		c.State, c.Reason = healthcheck.Degraded, err.Error()+"; pages may be swapped out or dropped, and readers wait for them"
		if !w.guard.lockWarned {
			w.guard.lockWarned = true
			w.log.Warn("the region is not locked in memory; serving anyway, health degraded", zap.Error(err))
		}
	case !locked:
		c.Reason = "not locked: the writer was opened without it"
	}
	if prev, changed := w.health.Set(c); changed && prev.State != healthcheck.OK {
		w.log.Info("the region is locked in memory now")
	}
}

// checkRegion retries the lock (at most once per guardInterval) while it does not hold, counts the pages in
// memory, brings missing ones back, and records the outcome.
func (w *Worker) checkRegion() {
	g := &w.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	b := w.cfg.Board
	if locked, err := b.Locked(); !locked && err != nil {
		if now := w.cfg.Now(); now.Sub(g.lockTried) >= guardInterval {
			g.lockTried = now
			err = b.Lock()
			if err != nil {
				w.counters.inc(counterMlock)
			}
			w.setLock(err == nil, err)
		}
	}
	c := healthcheck.Check{Name: CheckResidency}
	r, err := b.Residency()
	missing := r.Missing()
	switch {
	case r.Pages == 0: // the writer is closed
		c.State, c.Reason = healthcheck.Failed, fmt.Sprintf("the region is not mapped: %v", err)
	case err != nil:
		c.State, c.Reason = healthcheck.Degraded, fmt.Sprintf("cannot tell which pages are in memory: %v", err)
	case missing > 0:
		r, err = b.Repair()
		switch {
		case err == nil && r.Missing() == 0:
			w.repaired(RepairResidency)
			w.log.Info("brought region pages back into memory", zap.Int("pages", missing), zap.Int("of", r.Pages))
		case err != nil:
			c.State, c.Reason = healthcheck.Degraded, fmt.Sprintf("%d of %d pages are not in memory and could not be brought back: %v", r.Missing(), r.Pages, err)
		default:
			c.State, c.Reason = healthcheck.Degraded, fmt.Sprintf("%d of %d pages are not in memory after a repair", r.Missing(), r.Pages)
		}
	}
	if c.State == healthcheck.OK || missing > 0 { // r counts the pages (after the repair, if any)
		g.residency = r
		w.metrics.resident.Set(r.Ratio())
	}
	w.setCheck(c)
}

// checkIntegrity has the writer check the region and repair what it finds: a file truncated or grown, removed or
// replaced at its path (recreated; the new file goes to Config.RegionReplaced), bytes overwritten. It also counts
// the faults the writer caught in its own writes. This is the periodic check; the watch runs checkIntegrityBy.
func (w *Worker) checkIntegrity() { w.checkIntegrityBy(triggerPeriodic) }

// What ran an integrity check, as a repair's log line says (found_by).
const (
	triggerPeriodic = "periodic check"
	triggerWatch    = "file event"
)

func (w *Worker) checkIntegrityBy(trigger string) {
	g := &w.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := 0; ; i++ {
		d, err := w.healLocked(trigger)
		if g.afterHeal != nil {
			g.afterHeal(d)
		}
		// The writer may be on another file now (recreated): the watch moves to it, and the file is checked once
		// more, for what happened to it before its watch was in place.
		moved := g.watch != nil && g.watch.retarget()
		if g.checked != nil {
			g.checked(d, err)
		}
		if !moved || i == 2 {
			return
		}
	}
}

// healLocked is one check and repair (guard.mu held).
func (w *Worker) healLocked(trigger string) (writer.Damage, error) {
	g := &w.guard
	b := w.cfg.Board
	start := time.Now()
	newFile, d, err := b.Heal()
	took := time.Since(start) // the check and the repair, republish included
	if f := b.Faults(); f > g.faults {
		w.log.Warn("the region faulted under a write (its file shrank); restored and republished", zap.Uint64("faults", f-g.faults))
		w.counters.add(counterFaults, f-g.faults)
		for range f - g.faults {
			w.repaired(writer.DamageFault)
		}
		g.faults = f
	}
	c := healthcheck.Check{Name: CheckIntegrity}
	switch {
	case err != nil:
		c.State, c.Reason = healthcheck.Degraded, err.Error()
		w.log.Error("the region is damaged and the repair failed", zap.Error(err))
	case !d.None():
		for _, k := range d.Kinds {
			w.repaired(k)
		}
		w.log.Warn("repaired the region", zap.String("damage", d.String()), zap.Uint64("version", b.Version()),
			zap.String("found_by", trigger), zap.Duration("took", took))
	}
	if newFile != nil {
		if w.cfg.RegionReplaced != nil {
			w.cfg.RegionReplaced(newFile)
		} else {
			newFile.Close()
		}
	}
	w.setCheck(c)
	return d, err
}

// repaired counts a repair of kind (the housekeeping goroutine saves it at once, counters.go). Called with
// guard.mu held.
func (w *Worker) repaired(kind string) {
	w.counters.inc(counterRepairs + kind)
}

// checkHeartbeat records the age of the heartbeat readers see.
func (w *Worker) checkHeartbeat() {
	c := healthcheck.Check{Name: CheckHeartbeat}
	age, err := w.cfg.Board.HeartbeatAge()
	switch {
	case err != nil:
		c.State, c.Reason = healthcheck.Failed, fmt.Sprintf("the region is not mapped: %v", err)
	case age >= heartbeatFailed:
		c.State, c.Reason = healthcheck.Failed, fmt.Sprintf("the heartbeat readers see is %s old (refreshed every second): readers may take the writer for dead", age.Round(time.Second))
	case age >= heartbeatDegraded:
		c.State, c.Reason = healthcheck.Degraded, fmt.Sprintf("the heartbeat readers see is %s old (refreshed every second)", age.Round(time.Second))
	}
	w.setCheck(c)
}

// checkPublish records the outcome of a publish.
func (w *Worker) checkPublish(err error) {
	c := healthcheck.Check{Name: CheckPublish, Critical: true}
	if err != nil {
		c.State, c.Reason = healthcheck.Degraded, fmt.Sprintf("the last publish failed, the board lags the store until one succeeds: %v", err)
	}
	w.setCheck(c)
}

// setCheck records c and logs a change of state.
func (w *Worker) setCheck(c healthcheck.Check) {
	prev, changed := w.health.Set(c)
	switch {
	case !changed:
	case c.State > prev.State:
		w.log.Warn("health check worse", zap.String("check", c.Name), zap.Stringer("state", c.State), zap.String("reason", c.Reason))
	default:
		w.log.Info("health check better", zap.String("check", c.Name), zap.Stringer("state", c.State), zap.Stringer("was", prev.State))
	}
}

// Health reports the worker's health. fresh checks the region now (a mincore of the region, and a repair when
// pages are missing); otherwise its state is from the last periodic check. The heartbeat is read every time.
func (w *Worker) Health(fresh bool) healthcheck.Report {
	if fresh {
		w.checkRegion()
	}
	w.checkHeartbeat()
	return w.health.Report(w.Version())
}

// guardStatus is the guard's part of status: the service's totals, and this generation's counts.
func (w *Worker) guardStatus() wire.GuardStatus {
	var s wire.GuardStatus
	locked, err := w.cfg.Board.Locked()
	s.Locked = locked
	if err != nil {
		s.LockError = err.Error()
	}
	g := &w.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	s.Pages, s.ResidentPages = g.residency.Pages, g.residency.Resident
	c := w.counters
	s.FaultsRecovered, s.ThisGeneration.FaultsRecovered = c.total(counterFaults), c.thisGeneration(counterFaults)
	s.Repairs, s.ThisGeneration.Repairs = map[string]uint64{}, map[string]uint64{}
	for _, k := range repairKinds {
		s.Repairs[k], s.ThisGeneration.Repairs[k] = c.total(counterRepairs+k), c.thisGeneration(counterRepairs+k)
	}
	return s
}

// handleLive is /healthz: liveness, 200 unless failed. ?check=1 checks the region first.
func (w *Worker) handleLive(rw http.ResponseWriter, r *http.Request) {
	fresh, _ := strconv.ParseBool(r.URL.Query().Get("check"))
	rep := w.Health(fresh)
	wire.WriteJSON(rw, rep.LiveStatus(), rep)
}

// handleReady is /readyz: readiness, 200 when ready (healthcheck.Report.Ready). It always checks the region first.
func (w *Worker) handleReady(rw http.ResponseWriter, r *http.Request) {
	rep := w.Health(true)
	wire.WriteJSON(rw, rep.ReadyStatus(), rep)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
