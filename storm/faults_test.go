package storm_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/internal/sandbox"
)

// faultKind is one kind of fault. A disruptive one may make requests fail while it lasts (a killed or stopped
// worker, a damaged board, a full disk): those failures are expected. Requests must never fail otherwise, reloads
// included (docs/STRESS.md, "Storm").
type faultKind struct {
	name       string
	weight     int
	disruptive bool
}

var faultKinds = []faultKind{
	{"kill9-worker", 12, true},
	{"kill9-supervisor", 8, true},
	{"sighup-burst", 10, false},
	{"reload-wait", 10, false},
	{"sigstop-worker", 8, true},
	{"board-truncate", 7, true},
	{"board-grow", 6, true},
	{"board-rm", 6, true},
	{"board-rename", 6, true},
	{"board-dd", 8, true},
	{"state-full", 7, true},
}

// pickKind draws a kind among those allowed (all when allowed is empty), by weight.
func pickKind(rng *rand.Rand, allowed []string) faultKind {
	var kinds []faultKind
	total := 0
	for _, k := range faultKinds {
		if len(allowed) == 0 || slices.Contains(allowed, k.name) {
			kinds = append(kinds, k)
			total += k.weight
		}
	}
	n := rng.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			return k
		}
		n -= k.weight
	}
	panic("unreachable")
}

// fault is one injected fault. Its parameters come from its own rng, drawn from the seed in order, so that a seed
// gives the same sequence of faults whatever the timing.
type fault struct {
	kind       faultKind
	rng        *rand.Rand
	detail     string    // what exactly was done
	skipped    bool      // there was nothing to do it to (e.g. no worker at that moment): not counted
	start, end time.Time // the injection began; it ended (the signal sent, SIGCONT sent, the disk freed)
	lastSignal time.Time // sighup-burst: the last SIGHUP
	signalled  int       // sighup-burst: the supervisor it went to
	reloadExit int       // reload-wait: announcementctl's exit code
	reloadOut  string    //
	win        *window   // disruptive faults: the window in which failures are expected
}

// windows are the spans of disruptive faults, from their injection to their recovery.
type windows struct {
	mu   sync.Mutex
	list []*window
}

type window struct {
	what       string
	start, end time.Time // end zero: still open
}

func (w *windows) open(what string, start time.Time) *window {
	w.mu.Lock()
	defer w.mu.Unlock()
	win := &window{what: what, start: start}
	w.list = append(w.list, win)
	return win
}

func (w *windows) close(win *window, end time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	win.end = end
}

// overlapping names the disruptive faults whose windows overlap [start, end] ("kill9-worker", or several joined
// with "+"), or returns "".
func (w *windows) overlapping(start, end time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for _, win := range w.list {
		if !win.start.After(end) && (win.end.IsZero() || !win.end.Before(start)) && !slices.Contains(names, win.what) {
			names = append(names, win.what)
		}
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

// inject does the fault (and, for SIGSTOP and a full disk, holds it for a while and undoes it). A panic of the
// storm's own code is reported as a failure of the run, not left to kill the process (and skip every cleanup).
func (s *storm) inject(f *fault) {
	defer func() {
		if r := recover(); r != nil {
			s.t.Errorf("storm bug: %s panicked: %v\n%s", f.kind.name, r, debug.Stack())
		}
	}()
	f.start = time.Now()
	if f.kind.disruptive {
		f.win = s.windows.open(f.kind.name, f.start)
	}
	defer func() { f.end = time.Now() }()
	d := s.d
	switch f.kind.name {
	case "kill9-worker":
		w := d.workers()
		if len(w) == 0 {
			f.skipped, f.detail = true, "no worker running"
			return
		}
		p := w[f.rng.IntN(len(w))]
		f.detail = fmt.Sprintf("kill -9 worker %d (of %d)", p.pid, len(w))
		s.signal(f, p.pid, syscall.SIGKILL)
	case "kill9-supervisor":
		pid, err := d.killSupervisor()
		f.detail = fmt.Sprintf("kill -9 supervisor %d, then start it again with the same flags", pid)
		if err != nil {
			f.skipped, f.detail = true, fmt.Sprintf("supervisor %d: %v", pid, err)
		}
	case "sighup-burst":
		n := 2 + f.rng.IntN(4)
		at := make([]int, n)
		for i := range at {
			at[i] = f.rng.IntN(100)
		}
		sort.Ints(at)
		f.detail = fmt.Sprintf("%d SIGHUPs at +%v ms", n, at)
		for _, ms := range at {
			time.Sleep(time.Until(f.start.Add(time.Duration(ms) * time.Millisecond)))
			pid := d.servingPID() // as an operator finds it
			if s.signal(f, pid, syscall.SIGHUP) {
				f.lastSignal, f.signalled = time.Now(), pid
			}
		}
	case "reload-wait":
		f.reloadExit, f.reloadOut = d.ctlCommand(60*time.Second, "reload", "--wait", "--timeout", "45s")
		f.detail = fmt.Sprintf("reload --wait: exit %d: %s", f.reloadExit, lastLine(f.reloadOut))
	case "sigstop-worker":
		w := d.workers()
		if len(w) == 0 {
			f.skipped, f.detail = true, "no worker running"
			return
		}
		p := w[f.rng.IntN(len(w))]
		hold := time.Duration(50+f.rng.IntN(750)) * time.Millisecond
		f.detail = fmt.Sprintf("SIGSTOP worker %d for %v, then SIGCONT", p.pid, hold)
		s.stoppedPID(p.pid, true)
		s.signal(f, p.pid, syscall.SIGSTOP)
		time.Sleep(hold)
		syscall.Kill(p.pid, syscall.SIGCONT) // even if it is no longer the daemon's: a stopped process is ours
		s.stoppedPID(p.pid, false)
	case "board-truncate":
		sizes := []int64{0, 8, 1000, 4096, int64(f.rng.IntN(regionSize))}
		size := sizes[f.rng.IntN(len(sizes))]
		f.detail = fmt.Sprintf("truncate -s %d", size)
		s.board(f, os.Truncate(d.shm, size))
	case "board-grow":
		st, err := os.Stat(d.shm)
		if err != nil {
			s.board(f, err)
			return
		}
		size := st.Size() + 4096
		if f.rng.IntN(2) == 0 {
			size = 2 * max(st.Size(), regionSize)
		}
		f.detail = fmt.Sprintf("truncate -s %d (was %d)", size, st.Size())
		s.board(f, os.Truncate(d.shm, size))
	case "board-rm":
		f.detail = "rm"
		s.board(f, os.Remove(d.shm))
	case "board-rename":
		var junk []byte
		switch f.rng.IntN(3) {
		case 0:
			junk, f.detail = make([]byte, regionSize), "mv over it: zeros, the region's size"
		case 1:
			junk, f.detail = randomBytes(f.rng, regionSize), "mv over it: random bytes, the region's size"
		default:
			junk, f.detail = []byte("not a board at all\n"), "mv over it: a short text file"
		}
		tmp := filepath.Join(filepath.Dir(d.shm), ".storm-junk-"+filepath.Base(d.shm))
		err := os.WriteFile(tmp, junk, 0o644)
		if err == nil {
			err = os.Rename(tmp, d.shm)
		}
		s.board(f, err)
	case "board-dd":
		s.board(f, s.dd(f))
	case "state-full":
		hold := time.Duration(50+f.rng.IntN(750)) * time.Millisecond
		fill := filepath.Join(s.mnt, "fill")
		err := sandbox.Fill(fill)
		f.detail = fmt.Sprintf("fill the state file system for %v, then free it", hold)
		if err != nil {
			f.detail += fmt.Sprintf(" (fill: %v)", err)
		}
		time.Sleep(hold)
		if err := os.Remove(fill); err != nil {
			f.detail += fmt.Sprintf(" (free: %v)", err)
		}
	default:
		panic(f.kind.name)
	}
}

// signal sends sig to pid if it is still one of the daemon's processes, and reports whether it did.
func (s *storm) signal(f *fault, pid int, sig syscall.Signal) bool {
	if pid == 0 || !s.d.isOurs(pid) {
		f.detail += fmt.Sprintf(" (pid %d is gone)", pid)
		return false
	}
	if err := syscall.Kill(pid, sig); err != nil {
		f.detail += fmt.Sprintf(" (%v: %v)", sig, err)
		return false
	}
	return true
}

// board notes the outcome of a change to the board file: with no file at the path (a repair under way) it is
// skipped.
func (s *storm) board(f *fault, err error) {
	if errors.Is(err, os.ErrNotExist) {
		f.skipped = true
	}
	if err != nil {
		f.detail += fmt.Sprintf(" (%v)", err)
	}
}

// dd overwrites 1–512 bytes of the board with random bytes, never the version word (an outside write to it is a
// version decrease nobody can prevent): in the header (magic, geometry, layout table), in the slots, or anywhere.
func (s *storm) dd(f *fault) error {
	file, err := os.OpenFile(s.d.shm, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil || st.Size() <= 16 {
		f.skipped = err == nil
		return err
	}
	size := st.Size()
	hdr := make([]byte, 64)
	if r, err := os.Open(s.d.shm); err == nil {
		r.ReadAt(hdr, 0)
		r.Close()
	}
	headerSize, slotSize := int64(binary.LittleEndian.Uint32(hdr[28:])), int64(binary.LittleEndian.Uint32(hdr[48:]))
	var off int64
	switch f.rng.IntN(3) {
	case 0: // the header: magic, geometry, heartbeat, writer, layout table
		off = 8 + f.rng.Int64N(1344-8)
	case 1: // the slots, where the records are
		if headerSize > 0 && slotSize > 0 && headerSize+2*slotSize <= size {
			off = headerSize + f.rng.Int64N(2*slotSize)
			break
		}
		fallthrough
	default:
		off = 8 + f.rng.Int64N(size-8)
	}
	off = min(off, size-1) // a truncated file may be shorter than the header
	n := 1 + f.rng.Int64N(512)
	n = min(n, size-off)
	f.detail = fmt.Sprintf("dd %d random bytes at offset %d", n, off)
	_, err = file.WriteAt(randomBytes(f.rng, int(n)), off)
	return err
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
