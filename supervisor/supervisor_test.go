package supervisor

// Tests with real processes: every worker is the test binary re-executed as a fake worker (helpers_test.go) that
// speaks the real handoff protocol, receives the region file by SCM_RIGHTS and writes into it. The tests assert
// outcomes and counts, never timings; the timeouts they set only make the failure cases short.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/wire"
)

func reload(t *testing.T, h *harness) wire.ReloadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := h.sup.Reload(ctx)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return res
}

func checkResult(t *testing.T, res wire.ReloadResult, ok bool, outcome string, from, to uint64) {
	t.Helper()
	if res.OK != ok || res.Outcome != outcome || res.Kind != "reload" || res.From != from || res.To != to {
		t.Errorf("reload result %+v; want ok %v, outcome %q, kind reload, from %d to %d", res, ok, outcome, from, to)
	}
	if ok != (res.Reason == "") {
		t.Errorf("reload result reason %q with ok %v", res.Reason, ok)
	}
}

func checkLastReload(t *testing.T, st wire.SupervisorStatus, want wire.ReloadResult) {
	t.Helper()
	if st.LastReload == nil {
		t.Fatalf("status has no last reload; want %+v", want)
	}
	if got := *st.LastReload; got.Outcome != want.Outcome || got.OK != want.OK || got.From != want.From || got.To != want.To || got.Reason != want.Reason {
		t.Errorf("status last reload %+v; want %+v", got, want)
	}
}

func checkMessages(t *testing.T, h *harness, gen uint64, want ...string) {
	t.Helper()
	if got := h.messages(gen); !slices.Equal(got, want) {
		t.Errorf("generation %d received %q; want %q", gen, got, want)
	}
}

func checkRegion(t *testing.T, h *harness, want ...string) {
	t.Helper()
	if got := h.regionLines(); !slices.Equal(got, want) {
		t.Errorf("the region file says %q; want %q", got, want)
	}
}

// checkChildren fails unless the live child processes are exactly want.
func checkChildren(t *testing.T, want ...int) {
	t.Helper()
	slices.Sort(want)
	if got := children(); !slices.Equal(got, want) {
		t.Errorf("child processes %v; want %v", got, want)
	}
}

func checkGone(t *testing.T, what string, pid int) {
	t.Helper()
	if pid == 0 {
		t.Errorf("%s: no pid recorded", what)
	} else if !gone(pid) {
		t.Errorf("%s (pid %d) is still there", what, pid)
	}
}

func TestFirstGenerationAndShutdown(t *testing.T) {
	h := newHarness(t, nil)
	pid := h.start()

	st := h.sup.Status()
	g := serving(t, st)
	if g.Generation != 1 || g.PID != pid || g.Build != "fake-1" || g.PID != h.pidOf(1) {
		t.Errorf("serving %+v; want generation 1, pid %d (the fake's), build fake-1", g, h.pidOf(1))
	}
	if st.PID != os.Getpid() || st.Build != "test-supervisor" || st.Binary != h.sup.cfg.Binary || st.Restarts != 0 || st.LastReload != nil {
		t.Errorf("status %+v", st)
	}
	checkChildren(t, pid)

	if err := h.stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	checkMessages(t, h, 1, "files region", "standby", "start first", "ready", "yield shutdown", "eof")
	checkRegion(t, h, "generation 1 start first")
	checkGone(t, "the worker", pid)
	checkChildren(t)
	if st := h.sup.Status(); len(st.Generations) != 0 {
		t.Errorf("after Run: live generations %+v", st.Generations)
	}
	if _, err := h.sup.Reload(context.Background()); err == nil {
		t.Errorf("Reload after Run returned: no error")
	}
}

// Run fails, and leaves nothing behind, when the first generation cannot start.
func TestFirstGenerationFails(t *testing.T) {
	t.Run("no binary", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Binary = filepath.Join(c.WorkerArgs[1], "missing") })
		h.run()
		if err := h.wait(); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Run: %v; want the binary's absence", err)
		}
		checkChildren(t)
	})
	for _, mode := range []string{modeExit, modeUnhealthyStandby, modeUnhealthyReady} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.setMode(1, mode)
			h.run()
			if err := h.wait(); err == nil || errors.Is(err, ErrGaveUp) {
				t.Errorf("Run: %v; want the first generation's failure", err)
			}
			checkGone(t, "the worker", h.pidOf(1))
			checkChildren(t)
			if got := h.generations(); !slices.Equal(got, []uint64{1}) {
				t.Errorf("generations started: %v; want [1]", got)
			}
		})
	}
}

// A first generation killed on its way to serving (kill -9 from outside) is a crash: the supervisor restarts it
// (starting → restarting → serving) instead of giving up the start; the pid file and READY=1 come with the
// generation that serves. (It exited 1, and the storm saw the service stop under a kill -9 of a new worker.)
func TestFirstGenerationKilledIsACrash(t *testing.T) {
	h := newHarness(t, nil)
	h.setMode(1, modeKilled)
	h.start()
	st := h.sup.Status()
	if g := serving(t, st); g.Generation != 2 || st.Restarts != 0 || st.CrashesInARow != 1 {
		t.Fatalf("after the first generation was killed: serving %+v, restarts %d, crashes in a row %d", g, st.Restarts, st.CrashesInARow)
	}
	if got := h.generations(); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("generations started: %v; want [1 2]", got)
	}
}

func TestReload(t *testing.T) {
	h := newHarness(t, nil)
	pid1 := h.start()

	res := reload(t, h)
	checkResult(t, res, true, wire.OutcomeServing, 1, 2)
	if res.Build != "fake-2" {
		t.Errorf("result build %q, want fake-2", res.Build)
	}
	st := h.sup.Status()
	g := serving(t, st)
	if g.Generation != 2 || g.PID != h.pidOf(2) || g.Build != "fake-2" {
		t.Errorf("serving %+v; want generation 2 (pid %d)", g, h.pidOf(2))
	}
	checkLastReload(t, st, res)
	checkGone(t, "generation 1", pid1)
	checkChildren(t, g.PID)
	checkMessages(t, h, 1, "files region", "standby", "start first", "ready", "yield reload", "eof")
	checkMessages(t, h, 2, "files region", "standby", "start reload", "ready")

	res = reload(t, h)
	checkResult(t, res, true, wire.OutcomeServing, 2, 3)
	pid3 := serving(t, h.sup.Status()).PID
	checkChildren(t, pid3)

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	checkRegion(t, h, "generation 1 start first", "generation 2 start reload", "generation 3 start reload")
	checkMessages(t, h, 3, "files region", "standby", "start reload", "ready", "yield shutdown", "eof")
	checkChildren(t)
}

// A new generation that fails before Start leaves the old one serving, untouched: it never gets a Yield.
func TestReloadFailsBeforeStart(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		reason string // in the result's reason
		gen2   []string
	}{
		// A worker that exits before the handshake may leave the supervisor's Hello unread: the supervisor then sees
		// ECONNRESET, not end-of-file, and the reason names the step rather than the exit status.
		{modeExit, "generation 2", nil},
		{modeNoStandby, "standby", []string{"files region", "eof"}},
		{modeUnhealthyStandby, "fake: unhealthy standby", []string{"files region", "eof"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				if tc.mode == modeNoStandby {
					c.ReadyTimeout = 2 * time.Second // the whole wait of this case
				}
			})
			pid1 := h.start()
			h.setMode(2, tc.mode)

			res := reload(t, h)
			checkResult(t, res, false, wire.OutcomeFailed, 1, 2)
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q; want it to mention %q", res.Reason, tc.reason)
			}
			st := h.sup.Status()
			if g := serving(t, st); g.Generation != 1 || g.PID != pid1 {
				t.Errorf("serving %+v; want generation 1 (pid %d) still", g, pid1)
			}
			checkLastReload(t, st, res)
			checkGone(t, "the failed generation", h.pidOf(2))
			checkChildren(t, pid1)
			// The old generation never stopped: no Yield, no second Start.
			checkMessages(t, h, 1, "files region", "standby", "start first", "ready")
			if tc.gen2 != nil {
				// Killed by the supervisor, it may not have had the time to record the end-of-file.
				if got := h.messages(2); !slices.Equal(got, tc.gen2) && !slices.Equal(got, tc.gen2[:len(tc.gen2)-1]) {
					t.Errorf("generation 2 received %q; want %q", got, tc.gen2)
				}
			}
			if st.Restarts != 0 {
				t.Errorf("restarts %d; a failed reload is no crash", st.Restarts)
			}

			// The supervisor goes on: the next reload works.
			res = reload(t, h)
			checkResult(t, res, true, wire.OutcomeServing, 1, 3)
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			checkMessages(t, h, 1, "files region", "standby", "start first", "ready", "yield reload", "eof")
			checkRegion(t, h, "generation 1 start first", "generation 3 start reload")
			checkChildren(t)
		})
	}
}

// While the old generation yields, Status shows both; a stop asked for meanwhile waits for the reload to end.
func TestStopWaitsForReload(t *testing.T) {
	h := newHarness(t, nil)
	h.setMode(1, modeGatedYield)
	pid1 := h.start()

	type answer struct {
		res wire.ReloadResult
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		res, err := h.sup.Reload(context.Background())
		answered <- answer{res, err}
	}()
	st := h.waitStatus("generation 2 in standby", func(st wire.SupervisorStatus) bool { return len(st.Generations) == 2 })
	if g := st.Generations; g[0].Generation != 1 || g[0].State != "serving" || g[0].PID != pid1 ||
		g[1].Generation != 2 || g[1].State != "standby" || g[1].PID != h.pidOf(2) || g[1].Build != "fake-2" {
		t.Errorf("during the reload: generations %+v", g)
	}
	checkChildren(t, pid1, h.pidOf(2))

	// Generation 1 is yielding now (it recorded the Yield before it waits for the gate). Stop, then let it go on.
	h.waitFor("generation 1 to get the yield", func() bool { return slices.Contains(h.messages(1), "yield reload") })
	h.cancel()
	h.openGate()
	if err := h.wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	a := <-answered
	if a.err != nil {
		t.Fatalf("Reload: %v", a.err)
	}
	checkResult(t, a.res, true, wire.OutcomeServing, 1, 2)
	checkMessages(t, h, 1, "files region", "standby", "start first", "ready", "yield reload", "gate open", "eof")
	// The new generation was started, served, and then stopped by the shutdown.
	checkMessages(t, h, 2, "files region", "standby", "start reload", "ready", "yield shutdown", "eof")
	checkRegion(t, h, "generation 1 start first", "generation 2 start reload")
	checkChildren(t)
}

// A new generation that fails after Start is killed, and the old one is started again.
func TestReloadRollsBack(t *testing.T) {
	for _, tc := range []struct{ mode, reason string }{
		{modeUnhealthyReady, "fake: unhealthy ready"},
		{modeExitOnStart, "exit status 4"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := newHarness(t, nil)
			pid1 := h.start()
			h.setMode(2, tc.mode)

			res := reload(t, h)
			checkResult(t, res, false, wire.OutcomeRolledBack, 1, 2)
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q; want it to mention %q", res.Reason, tc.reason)
			}
			st := h.sup.Status()
			if g := serving(t, st); g.Generation != 1 || g.PID != pid1 {
				t.Errorf("serving %+v; want generation 1 (pid %d) again", g, pid1)
			}
			checkLastReload(t, st, res)
			checkGone(t, "the failed generation", h.pidOf(2))
			checkChildren(t, pid1)
			checkMessages(t, h, 1, "files region", "standby", "start first", "ready", "yield reload", "start rollback", "ready")
			if got := h.messages(2); len(got) < 3 || !slices.Equal(got[:3], []string{"files region", "standby", "start reload"}) {
				t.Errorf("generation 2 received %q; want files, standby, start reload", got)
			}
			checkRegion(t, h, "generation 1 start first", "generation 1 start rollback")
			if st.Restarts != 0 {
				t.Errorf("restarts %d; a rollback is no crash", st.Restarts)
			}

			// The rolled-back generation serves for real: it yields to the next reload.
			res = reload(t, h)
			checkResult(t, res, true, wire.OutcomeServing, 1, 3)
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			checkRegion(t, h, "generation 1 start first", "generation 1 start rollback", "generation 3 start reload")
			checkChildren(t)
		})
	}
}

// An old generation that never answers Yield is killed after DrainTimeout, and the new one serves.
func TestReloadKillsAWorkerThatDoesNotYield(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	h.setMode(1, modeIgnoreYield)
	pid1 := h.start()

	res := reload(t, h)
	checkResult(t, res, true, wire.OutcomeServing, 1, 2)
	g := serving(t, h.sup.Status())
	if g.Generation != 2 || g.PID != h.pidOf(2) {
		t.Errorf("serving %+v; want generation 2", g)
	}
	checkGone(t, "generation 1", pid1)
	checkChildren(t, g.PID)
	if got := h.messages(1); len(got) < 4 || !slices.Equal(got[:4], []string{"files region", "standby", "start first", "ready"}) || slices.Contains(got, "start rollback") {
		t.Errorf("generation 1 received %q", got)
	}
	checkMessages(t, h, 2, "files region", "standby", "start reload", "ready")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	checkRegion(t, h, "generation 1 start first", "generation 2 start reload")
	checkChildren(t)
}

// The old generation did not yield and was killed, and the new one fails once started: there is nothing to roll
// back to, the reload failed, and the supervisor starts a fresh generation.
func TestReloadWithNothingToRollBackTo(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	h.setMode(1, modeIgnoreYield)
	h.setMode(2, modeUnhealthyReady)
	pid1 := h.start()

	res := reload(t, h)
	checkResult(t, res, false, wire.OutcomeFailed, 1, 2)
	if !strings.Contains(res.Reason, "fake: unhealthy ready") || !strings.Contains(res.Reason, "restarting") {
		t.Errorf("reason %q", res.Reason)
	}
	st := h.waitStatus("generation 3 serving", func(st wire.SupervisorStatus) bool {
		return len(st.Generations) == 1 && st.Generations[0].Generation == 3 && st.Generations[0].State == "serving"
	})
	checkLastReload(t, st, res)
	checkGone(t, "generation 1", pid1)
	checkGone(t, "generation 2", h.pidOf(2))
	checkChildren(t, st.Generations[0].PID)
	if slices.Contains(h.messages(1), "start rollback") {
		t.Errorf("the killed generation 1 was started again: %q", h.messages(1))
	}
	checkMessages(t, h, 3, "files region", "standby", "start restart", "ready")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	checkRegion(t, h, "generation 1 start first", "generation 3 start restart")
	checkChildren(t)
}

// A serving worker killed from outside is replaced by a new generation.
func TestCrashRestart(t *testing.T) {
	h := newHarness(t, nil)
	pid1 := h.start()
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := h.waitStatus("generation 2 serving", func(st wire.SupervisorStatus) bool {
		return len(st.Generations) == 1 && st.Generations[0].Generation == 2 && st.Generations[0].State == "serving"
	})
	g := st.Generations[0]
	if st.Restarts != 1 || g.PID == pid1 || g.PID != h.pidOf(2) || st.LastReload != nil {
		t.Errorf("after the crash: %+v; want 1 restart, generation 2 with pid %d, no reload", st, h.pidOf(2))
	}
	checkGone(t, "generation 1", pid1)
	checkChildren(t, g.PID)
	checkMessages(t, h, 2, "files region", "standby", "start restart", "ready")

	// The restarted generation is an ordinary one: it reloads.
	res := reload(t, h)
	checkResult(t, res, true, wire.OutcomeServing, 2, 3)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if st := h.sup.Status(); st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	checkRegion(t, h, "generation 1 start first", "generation 2 start restart", "generation 3 start reload")
	checkChildren(t)
}

// Workers that crash every time: Run gives up after RestartLimit restarts.
func TestCrashLoopGivesUp(t *testing.T) {
	const limit = 2
	h := newHarness(t, func(c *Config) { c.RestartLimit = limit })
	h.setMode(0, modeCrashAfterReady)
	h.run()
	err := h.wait()
	if !errors.Is(err, ErrGaveUp) {
		t.Fatalf("Run: %v; want ErrGaveUp", err)
	}
	// Generation 1, then one restart per crash up to the limit; the crash past the limit is not restarted.
	if got, want := h.generations(), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("generations started %v; want %v", got, want)
	}
	if st := h.sup.Status(); st.Restarts != limit+1 || len(st.Generations) != 0 {
		t.Errorf("status %+v; want %d restarts, no live generation", st, limit+1)
	}
	for _, gen := range h.generations() {
		checkGone(t, fmt.Sprintf("generation %d", gen), h.pidOf(gen))
	}
	checkChildren(t)
}

// Workers that cannot even start after a crash count as crashes too.
func TestCrashThenRestartsFail(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RestartLimit = 2 })
	pid1 := h.start()
	h.setMode(0, modeExit) // every later generation
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := h.wait(); !errors.Is(err, ErrGaveUp) {
		t.Fatalf("Run: %v; want ErrGaveUp", err)
	}
	if got, want := h.generations(), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("generations started %v; want %v", got, want)
	}
	if st := h.sup.Status(); st.Restarts != 1 {
		t.Errorf("restarts %d; want 1 (the one crash of a serving worker)", st.Restarts)
	}
	checkChildren(t)
}

// Reloads asked for at once all succeed, share reloads, and never have more than two workers alive.
func TestConcurrentReloads(t *testing.T) {
	h := newHarness(t, nil)
	h.start()

	// Watch the children while the reloads run.
	var peak int
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			peak = max(peak, len(children()))
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	const n = 5
	results := make([]wire.ReloadResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			results[i], errs[i] = h.sup.Reload(ctx)
		})
	}
	close(gate)
	wg.Wait()
	close(stopWatch)
	<-watched

	ran := map[uint64]bool{} // the reloads that ran, by their new generation
	for i := range n {
		if errs[i] != nil || !results[i].OK || results[i].Outcome != wire.OutcomeServing {
			t.Errorf("reload %d: %+v, %v", i, results[i], errs[i])
		}
		ran[results[i].To] = true
	}
	g := serving(t, h.sup.Status())
	advanced := int(g.Generation - 1)
	if advanced < 1 || advanced > n {
		t.Errorf("the generation advanced by %d for %d reloads asked at once; want 1 to %d", advanced, n, n)
	}
	if len(ran) != advanced {
		t.Errorf("results name %d new generations, but the generation advanced by %d", len(ran), advanced)
	}
	t.Logf("%d reload requests, %d reloads", n, advanced)
	if got := h.generations(); len(got) != advanced+1 {
		t.Errorf("generations started %v; want %d", got, advanced+1)
	}
	if peak > 2 {
		t.Errorf("%d workers were alive at once; at most 2 may be", peak)
	}
	for _, gen := range h.generations() {
		for _, r := range h.records(gen) {
			if s, ok := strings.CutPrefix(r, "siblings "); ok && s != "1" && s != "2" {
				t.Errorf("generation %d started with %s workers alive (itself included); at most 2 may be", gen, s)
			}
		}
	}
	checkChildren(t, g.PID)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	checkChildren(t)
}

// The test process ends with the fds it started with, whatever the reloads did.
func TestNoFdLeak(t *testing.T) {
	// Warm up: whatever the runtime or os/exec open once and keep (the poller...) is open before counting.
	warm := newHarness(t, nil)
	warm.start()
	reload(t, warm)
	if err := warm.stop(); err != nil {
		t.Fatal(err)
	}

	// The binary is a symlink, so that it can go missing for one reload.
	var link, bin string
	h := newHarness(t, func(c *Config) {
		bin, link = c.Binary, filepath.Join(c.WorkerArgs[1], "worker-binary")
		c.Binary = link
	})
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	before := openFds(t)
	h.start()
	checkResult(t, reload(t, h), true, wire.OutcomeServing, 1, 2)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if res := reload(t, h); res.OK || res.Outcome != wire.OutcomeFailed || !strings.Contains(res.Reason, "no such file") {
		t.Errorf("reload without a binary: %+v", res)
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	h.setMode(4, modeExit)
	checkResult(t, reload(t, h), false, wire.OutcomeFailed, 2, 4)
	h.setMode(5, modeUnhealthyStandby)
	checkResult(t, reload(t, h), false, wire.OutcomeFailed, 2, 5)
	h.setMode(6, modeUnhealthyReady)
	checkResult(t, reload(t, h), false, wire.OutcomeRolledBack, 2, 6)
	h.setMode(7, modeExitOnStart)
	checkResult(t, reload(t, h), false, wire.OutcomeRolledBack, 2, 7)
	if err := syscall.Kill(serving(t, h.sup.Status()).PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("generation 8 serving", func(st wire.SupervisorStatus) bool {
		return len(st.Generations) == 1 && st.Generations[0].Generation == 8
	})
	checkResult(t, reload(t, h), true, wire.OutcomeServing, 8, 9)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	checkChildren(t)

	after := openFds(t)
	for target, n := range after {
		if n > before[target] {
			t.Errorf("fds leaked: %d more of %s", n-before[target], target)
		}
	}
	if t.Failed() {
		t.Logf("before: %v\nafter: %v", before, after)
	}
}

func TestControlHandler(t *testing.T) {
	h := newHarness(t, nil)
	pid1 := h.start()
	ts := httptest.NewServer(ControlHandler(h.sup))
	defer ts.Close()

	do := func(method, path string, wantCode int, into any) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantCode {
			t.Fatalf("%s %s: %d %s; want %d", method, path, resp.StatusCode, body, wantCode)
		}
		if into != nil {
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: content type %q", method, path, ct)
			}
			if err := json.Unmarshal(body, into); err != nil {
				t.Fatalf("%s %s: %v in %s", method, path, err, body)
			}
		}
	}

	var st wire.SupervisorStatus
	do("GET", "/v1/status", http.StatusOK, &st)
	if g := serving(t, st); g.Generation != 1 || g.PID != pid1 || st.PID != os.Getpid() || st.Build != "test-supervisor" {
		t.Errorf("status %+v", st)
	}

	var res wire.ReloadResult
	do("POST", "/v1/reload?wait=1", http.StatusOK, &res)
	checkResult(t, res, true, wire.OutcomeServing, 1, 2)

	// Every error is a wire.Error, {"error": message, "code": code}, as on the API. (It was
	// {"error": {"code", "message"}} here, and 404 and 405 were net/http's plain text.)
	var apiErr wire.Error
	do("POST", "/v1/reload?wait=bogus", http.StatusBadRequest, &apiErr)
	if apiErr.Code != "bad_request" || apiErr.Message == "" {
		t.Errorf("wait=bogus: %+v", apiErr)
	}
	apiErr = wire.Error{}
	do("GET", "/v1/reload", http.StatusMethodNotAllowed, &apiErr)
	if apiErr.Code != "method_not_allowed" {
		t.Errorf("GET /v1/reload: %+v", apiErr)
	}
	apiErr = wire.Error{}
	do("POST", "/v1/status", http.StatusMethodNotAllowed, &apiErr)
	if apiErr.Code != "method_not_allowed" {
		t.Errorf("POST /v1/status: %+v", apiErr)
	}
	apiErr = wire.Error{}
	do("GET", "/v2/nothing", http.StatusNotFound, &apiErr)
	if apiErr.Code != "not_found" {
		t.Errorf("GET /v2/nothing: %+v", apiErr)
	}
	st = wire.SupervisorStatus{}
	do("GET", "/v1/status", http.StatusOK, &st)
	if g := serving(t, st); g.Generation != 2 || st.LastReload == nil || st.LastReload.To != 2 {
		t.Errorf("after a bad request, status %+v; want generation 2 and the last reload to 2", st)
	}

	// Without wait: accepted at once, done in the background.
	var accepted wire.ReloadAccepted
	do("POST", "/v1/reload", http.StatusAccepted, &accepted)
	if !accepted.Accepted {
		t.Errorf("reload without wait: %v", accepted)
	}
	h.waitStatus("the background reload", func(st wire.SupervisorStatus) bool {
		return st.LastReload != nil && st.LastReload.To == 3 && len(st.Generations) == 1 && st.Generations[0].Generation == 3
	})

	// A failed reload is a 200 with ok false and the reason.
	h.setMode(4, modeUnhealthyStandby)
	res = wire.ReloadResult{}
	do("POST", "/v1/reload?wait=true", http.StatusOK, &res)
	checkResult(t, res, false, wire.OutcomeFailed, 3, 4)

	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	apiErr = wire.Error{}
	do("POST", "/v1/reload?wait=1", http.StatusServiceUnavailable, &apiErr)
	if apiErr.Code != "unavailable" {
		t.Errorf("reload after Run: %+v", apiErr)
	}
	checkChildren(t)
}
