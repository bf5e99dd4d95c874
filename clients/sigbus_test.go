package clients_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

// The SIGBUS guard (notice_guard_faults in clients/c/notice.h): a board truncated while a C reader copies it must
// cost that reader a reopen, not its life. A writer in this process publishes flat out into a 4 MiB board with
// about a thousand records (so that a snapshot copies some 320 KB, long enough to be hit), while the test
// truncates the file under everyone, to sizes from 0 to the middle of either slot, and heals it at once (Heal:
// what the daemon does within milliseconds), a thousand times or more. The C follower and its ASan/UBSan build,
// both with the guard, must survive, never accept a torn snapshot nor go back, and end on the writer's last
// version. The negative control runs the same follower without the guard (-n) in the same storm, restarting it
// whenever it dies: it must die of SIGBUS at least once, or the storm never hit a read and the test proves
// nothing; and each guarded follower must have caught at least one fault.
//
// The storm ends on those events once it has made sigbusTruncations truncations; a budget bounds it (a repair
// costs the writer about 10 ms under -race, mostly the race runtime's bookkeeping of the 4 MiB it maps again, so
// a slow machine makes fewer truncations in the budget: the events are what is required, and logged with them).

const (
	sigbusRegionSize  = 4 << 20
	sigbusExtra       = 960 // records beyond the stress pattern's 1..64: 961..1024 a snapshot
	sigbusTruncations = 1000
	sigbusBudget      = 12 * time.Second
)

// wideSnapshot is the stress pattern (internal/stress.Snapshot) for version v with sigbusExtra more records, as
// clients/c/notice_follow -w checks it: count = extra + 1 + v mod 64, every record carrying v.
func wideSnapshot(v uint64) []board.Record {
	n := sigbusExtra + 1 + v%64
	recs := make([]board.Record, n)
	for i := range n {
		id := i + 1
		prefix := strconv.FormatUint(v, 10) + ":" + strconv.FormatUint(id, 10) + ":"
		l := 32 + int((v+id)%225)
		recs[i] = board.Record{ID: id, EffectiveAt: int64(v), ExpiresAt: int64(v + id), Priority: int32(id),
			Content: prefix + strings.Repeat(".", max(0, l-len(prefix)))}
	}
	return recs
}

// guardedFollower is a C follower whose "faulted" events (the guard caught a SIGBUS) are counted on their way to
// the follower's own parser (follower.read).
type guardedFollower struct {
	*follower
	faults atomic.Int64
}

func startGuardedFollower(t *testing.T, name, bin, path string, env ...string) *guardedFollower {
	p := &follower{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-s", "60000", "-c", "-w", strconv.Itoa(sigbusExtra), path)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &guardedFollower{follower: p}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e struct {
				Event  string `json:"event"`
				Faults int64  `json:"faults"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Event == "faulted" || e.Event == "end") {
				g.faults.Store(e.Faults)
			}
			if _, err := pw.Write(append(sc.Bytes(), '\n')); err != nil {
				break
			}
		}
		pw.Close()
	}()
	go p.read(pr)
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return g
}

// unguardedRuns runs the C follower without the guard, again and again until stop is closed, and counts how its
// runs ended. A run that accepted a torn snapshot before it died is counted too.
type unguardedRuns struct {
	runs, sigbus, openFailed, other, torn atomic.Int64
	mu                                    sync.Mutex
	others                                []string
}

func (u *unguardedRuns) loop(path string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		default:
		}
		var out, stderr bytes.Buffer
		cmd := exec.Command("c/notice_follow", "-n", "-s", "60000", "-c", "-w", strconv.Itoa(sigbusExtra), path)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			u.note("start: " + err.Error())
			return
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var err error
		select {
		case err = <-exited:
		case <-stop:
			cmd.Process.Signal(syscall.SIGTERM)
			err = <-exited
		}
		u.runs.Add(1)
		if bytes.Contains(out.Bytes(), []byte(`"valid":false`)) {
			u.torn.Add(1)
		}
		var ee *exec.ExitError
		switch {
		case err == nil: // ended by SIGTERM, with its summary
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
			ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGBUS:
			u.sigbus.Add(1)
		case errors.As(err, &ee) && ee.ExitCode() == 1: // the board was short or being restored when it opened it
			u.openFailed.Add(1)
		default:
			u.other.Add(1)
			u.note(err.Error() + ": " + stderr.String())
		}
	}
}

func (u *unguardedRuns) note(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.others = append(u.others, s)
}

// TestSigbusGuardFollower: the C follower with the guard survives truncations during its reads (see above).
func TestSigbusGuardFollower(t *testing.T) {
	proctest.Slow(t, "truncations under followers in three languages")
	path := followPath(t, "sigbus")
	t.Cleanup(func() { os.Remove(path) })
	w, err := writer.Open(path, writer.Options{Size: sigbusRegionSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	first, err := w.Publish(wideSnapshot(w.Version() + 1))
	if err != nil {
		t.Fatal(err)
	}

	// The writer publishes flat out: every set is the pattern of the version it is meant for. A repair (Heal)
	// republishes the current set under a higher version: the followers check the set against its own version
	// (notice_follow -w), never above the snapshot's.
	//
	// A truncation and its Heal hold mu, which every publish takes too: the readers race the truncations, the
	// writer does not. (Under -race every atomic store of the writer runs inside the race runtime's C code, where
	// a SIGBUS is not the recoverable panic SetPanicOnFault makes of it in Go code: it kills the test process.
	// Without -race the writer survives that fault and repairs the file itself; board/writer's tests cover it.)
	var mu sync.Mutex
	stopWriter := make(chan struct{})
	writerDone := make(chan error, 1)
	var publishes atomic.Int64
	go func() {
		for {
			select {
			case <-stopWriter:
				writerDone <- nil
				return
			default:
			}
			recs := wideSnapshot(w.Version() + 1)
			mu.Lock()
			_, err := w.Publish(recs)
			mu.Unlock()
			if err != nil {
				writerDone <- err
				return
			}
			publishes.Add(1)
		}
	}()
	writerStopped := false
	stopTheWriter := func() {
		if !writerStopped {
			writerStopped = true
			close(stopWriter)
			if err := <-writerDone; err != nil {
				t.Errorf("writer: %v", err)
			}
		}
	}
	defer stopTheWriter()

	asanOpts := "ASAN_OPTIONS=handle_sigbus=0" // else ASan's SIGBUS handler is the one that runs, and reports
	if o := os.Getenv("ASAN_OPTIONS"); o != "" {
		asanOpts = "ASAN_OPTIONS=" + o + ":handle_sigbus=0"
	}
	gs := []*guardedFollower{
		startGuardedFollower(t, "c", "c/notice_follow", path),
		startGuardedFollower(t, "c-asan", "c/notice_follow_asan", path, asanOpts),
	}
	ps := []*follower{gs[0].follower, gs[1].follower}
	waitFollowers(t, ps, "a first version", func(p *follower) bool { return len(p.versions) > 0 })

	var u unguardedRuns
	stopUnguarded := make(chan struct{})
	unguardedDone := make(chan struct{})
	go u.loop(path, stopUnguarded, unguardedDone)
	unguardedStopped := false
	stopTheUnguarded := func() {
		if !unguardedStopped {
			unguardedStopped = true
			close(stopUnguarded)
			<-unguardedDone
		}
	}
	defer stopTheUnguarded()

	// The storm: truncate to each size in turn, heal at once. Sizes: nothing at all (the version word at 0
	// faults), inside the header's first page (8, 1000: the page stays, zero past the size), the header alone,
	// and the middle of a record in each slot (inside what a snapshot copies).
	hdr := w.Header()
	stride := uint64(hdr.Stride)
	sizes := []int64{0, 8, 1000, int64(hdr.HeaderSize),
		int64(hdr.SlotOffset(0) + 64 + 300*stride + 100), int64(hdr.SlotOffset(1) + 64 + 200*stride + 7),
		int64(hdr.SlotOffset(0) + 64 + 900*stride + 4000), int64(hdr.SlotOffset(1) + 64 + 700*stride + 1)}
	events := func() bool {
		return gs[0].faults.Load() > 0 && gs[1].faults.Load() > 0 && u.sigbus.Load() > 0
	}
	start := time.Now()
	var truncations int
	for !(truncations >= sigbusTruncations && events()) && time.Since(start) < sigbusBudget {
		size := sizes[truncations%len(sizes)]
		mu.Lock()
		if err := os.Truncate(path, size); err != nil {
			mu.Unlock()
			t.Fatalf("truncate to %d: %v", size, err)
		}
		truncations++
		nf, d, err := w.Heal()
		mu.Unlock()
		if nf != nil {
			nf.Close()
		}
		if err != nil || !d.Has(writer.DamageSize) {
			t.Fatalf("heal after truncating to %d bytes: damage %v, %v", size, d, err)
		}
	}
	storm := time.Since(start)
	stopTheUnguarded()
	stopTheWriter()

	// The file is whole again (the last Heal restored it; the writer is stopped): one last set, as its own
	// version, which every guarded follower must end on.
	if nf, d, err := w.Heal(); err != nil || !d.None() {
		if nf != nil {
			nf.Close()
		}
		t.Fatalf("the board after the storm: damage %v, %v", d, err)
	}
	want := w.Version() + 1
	final, err := w.Publish(wideSnapshot(want))
	if err != nil || final != want {
		t.Fatalf("final publish: version %d (want %d), %v", final, want, err)
	}
	waitFollowers(t, ps, "the final version", reached(final))
	stopFollowers(t, ps)

	t.Logf("storm: %d truncations, each healed, in %v; %d publishes besides, versions %d..%d", truncations,
		storm.Round(time.Millisecond), publishes.Load(), first, final)
	for _, g := range gs {
		t.Logf("%-6s guard caught %d faults, lost the board %d times", g.name, g.faults.Load(), len(g.lost))
	}
	t.Logf("unguarded C follower (-n): %d runs, %d died of SIGBUS, %d could not open the board, %d other endings",
		u.runs.Load(), u.sigbus.Load(), u.openFailed.Load(), u.other.Load())

	// Same file all along (restored in place): no reopen is a move, files = [the first version].
	checkFollowers(t, &followWriterProc{t: t, files: []uint64{first}}, ps, final)
	for _, g := range gs {
		if g.faults.Load() == 0 {
			t.Errorf("%s follower: the guard caught no fault in %d truncations: the storm never hit its reads",
				g.name, truncations)
		}
	}
	if u.sigbus.Load() == 0 {
		t.Errorf("negative control: the follower without the guard never died of SIGBUS in %d runs and %d truncations",
			u.runs.Load(), truncations)
	}
	if u.torn.Load() != 0 {
		t.Errorf("the follower without the guard accepted a torn snapshot in %d runs", u.torn.Load())
	}
	if u.other.Load() != 0 {
		t.Errorf("the follower without the guard ended otherwise than by SIGBUS, a failed open or SIGTERM: %q", u.others)
	}
}
