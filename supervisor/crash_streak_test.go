package supervisor

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/announcementd/announcementd/wire"
)

// crashServing kills the serving generation, which must be gen, and waits until the restarted one (gen+1) serves.
func crashServing(t *testing.T, h *harness, gen uint64) {
	t.Helper()
	g := serving(t, h.sup.Status())
	if g.Generation != gen {
		t.Fatalf("serving generation %d; want %d", g.Generation, gen)
	}
	if err := syscall.Kill(g.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("the restarted generation serving", func(st wire.SupervisorStatus) bool {
		return len(st.Generations) == 1 && st.Generations[0].Generation == gen+1 && st.Generations[0].State == "serving"
	})
}

// A reload that reaches serving starts a new crash streak: RestartLimit crashes, a successful reload, then
// RestartLimit crashes again, and the supervisor still serves. Every worker served before it was killed, so only
// the reload tells this apart from a crash loop. A true crash loop after that still gives up at the limit.
func TestSuccessfulReloadStartsANewCrashStreak(t *testing.T) {
	const limit = 3
	h := newHarness(t, func(c *Config) { c.RestartLimit = limit })
	h.start()
	gen := uint64(1)
	for range limit {
		crashServing(t, h, gen)
		gen++
	}
	if st := h.sup.Status(); st.CrashesInARow != limit || st.Restarts != limit {
		t.Fatalf("after %d crashes: %d in a row, %d restarts", limit, st.CrashesInARow, st.Restarts)
	}
	checkResult(t, reload(t, h), true, wire.OutcomeServing, gen, gen+1)
	gen++
	if st := h.sup.Status(); st.CrashesInARow != 0 {
		t.Fatalf("after a successful reload: %d crashes in a row; want 0", st.CrashesInARow)
	}
	for range limit {
		crashServing(t, h, gen)
		gen++
	}
	st := h.sup.Status()
	if st.CrashesInARow != limit || st.Restarts != 2*limit || serving(t, st).Generation != gen {
		t.Fatalf("after %d more crashes: %d in a row, %d restarts, %+v", limit, st.CrashesInARow, st.Restarts, st.Generations)
	}

	// A true crash loop: a reload to a healthy build resets the streak, then every worker dies right after it
	// serves. The supervisor restarts limit times and gives up at the crash past the limit.
	checkResult(t, reload(t, h), true, wire.OutcomeServing, gen, gen+1)
	gen++
	h.setMode(0, modeCrashAfterReady)
	crashed := serving(t, h.sup.Status()).PID
	if err := syscall.Kill(crashed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := h.wait()
	if !errors.Is(err, ErrGaveUp) || !strings.Contains(err.Error(), "4 times in a row (limit 3)") {
		t.Fatalf("Run: %v; want ErrGaveUp after 4 crashes in a row", err)
	}
	st = h.sup.Status()
	if st.Restarts != 2*limit+limit+1 || st.CrashesInARow != limit+1 || len(st.Generations) != 0 {
		t.Errorf("status %+v; want %d restarts, %d in a row, no live generation", st, 3*limit+1, limit+1)
	}
	if gens := h.generations(); gens[len(gens)-1] != gen+limit {
		t.Errorf("generations started %v; want the last to be %d (%d restarts after the kill)", gens, gen+limit, limit)
	}
	checkChildren(t)
}

// A rollback does not start a new streak: the old build serves again, and its crashes keep counting.
func TestRollbackKeepsTheCrashStreak(t *testing.T) {
	const limit = 2
	h := newHarness(t, func(c *Config) { c.RestartLimit = limit })
	h.start()
	gen := uint64(1)
	for range limit {
		crashServing(t, h, gen)
		gen++
	}
	h.setMode(gen+1, modeUnhealthyReady)
	checkResult(t, reload(t, h), false, wire.OutcomeRolledBack, gen, gen+1)
	h.setMode(gen+2, modeExit) // a reload that fails before its start leaves the streak alone as well
	checkResult(t, reload(t, h), false, wire.OutcomeFailed, gen, gen+2)
	if st := h.sup.Status(); st.CrashesInARow != limit || serving(t, st).Generation != gen {
		t.Fatalf("after a rollback and a failed reload: %d crashes in a row, %+v; want %d, generation %d serving", st.CrashesInARow, st.Generations, limit, gen)
	}
	h.setMode(0, modeCrashAfterReady)
	if err := syscall.Kill(serving(t, h.sup.Status()).PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := h.wait(); !errors.Is(err, ErrGaveUp) {
		t.Fatalf("Run: %v; want ErrGaveUp", err)
	}
	if st := h.sup.Status(); st.Restarts != limit+1 {
		t.Errorf("restarts %d; want %d", st.Restarts, limit+1)
	}
	checkChildren(t)
}
