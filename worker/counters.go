package worker

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// The service's counters: what status (guard.repairs, guard.faults_recovered) and the Prometheus counters show.
// They are the service's totals, not one generation's: New starts them from what the store kept (store.Counters),
// and the housekeeping goroutine saves them (store.Save) in the transaction that saves the version floor, soon
// soon after a rare count (add), with every floor save, every guardInterval, and once more when Run ends. A kill
// -9 loses at most the counts made since the last save: a rare event's of the last few milliseconds, refused
// requests' of the last guardInterval. Under the names below, each an 8-byte total in the
// store's "counters" bucket.
const (
	counterPublishes = "publishes."       // + result (ok, invalid, full, error): announcementd_publishes_total
	counterRepairs   = "repairs."         // + kind (repairKinds): announcementd_region_repairs_total
	counterFaults    = "faults_recovered" // announcementd_region_faults_recovered_total
	counterMlock     = "mlock_failures"   // announcementd_mlock_failures_total
)

var publishResults = []string{"ok", "invalid", "full", "error"}

// counterNames are every counter the worker keeps.
func counterNames() []string {
	names := []string{counterFaults, counterMlock}
	for _, r := range publishResults {
		names = append(names, counterPublishes+r)
	}
	for _, k := range repairKinds {
		names = append(names, counterRepairs+k)
	}
	return names
}

// counters are the service's counters. The map is filled once (newCounters) and only read after, so inc needs no
// lock.
type counters struct {
	vals    map[string]*atomic.Uint64
	base    map[string]uint64 // the totals the store held at New: total - base is this generation's
	changed func()            // called after each count (pokes the housekeeping goroutine)

	mu    sync.Mutex
	saved map[string]uint64 // what the store holds, as of the last save
}

// newCounters starts every counter at its total in stored (0 when absent); changed is called after each count.
func newCounters(stored map[string]uint64, changed func()) *counters {
	c := &counters{vals: map[string]*atomic.Uint64{}, base: map[string]uint64{}, changed: changed}
	for _, name := range counterNames() {
		v := new(atomic.Uint64)
		v.Store(stored[name])
		c.vals[name] = v
		c.base[name] = stored[name]
	}
	c.saved = maps.Clone(c.base)
	return c
}

// add counts n more of name. A count of a rare event (a repair, a fault, a refused lock) is saved at once; a
// publish's result is saved with the version floor the publish moves, or within guardInterval: a flood of
// refused requests must not cost an fsync each.
func (c *counters) add(name string, n uint64) {
	c.vals[name].Add(n) // a name not in counterNames is a bug: it panics in every test that counts it
	if !strings.HasPrefix(name, counterPublishes) {
		c.changed()
	}
}

func (c *counters) inc(name string) { c.add(name, 1) }

// total is name's total for the service; thisGeneration is the part counted since New.
func (c *counters) total(name string) uint64          { return c.vals[name].Load() }
func (c *counters) thisGeneration(name string) uint64 { return c.total(name) - c.base[name] }

// snapshot returns every total.
func (c *counters) snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(c.vals))
	for name, v := range c.vals {
		out[name] = v.Load()
	}
	return out
}

// unsaved returns the totals when some differ from what the store holds, or nil.
func (c *counters) unsaved() map[string]uint64 {
	now := c.snapshot()
	c.mu.Lock()
	defer c.mu.Unlock()
	if maps.Equal(now, c.saved) {
		return nil
	}
	return now
}

// markSaved records totals as what the store holds now.
func (c *counters) markSaved(totals map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range totals {
		c.saved[name] = max(c.saved[name], v)
	}
}

// allSaved reports whether the store holds every total as it is now: a kill -9 now would lose no count.
func (c *counters) allSaved() bool { return c.unsaved() == nil }

// counterCollector exposes the counters to Prometheus, read at each scrape.
type counterCollector struct {
	c                                  *counters
	publishes, repairs, faults, mlocks *prometheus.Desc
}

func newCounterCollector(c *counters) *counterCollector {
	return &counterCollector{c: c,
		publishes: prometheus.NewDesc("announcementd_publishes_total",
			"Changes requested through the API, by result (ok, invalid, full, error); the service's total, across worker generations.", []string{"result"}, nil),
		repairs: prometheus.NewDesc("announcementd_region_repairs_total",
			"Problems of the region found and repaired, by kind (residency, fault, size, replaced, overwritten); the service's total, across worker generations.", []string{"kind"}, nil),
		faults: prometheus.NewDesc("announcementd_region_faults_recovered_total",
			"Faults (SIGBUS) on the region's mapping the writer caught, repaired and republished after; the service's total, across worker generations.", nil, nil),
		mlocks: prometheus.NewDesc("announcementd_mlock_failures_total",
			"Attempts to lock the region in memory that failed (at map time, then at most one per 10 s while it does not hold); the service's total, across worker generations.", nil, nil),
	}
}

func (cc *counterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.publishes
	ch <- cc.repairs
	ch <- cc.faults
	ch <- cc.mlocks
}

func (cc *counterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range publishResults {
		ch <- prometheus.MustNewConstMetric(cc.publishes, prometheus.CounterValue, float64(cc.c.total(counterPublishes+r)), r)
	}
	for _, k := range repairKinds {
		ch <- prometheus.MustNewConstMetric(cc.repairs, prometheus.CounterValue, float64(cc.c.total(counterRepairs+k)), k)
	}
	ch <- prometheus.MustNewConstMetric(cc.faults, prometheus.CounterValue, float64(cc.c.total(counterFaults)))
	ch <- prometheus.MustNewConstMetric(cc.mlocks, prometheus.CounterValue, float64(cc.c.total(counterMlock)))
}
