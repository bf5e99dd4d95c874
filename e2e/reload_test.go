package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/stress"
	"github.com/announcementd/announcementd/wire"
)

// The tests here replace the daemon's processes under load (reloads, upgrades, kill -9 of the worker or of the
// supervisor, broken binaries) and check what clients and readers see. They assert counts, never timings: every
// wait is bounded only so that a hang fails instead of blocking the run.

// TestReloadsUnderLoad: 50 `reload --wait` in a row while clients publish and a Go and a Python reader check every
// snapshot they take. No request fails, no snapshot is inconsistent, no version goes back, every acknowledged
// announcement is there at the end, the worker generation advanced by exactly 50, and SIGTERM then stops the
// daemon cleanly (a listener left in blocking mode by any of the 50 handoffs would hang its worker's Close).
func TestReloadsUnderLoad(t *testing.T) {
	const reloads = 50
	d := newDaemon(t)
	readers := []*readerProc{startGoReader(t, d.shm), startPythonReader(t, d.shm)}
	l := startLoad(t, d, 4, 5, 0)
	l.waitAcks(t, 20)
	before := d.status(t)

	ackedBefore := l.counts().ok
	var failedReloads int
	for i := range reloads {
		code, out, errs := d.ctlTimeout(90*time.Second, "reload", "--wait", "--timeout", "60s")
		if code != 0 {
			failedReloads++
			t.Errorf("reload %d: exit %d: %s%s", i+1, code, out, errs)
		}
	}
	ackedDuring := l.counts().ok - ackedBefore
	l.stop()
	after := d.status(t)
	results := finishReaders(t, readers)
	c := l.counts()
	t.Logf("%d reloads (%d failed); requests: %d ok (%d during the reloads), %d failed; generation %d -> %d",
		reloads, failedReloads, c.ok, ackedDuring, c.failed, before.Worker.Generation, after.Worker.Generation)
	for _, r := range results {
		t.Logf("reader %s", r)
	}

	if c.failed != 0 {
		t.Errorf("%d of %d requests failed during the reloads; first: %q", c.failed, c.ok+c.failed, c.failures)
	}
	if ackedDuring == 0 {
		t.Errorf("no request was acknowledged during the reloads: the load proves nothing")
	}
	if got := after.Worker.Generation - before.Worker.Generation; got != reloads {
		t.Errorf("worker generation went from %d to %d: advanced by %d, want %d", before.Worker.Generation, after.Worker.Generation, got, reloads)
	}
	if n := len(after.Supervisor.Generations); n != 1 {
		t.Errorf("after the reloads the supervisor has %d live generations, want 1: %+v", n, after.Supervisor.Generations)
	}
	for _, r := range results {
		r.check(t)
	}
	l.checkAcked(t, "list", d.listContents(t))
	l.checkAcked(t, "board", d.boardContents(t))

	d.stopCleanly(t)
}

// TestWorkerKill9UnderLoad: 50 times, once a worker serves, kill -9 it at a random moment while clients publish and
// the readers check. Requests in flight at a kill may fail (counted, not failed), but no snapshot is inconsistent,
// no version goes back, every acknowledged announcement is there at the end, and the supervisor counted 50 restarts.
func TestWorkerKill9UnderLoad(t *testing.T) {
	const kills = 50
	d := newDaemon(t, "--restart-limit", "-1", "--restart-backoff", "50ms")
	readers := []*readerProc{startGoReader(t, d.shm), startPythonReader(t, d.shm)}
	l := startLoad(t, d, 4, 5, 0)
	l.waitAcks(t, 20)
	control := d.controlClient()

	killed := 0
	for i := range kills {
		pid, err := waitServing(control, killed)
		if err != nil {
			t.Fatalf("kill %d: %v\n%s", i+1, err, d.logs)
		}
		time.Sleep(time.Duration(rand.IntN(151)) * time.Millisecond) // on purpose: the kill comes at a random point of serving
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
		killed = pid
	}
	if _, err := waitServing(control, killed); err != nil {
		t.Fatalf("after the last kill: %v\n%s", err, d.logs)
	}
	l.waitAcks(t, l.counts().ok+4) // the last generation serves requests too
	l.stop()
	st := d.status(t)
	results := finishReaders(t, readers)
	c := l.counts()
	t.Logf("%d kills; supervisor restarts %d; requests: %d ok, %d failed (in flight at a kill); first failures %q",
		kills, st.Supervisor.Restarts, c.ok, c.failed, c.failures)
	for _, r := range results {
		t.Logf("reader %s", r)
	}

	if st.Supervisor.Restarts != kills {
		t.Errorf("supervisor.restarts = %d after %d kills", st.Supervisor.Restarts, kills)
	}
	for _, r := range results {
		r.check(t)
	}
	l.checkAcked(t, "list", d.listContents(t))
	l.checkAcked(t, "board", d.boardContents(t))
}

// Reasons the broken binaries give (the badworker's are in testdata/badworker).
var (
	reasonExit3   = regexp.MustCompile(`exit status 3`)
	reasonTimeout = regexp.MustCompile(`timed out|deadline exceeded`)
	reasonStandby = regexp.MustCompile(`badworker: refusing standby on purpose`)
	reasonReady   = regexp.MustCompile(`badworker: refusing to serve on purpose`)
)

// TestBadBinaries installs broken binaries at the path the daemon runs from, one after the other, and reloads under
// light load. Each reload must fail with the reason, leave the generation that served serving (for an unhealthy
// Ready after Start: roll back to the same worker process), lose no request, show the failure in status, leave
// exactly one worker process, and leak no fd in the supervisor. Then the good binary is restored and a reload works.
//
// A reload that finds a different binary on disk upgrades the supervisor first (tableflip): the broken binary is
// started as the new supervisor before any worker. The shell scripts fail right there. The badworker, started as a
// supervisor, executes the good announcementd in its place (see testdata/badworker), so that its broken worker is
// what the new supervisor starts: a release whose worker is broken.
func TestBadBinaries(t *testing.T) {
	proctest.Slow(t, slowE2E)
	dir := t.TempDir()
	good := filepath.Join(binDir, "announcementd")
	bin := filepath.Join(dir, "announcementd")
	copyFile(t, good, bin)
	badStandby := buildBadWorker(t, dir, "standby", good)
	badReady := buildBadWorker(t, dir, "ready", good)

	d := newDaemonFrom(t, bin, "--ready-timeout", "2s")
	l := startLoad(t, d, 2, 5, 10*time.Millisecond)
	l.waitAcks(t, 10)
	st0 := d.status(t)
	sup, worker, gen := st0.Supervisor.PID, st0.Worker.PID, st0.Worker.Generation
	fds0 := stableFds(t, sup)

	cases := []struct {
		name    string
		install func(path string)
		reason  *regexp.Regexp
		outcome string // of the reload, in status
	}{
		{"exits-3", func(p string) { writeExecutable(t, p, "#!/bin/sh\nexit 3\n") }, reasonExit3, "failed"},
		{"never-ready", func(p string) { writeExecutable(t, p, "#!/bin/sh\nexec sleep 600\n") }, reasonTimeout, "failed"},
		{"unhealthy-standby", func(p string) { copyFile(t, badStandby, p) }, reasonStandby, "failed"},
		{"unhealthy-ready", func(p string) { copyFile(t, badReady, p) }, reasonReady, "rolled back"},
	}
	for _, tc := range cases {
		installAtomically(t, bin, tc.install)
		code, out, errs := d.ctlTimeout(90*time.Second, "reload", "--wait", "--timeout", "60s")
		output := out + errs
		t.Logf("%s: reload exit %d: %s", tc.name, code, strings.TrimSpace(output))
		if code == 0 || !tc.reason.MatchString(output) {
			t.Errorf("%s: reload --wait exit %d, output %q; want non-zero with %q", tc.name, code, output, tc.reason)
		}
		if ss := d.controlStatus(t); ss.PID != sup {
			// The supervisor that served is gone, and its worker with it: what follows would only repeat this.
			t.Errorf("%s: the supervisor is now pid %d (was %d): the reload replaced it, so the generation that served is gone "+
				"and cannot serve again; the new supervisor's last reload: %+v", tc.name, ss.PID, sup, ss.LastReload)
			installAtomically(t, bin, func(p string) { copyFile(t, good, p) })
			t.Fatalf("stopping after %s (%d requests failed so far)\n%s", tc.name, l.counts().failed, d.logs)
		}
		st := d.status(t)
		if st.Worker.PID != worker || st.Worker.Generation != gen {
			t.Errorf("%s: worker pid %d generation %d serves; want the one that served before, pid %d generation %d",
				tc.name, st.Worker.PID, st.Worker.Generation, worker, gen)
		}
		if r := st.Supervisor.LastReload; r == nil || r.OK || r.Outcome != tc.outcome || !tc.reason.MatchString(r.Reason) {
			t.Errorf("%s: status last_reload %+v; want ok false, outcome %q, a reason matching %q", tc.name, r, tc.outcome, tc.reason)
		}
		if kids := procfs.Children(st.Supervisor.PID); len(kids) != 1 || kids[0].PID != st.Worker.PID {
			t.Errorf("%s: the supervisor (pid %d) has children %+v; want exactly its worker, pid %d", tc.name, st.Supervisor.PID, kids, st.Worker.PID)
		}
		if n, leaked := fdsSettle(sup, fds0); n > len(fds0) {
			t.Errorf("%s: the supervisor holds %d fds, %d before the bad reloads; new: %v", tc.name, n, len(fds0), leaked)
		}
		if c := l.counts(); c.failed != 0 {
			t.Errorf("%s: %d requests failed so far; first: %q", tc.name, c.failed, c.failures)
		}
	}

	installAtomically(t, bin, func(p string) { copyFile(t, good, p) })
	if code, out, errs := d.ctlTimeout(90*time.Second, "reload", "--wait", "--timeout", "60s"); code != 0 {
		t.Errorf("reload with the good binary restored: exit %d: %s%s", code, out, errs)
	}
	l.waitAcks(t, l.counts().ok+4)
	l.stop()
	st := d.status(t)
	c := l.counts()
	t.Logf("requests: %d ok, %d failed; generation %d -> %d", c.ok, c.failed, gen, st.Worker.Generation)
	if st.Worker.Generation <= gen || st.Supervisor.LastReload == nil || !st.Supervisor.LastReload.OK {
		t.Errorf("after restoring the good binary: generation %d (was %d), last reload %+v", st.Worker.Generation, gen, st.Supervisor.LastReload)
	}
	if c.failed != 0 {
		t.Errorf("%d of %d requests failed; first: %q", c.failed, c.ok+c.failed, c.failures)
	}
	l.checkAcked(t, "list", d.listContents(t))
	l.checkAcked(t, "board", d.boardContents(t))
}

// TestUpgradeChangesBuilds installs a different build at the daemon's path and reloads: the supervisor upgrades
// itself (a new process), both it and its worker run the new build, the pid file follows, the announcements
// acknowledged before and during the upgrade survive, and SIGTERM to the new supervisor stops everything.
func TestUpgradeChangesBuilds(t *testing.T) {
	proctest.Slow(t, slowE2E)
	dir := t.TempDir()
	bin := filepath.Join(dir, "announcementd")
	copyFile(t, filepath.Join(binDir, "announcementd"), bin)
	changed := filepath.Join(dir, "announcementd.changed")
	// Another -ldflags gives other bytes (the flags are recorded in the binary's build info).
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.buildTag=x", "-o", changed, "../cmd/announcementd").CombinedOutput(); err != nil {
		t.Fatalf("build a changed announcementd: %v\n%s", err, out)
	}

	d := newDaemonFrom(t, bin)
	oldSup := d.proc.PID()
	reader := startGoReader(t, d.shm)
	l := startLoad(t, d, 2, 5, 5*time.Millisecond)
	l.waitAcks(t, 10)
	before := d.status(t)

	installAtomically(t, bin, func(p string) { copyFile(t, changed, p) })
	code, out, errs := d.ctlTimeout(90*time.Second, "reload", "--wait", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("reload --wait with a changed binary: exit %d: %s%s\n%s", code, out, errs, d.logs)
	}
	t.Logf("reload: %s", strings.TrimSpace(out))
	// The old supervisor exits 0 once it has handed over.
	select {
	case <-d.proc.Exited():
		if err := d.proc.ExitErr(); err != nil {
			t.Errorf("the old supervisor ended with %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the old supervisor (pid %d) did not exit after handing over\n%s", oldSup, d.logs)
	}
	l.waitAcks(t, l.counts().ok+4)
	after := d.status(t)
	l.stop()
	result := finishReaders(t, []*readerProc{reader})[0]
	c := l.counts()
	t.Logf("supervisor pid %d -> %d, build %q -> %q; worker build %q -> %q; requests %d ok, %d failed",
		before.Supervisor.PID, after.Supervisor.PID, before.Supervisor.Build, after.Supervisor.Build,
		before.Worker.Build, after.Worker.Build, c.ok, c.failed)
	t.Logf("reader %s", result)

	if after.Supervisor.PID == before.Supervisor.PID {
		t.Errorf("the supervisor pid is still %d after the upgrade", after.Supervisor.PID)
	}
	if after.Supervisor.Build == before.Supervisor.Build || after.Worker.Build == before.Worker.Build || after.Supervisor.Build != after.Worker.Build {
		t.Errorf("builds after the upgrade: supervisor %q, worker %q; before: %q, %q; want both changed and equal",
			after.Supervisor.Build, after.Worker.Build, before.Supervisor.Build, before.Worker.Build)
	}
	if after.Worker.Generation <= before.Worker.Generation {
		t.Errorf("worker generation %d after the upgrade, %d before", after.Worker.Generation, before.Worker.Generation)
	}
	if pid, err := os.ReadFile(filepath.Join(d.runtime, "announcementd.pid")); err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(after.Supervisor.PID) {
		t.Errorf("pid file holds %q (%v), want the new supervisor's pid %d", pid, err, after.Supervisor.PID)
	}
	if c.failed != 0 {
		t.Errorf("%d of %d requests failed during the upgrade; first: %q", c.failed, c.ok+c.failed, c.failures)
	}
	result.check(t)
	l.checkAcked(t, "list", d.listContents(t))
	l.checkAcked(t, "board", d.boardContents(t))

	// The new supervisor is not our child: signal it by pid and wait for its processes to go.
	group := proctest.Group(d.proc.PID())
	if err := syscall.Kill(after.Supervisor.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if left := waitGone(group, 30*time.Second); len(left) > 0 {
		t.Fatalf("30 s after SIGTERM to the new supervisor, processes %v of %v are still there\n%s", left, group, d.logs)
	}
	d.waitOutput(t) // every holder of the daemon's stderr has exited
}

// TestSupervisorKill9LeavesNoOrphan: kill -9 only the supervisor. Its worker stops by itself; a new daemon on the
// same region and state starts, the board's version has not gone back, and every acknowledged announcement is there.
func TestSupervisorKill9LeavesNoOrphan(t *testing.T) {
	d := newDaemon(t)
	reader := startGoReader(t, d.shm)
	l := startLoad(t, d, 2, 5, 2*time.Millisecond)
	l.waitAcks(t, 20)
	st := d.status(t)
	versionBefore := d.boardSnapshot().Version

	if err := syscall.Kill(st.Supervisor.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if left := waitGone([]int{st.Supervisor.PID, st.Worker.PID}, 10*time.Second); len(left) > 0 {
		t.Fatalf("10 s after kill -9 of the supervisor (pid %d), its worker (pid %d) is still running\n%s", st.Supervisor.PID, st.Worker.PID, d.logs)
	}
	d.waitOutput(t)
	l.stop()
	c := l.counts()
	maxAcked := l.maxVersion()
	result := finishReaders(t, []*readerProc{reader})[0] // the writer is gone: its last version is the final one

	d.start()
	snap := d.boardSnapshot()
	l.checkAcked(t, "board after the restart", boardMap(snap))
	l.checkAcked(t, "list after the restart", d.listContents(t))
	t.Logf("requests %d ok, %d failed (after the kill); versions: %d before the kill, %d highest acknowledged, %d after the restart",
		c.ok, c.failed, versionBefore, maxAcked, snap.Version)
	t.Logf("reader %s", result)
	if snap.Version < max(versionBefore, maxAcked, result.LastVersion) {
		t.Errorf("after the restart the board is at version %d; before: %d on the board, %d acknowledged, %d seen by the reader",
			snap.Version, versionBefore, maxAcked, result.LastVersion)
	}
	result.check(t)
}

// --- the load: clients publishing self-checking announcements ---

// load publishes from several clients; each owns its ids and publishes them in turn with an increasing n, so the
// last acknowledged content of each id is well defined.
type load struct {
	d      *daemon
	client *http.Client
	done   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	ids      map[uint64]*idState
	ok       int
	failed   int
	failures []string // the first few
	maxVer   uint64
}

type idState struct {
	acked   string          // the last acknowledged content; "" if none
	ackedN  uint64          // its n
	unknown map[uint64]bool // n of requests after it that failed: they may or may not have been applied
}

type loadCounts struct {
	ok, failed int
	failures   []string
}

// startLoad starts clients clients, each publishing idsEach ids, with pause between requests. Each request uses
// a new connection, as a CLI client does.
func startLoad(t *testing.T, d *daemon, clients, idsEach int, pause time.Duration) *load {
	l := &load{d: d, done: make(chan struct{}), ids: map[uint64]*idState{},
		client: proctest.UnixClient(filepath.Join(d.runtime, "api.sock"), 30*time.Second, false)}
	for c := range clients {
		for i := range idsEach {
			l.ids[uint64(1+c*idsEach+i)] = &idState{unknown: map[uint64]bool{}}
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := uint64(0); ; n++ {
				select {
				case <-l.done:
					return
				default:
				}
				id := uint64(1 + c*idsEach + int(n)%idsEach)
				l.publish(id, n)
				if pause > 0 {
					time.Sleep(pause) // the client's pace, on purpose
				}
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// publish sends one PUT and records its outcome.
func (l *load) publish(id, n uint64) {
	content := stress.SelfCheck(id, n)
	body, _ := json.Marshal(wire.PutRequest{Content: content})
	req, _ := http.NewRequest("PUT", fmt.Sprintf("http://announcementd/v1/announcements/%d", id), bytes.NewReader(body))
	var version uint64
	resp, err := l.client.Do(req)
	if err == nil {
		var res wire.AnnouncementResponse
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		} else if jerr := json.Unmarshal(b, &res); jerr != nil || res.Version == 0 {
			err = fmt.Errorf("status %d with %q", resp.StatusCode, b)
		}
		version = res.Version
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.ids[id]
	if err != nil {
		l.failed++
		if len(l.failures) < 5 {
			l.failures = append(l.failures, fmt.Sprintf("id %d n %d: %v", id, n, err))
		}
		s.unknown[n] = true
		return
	}
	l.ok++
	l.maxVer = max(l.maxVer, version)
	s.acked, s.ackedN = content, n
	clear(s.unknown)
}

// stop stops the clients and waits for them; it may be called more than once.
func (l *load) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

func (l *load) counts() loadCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadCounts{ok: l.ok, failed: l.failed, failures: slices.Clone(l.failures)}
}

func (l *load) maxVersion() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxVer
}

// waitAcks waits until at least n requests have been acknowledged in all.
func (l *load) waitAcks(t *testing.T, n int) {
	t.Helper()
	if !proctest.Poll(30*time.Second, func() bool { return l.counts().ok >= n }) {
		c := l.counts()
		t.Fatalf("only %d requests acknowledged in 30 s (want %d), %d failed: %q\n%s", c.ok, n, c.failed, c.failures, l.d.logs)
	}
}

// checkAcked checks that got (id -> content) holds every acknowledged announcement: each id its last acknowledged
// content, or the content of a later request whose answer was lost (it may have been applied).
func (l *load) checkAcked(t *testing.T, where string, got map[uint64]string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	missing := 0
	for id, s := range l.ids {
		content, ok := got[id]
		if content == s.acked && (ok || s.acked == "") {
			continue
		}
		if gid, n, valid := stress.ParseSelfCheck(content); ok && valid && gid == id && s.unknown[n] && (s.acked == "" || n > s.ackedN) {
			continue
		}
		missing++
		if missing <= 5 {
			t.Errorf("%s: announcement %d is %q; last acknowledged %q", where, id, content, s.acked)
		}
	}
	if missing > 5 {
		t.Errorf("%s: %d announcements in all differ from their last acknowledged content", where, missing)
	}
}

// --- readers: processes that check every snapshot ---

// readerCounts is what a checking reader prints (the Go helper below and testdata/check_reader.py).
type readerCounts struct {
	Lang               string         `json:"lang"`
	Snapshots          int            `json:"snapshots"`
	Records            int            `json:"records"`
	Versions           int            `json:"versions"` // how many times the version changed (went up)
	Inconsistent       int            `json:"inconsistent"`
	VersionDecreases   int            `json:"version_decreases"`
	ContentRegressions int            `json:"content_regressions"`
	Errors             map[string]int `json:"errors"`
	Reopens            int            `json:"reopens"`
	FirstVersion       uint64         `json:"first_version"`
	LastVersion        uint64         `json:"last_version"`
	Examples           []string       `json:"examples"`
}

func (c readerCounts) String() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// corruptCodes are reader errors that mean bytes that fail their checks on a stable slot: not a race, a bad board.
var corruptCodes = []string{string(board.CodeSnapshotChecksum), string(board.CodeRecordChecksum), string(board.CodeBadRecord)}

// check fails the test unless the reader took snapshots across several versions and found nothing wrong.
func (c readerCounts) check(t *testing.T) {
	t.Helper()
	if c.Snapshots == 0 || c.Versions < 2 {
		t.Errorf("%s reader: %d snapshots over %d versions: it saw too little to prove anything", c.Lang, c.Snapshots, c.Versions)
	}
	if c.Inconsistent != 0 || c.VersionDecreases != 0 || c.ContentRegressions != 0 {
		t.Errorf("%s reader: %d inconsistent snapshots, %d version decreases, %d content regressions; e.g. %q",
			c.Lang, c.Inconsistent, c.VersionDecreases, c.ContentRegressions, c.Examples)
	}
	for _, code := range corruptCodes {
		if c.Errors[code] != 0 {
			t.Errorf("%s reader: %d %s errors (corrupt bytes on a stable slot)", c.Lang, c.Errors[code], code)
		}
	}
}

// readerProc is a running checking reader; closing its stdin makes it print its counts and exit.
type readerProc struct {
	name        string
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	stdout, err bytes.Buffer
	exited      chan struct{} // closed when the process has exited; then waitErr is its end
	waitErr     error
}

func startReaderProc(t *testing.T, name string, cmd *exec.Cmd) *readerProc {
	t.Helper()
	r := &readerProc{name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.err
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the %s reader: %v", name, err)
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.stdin.Close()
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

func startGoReader(t *testing.T, shm string) *readerProc {
	return startReaderProc(t, "go", proctest.Command(t, "goreader", shm))
}

func startPythonReader(t *testing.T, shm string) *readerProc {
	return startReaderProc(t, "python", exec.Command("python3", "testdata/check_reader.py", shm))
}

// finishReaders stops the readers and returns their counts.
func finishReaders(t *testing.T, rs []*readerProc) []readerCounts {
	t.Helper()
	var out []readerCounts
	for _, r := range rs {
		r.stdin.Close()
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			r.cmd.Process.Kill()
			<-r.exited
			t.Fatalf("the %s reader did not stop", r.name)
		}
		var c readerCounts
		if err := json.Unmarshal(r.stdout.Bytes(), &c); r.waitErr != nil || err != nil {
			t.Fatalf("%s reader: %v %v\nstdout: %s\nstderr: %s", r.name, r.waitErr, err, r.stdout.Bytes(), r.err.Bytes())
		}
		out = append(out, c)
	}
	return out
}

// goReaderRole is the proctest role goreader: goReader on the board at args[0].
func goReaderRole(args []string) int { return goReader(args[0]) }

// goReader is the Go checking reader: board/reader's Open and Snapshot, reopening on superseded, until stdin ends.
func goReader(path string) int {
	var stop atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	c := &checker{readerCounts: readerCounts{Lang: "go", Errors: map[string]int{}}, lastN: map[uint64]uint64{}}
	open := func() *reader.Board {
		for !stop.Load() {
			b, err := reader.Open(path)
			if err == nil {
				return b
			}
			c.Errors[string(board.CodeOf(err))]++
			time.Sleep(time.Millisecond) // a polling reader's pause before it tries again, as check_reader.py's
		}
		return nil
	}
	b := open()
	for b != nil && !stop.Load() {
		s, err := b.Snapshot()
		if err != nil {
			c.Errors[string(board.CodeOf(err))]++
			if errors.Is(err, board.ErrSuperseded) {
				b.Close()
				c.Reopens++
				b = open()
			}
			continue
		}
		if !c.snapshot(s) {
			time.Sleep(time.Millisecond) // no change: the polling reader's pause
		}
	}
	if b != nil {
		b.Close()
	}
	if err := json.NewEncoder(os.Stdout).Encode(c.readerCounts); err != nil {
		return 1
	}
	return 0
}

// checker applies the checks of testdata/check_reader.py to Go snapshots.
type checker struct {
	readerCounts
	have     bool
	last     uint64
	lastRecs []board.Record
	lastN    map[uint64]uint64
}

func (c *checker) example(format string, args ...any) {
	if len(c.Examples) < 5 {
		c.Examples = append(c.Examples, fmt.Sprintf(format, args...))
	}
}

// snapshot checks s; it reports whether the version differs from the previous snapshot's.
func (c *checker) snapshot(s *board.Snapshot) bool {
	c.Snapshots++
	c.Records += len(s.Records)
	v := s.Version
	ns := map[uint64]uint64{}
	bad := ""
	for _, r := range s.Records {
		id, n, ok := stress.ParseSelfCheck(r.Content)
		if !ok || id != r.ID {
			bad = fmt.Sprintf("version %d: record %d has content %q", v, r.ID, r.Content)
			break
		}
		if _, dup := ns[id]; dup {
			bad = fmt.Sprintf("version %d: id %d twice", v, id)
			break
		}
		ns[id] = n
	}
	if bad == "" && c.have && v == c.last && !slices.EqualFunc(s.Records, c.lastRecs, func(a, b board.Record) bool {
		return a.ID == b.ID && a.Content == b.Content
	}) {
		bad = fmt.Sprintf("version %d: two snapshots of it hold different records", v)
	}
	if bad != "" {
		c.Inconsistent++
		c.example("%s", bad)
		return true
	}
	changed := !c.have || v != c.last
	switch {
	case c.have && v < c.last:
		c.VersionDecreases++
		c.example("version %d after %d", v, c.last)
	case changed:
		c.Versions++
		for id, n := range ns {
			if prev, ok := c.lastN[id]; ok && n < prev {
				c.ContentRegressions++
				c.example("version %d: id %d n=%d after n=%d", v, id, n, prev)
			} else {
				c.lastN[id] = n
			}
		}
	}
	if !c.have {
		c.FirstVersion = v
	}
	c.have, c.last, c.lastRecs, c.LastVersion = true, v, s.Records, v
	return changed
}

// --- the daemon: status, contents, stopping ---

// ctlTimeout is d.ctl that gives up (exit -1) after timeout, so that a hung command fails the test instead of
// blocking it.
func (d *daemon) ctlTimeout(timeout time.Duration, args ...string) (int, string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "announcementctl"), append([]string{"--runtime-dir", d.runtime}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, out.String(), errb.String() + fmt.Sprintf("(killed after %v)", timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		return -1, out.String(), err.Error()
	}
	return 0, out.String(), errb.String()
}

// status is `announcementctl status --json`: the worker's status with the supervisor's.
func (d *daemon) status(t *testing.T) wire.ServiceStatus {
	t.Helper()
	code, out, errs := d.ctlTimeout(30*time.Second, "status", "--json")
	var st wire.ServiceStatus
	if code != 0 {
		t.Fatalf("status: exit %d: %s%s\n%s", code, out, errs, d.logs)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	return st
}

// listContents is `list --json` as id -> content.
func (d *daemon) listContents(t *testing.T) map[uint64]string {
	t.Helper()
	code, out, errs := d.ctlTimeout(30*time.Second, "list", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s%s", code, out, errs)
	}
	var list wire.ListResponse
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	m := map[uint64]string{}
	for _, a := range list.Announcements {
		m[a.ID] = a.Content
	}
	return m
}

// boardContents is the board, read with the Go reader, as id -> content.
func (d *daemon) boardContents(t *testing.T) map[uint64]string {
	t.Helper()
	return boardMap(d.boardSnapshot())
}

func boardMap(s *board.Snapshot) map[uint64]string {
	m := map[uint64]string{}
	for _, r := range s.Records {
		m[r.ID] = r.Content
	}
	return m
}

// controlClient talks to the supervisor's control socket.
func (d *daemon) controlClient() *http.Client {
	return proctest.UnixClient(filepath.Join(d.runtime, "control.sock"), 10*time.Second, false)
}

// controlStatus asks the supervisor for its status on its control socket; unlike `status`, it needs no worker.
func (d *daemon) controlStatus(t *testing.T) wire.SupervisorStatus {
	t.Helper()
	resp, err := d.controlClient().Get("http://supervisor/v1/status")
	if err != nil {
		t.Fatalf("supervisor status: %v\n%s", err, d.logs)
	}
	defer resp.Body.Close()
	var st wire.SupervisorStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("supervisor status: %v", err)
	}
	return st
}

// waitServing waits until the supervisor reports a serving worker other than pid not, and returns its pid.
func waitServing(control *http.Client, not int) (int, error) {
	var last string
	pid := 0
	if proctest.Poll(30*time.Second, func() bool {
		resp, err := control.Get("http://supervisor/v1/status")
		if err != nil {
			last = err.Error()
			return false
		}
		var st wire.SupervisorStatus
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			last = err.Error()
			return false
		}
		for _, g := range st.Generations {
			if g.State == wire.GenerationServing && g.PID != not {
				pid = g.PID
				return true
			}
		}
		last = fmt.Sprintf("generations %+v", st.Generations)
		return false
	}) {
		return pid, nil
	}
	return 0, fmt.Errorf("no worker other than pid %d serves after 30 s (last: %s)", not, last)
}

// stopCleanly sends SIGTERM to the supervisor and checks that it exits 0 and leaves no process behind.
func (d *daemon) stopCleanly(t *testing.T) {
	t.Helper()
	group := proctest.Group(d.proc.PID())
	d.proc.Signal(syscall.SIGTERM)
	if err := d.proc.WaitGone(40 * time.Second); err != nil { // every holder of the daemon's output has exited too
		left := proctest.Group(d.proc.PID())
		d.proc.Kill()
		t.Fatalf("40 s after SIGTERM the daemon has not stopped; still running: %v (a listener in blocking mode?): %v", left, err)
	}
	if err := d.proc.ExitErr(); err != nil {
		t.Errorf("the daemon ended with %v after SIGTERM, want exit status 0\n%s", err, d.logs)
	}
	if left := waitGone(group, 10*time.Second); len(left) > 0 {
		t.Errorf("after the daemon stopped, processes %v of %v are still running", left, group)
	}
}

// waitOutput waits until every process holding the daemon's stdout and stderr has exited.
func (d *daemon) waitOutput(t *testing.T) {
	t.Helper()
	if err := d.proc.WaitGone(30 * time.Second); err != nil {
		t.Fatalf("some process still holds the daemon's output: %v", err)
	}
}

// --- processes and files ---

// waitGone waits until none of pids is running and returns those still running at the timeout.
func waitGone(pids []int, timeout time.Duration) []int {
	var left []int
	proctest.Poll(timeout, func() bool {
		left = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return !proctest.Running(pid) })
		return len(left) == 0
	})
	return left
}

// fdTargets lists the fds pid holds as "fd -> target".
func fdTargets(pid int) []string {
	fds, _ := proctest.Fds(pid)
	out := make([]string, len(fds))
	for i, fd := range fds {
		out[i] = fd.String()
	}
	return out
}

// stableFds returns pid's fds once they have not changed for 100 ms (a control connection just closed by its
// client may take a moment to close on the server's side).
func stableFds(t *testing.T, pid int) []string {
	t.Helper()
	var cur []string
	var since time.Time
	proctest.WaitUntil(t, 5*time.Second, func() bool {
		if fds := fdTargets(pid); !slices.Equal(fds, cur) {
			cur, since = fds, time.Now()
			return false
		}
		return time.Since(since) >= 100*time.Millisecond
	}, fmt.Sprintf("pid %d's fds to settle (last %v)", pid, cur))
	return cur
}

// fdsSettle waits (at most 5 s) until pid holds no more fds than base, and returns how many it holds and the ones
// not in base.
func fdsSettle(pid int, base []string) (int, []string) {
	var cur []string
	proctest.Poll(5*time.Second, func() bool {
		cur = fdTargets(pid)
		return len(cur) <= len(base)
	})
	var extra []string
	for _, fd := range cur {
		if !slices.Contains(base, fd) {
			extra = append(extra, fd)
		}
	}
	return len(cur), extra
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func writeExecutable(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// installAtomically writes a file next to path with write, then renames it over path.
func installAtomically(t *testing.T, path string, write func(string)) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	os.Remove(tmp)
	write(tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// buildBadWorker builds testdata/badworker in mode (standby or ready); started as a supervisor it runs good.
func buildBadWorker(t *testing.T, dir, mode, good string) string {
	t.Helper()
	out := filepath.Join(dir, "badworker-"+mode)
	b, err := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.mode="+mode+" -X main.supervisor="+good, "./testdata/badworker").CombinedOutput()
	if err != nil {
		t.Fatalf("build the bad worker: %v\n%s", err, b)
	}
	return out
}
