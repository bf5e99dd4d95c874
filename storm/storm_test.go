package storm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/sandbox"
)

var (
	stormFaults   = flag.Int("storm.faults", 100, "how many faults to inject (make storm: 1000)")
	stormSeed     = flag.Uint64("storm.seed", 0, "the seed of the fault sequence (0: from the clock; the run prints it)")
	stormDuration = flag.Duration("storm.duration", 50*time.Second, "the longest the faults may take; fewer faults than asked in that time fail the run")
	stormLog      = flag.String("storm.log", "", "copy the daemon's log to this file at the end")
	stormKinds    = flag.String("storm.kinds", "", "only these fault kinds, comma-separated (to narrow a failure down); default all")
	stormTrace    = flag.Bool("storm.trace", false, "log every step as it ends")
	stormReaders  = flag.Duration("storm.reader-wait", recoverWithin, "how long after a fault a reader may take to reach the board's version before it is reported as not following and restarted")
)

const (
	regionSize    = 64 << 10
	recoverWithin = 10 * time.Second // every fault is recovered within this (issue 9, item 11)
	recoverGiveUp = 45 * time.Second // a fault not recovered by then ends the storm
	idsPerClient  = 6
	firstLoadID   = 1
	probeID       = 99
	stateFSSize   = "16m"
)

// knownFailure says what makes the short storm fail on main today. While it is set, `go test ./...` (and so
// `make test`) skips the short run; any -storm.* flag (`make storm` passes some) runs it anyway. Empty it once
// that is fixed.
const knownFailure = ""

var binDir string

// stormFlagSet reports whether any -storm.* flag was given.
func stormFlagSet() bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || strings.HasPrefix(f.Name, "storm.") })
	return set
}

func TestMain(m *testing.M) { proctest.Main(m, nil, proctest.Setup(build)) }

// build builds announcementd, announcementctl and the C reader, for a run as root (as anyone else, or under
// -short, TestStorm skips: nothing to build).
func build() (func(), error) {
	if flag.Parse(); os.Geteuid() != 0 || testing.Short() {
		return nil, nil
	}
	dir, cleanup, err := proctest.BuildBinaries("..", fmt.Sprintf("storm-bin%d-", os.Getpid()))
	if err != nil {
		return nil, err
	}
	binDir = dir
	return cleanup, nil
}

// storm is one run: the daemon, the load, the readers, and what was seen.
type storm struct {
	t    *testing.T
	seed uint64
	d    *daemon
	mnt  string // the state file system
	m    *model
	l    *load
	p    *probe

	obs      []*observer
	procs    []*readerProc
	cancel   context.CancelFunc // stops the in-process readers
	readerWG sync.WaitGroup

	windows windows

	mu      sync.Mutex
	stopped map[int]bool // workers under SIGSTOP right now (the cleanup sends SIGCONT)

	started    time.Time
	steps      []*stepRecord
	injected   map[string]int // faults by kind
	skipped    int
	late       []*stepRecord // steps not recovered within recoverWithin
	slowest    *stepRecord
	lost       []lostChange
	lostAt     []int // the step of each lost change
	reloads    []reloadResult
	fds        map[int][]int // supervisor pid -> its fd counts, one per step
	fdOrder    []int
	kinds      []string // the fault kinds allowed (-storm.kinds); empty: all
	stuck      []stuckReader
	unreadable []string // the board refused by the Go reader at a checkpoint, for a moment
	abortedBy  string
}

// stepRecord is one step of the storm: one fault, or two close together.
type stepRecord struct {
	n          int
	faults     []*fault
	start      time.Time // the first injection
	recoverAt  time.Time
	recovery   time.Duration // from the last injection's end to recovered
	recoverWhy string        // what was still wrong just before it recovered (or when it gave up)
	gaveUp     bool          // not recovered within recoverGiveUp
	readersAt  time.Duration // from the last injection's end until every reader had the probe's version
}

func (r *stepRecord) String() string {
	var fs []string
	for _, f := range r.faults {
		s := f.kind.name + ": " + f.detail
		if f.skipped {
			s += " [skipped]"
		}
		fs = append(fs, s)
	}
	return fmt.Sprintf("step %d at +%s: %s; recovered in %v", r.n, r.start.Format("15:04:05.000"), strings.Join(fs, " + "), r.recovery.Round(time.Millisecond))
}

// reloadResult is a reload the storm asked for (reload --wait, or a SIGHUP burst) that did not serve.
type reloadResult struct {
	start, end time.Time
	what       string
	step       int
}

func (s *storm) stoppedPID(pid int, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.stopped[pid] = true
	} else {
		delete(s.stopped, pid)
	}
}

// TestStorm is the fault storm of issue 9, item 11; docs/STRESS.md ("Storm") defines what it checks. The default
// is the short run (about 100 faults, under a minute); `make storm` runs at least 1,000.
func TestStorm(t *testing.T) {
	proctest.Slow(t, "the fault storm on the built daemon")
	if os.Geteuid() != 0 {
		t.Skip("storm: needs root (it mounts a small tmpfs for the state directory, to fill it); CI runs as root")
	}
	if knownFailure != "" && !stormFlagSet() {
		t.Skipf("storm: the short run is skipped until this is fixed: %s. Run it anyway with any -storm.* flag "+
			"(go test ./storm -args -storm.seed=0) or make storm", knownFailure)
	}
	seed := *stormSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("storm: seed %d (again: go test ./storm -run TestStorm -args -storm.seed=%d -storm.faults=%d)", seed, seed, *stormFaults)
	var kinds []string
	for _, k := range strings.Split(*stormKinds, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.ContainsFunc(faultKinds, func(fk faultKind) bool { return fk.name == k }) {
			t.Fatalf("-storm.kinds: no fault kind %q", k)
		}
		kinds = append(kinds, k)
	}
	s := setup(t, seed)
	s.kinds = kinds
	s.run(*stormFaults, *stormDuration)
	s.finish(*stormFaults)
}

func setup(t *testing.T, seed uint64) *storm {
	s := &storm{t: t, seed: seed, m: newModel(), stopped: map[int]bool{}, injected: map[string]int{}, fds: map[int][]int{}}
	sweep()
	dir, err := os.MkdirTemp("", fmt.Sprintf("storm%d-", os.Getpid())) // short: the sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.mnt, err = sandbox.MountTmpfs(dir, stateFSSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(s.mnt, 0); err != nil {
			unix.Unmount(s.mnt, unix.MNT_DETACH)
		}
	})
	state := filepath.Join(s.mnt, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	shm := fmt.Sprintf("/dev/shm/storm_%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { removeShm(shm) })

	s.d, err = newDaemon(filepath.Join(binDir, "announcementd"), filepath.Join(binDir, "announcementctl"), shm,
		filepath.Join(dir, "run"), state, filepath.Join(dir, "daemon.log"),
		// Never give up (the storm kills workers in a row on purpose), and keep the crash backoff short so that
		// a streak of kills does not slow the storm past its time bound; the rule itself is unchanged.
		"--restart-limit", "-1", "--restart-backoff", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cleanup)
	if err := s.d.start(); err != nil {
		t.Fatal(err)
	}
	s.l = newLoad(s.m, filepath.Join(s.d.runtime, "api.sock"))
	s.p = newProbe(s.l, probeID)
	if rec := s.recover(time.Now(), nil); rec.gaveUp {
		t.Fatalf("the daemon did not start: %s\n%s", rec.recoverWhy, strings.Join(s.d.logExcerpt(time.Time{}, time.Now(), 40), "\n"))
	}
	s.startReaders()
	s.l.start(seed, firstLoadID, idsPerClient)
	// Let the load and the readers get going before the first fault: 50 changes acknowledged, and every reader
	// at the version of the 50th or later.
	var target uint64
	if !proctest.Poll(20*time.Second, func() bool {
		s.l.mu.Lock()
		if acked := s.l.changes; acked >= 50 && target == 0 {
			target = s.l.maxVersion
		}
		s.l.mu.Unlock()
		return target != 0 && s.readersAt(target) == ""
	}) {
		t.Fatalf("before the storm: after 20 s of load, changes acknowledged up to version %d; readers: %s", s.l.maxVer(), s.readersAt(max(target, 1)))
	}
	return s
}

func (l *load) maxVer() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxVersion
}

// sweep removes what an earlier storm left because its process died before its cleanups (a panic, go test's
// timeout): its mount (/tmp/storm<pid>-*/mnt), its temp dir and its region (/dev/shm/storm_<pid>_*), for pids that
// no longer run. Its daemon died with it (Pdeathsig).
func sweep() {
	dead := func(pid string) bool {
		_, err := os.Stat("/proc/" + pid)
		return pid != "" && errors.Is(err, os.ErrNotExist)
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[2] != "tmpfs" {
				continue
			}
			var pid int
			var rest string
			dir := filepath.Dir(f[1])
			if filepath.Base(f[1]) != "mnt" || filepath.Dir(dir) != os.TempDir() {
				continue
			}
			if n, _ := fmt.Sscanf(filepath.Base(dir), "storm%d-%s", &pid, &rest); n == 2 && dead(fmt.Sprint(pid)) {
				if unix.Unmount(f[1], 0) == nil {
					os.RemoveAll(dir)
				}
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "storm*-*")); m != nil {
		for _, dir := range m {
			var pid int
			var rest string
			name := filepath.Base(dir)
			n, _ := fmt.Sscanf(name, "storm%d-%s", &pid, &rest)
			if n != 2 {
				n, _ = fmt.Sscanf(name, "storm-bin%d-%s", &pid, &rest)
			}
			if _, err := os.Stat(filepath.Join(dir, "mnt", "state")); n == 2 && dead(fmt.Sprint(pid)) && err != nil {
				os.RemoveAll(dir) // not a mount still there (its unmount above failed)
			}
		}
	}
	if m, _ := filepath.Glob("/dev/shm/storm_*_*"); m != nil {
		for _, f := range m {
			if parts := strings.Split(filepath.Base(f), "_"); len(parts) == 3 && dead(parts[1]) {
				os.Remove(f)
			}
		}
	}
}

func removeShm(shm string) {
	os.Remove(shm)
	for _, pattern := range []string{shm + "*", filepath.Join(filepath.Dir(shm), ".*"+filepath.Base(shm)+"*")} {
		if m, _ := filepath.Glob(pattern); m != nil {
			for _, f := range m {
				os.Remove(f)
			}
		}
	}
}

// startReaders starts the two version watchers and the four followers.
func (s *storm) startReaders() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	shm := s.d.shm
	lib, _ := filepath.Abs("../clients/c/libnotice.so")
	cFollow, _ := filepath.Abs("../clients/c/notice_follow")

	goF := newObserver("go follower (board/reader Follower)", true)
	runGoFollower(ctx, &s.readerWG, goF, s.m, shm)
	raw := newObserver("version word watcher (pread)", false)
	runRawWatcher(ctx, &s.readerWG, raw, shm)
	cBin := newObserver("c follower (clients/c/notice_follow)", false)
	cLib := newObserver("c follower (libnotice.so notice_follow_*, records)", true)
	py := newObserver("python follower (notice.Follower, records)", true)
	watch := newObserver("watcher (announcementctl watch)", false)
	s.obs = []*observer{goF, cBin, cLib, py, watch, raw}
	s.procs = []*readerProc{
		startReaderProc(cBin, parseNoticeFollow(cBin), cFollow, shm),
		startReaderProc(cLib, parseFollowPy(cLib, s.m), "python3", "follow.py", "c", lib, shm),
		startReaderProc(py, parseFollowPy(py, s.m), "python3", "follow.py", "python", "-", shm),
		startReaderProc(watch, parseWatch(watch), s.d.ctl, "watch", "--json", "--shm", shm),
	}
}

func (s *storm) stopReaders() {
	s.cancel()
	s.readerWG.Wait()
	for _, p := range s.procs {
		p.stop()
	}
}

// readersAt returns "" when every reader has seen version v or a later one, else which have not.
func (s *storm) readersAt(v uint64) string {
	return strings.Join(s.lagging(v), "; ")
}

// run injects faults until n were injected or the time bound is reached.
func (s *storm) run(n int, bound time.Duration) {
	rng := rand.New(rand.NewPCG(s.seed, 0x570a))
	s.started = time.Now()
	deadline := s.started.Add(bound)
	for s.count() < n {
		if time.Now().After(deadline) {
			s.abortedBy = fmt.Sprintf("the time bound (%v) was reached after %d of %d faults", bound, s.count(), n)
			return
		}
		// A random pause before each step, shorter when the run falls behind its time bound. The rng is drawn
		// the same way whatever the timing, so a seed always gives the same sequence of faults.
		raw := rng.Int64N(151)
		perFault := time.Until(deadline) / time.Duration(n-s.count())
		scale := min(1, max(0, float64(perFault-400*time.Millisecond)/float64(150*time.Millisecond)))
		time.Sleep(time.Duration(float64(raw) * scale * float64(time.Millisecond))) // on purpose: faults at random times
		if !s.step(rng) {
			return
		}
	}
}

func (s *storm) count() int {
	c := 0
	for _, n := range s.injected {
		c += n
	}
	return c
}

// step injects one fault, or (one time in four) two, the second 0–300 ms after the first without waiting for
// any recovery; then waits until the daemon has recovered, checks the acknowledged state, and samples the fds.
func (s *storm) step(rng *rand.Rand) bool {
	rec := &stepRecord{n: len(s.steps) + 1}
	s.steps = append(s.steps, rec)
	count := 1
	if rng.IntN(4) == 0 {
		count = 2
	}
	delay := time.Duration(rng.IntN(301)) * time.Millisecond
	for range count {
		rec.faults = append(rec.faults, &fault{kind: pickKind(rng, s.kinds), rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))})
	}
	rec.start = time.Now()
	var wg sync.WaitGroup
	for i, f := range rec.faults {
		if i > 0 {
			time.Sleep(delay) // on purpose: the second fault 0–300 ms after the first
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.inject(f)
		}()
	}
	wg.Wait()
	var since time.Time
	for _, f := range rec.faults {
		if f.end.After(since) {
			since = f.end
		}
	}
	r := s.recover(since, rec.faults)
	rec.recovery, rec.recoverWhy, rec.recoverAt, rec.gaveUp, rec.readersAt = r.recovery, r.recoverWhy, r.recoverAt, r.gaveUp, r.readersAt
	for _, f := range rec.faults {
		if f.win != nil {
			s.windows.close(f.win, rec.recoverAt)
		}
		if f.skipped {
			s.skipped++
			continue
		}
		s.injected[f.kind.name]++
		s.noteReload(rec, f)
	}
	if *stormTrace {
		s.t.Log(rec)
	}
	if s.slowest == nil || rec.recovery > s.slowest.recovery {
		s.slowest = rec
	}
	if rec.recovery > recoverWithin {
		s.late = append(s.late, rec)
	}
	if rec.gaveUp {
		s.abortedBy = fmt.Sprintf("step %d was not recovered within %v: %s", rec.n, recoverGiveUp, rec.recoverWhy)
		return false
	}
	s.checkpoint(rec)
	if pid := s.d.supervisorPID(); pid != 0 {
		if n := fdCount(pid); n >= 0 {
			if _, ok := s.fds[pid]; !ok {
				s.fdOrder = append(s.fdOrder, pid)
			}
			s.fds[pid] = append(s.fds[pid], n)
		}
	}
	return true
}

// noteReload records a reload the storm asked for that did not end serving.
func (s *storm) noteReload(rec *stepRecord, f *fault) {
	switch f.kind.name {
	case "reload-wait":
		if f.reloadExit != 0 {
			s.reloads = append(s.reloads, reloadResult{start: f.start, end: f.end, what: f.detail, step: rec.n})
		}
	case "sighup-burst":
		st, err := s.d.controlStatus()
		if err == nil && st.LastReload != nil && !st.LastReload.OK && st.LastReload.FinishedAt.After(f.start) {
			s.reloads = append(s.reloads, reloadResult{start: f.start, end: rec.recoverAt, step: rec.n,
				what: fmt.Sprintf("SIGHUP reload: %s: %s", st.LastReload.Outcome, st.LastReload.Reason)})
		}
	}
}

// recover waits until the daemon has recovered from faults (docs/STRESS.md, "Storm": recovered): one supervisor
// (the current one) with one worker, neither stopped, that serves alone; health ok; after SIGHUPs, a reload that
// finished after the last; then a probe publish acknowledged and on the board at the path. Then every reader must
// reach the probe's version within recoverWithin of since; one that does not is reported stuck and restarted.
func (s *storm) recover(since time.Time, faults []*fault) *stepRecord {
	r := &stepRecord{}
	var probeText string
	var probeV uint64
	var probedAt time.Time
	if !proctest.Poll(time.Until(since.Add(recoverGiveUp)), func() bool {
		now := time.Now()
		why := s.serving(faults)
		if why == "" && (probeV == 0 || now.Sub(probedAt) > time.Second) {
			text, v, err := s.p.publish()
			if err != nil {
				why = "the probe publish failed: " + err.Error()
				probeV = 0
			} else {
				probeText, probeV, probedAt = text, v, now
			}
		}
		if why == "" {
			why = s.boardShows(probeText, probeV)
		}
		if why == "" {
			r.recoverAt = time.Now()
			r.recovery = r.recoverAt.Sub(since)
			return true
		}
		r.recoverWhy = why
		return false
	}) {
		now := time.Now()
		r.recovery, r.recoverAt, r.gaveUp = now.Sub(since), now, true
		return r
	}
	// The readers follow the board to the probe's version.
	kicked := map[*observer]bool{}
	var lagging []string
	if !proctest.Poll(time.Until(since.Add(recoverGiveUp)), func() bool {
		if lagging = s.lagging(probeV); len(lagging) == 0 {
			r.readersAt = time.Since(since)
			return true
		}
		now := time.Now()
		if now.Sub(since) > *stormReaders {
			for _, o := range s.obs {
				if o.last() < probeV && !kicked[o] && o.kick != nil {
					kicked[o] = true
					s.stuck = append(s.stuck, stuckReader{step: len(s.steps), reader: o.name,
						what: fmt.Sprintf("at version %d %v after the fault, while the board at the path shows version %d or later; its errors: %s",
							o.last(), now.Sub(since).Round(time.Millisecond), probeV, o.errorList())})
					o.mu.Lock()
					o.kicks++
					o.mu.Unlock()
					o.kick()
				}
			}
		}
		return false
	}) {
		r.gaveUp, r.recoverWhy = true, fmt.Sprintf("readers at a lower version than %d: %s", probeV, strings.Join(lagging, "; "))
	}
	return r
}

// lagging lists the readers that have not seen version v yet.
func (s *storm) lagging(v uint64) []string {
	var out []string
	for _, o := range s.obs {
		if got := o.last(); got < v {
			out = append(out, fmt.Sprintf("%s at %d", o.name, got))
		}
	}
	return out
}

// stuckReader is a reader that did not reach the board's version within recoverWithin of a fault.
type stuckReader struct {
	step   int
	reader string
	what   string
}

// serving returns "" when the daemon's processes and health are back to normal, else what is not.
func (s *storm) serving(faults []*fault) string {
	sup := s.d.supervisorPID()
	var sups, workers []proc
	for _, p := range s.d.procs() {
		if p.state == 'T' || p.state == 't' {
			return fmt.Sprintf("pid %d is stopped", p.pid)
		}
		if p.worker {
			workers = append(workers, p)
		} else {
			sups = append(sups, p)
		}
	}
	if len(sups) != 1 || sups[0].pid != sup {
		return fmt.Sprintf("supervisor processes %v, want just %d", sups, sup)
	}
	if len(workers) != 1 || workers[0].ppid != sup {
		return fmt.Sprintf("worker processes %v, want one, child of %d", workers, sup)
	}
	st, err := s.d.controlStatus()
	if err != nil {
		return "control status: " + err.Error()
	}
	if len(st.Generations) != 1 || st.Generations[0].State != "serving" || st.Generations[0].PID != workers[0].pid {
		return fmt.Sprintf("generations %+v", st.Generations)
	}
	for _, f := range faults {
		// (A supervisor killed after the SIGHUPs took its reload with it.)
		if f.kind.name == "sighup-burst" && f.signalled == st.PID && (st.LastReload == nil || !st.LastReload.FinishedAt.After(f.lastSignal)) {
			return "the reload after the SIGHUPs has not finished"
		}
	}
	if _, err := s.d.health(); err != nil {
		return "health: " + err.Error()
	}
	return ""
}

// boardShows returns "" when the board at the path shows text for the probe at version v or later.
func (s *storm) boardShows(text string, v uint64) string {
	snap, err := readBoard(s.d.shm)
	if err != nil {
		return "board: " + err.Error()
	}
	if snap.Version < v {
		return fmt.Sprintf("board at version %d, below the probe's %d", snap.Version, v)
	}
	for _, r := range snap.Records {
		if r.ID == probeID {
			if r.Content != text {
				return fmt.Sprintf("board shows probe %q, want %q", r.Content, text)
			}
			return ""
		}
	}
	return "board lacks the probe"
}

// readBoard takes a snapshot of the board at path with the Go reader, retrying while it is busy.
func readBoard(path string) (*board.Snapshot, error) {
	var snap *board.Snapshot
	var err error
	proctest.Poll(time.Second, func() bool {
		var b *reader.Board
		if b, err = reader.Open(path); err != nil {
			return true
		}
		snap, err = b.Snapshot()
		b.Close()
		return !errors.Is(err, board.ErrBusy)
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func recordsOf(recs []board.Record) map[uint64]string {
	m := map[uint64]string{}
	for _, r := range recs {
		m[r.ID] = r.Content
	}
	return m
}

// checkpoint stops the load between requests and checks that the daemon's list and the board hold every
// acknowledged change.
func (s *storm) checkpoint(rec *stepRecord) {
	resume := s.l.pause()
	defer resume()
	var list map[uint64]string
	var err error
	if !proctest.Poll(20*time.Second, func() bool { list, err = s.d.list(); return err == nil }) {
		s.t.Errorf("LIST FAILED after step %d had recovered: %v\n%s", rec.n, err, s.recipe(rec.n))
		return
	}
	s.addLost(rec.n, s.m.check(fmt.Sprintf("after step %d, list", rec.n), list))
	// The board was whole when the step recovered; the writer may be repairing it again now (its check runs every
	// 250 ms and may find damage the probe did not touch): a reader then refuses it for a moment.
	var snap *board.Snapshot
	if !proctest.Poll(recoverWithin, func() bool {
		if snap, err = readBoard(s.d.shm); err != nil {
			s.unreadable = append(s.unreadable, fmt.Sprintf("after step %d: %v", rec.n, err))
		}
		return err == nil
	}) {
		s.t.Errorf("BOARD UNREADABLE for %v after step %d had recovered: %v\n%s", recoverWithin, rec.n, err, s.recipe(rec.n))
		return
	}
	s.addLost(rec.n, s.m.check(fmt.Sprintf("after step %d, board at version %d", rec.n, snap.Version), recordsOf(snap.Records)))
}

func (s *storm) addLost(step int, lost []lostChange) {
	for _, l := range lost {
		s.lost = append(s.lost, l)
		s.lostAt = append(s.lostAt, step)
	}
}

// finish stops the load, checks the final state through the CLI and every dump tool, stops the readers and the
// daemon, and reports.
func (s *storm) finish(asked int) {
	t := s.t
	elapsed := time.Since(s.started)
	s.l.stop()
	if s.abortedBy == "" || !strings.Contains(s.abortedBy, "not recovered") {
		if r := s.recover(time.Now(), nil); r.gaveUp {
			t.Errorf("after the storm the daemon did not recover: %s", r.recoverWhy)
		}
	}
	final := s.finalCheck()
	s.stopReaders()
	if err := s.d.stop(); err != nil {
		t.Error(err)
	}
	var orphans []proc
	proctest.Poll(10*time.Second, func() bool { orphans = s.d.procs(); return len(orphans) == 0 })
	if *stormLog != "" {
		if b, err := os.ReadFile(s.d.logPath); err == nil {
			os.WriteFile(*stormLog, b, 0o644)
		}
	}
	s.report(asked, elapsed, final, orphans)
}

// finalCheck compares `announcementctl list --json` and the board, read by the Go, C and Python dump tools, with
// the model.
func (s *storm) finalCheck() []string {
	var problems []string
	code, out := s.d.ctlCommand(30*time.Second, "list", "--json")
	if code != 0 {
		problems = append(problems, fmt.Sprintf("announcementctl list: exit %d: %s", code, out))
	} else if list, err := decodeList(json.NewDecoder(strings.NewReader(out))); err != nil {
		problems = append(problems, fmt.Sprintf("announcementctl list: %v", err))
	} else {
		s.addLost(len(s.steps), s.m.check("at the end, announcementctl list", list))
	}
	if snap, err := readBoard(s.d.shm); err != nil {
		problems = append(problems, "the Go reader: "+err.Error())
	} else {
		s.addLost(len(s.steps), s.m.check(fmt.Sprintf("at the end, the board (Go reader, version %d)", snap.Version), recordsOf(snap.Records)))
	}
	for name, argv := range map[string][]string{
		"the C dump (notice_dump)":    {"../clients/c/notice_dump", s.d.shm},
		"the Python dump (notice.py)": {"python3", "../clients/python/notice.py", s.d.shm},
	} {
		var stdout bytes.Buffer
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout = &stdout
		var dump board.Dump
		if err := cmd.Run(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v: %s", name, err, stdout.String()))
		} else if err := json.Unmarshal(stdout.Bytes(), &dump); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		} else {
			s.addLost(len(s.steps), s.m.check(fmt.Sprintf("at the end, %s, version %d", name, dump.Version), recordsOf(dump.Records)))
		}
	}
	return problems
}

// cleanup undoes everything, whatever state the run stopped in: SIGCONT to stopped workers, the daemon's
// processes (each by its pid), the readers. The mount, the region and the temp dirs have their own cleanups.
func (s *storm) cleanup() {
	s.mu.Lock()
	for pid := range s.stopped {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	s.mu.Unlock()
	if s.cancel != nil {
		s.stopReaders()
	}
	if s.l != nil {
		s.l.stop()
	}
	s.d.mu.Lock()
	s.d.stopping = true
	s.d.mu.Unlock()
	for _, p := range s.d.procs() {
		syscall.Kill(p.pid, syscall.SIGCONT)
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	select {
	case <-s.d.loopDone:
	case <-time.After(10 * time.Second):
	}
	os.Remove(filepath.Join(s.mnt, "fill"))
	s.d.logFile.Close()
}

// --- the report ---

// fdVerdict says whether a supervisor's fd counts, one per step, grew: the smallest count of its last quarter
// above the largest of its first quarter (more than 2 above). Supervisors with fewer than 8 samples are judged
// only against the first supervisor's first count (at most 8 above).
func fdVerdict(samples []int, baseline int) (string, bool) {
	lo, hi := slices.Min(samples), slices.Max(samples)
	desc := fmt.Sprintf("%d samples, %d..%d", len(samples), lo, hi)
	if hi > baseline+8 {
		return desc + fmt.Sprintf(", above the first supervisor's %d by more than 8", baseline), false
	}
	if len(samples) >= 8 {
		q := len(samples) / 4
		first, last := slices.Max(samples[:q]), slices.Min(samples[len(samples)-q:])
		if last > first+2 {
			return desc + fmt.Sprintf(", growing: the last quarter's least %d, the first quarter's most %d", last, first), false
		}
	}
	return desc, true
}

func (s *storm) report(asked int, elapsed time.Duration, final []string, orphans []proc) {
	t := s.t
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	// Requests: a failure is expected when a disruptive fault's window overlaps it; any other is a failed
	// request during reloads (or in quiet time).
	s.l.mu.Lock()
	failed := slices.Clone(s.l.failed)
	acked := map[string]int{}
	for k, v := range s.l.acked {
		acked[k] = v
	}
	changes := s.l.changes
	lost404 := slices.Clone(s.l.lost404)
	ackDecreases := slices.Clone(s.l.decreases)
	s.l.mu.Unlock()
	expectedBy := map[string]int{}
	var unexpected []failedRequest
	for _, f := range failed {
		if w := s.windows.overlapping(f.start, f.end); w != "" {
			expectedBy[w]++
		} else {
			unexpected = append(unexpected, f)
		}
	}
	var badReloads []reloadResult
	for _, r := range s.reloads {
		if s.windows.overlapping(r.start, r.end) == "" {
			badReloads = append(badReloads, r)
		}
	}

	p("storm: seed %d; %d faults (%d asked) in %d steps over %v; %d more skipped (nothing to inject them into at that moment)",
		s.seed, s.count(), asked, len(s.steps), elapsed.Round(time.Second), s.skipped)
	p("faults by kind:")
	for _, k := range faultKinds {
		p("  %-18s %5d", k.name, s.injected[k.name])
	}
	totalReq := 0
	for _, k := range append(slices.Clone(clientKinds), "probe") {
		totalReq += acked[k]
	}
	p("acknowledged writes: %d requests (%d changes): single PUT/DELETE on new connections %d, keep-alive %d, batches %d, probes %d",
		totalReq, changes, acked["single"], acked["keepalive"], acked["batch"], acked["probe"])
	var exp []string
	expTotal := 0
	for w, n := range expectedBy {
		exp = append(exp, fmt.Sprintf("%s %d", w, n))
		expTotal += n
	}
	sort.Strings(exp)
	p("failed requests: %d expected (during %s), %d during reloads or quiet time", expTotal, strings.Join(exp, ", "), len(unexpected))
	lostTotal := len(s.lost) + len(lost404)
	p("lost acknowledged changes: %d", lostTotal)
	decreases := len(ackDecreases)
	torn, regressions := 0, 0
	for _, o := range s.obs {
		decreases += len(o.decreases)
		torn += len(o.torn)
		regressions += len(o.regressions)
	}
	p("version decreases: %d (watchers, followers, acknowledgements); torn snapshots accepted: %d; content regressions: %d", decreases, torn, regressions)
	p("reloads asked for that did not serve, outside disruptive faults: %d", len(badReloads))
	var recs []time.Duration
	for _, r := range s.steps {
		recs = append(recs, r.recovery)
	}
	slices.Sort(recs)
	if len(recs) > 0 {
		p("recovery: p50 %v, p99 %v, slowest %v (%s); %d over %v",
			recs[len(recs)/2].Round(time.Millisecond), recs[len(recs)*99/100].Round(time.Millisecond),
			s.slowest.recovery.Round(time.Millisecond), s.slowest, len(s.late), recoverWithin)
	}
	if len(s.unreadable) > 0 {
		p("board refused by the Go reader at a checkpoint after a recovery (for a moment): %d times; first: %s", len(s.unreadable), s.unreadable[0])
	}
	p("orphan processes after the stop: %d", len(orphans))
	fdOK := true
	if len(s.fdOrder) > 0 {
		baseline := s.fds[s.fdOrder[0]][0]
		var worst []string
		for _, pid := range s.fdOrder {
			desc, ok := fdVerdict(s.fds[pid], baseline)
			if !ok {
				fdOK = false
				worst = append(worst, fmt.Sprintf("supervisor %d: %s", pid, desc))
			}
		}
		all := []int{}
		for _, pid := range s.fdOrder {
			all = append(all, s.fds[pid]...)
		}
		p("supervisor fds: %d supervisors, %d samples, %d..%d (first %d) %s", len(s.fdOrder), len(all), slices.Min(all), slices.Max(all), baseline, strings.Join(worst, "; "))
	}
	var catchUp []time.Duration
	for _, r := range s.steps {
		catchUp = append(catchUp, r.readersAt)
	}
	slices.Sort(catchUp)
	if len(catchUp) > 0 {
		p("readers at the probe's version after a fault: p50 %v, slowest %v; did not follow (restarted by the storm): %d",
			catchUp[len(catchUp)/2].Round(time.Millisecond), catchUp[len(catchUp)-1].Round(time.Millisecond), len(s.stuck))
	}
	p("readers:")
	for _, o := range s.obs {
		errs := o.errorList()
		o.mu.Lock()
		p("  %-52s %6d versions, last %d; ended by itself %d times, restarted by the storm %d times; errors: %s",
			o.name, o.versions, o.high, len(o.exits), o.kicks, errs)
		o.mu.Unlock()
	}
	crashes := s.d.crashes()
	p("worker exits and runtime failures the storm did not cause: %d", len(crashes))
	s.d.mu.Lock()
	p("supervisors started: %d; exited by themselves: %d", s.d.starts, len(s.d.unprompted))
	unprompted := slices.Clone(s.d.unprompted)
	s.d.mu.Unlock()
	t.Log("\n" + b.String())

	// The assertions (docs/STRESS.md, "Storm"), each with what is needed to reproduce it.
	if s.abortedBy != "" {
		t.Errorf("the storm stopped early: %s", s.abortedBy)
	}
	if s.count() < asked {
		t.Errorf("%d faults injected, %d asked", s.count(), asked)
	}
	for _, p := range final {
		t.Errorf("final check: %s", p)
	}
	for i, l := range s.lost {
		if i == 10 {
			t.Errorf("... %d lost changes in all", len(s.lost))
			break
		}
		t.Errorf("LOST: %s\n%s", l, s.recipe(s.lostAt[i]))
	}
	for _, l := range lost404 {
		t.Errorf("LOST: %s", l)
	}
	for i, d := range ackDecreases {
		if i == 5 {
			break
		}
		t.Errorf("VERSION DECREASE: %s", d)
	}
	for _, o := range s.obs {
		for i, d := range o.decreases {
			if i == 5 {
				t.Errorf("... %d version decreases in all for the %s", len(o.decreases), o.name)
				break
			}
			t.Errorf("VERSION DECREASE: %s", d)
		}
		for i, d := range o.torn {
			if i == 5 {
				break
			}
			t.Errorf("TORN SNAPSHOT ACCEPTED: %s", d)
		}
		for i, d := range o.regressions {
			if i == 5 {
				break
			}
			t.Errorf("CONTENT REGRESSION: %s", d)
		}
	}
	for i, f := range unexpected {
		if i == 10 {
			t.Errorf("... %d failed requests outside disruptive faults in all", len(unexpected))
			break
		}
		t.Errorf("FAILED REQUEST outside disruptive faults: %s %s at %s (%v): %s\n%s", f.client, f.what,
			f.start.Format("15:04:05.000"), f.end.Sub(f.start).Round(time.Millisecond), f.err, s.recipeAt(f.start))
	}
	for _, r := range badReloads {
		t.Errorf("RELOAD DID NOT SERVE (no disruptive fault at the time): %s\n%s", r.what, s.recipe(r.step))
	}
	for _, r := range s.late {
		t.Errorf("NOT RECOVERED WITHIN %v: %s; still wrong just before: %s\n%s", recoverWithin, r, r.recoverWhy, s.recipe(r.n))
	}
	for i, r := range s.stuck {
		if i == 10 {
			t.Errorf("... %d readers did not follow in all", len(s.stuck))
			break
		}
		t.Errorf("READER DID NOT FOLLOW THE BOARD: %s %s\n%s", r.reader, r.what, s.recipe(r.step))
	}
	for _, o := range s.obs {
		for i, e := range o.exits {
			if i == 3 {
				break
			}
			t.Logf("note: the %s ended by itself: %s", o.name, e)
		}
	}
	if len(orphans) > 0 {
		t.Errorf("ORPHANS: processes left 10 s after the daemon stopped: %+v", orphans)
	}
	if !fdOK {
		t.Errorf("FD COUNT: the supervisor's fd count grew (see the figures)")
	}
	for i, c := range crashes {
		if i == 10 {
			t.Errorf("... %d in all", len(crashes))
			break
		}
		t.Errorf("WORKER CRASHED (not killed by the storm): %s\n%s", c.line, s.recipeAt(c.at))
	}
	for _, u := range unprompted {
		t.Errorf("SUPERVISOR EXITED BY ITSELF (with --restart-limit -1): %s", u)
	}
}

// recipe describes how to reproduce what went wrong at step n: the seed, the steps up to it, the daemon's log then.
func (s *storm) recipe(n int) string {
	if n < 1 || n > len(s.steps) {
		return fmt.Sprintf("  seed %d", s.seed)
	}
	var b strings.Builder
	kinds := ""
	if len(s.kinds) > 0 {
		kinds = " -storm.kinds=" + strings.Join(s.kinds, ",")
	}
	fmt.Fprintf(&b, "  reproduce: go test ./storm -run TestStorm -args -storm.seed=%d -storm.faults=%d%s (the step numbers below are the seed's)\n", s.seed, *stormFaults, kinds)
	for _, r := range s.steps[max(0, n-4):n] {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	r := s.steps[n-1]
	end := r.recoverAt
	if end.IsZero() || end.Sub(r.start) > 15*time.Second {
		end = r.start.Add(15 * time.Second)
	}
	for _, l := range s.d.logExcerpt(r.start.Add(-200*time.Millisecond), end, 30) {
		fmt.Fprintf(&b, "    log: %s\n", l)
	}
	return b.String()
}

// recipeAt is recipe for the step under way at time at (or the last one before it).
func (s *storm) recipeAt(at time.Time) string {
	n := 0
	for _, r := range s.steps {
		if r.start.After(at) {
			break
		}
		n = r.n
	}
	if n == 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "  before the first fault; seed %d\n", s.seed)
		for _, l := range s.d.logExcerpt(at.Add(-time.Second), at.Add(time.Second), 30) {
			fmt.Fprintf(&b, "    log: %s\n", l)
		}
		return b.String()
	}
	return s.recipe(n)
}
