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
// version. The same follower without the guard (-n) runs in the same storm, restarting whenever it dies; its
// deaths by SIGBUS are counted.
//
// Whether a truncation lands inside a read is chance: a follower fstats its file before each read, so only a
// truncation between that fstat and the copy faults (in CI a run of 239 truncations once hit the fast C build's
// reads 0 times, the ASan build's 105 times). So this test requires that the storm hit some read (a fault caught
// by either guarded follower, or a death of the unguarded one), and TestSigbusGuardCatchesTruncatedRead proves
// the guard itself deterministically, a truncation set up under a read. The storm ends on that event once it has
// made sigbusTruncations truncations; a budget bounds it (a repair costs the writer about 10 ms under -race,
// mostly the race runtime's bookkeeping of the 4 MiB it maps again, so a slow machine makes fewer truncations in
// the budget: the event is what is required, and logged with the count).

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
	hits := func() int64 { return gs[0].faults.Load() + gs[1].faults.Load() + u.sigbus.Load() }
	start := time.Now()
	var truncations int
	for !(truncations >= sigbusTruncations && hits() > 0) && time.Since(start) < sigbusBudget {
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
	if hits() == 0 {
		t.Errorf("no fault caught by a guarded follower and no death of the unguarded one in %d truncations: "+
			"the storm never hit a read, and proves nothing", truncations)
	}
	if u.torn.Load() != 0 {
		t.Errorf("the follower without the guard accepted a torn snapshot in %d runs", u.torn.Load())
	}
	if u.other.Load() != 0 {
		t.Errorf("the follower without the guard ended otherwise than by SIGBUS, a failed open or SIGTERM: %q", u.others)
	}
}

// probe is a running clients/c/notice_fault_probe: it has mapped the board and takes one snapshot per line sent.
type probe struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

type probeEvent struct {
	Event   string `json:"event"`
	Result  string `json:"result"`
	Faults  int64  `json:"faults"`
	Faulted bool   `json:"faulted"`
	Error   string `json:"error"`
}

func startProbe(t *testing.T, bin string, args []string, env ...string) *probe {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &probe{cmd: cmd, in: in, lines: bufio.NewScanner(out)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if e := p.next(t); e.Event != "mapped" {
		t.Fatalf("%s: first line %+v, want the mapped event", bin, e)
	}
	return p
}

// next is the probe's next line; a probe that ended first fails the test.
func (p *probe) next(t *testing.T) probeEvent {
	t.Helper()
	if !p.lines.Scan() {
		t.Fatalf("%s ended before its next line: %v", p.cmd.Path, p.lines.Err())
	}
	var e probeEvent
	if err := json.Unmarshal(p.lines.Bytes(), &e); err != nil {
		t.Fatalf("%s: %q: %v", p.cmd.Path, p.lines.Bytes(), err)
	}
	return e
}

// TestSigbusGuardCatchesTruncatedRead: the guard, deterministically. A reader maps the board, the file is truncated
// under it, then the reader takes a snapshot: the read touches vanished pages for certain. With the guard (the C
// build and the ASan/UBSan one) the read reports "truncated" with faults caught (one per vanished page it touched), and the process
// lives on; without it (-n, the negative control) the process dies of SIGBUS. Sizes: nothing (the version word
// faults) and the middle of the first slot's records (the copy faults, whichever slot is published). The storm
// test below covers the race this one sets up by hand.
func TestSigbusGuardCatchesTruncatedRead(t *testing.T) {
	path := followPath(t, "probe")
	t.Cleanup(func() { os.Remove(path) })
	w, err := writer.Open(path, writer.Options{Size: sigbusRegionSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.Publish(wideSnapshot(w.Version() + 1)); err != nil {
		t.Fatal(err)
	}
	hdr := w.Header()
	sizes := []int64{0, int64(hdr.SlotOffset(0) + 64 + 300*uint64(hdr.Stride) + 100)}
	asan := "ASAN_OPTIONS=handle_sigbus=0"
	if o := os.Getenv("ASAN_OPTIONS"); o != "" {
		asan = "ASAN_OPTIONS=" + o + ":handle_sigbus=0"
	}
	// truncateAndHeal truncates the board to size, runs read (which must read it while short), then heals it.
	truncateAndHeal := func(size int64, read func()) {
		t.Helper()
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		read()
		nf, d, err := w.Heal()
		if nf != nil {
			nf.Close()
		}
		if err != nil || !d.Has(writer.DamageSize) {
			t.Fatalf("heal after truncating to %d bytes: damage %v, %v", size, d, err)
		}
	}
	for _, size := range sizes {
		for _, g := range []struct{ name, bin, env string }{
			{"c", "c/notice_fault_probe", ""}, {"c-asan", "c/notice_fault_probe_asan", asan},
		} {
			p := startProbe(t, g.bin, []string{path}, g.env)
			io.WriteString(p.in, "read\n")
			if e := p.next(t); e.Result != "ok" || e.Faults != 0 {
				t.Fatalf("%s: a read of the whole board: %+v, want ok with no fault", g.name, e)
			}
			truncateAndHeal(size, func() {
				io.WriteString(p.in, "read\n")
				if e := p.next(t); e.Result != "truncated" || e.Faults < 1 || !e.Faulted {
					t.Errorf("%s, board truncated to %d bytes under its mapping: %+v, want truncated, a fault caught",
						g.name, size, e)
				}
			})
			p.in.Close()
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("%s after the caught fault: %v (want exit 0 at the end of its input)", g.name, err)
			}
		}
		p := startProbe(t, "c/notice_fault_probe", []string{"-n", path})
		truncateAndHeal(size, func() {
			io.WriteString(p.in, "read\n")
			if p.lines.Scan() {
				t.Errorf("unguarded reader, board truncated to %d bytes: it read %s, want a death by SIGBUS", size,
					p.lines.Bytes())
			}
			err := p.cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() ||
				ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGBUS {
				t.Errorf("unguarded reader, board truncated to %d bytes: ended with %v, want SIGBUS", size, err)
			}
		})
	}
}
