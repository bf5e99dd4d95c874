package supervisor

// The fake worker and the harness of supervisor_test.go. The test binary re-executes itself as the worker: the
// supervisor starts `Binary worker -dir DIR` with Binary = the test binary and an environment that selects the
// proctest role "fake-worker" (Config.WorkerEnv), which runs fakeWorker. The fake speaks the real handoff protocol.
//
// What a fake does is chosen by files in DIR that the test writes between reloads: DIR/mode-<generation> if it
// exists, else DIR/mode, else "ok". Each fake appends what it did and every message it received to
// DIR/gen-<generation>.log, one line per event, written before it answers, so that by the time the supervisor has
// the answer the line is on disk.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// Modes of the fake worker.
const (
	modeOK               = "ok"                // standby, then Start → Ready, Yield → Yielded, EOF → exit 0
	modeExit             = "exit"              // exits 3 before the handshake
	modeKilled           = "killed"            // SIGKILLs itself before the handshake (as kill -9 from outside)
	modeNoStandby        = "no-standby"        // takes the fds and never answers Standby
	modeUnhealthyStandby = "unhealthy-standby" // answers Standby{healthy: false}
	modeUnhealthyReady   = "unhealthy-ready"   // answers Start with Ready{healthy: false}
	modeExitOnStart      = "exit-on-start"     // exits 4 on Start
	modeIgnoreYield      = "ignore-yield"      // never answers Yield
	modeCrashAfterReady  = "crash-after-ready" // exits 5 right after each healthy Ready
	modeGatedYield       = "gated-yield"       // answers Yield only once DIR/gate exists
)

func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{"fake-worker": func(args []string) int {
		if len(args) == 0 || args[0] != "worker" {
			fmt.Fprintf(os.Stderr, "fake worker: args %q, want worker -dir DIR\n", args)
			return 2
		}
		return fakeWorker(args[1:])
	}})
}

// fakeWorker is the worker main of the test binary. It returns its exit status.
func fakeWorker(args []string) int {
	if len(args) != 2 || args[0] != "-dir" {
		fmt.Fprintf(os.Stderr, "fake worker: args %q, want -dir DIR\n", args)
		return 2
	}
	dir := args[1]
	gen, err := strconv.ParseUint(os.Getenv(EnvGeneration), 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake worker: %s: %v\n", EnvGeneration, err)
		return 2
	}
	logf, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("gen-%d.log", gen)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake worker: %v\n", err)
		return 2
	}
	defer logf.Close()
	record := func(format string, a ...any) {
		fmt.Fprintf(logf, format+"\n", a...) // one write per line, unbuffered: it survives a SIGKILL
	}
	mode := fakeMode(dir, gen)
	record("pid %d", os.Getpid())
	record("mode %s", mode)
	record("siblings %d", len(childrenOf(os.Getppid()))) // the workers alive now, this one included
	if err := fakeServe(dir, gen, mode, record); err != nil {
		record("error %v", err)
		fmt.Fprintf(os.Stderr, "fake worker %d (%s): %v\n", gen, mode, err)
		var ex exitCode
		if errors.As(err, &ex) {
			return int(ex)
		}
		return 1
	}
	return 0
}

// exitCode is an error that asks the fake to exit with that status (on purpose).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d on purpose", int(e)) }

func fakeMode(dir string, gen uint64) string {
	for _, name := range []string{fmt.Sprintf("mode-%d", gen), "mode"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return modeOK
}

func fakeServe(dir string, gen uint64, mode string, record func(string, ...any)) error {
	if mode == modeExit {
		return exitCode(3)
	}
	if mode == modeKilled {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	// A fake whose test died gets SIGTERM (the supervisor's Pdeathsig); this is the backstop.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := handoff.FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return err
	}
	_, files, err := handoff.Join(ctx, c, handoff.Hello{Role: handoff.RoleWorker, Generation: gen, Build: fmt.Sprintf("fake-%d", gen)}, os.Getppid(), os.Getuid())
	if err != nil {
		c.Close()
		return err
	}
	defer files.Close()
	names := slices.Sorted(maps.Keys(files))
	record("files %s", strings.Join(names, ","))
	f := &fake{dir: dir, gen: gen, mode: mode, record: record, region: files["region"]}
	err = handoff.Serve(ctx, c, f, handoff.ServeOptions{Sent: f.sent})
	switch {
	case err == nil:
		record("eof")
	case errors.Is(err, errFakeUnhealthy):
		return nil // as asked: the supervisor has the reason
	}
	return err
}

var errFakeUnhealthy = errors.New("fake: unhealthy standby")

// fake is the fake worker's handoff.Worker, by mode.
type fake struct {
	dir    string
	gen    uint64
	mode   string
	record func(string, ...any)
	region *os.File
}

func (f *fake) Prepare(ctx context.Context) error {
	switch {
	case f.region == nil:
		return errors.New("no region file")
	case f.mode == modeNoStandby:
		<-ctx.Done() // until the supervisor kills this process
		return ctx.Err()
	case f.mode == modeUnhealthyStandby:
		return errFakeUnhealthy
	}
	f.record("standby")
	return nil
}

func (f *fake) Start(ctx context.Context, m handoff.Start) handoff.Ready {
	f.record("start %s", m.Reason)
	switch f.mode {
	case modeExitOnStart:
		os.Exit(4)
	case modeUnhealthyReady:
		return handoff.Ready{Reason: "fake: unhealthy ready"}
	}
	// The proof that the fd arrived and works: the test reads these lines from its own file.
	if _, err := fmt.Fprintf(f.region, "generation %d start %s\n", f.gen, m.Reason); err != nil {
		return handoff.Ready{Reason: err.Error()}
	}
	f.record("ready")
	return handoff.Ready{RegionVersion: f.gen * 10, Healthy: true}
}

func (f *fake) Yield(ctx context.Context, m handoff.Yield) handoff.Yielded {
	f.record("yield %s", m.Reason)
	switch f.mode {
	case modeIgnoreYield:
		<-ctx.Done() // until the supervisor kills this process
	case modeGatedYield:
		if err := waitFile(ctx, filepath.Join(f.dir, "gate")); err != nil {
			return handoff.Yielded{Reason: err.Error()}
		}
		f.record("gate open")
	}
	return handoff.Yielded{LastVersion: f.gen * 10}
}

// sent crashes a crash-after-ready fake once its healthy Ready is out.
func (f *fake) sent(m handoff.Message) {
	if r, ok := m.(handoff.Ready); ok && r.Healthy && f.mode == modeCrashAfterReady {
		os.Exit(5)
	}
}

// waitFile waits until the file at path exists.
func waitFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// childrenOf lists the processes whose parent is ppid, zombies included.
func childrenOf(ppid int) []int {
	var pids []int
	for _, s := range procfs.Children(ppid) {
		pids = append(pids, s.PID)
	}
	return pids
}

// children lists this process's children: with the supervisor, its workers.
func children() []int { return childrenOf(os.Getpid()) }

// gone reports whether no process has this pid (it exited and was reaped).
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// harness is one supervisor of fake workers, with its own directory and region file.
type harness struct {
	t      *testing.T
	dir    string
	region *os.File // handed to every generation as "region"
	sup    *Supervisor
	log    *proctest.Buffer // the supervisor's log, for failing tests

	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returned
	runErr  error         // Run's result; read after done
	stopped bool
}

// newHarness makes a supervisor of fake workers; modify adjusts its Config. It does not run it.
func newHarness(t *testing.T, modify func(*Config)) *harness {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	region, err := os.OpenFile(filepath.Join(dir, "region"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, region: region, log: &proctest.Buffer{}}
	cfg := Config{
		Binary:     bin,
		WorkerArgs: []string{"-dir", dir},
		WorkerEnv:  proctest.Env(t, "fake-worker"),
		Files:      []handoff.NamedFile{{Name: "region", File: region}},
		Build:      "test-supervisor",
		Log: zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			h.log, zapcore.DebugLevel)),
		ReadyTimeout:   10 * time.Second,
		DrainTimeout:   5 * time.Second,
		RestartLimit:   5,
		RestartBackoff: 10 * time.Millisecond,
	}
	if modify != nil {
		modify(&cfg)
	}
	h.sup, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cleanup)
	return h
}

// run starts Run in a goroutine.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		h.runErr = h.sup.Run(ctx)
	}()
}

// start runs the supervisor and waits until its first generation serves; it returns that generation's pid.
func (h *harness) start() int {
	h.t.Helper()
	h.run()
	st := h.waitStatus("the first generation serving", func(st wire.SupervisorStatus) bool {
		return len(st.Generations) == 1 && st.Generations[0].State == "serving"
	})
	return st.Generations[0].PID
}

// stop cancels Run's ctx and returns Run's error once it has returned.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	return h.wait()
}

// wait waits for Run to return, and returns its error.
func (h *harness) wait() error {
	h.t.Helper()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Fatalf("Run did not return within 30 s")
	}
	h.stopped = true
	return h.runErr
}

func (h *harness) cleanup() {
	if h.cancel != nil && !h.stopped {
		h.cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			h.t.Errorf("Run did not return within 30 s; killing its workers")
			for _, pid := range children() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if h.t.Failed() {
		h.t.Logf("supervisor log:\n%s", h.log.String())
		for _, gen := range h.generations() {
			h.t.Logf("generation %d: %q", gen, h.records(gen))
		}
	}
	h.region.Close()
}

// waitStatus polls Status until cond holds, and fails the test if it does not within 20 s or if Run returns first.
func (h *harness) waitStatus(what string, cond func(wire.SupervisorStatus) bool) wire.SupervisorStatus {
	h.t.Helper()
	var st wire.SupervisorStatus
	proctest.WaitFor(h.t, 20*time.Second, func() error {
		if st = h.sup.Status(); cond(st) {
			return nil
		}
		select {
		case <-h.done:
			h.t.Fatalf("waiting for %s: Run returned %v; status %+v", what, h.runErr, st)
		default:
		}
		return fmt.Errorf("still %+v", st)
	}, what)
	return st
}

// waitFor polls cond until it holds, and fails the test if it does not within 20 s.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	h.waitStatus(what, func(wire.SupervisorStatus) bool { return cond() })
}

// setMode makes generation gen behave as mode; gen 0 sets the default for every generation without its own.
func (h *harness) setMode(gen uint64, mode string) {
	h.t.Helper()
	name := "mode"
	if gen != 0 {
		name = fmt.Sprintf("mode-%d", gen)
	}
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(mode), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// openGate lets a gated-yield fake answer its Yield.
func (h *harness) openGate() {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "gate"), nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// records returns what generation gen did, line by line.
func (h *harness) records(gen uint64) []string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, fmt.Sprintf("gen-%d.log", gen)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// messages returns the events of generation gen past its start-up lines (pid, mode, siblings).
func (h *harness) messages(gen uint64) []string {
	h.t.Helper()
	var out []string
	for _, r := range h.records(gen) {
		if k, _, _ := strings.Cut(r, " "); k != "pid" && k != "mode" && k != "siblings" {
			out = append(out, r)
		}
	}
	return out
}

// pidOf returns the pid generation gen recorded, or 0.
func (h *harness) pidOf(gen uint64) int {
	h.t.Helper()
	for _, r := range h.records(gen) {
		if s, ok := strings.CutPrefix(r, "pid "); ok {
			pid, _ := strconv.Atoi(s)
			return pid
		}
	}
	return 0
}

// generations lists the generations that were started (that wrote a record), in order.
func (h *harness) generations() []uint64 {
	ents, _ := os.ReadDir(h.dir)
	var gens []uint64
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "gen-")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSuffix(s, ".log"), 10, 64); err == nil {
			gens = append(gens, n)
		}
	}
	slices.Sort(gens)
	return gens
}

// regionLines returns what the workers wrote into the region file.
func (h *harness) regionLines() []string {
	h.t.Helper()
	f, err := os.Open(h.region.Name())
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// serving returns the serving generation in st, and fails the test unless exactly one generation is live.
func serving(t *testing.T, st wire.SupervisorStatus) wire.GenerationStatus {
	t.Helper()
	if len(st.Generations) != 1 || st.Generations[0].State != "serving" {
		t.Fatalf("live generations %+v, want one serving", st.Generations)
	}
	return st.Generations[0]
}

// openFds counts this process's open fds by what they point at.
func openFds(t *testing.T) map[string]int {
	t.Helper()
	list, err := proctest.Fds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]int{}
	for _, fd := range list {
		target := fd.Target
		if strings.HasPrefix(target, "socket:[") {
			target = "socket" // numbered by inode: count them by kind, so that a leak shows as a number
		}
		fds[target]++
	}
	return fds
}
