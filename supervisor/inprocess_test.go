package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/wire"
)

// In-process workers: the env seam (generation.go) with goroutines for processes. Each speaks the real handoff
// protocol over the real socketpair (handoff.Join, handoff.Serve), so the supervisor cannot tell; what it does is
// a behaviour the test chooses per generation. The state machine runs under t.Parallel, in milliseconds.

// behaviour is what an in-process worker does at each step.
type behaviour struct {
	standby      error    // Prepare's answer
	neverStandby bool     // Prepare blocks until killed
	ready        bool     // Start's answer: healthy or not
	crashOnReady bool     // the process ends right after its healthy Ready
	ignoreYield  bool     // Yield blocks until killed
	replace      *os.File // sent as the file "region" once serving, as a worker that recreated its region does
}

var healthy = behaviour{ready: true}

// inProcessEnv starts in-process workers; behave chooses generation n's behaviour.
type inProcessEnv struct {
	mu     sync.Mutex
	behave func(n uint64) behaviour
	procs  map[uint64]*inProc
}

func (e *inProcessEnv) env() env { return env{start: e.start} }

func (e *inProcessEnv) start(_ string, _, environ []string, handoffEnd *os.File) (process, error) {
	var n uint64
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, EnvGeneration+"="); ok {
			n, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	fd, err := syscall.Dup(int(handoffEnd.Fd())) // the supervisor closes its copy once start returns
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	e.mu.Lock()
	b := e.behave(n)
	p := &inProc{exited: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	if e.procs == nil {
		e.procs = map[uint64]*inProc{}
	}
	e.procs[n] = p
	e.mu.Unlock()
	go func() { p.end(p.run(os.NewFile(uintptr(fd), "handoff"), n, b)) }()
	return p, nil
}

// proc returns generation n's in-process worker.
func (e *inProcessEnv) proc(n uint64) *inProc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.procs[n]
}

var (
	errKilled  = errors.New("signal: killed")
	errCrashed = errors.New("exit status 5 (crashed on purpose)")
)

// inProc is one in-process worker: a goroutine, and the process interface over it.
type inProc struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	exited chan struct{}
	err    error
	calls  []string // what Serve asked, for the test; read after exited
}

func (p *inProc) Pid() int { return os.Getpid() } // the pid the kernel stamps on its messages
func (p *inProc) Kill() error {
	p.cancel(errKilled)
	return nil
}
func (p *inProc) Wait() error {
	<-p.exited
	return p.err
}

func (p *inProc) end(err error) {
	if cause := context.Cause(p.ctx); cause != nil {
		err = cause
	}
	p.err = err
	close(p.exited)
}

func (p *inProc) run(f *os.File, n uint64, b behaviour) error {
	c, err := handoff.FileConn(f)
	if err != nil {
		return err
	}
	_, files, err := handoff.Join(p.ctx, c, handoff.Hello{Role: handoff.RoleWorker, Generation: n, Build: fmt.Sprintf("inproc-%d", n)}, os.Getpid(), os.Getuid())
	if err != nil {
		c.Close()
		return err
	}
	files.Close()
	w := &inProcWorker{p: p, b: b}
	return handoff.Serve(p.ctx, c, w, handoff.ServeOptions{Sent: func(m handoff.Message) {
		if r, ok := m.(handoff.Ready); ok && r.Healthy && b.crashOnReady {
			p.cancel(errCrashed)
		}
		if r, ok := m.(handoff.Ready); ok && r.Healthy && b.replace != nil {
			go c.SendFiles(p.ctx, handoff.NamedFile{Name: "region", File: b.replace})
		}
	}})
}

type inProcWorker struct {
	p *inProc
	b behaviour
}

func (w *inProcWorker) Prepare(ctx context.Context) error {
	w.p.calls = append(w.p.calls, "prepare")
	if w.b.neverStandby {
		<-ctx.Done()
		return ctx.Err()
	}
	return w.b.standby
}

func (w *inProcWorker) Start(_ context.Context, m handoff.Start) handoff.Ready {
	w.p.calls = append(w.p.calls, "start "+m.Reason)
	if !w.b.ready {
		return handoff.Ready{Reason: "inproc: not ready"}
	}
	return handoff.Ready{Healthy: true, RegionVersion: m.VersionFloor + 1}
}

func (w *inProcWorker) Yield(ctx context.Context, m handoff.Yield) handoff.Yielded {
	w.p.calls = append(w.p.calls, "yield "+m.Reason)
	if w.b.ignoreYield {
		<-w.p.ctx.Done()
	}
	return handoff.Yielded{LastVersion: 100}
}

// machine is a supervisor with in-process workers and a record of its transitions.
type machine struct {
	t     *testing.T
	sup   *Supervisor
	env   *inProcessEnv
	ran   chan error
	stop  context.CancelFunc
	mu    sync.Mutex
	trans []Transition
	moved chan struct{} // poked at each transition
}

func newMachine(t *testing.T, behave func(n uint64) behaviour, tune ...func(*Config)) *machine {
	t.Helper()
	t.Parallel()
	region, err := os.Create(filepath.Join(t.TempDir(), "region"))
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t, env: &inProcessEnv{behave: behave}, ran: make(chan error, 1), moved: make(chan struct{}, 100)}
	cfg := Config{
		Binary: "in-process", Files: []handoff.NamedFile{{Name: "region", File: region}},
		ReadyTimeout: 2 * time.Second, DrainTimeout: time.Second, RestartBackoff: 10 * time.Millisecond, RestartLimit: 3,
		OnTransition: func(tr Transition) {
			m.mu.Lock()
			m.trans = append(m.trans, tr)
			m.mu.Unlock()
			m.moved <- struct{}{}
		},
	}
	for _, f := range tune {
		f(&cfg)
	}
	if m.sup, err = newSupervisor(cfg, m.env.env()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go func() { m.ran <- m.sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.ran:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return m
}

// path is the transitions so far, as "from→to (reason)".
func (m *machine) path() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p []string
	for _, tr := range m.trans {
		p = append(p, fmt.Sprintf("%s→%s (%s)", tr.From, tr.To, tr.Reason))
	}
	return p
}

// waitState waits until the supervisor has entered state n times in all.
func (m *machine) waitState(state State, n int) {
	m.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		m.mu.Lock()
		seen := 0
		for _, tr := range m.trans {
			if tr.To == state {
				seen++
			}
		}
		m.mu.Unlock()
		if seen >= n {
			return
		}
		select {
		case <-m.moved:
		case <-deadline:
			m.t.Fatalf("waited for %s (×%d); the path so far: %q", state, n, m.path())
		}
	}
}

func (m *machine) expectPath(want ...string) {
	m.t.Helper()
	if got := m.path(); !slices.Equal(got, want) {
		m.t.Fatalf("path %q\nwant %q", got, want)
	}
}

func (m *machine) reload() wire.ReloadResult {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := m.sup.Reload(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	return res
}

func TestMachineFirstReloadStop(t *testing.T) {
	m := newMachine(t, func(uint64) behaviour { return healthy })
	m.waitState(StateServing, 1)
	if res := m.reload(); res.Outcome != wire.OutcomeServing || res.From != 1 || res.To != 2 {
		t.Fatalf("reload: %+v", res)
	}
	if st := m.sup.Status(); st.State != string(StateServing) || len(st.Generations) != 1 || st.Generations[0].Generation != 2 {
		t.Fatalf("status after the reload: %+v", st)
	}
	m.stop()
	if err := <-m.ran; err != nil {
		t.Fatal(err)
	}
	m.ran <- nil // for the cleanup
	m.expectPath("starting→serving (first)", "serving→reloading (reload)", "reloading→serving (reload)",
		"serving→stopping (stop)", "stopping→stopped (stop)")
	if got := m.env.proc(2).calls; !slices.Equal(got, []string{"prepare", "start reload", "yield shutdown"}) {
		t.Fatalf("generation 2 was asked %q", got)
	}
	if tr := m.trans[2]; tr.Reload == nil || tr.Reload.Outcome != wire.OutcomeServing || tr.Generation != 2 {
		t.Fatalf("the reload's transition: %+v", tr)
	}
}

// A reload whose new generation fails before Start goes back to serving with the old one; one that fails after
// Start rolls back; one whose old generation cannot serve again either ends in restarting.
func TestMachineReloadFailures(t *testing.T) {
	cases := []struct {
		name    string
		gen2    behaviour
		outcome string
		path    []string
	}{
		{"unhealthy standby", behaviour{standby: errors.New("inproc: no state dir")}, wire.OutcomeFailed,
			[]string{"starting→serving (first)", "serving→reloading (reload)", "reloading→serving (reload failed)"}},
		{"unhealthy ready", behaviour{}, wire.OutcomeRolledBack,
			[]string{"starting→serving (first)", "serving→reloading (reload)", "reloading→serving (rollback)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMachine(t, func(n uint64) behaviour {
				if n == 2 {
					return c.gen2
				}
				return healthy
			})
			m.waitState(StateServing, 1)
			res := m.reload()
			if res.Outcome != c.outcome || res.OK {
				t.Fatalf("reload: %+v", res)
			}
			m.expectPath(c.path...)
			if st := m.sup.Status(); st.State != string(StateServing) || st.Generations[0].Generation != 1 || st.LastReload.Outcome != c.outcome {
				t.Fatalf("status: %+v", st)
			}
		})
	}
	t.Run("rollback fails", func(t *testing.T) {
		m := newMachine(t, func(n uint64) behaviour {
			switch n {
			case 1:
				return behaviour{ready: true, ignoreYield: true} // killed at the drain deadline
			case 2:
				return behaviour{}
			}
			return healthy
		}, func(c *Config) { c.DrainTimeout = 50 * time.Millisecond })
		m.waitState(StateServing, 1)
		res := m.reload()
		if res.OK || !strings.Contains(res.Reason, "the old generation is gone too") {
			t.Fatalf("reload: %+v", res)
		}
		m.waitState(StateServing, 2) // restarted: generation 3
		if p := m.path(); p[2] != "reloading→restarting (reload failed)" || p[3] != "restarting→serving (restart)" {
			t.Fatalf("path %q", p)
		}
		if st := m.sup.Status(); st.Generations[0].Generation < 3 {
			t.Fatalf("status: %+v", st)
		}
	})
}

// Crashes restart; a crash loop past the limit stops the supervisor with ErrGaveUp; a successful reload in between
// starts a new streak.
func TestMachineCrashes(t *testing.T) {
	t.Run("crash loop", func(t *testing.T) {
		m := newMachine(t, func(uint64) behaviour { return behaviour{ready: true, crashOnReady: true} })
		err := <-m.ran
		m.ran <- err
		if !errors.Is(err, ErrGaveUp) {
			t.Fatalf("Run: %v", err)
		}
		p := m.path()
		if p[0] != "starting→serving (first)" || p[len(p)-1] != "restarting→stopped (gave up)" || len(p) != 2+2*3+1 {
			t.Fatalf("path %q", p)
		}
		if st := m.sup.Status(); st.State != string(StateStopped) || st.Restarts != 4 {
			t.Fatalf("status: %+v", st)
		}
	})
	t.Run("a reload starts a new streak", func(t *testing.T) {
		var mu sync.Mutex
		crashing := true
		m := newMachine(t, func(n uint64) behaviour {
			mu.Lock()
			defer mu.Unlock()
			return behaviour{ready: true, crashOnReady: crashing && n <= 3}
		})
		m.waitState(StateServing, 4) // 1, then restarts 2, 3 crash; 4 serves
		mu.Lock()
		crashing = false
		mu.Unlock()
		if st := m.sup.Status(); st.CrashesInARow != 3 {
			t.Fatalf("crashes in a row: %d", st.CrashesInARow)
		}
		if res := m.reload(); !res.OK {
			t.Fatalf("reload: %+v", res)
		}
		if st := m.sup.Status(); st.CrashesInARow != 0 {
			t.Fatalf("crashes in a row after a reload that served: %d", st.CrashesInARow)
		}
	})
}

// A stop during the restart backoff ends Run at once, with nil.
func TestMachineStopWhileRestarting(t *testing.T) {
	m := newMachine(t, func(n uint64) behaviour { return behaviour{ready: true, crashOnReady: n == 1} },
		func(c *Config) { c.RestartBackoff = time.Hour })
	m.waitState(StateRestarting, 1)
	m.stop()
	if err := <-m.ran; err != nil {
		t.Fatal(err)
	}
	m.ran <- nil
	m.expectPath("starting→serving (first)", "serving→restarting (crash)", "restarting→stopped (stop)")
}

// A generation that never reaches standby is killed at the deadline; the first start failing stops Run with its
// error.
func TestMachineFirstStartFails(t *testing.T) {
	m := newMachine(t, func(uint64) behaviour { return behaviour{neverStandby: true} },
		func(c *Config) { c.ReadyTimeout = 100 * time.Millisecond })
	err := <-m.ran
	m.ran <- err
	if err == nil || !strings.Contains(err.Error(), "standby") {
		t.Fatalf("Run: %v", err)
	}
	m.expectPath("starting→stopped (failed: " + err.Error() + ")")
	if !errors.Is(m.env.proc(1).err, errKilled) {
		t.Fatalf("the generation that never came: %v", m.env.proc(1).err)
	}
}

// Reloads asked for while one runs share the next one.
func TestMachineReloadsCoalesce(t *testing.T) {
	m := newMachine(t, func(uint64) behaviour { return healthy })
	m.waitState(StateServing, 1)
	var wg sync.WaitGroup
	results := make([]wire.ReloadResult, 8)
	for i := range results {
		wg.Go(func() { results[i] = m.reload() })
	}
	wg.Wait()
	reloads := 0
	for _, p := range m.path() {
		if strings.HasPrefix(p, "serving→reloading") {
			reloads++
		}
	}
	if reloads >= len(results) || reloads < 1 {
		t.Fatalf("%d reload requests made %d reloads", len(results), reloads)
	}
	for _, r := range results {
		if !r.OK {
			t.Fatalf("a reload: %+v", r)
		}
	}
}

// Every edge the loop took is in the transitions table (enter would have panicked otherwise), and every state but
// stopped has a way out.
func TestTransitionsTable(t *testing.T) {
	t.Parallel()
	for _, s := range []State{StateStarting, StateServing, StateReloading, StateUpgrading, StateRestarting, StateStopping} {
		if len(transitions[s]) == 0 {
			t.Errorf("%s has no way out", s)
		}
	}
	if len(transitions[StateStopped]) != 0 {
		t.Error("stopped is not final")
	}
}

// docs/SUPERVISOR.md's state diagram has exactly the edges of the transitions table.
func TestStateDiagramMatchesTheTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/SUPERVISOR.md")
	if err != nil {
		t.Fatal(err)
	}
	_, diagram, ok := strings.Cut(string(b), "```mermaid\nstateDiagram-v2\n")
	diagram, _, _ = strings.Cut(diagram, "```")
	if !ok {
		t.Fatal("no state diagram in docs/SUPERVISOR.md")
	}
	var doc, code []string
	for _, line := range strings.Split(diagram, "\n") {
		from, to, ok := strings.Cut(strings.TrimSpace(line), " --> ")
		to, _, _ = strings.Cut(to, ":")
		if ok && from != "[*]" && to != "[*]" {
			doc = append(doc, from+"→"+strings.TrimSpace(to))
		}
	}
	for from, tos := range transitions {
		for _, to := range tos {
			code = append(code, string(from)+"→"+string(to))
		}
	}
	slices.Sort(doc)
	slices.Sort(code)
	if !slices.Equal(slices.Compact(doc), code) {
		t.Fatalf("the diagram's edges %q\nthe table's %q", doc, code)
	}
}
