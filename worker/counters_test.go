package worker

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/store"
)

// generation is one worker on the store and board in dir, as a turn of the daemon opens them.
type generation struct {
	w    *Worker
	st   *store.Store
	bw   *writer.Writer
	stop context.CancelFunc
	ran  chan error
}

func openGeneration(t *testing.T, dir string) *generation {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	bw, err := writer.Open(filepath.Join(dir, "board"), writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	boardtest.CheckOnCleanup(t, bw.Path(), bw.Version)
	w, err := New(Config{Board: bw, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return &generation{w: w, st: st, bw: bw}
}

// run starts Run, which saves the counters when poked and at its end.
func (g *generation) run() {
	ctx, stop := context.WithCancel(context.Background())
	g.stop, g.ran = stop, make(chan error, 1)
	go func() { g.ran <- g.w.Run(ctx) }()
}

// end stops Run (its last save) and closes the board and the store, as a yield does.
func (g *generation) end(t *testing.T) {
	t.Helper()
	if g.stop != nil {
		g.stop()
		if err := <-g.ran; err != nil {
			t.Fatal(err)
		}
	}
	g.bw.Close()
	g.st.Close()
}

// truncate damages the board as `truncate -s 0` does; the next integrity check repairs it.
func truncate(t *testing.T, dir string) {
	t.Helper()
	if err := os.Truncate(filepath.Join(dir, "board"), 0); err != nil {
		t.Fatal(err)
	}
}

func repairsOf(w *Worker) (total uint64) {
	for _, n := range w.guardStatus().Repairs {
		total += n
	}
	return total
}

// The service's counts continue in the next generation on the same store: status' repairs and faults, and every
// counter of /metrics. (Before: each generation started them from zero.)
func TestCountersCarryAcrossGenerations(t *testing.T) {
	dir := t.TempDir()
	// Totals from earlier generations, of the counters this test cannot provoke here.
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Save(0, map[string]uint64{"faults_recovered": 2, "mlock_failures": 3, "repairs.fault": 2, "publishes.full": 4}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	g := openGeneration(t, dir)
	if s := g.w.guardStatus(); s.FaultsRecovered != 2 || s.Repairs[writer.DamageFault] != 2 || s.ThisGeneration.FaultsRecovered != 0 {
		t.Fatalf("the first generation does not start from the stored totals: %+v", s)
	}
	for id := uint64(1); id <= 2; id++ {
		if _, err := g.w.Apply([]announcement.Announcement{{ID: id, Content: "x"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	g.w.Handler("").ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/announcements/3", strings.NewReader(`{"content":"`+strings.Repeat("x", 300)+`"}`)))
	if rec.Code != 400 {
		t.Fatalf("an invalid PUT: %d", rec.Code)
	}
	truncate(t, dir)
	g.w.checkIntegrity()
	if got := g.w.guardStatus().Repairs[writer.DamageSize]; got != 1 {
		t.Fatalf("first generation: %d size repairs counted, want 1", got)
	}
	series := []string{
		`announcementd_publishes_total{result="ok"}`, `announcementd_publishes_total{result="invalid"}`,
		`announcementd_region_repairs_total{kind="size"}`, `announcementd_region_faults_recovered_total`,
		`announcementd_mlock_failures_total`, `announcementd_publishes_total{result="full"}`,
		`announcementd_region_repairs_total{kind="fault"}`,
	}
	before := map[string]float64{}
	for _, s := range series {
		before[s] = mustMetric(t, g.w, s)
	}
	if before[series[0]] != 2 || before[series[1]] != 1 || before[series[2]] != 1 || before[series[3]] != 2 ||
		before[series[4]] < 3 || before[series[5]] != 4 || before[series[6]] != 2 {
		t.Fatalf("first generation's metrics %v", before)
	}
	g.run()
	g.end(t) // Run's end saves

	for gen := 2; gen <= 3; gen++ {
		g = openGeneration(t, dir)
		if got := g.w.guardStatus().Repairs[writer.DamageSize]; got != 1 {
			t.Errorf("generation %d: status shows %d size repairs; want 1, the service's total", gen, got)
		}
		for _, s := range series {
			if got := mustMetric(t, g.w, s); got != before[s] {
				t.Errorf("generation %d: %s = %v; want %v, the service's total", gen, s, got, before[s])
			}
		}
		g.end(t) // without Run: nothing counted, nothing to save
	}
}

// A count is saved soon after it is made, without waiting for the end of the generation: a worker that dies
// without its last save (kill -9) loses none of the counts status showed as saved. Per generation counts are
// labelled so.
func TestCountersSavedBeforeAKill(t *testing.T) {
	dir := t.TempDir()
	g := openGeneration(t, dir)
	g.run()
	if !g.w.Status().CountersSaved {
		t.Fatalf("counters_saved is false before anything was counted")
	}
	truncate(t, dir) // the housekeeping goroutine finds it (or the heartbeat faults on it) and repairs it
	waitFor(t, "the repair counted and saved", func() bool { return repairsOf(g.w) == 1 && g.w.Status().CountersSaved })
	first := g.w.guardStatus()

	// "kill -9": the store goes away under the worker, which never gets to its last save.
	g.st.Close()
	g.stop()
	<-g.ran
	g.bw.Close()

	g = openGeneration(t, dir)
	defer g.end(t)
	s := g.w.Status()
	if repairsOf(g.w) != 1 || s.Guard.FaultsRecovered != first.FaultsRecovered || s.Guard.Repairs[writer.DamageFault] != first.Repairs[writer.DamageFault] {
		t.Errorf("after a kill: repairs %v, faults %d; want those saved before it: %v, %d", s.Guard.Repairs, s.Guard.FaultsRecovered, first.Repairs, first.FaultsRecovered)
	}
	for k, n := range s.Guard.ThisGeneration.Repairs {
		if n != 0 {
			t.Errorf("this_generation.repairs[%s] = %d in a generation that repaired nothing", k, n)
		}
	}
	if s.Guard.ThisGeneration.FaultsRecovered != 0 || !s.CountersSaved {
		t.Errorf("this_generation %+v, counters_saved %v", s.Guard.ThisGeneration, s.CountersSaved)
	}
	g.run()
	truncate(t, dir)
	waitFor(t, "the second generation's repair", func() bool { return repairsOf(g.w) == 2 })
	var this uint64
	for _, n := range g.w.guardStatus().ThisGeneration.Repairs {
		this += n
	}
	if this != 1 {
		t.Errorf("this generation counted %d repairs; want 1", this)
	}
}

// waitFor polls cond (the housekeeping goroutine acts on its own schedule) for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	proctest.WaitUntil(t, 20*time.Second, cond, what)
}

// A refused request is counted but does not ask for a save: a flood of them must not cost an fsync each. A repair
// does ask (it is rare, and worth keeping across a kill -9).
func TestRefusedRequestsDoNotPokeASave(t *testing.T) {
	w, _ := newWorker(t)
	for len(w.housework) > 0 { // what New left
		<-w.housework
	}
	for range 100 {
		if _, err := w.Apply([]announcement.Announcement{{ID: 0}}, nil); err == nil {
			t.Fatal("id 0 was accepted")
		}
	}
	if n := w.counters.total(counterPublishes + "invalid"); n != 100 || len(w.housework) != 0 {
		t.Fatalf("%d refusals counted, housework poked: %v", n, len(w.housework) != 0)
	}
	w.counters.inc(counterRepairs + RepairResidency)
	if len(w.housework) != 1 {
		t.Fatal("a repair did not ask for a save")
	}
}
