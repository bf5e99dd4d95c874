package worker

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/store"
)

// watchWait bounds a wait on an event in these tests: far below the periodic check's hour, far above any repair.
const watchWait = 10 * time.Second

type checkResult struct {
	d   writer.Damage
	err error
}

// watchedWorker is a worker on a region of its own in /dev/shm (where the watch matters), whose periodic integrity
// check is an hour apart: within a test, only the watch runs a check. Each check's result goes to the channel.
func watchedWorker(t *testing.T, in Integrity, log *zap.Logger) (*Worker, string, chan checkResult) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	path := fmt.Sprintf("/dev/shm/watchtest_%d_%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	os.Remove(path)
	t.Cleanup(func() { os.Remove(path) })
	bw, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bw.Close() })
	boardtest.CheckOnCleanup(t, path, bw.Version)
	if in.Interval == 0 {
		in.Interval = time.Hour
	}
	w, err := New(Config{Board: bw, Store: st, Integrity: in, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	checks := make(chan checkResult, 1024)
	w.guard.checked = func(d writer.Damage, err error) { checks <- checkResult{d, err} }
	if _, err := w.Apply([]announcement.Announcement{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}}, nil); err != nil {
		t.Fatal(err)
	}
	return w, path, checks
}

// run runs w until the test ends (or stop is called) and waits for the watch's first check: from then on the
// watches are in place.
func run(t *testing.T, w *Worker, checks chan checkResult) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	if !w.cfg.Integrity.NoWatch {
		select {
		case r := <-checks:
			if r.err != nil || !r.d.None() {
				t.Fatalf("the first check found %v, %v", r.d, r.err)
			}
		case <-time.After(watchWait):
			t.Fatal("the watch ran no first check")
		}
	}
	return stop
}

// nextDamage waits for a check that found damage (checks that found none, after the repair's own events, are
// skipped).
func nextDamage(t *testing.T, checks chan checkResult, what string) writer.Damage {
	t.Helper()
	deadline := time.After(watchWait)
	for {
		select {
		case r := <-checks:
			if r.err != nil {
				t.Fatalf("%s: the check failed: %v", what, r.err)
			}
			if !r.d.None() {
				return r.d
			}
		case <-deadline:
			t.Fatalf("%s: no check found damage within %v (the periodic check is an hour apart: the watch did not trigger it)", what, watchWait)
		}
	}
}

func (w *Worker) regionWatch() *regionWatch {
	w.guard.mu.Lock()
	defer w.guard.mu.Unlock()
	return w.guard.watch
}

// watchedInodes lists the inodes the watch's inotify instance watches (/proc/self/fdinfo).
func watchedInodes(t *testing.T, rw *regionWatch) []uint64 {
	t.Helper()
	var inos []uint64
	func() {
		f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", rw.fd))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "inotify ") {
				continue
			}
			for _, field := range strings.Fields(sc.Text()) {
				if hex, ok := strings.CutPrefix(field, "ino:"); ok {
					ino, err := strconv.ParseUint(hex, 16, 64)
					if err != nil {
						t.Error(err)
					}
					inos = append(inos, ino)
				}
			}
		}
	}()
	return inos
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// openFds counts this process's open fds, and the inotify instances among them.
func openFds(t *testing.T) (all, inotify int) {
	t.Helper()
	fds, err := proctest.Fds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if fd.Target == "anon_inode:inotify" {
			inotify++
		}
	}
	return len(fds), inotify
}

// inotifyFds counts this process's inotify instances.
func inotifyFds(t *testing.T) int {
	t.Helper()
	_, n := openFds(t)
	return n
}

// Every file operation on the region is repaired at once through the watch, with the periodic check an hour
// apart: removed, renamed over, renamed away, truncated, grown, written with write(2). Readers hold the whole set again at a
// higher version; each repair is counted once; the watch follows the writer to its new file and drops the old one.
func TestWatchRepairsFileOperations(t *testing.T) {
	w, path, checks := watchedWorker(t, Integrity{}, nil)
	var handed []*os.File
	w.cfg.RegionReplaced = func(f *os.File) { handed = append(handed, f) }
	defer func() {
		for _, f := range handed {
			f.Close()
		}
	}()
	t.Cleanup(func() { os.Remove(path + ".away") })
	run(t, w, checks)
	rw := w.regionWatch()
	if rw == nil {
		t.Fatal("no watch")
	}
	dirIno := inode(t, filepath.Dir(path))
	overwrite := func(off int64, b string) func() error {
		return func() error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte(b), off)
			return err
		}
	}
	for _, tc := range []struct {
		name, kind string
		damage     func() error
	}{
		{"rm", writer.DamageReplaced, func() error { return os.Remove(path) }},
		{"rename over", writer.DamageReplaced, func() error {
			if err := os.WriteFile(path+".junk", []byte("junk"), 0o644); err != nil {
				return err
			}
			return os.Rename(path+".junk", path)
		}},
		{"renamed away", writer.DamageReplaced, func() error { return os.Rename(path, path+".away") }},
		{"truncate shrink", writer.DamageSize, func() error { return os.Truncate(path, 4096) }},
		{"truncate to 0", writer.DamageSize, func() error { return os.Truncate(path, 0) }},
		{"grow", writer.DamageSize, func() error { return os.Truncate(path, 1<<20) }},
		{"write(2) over the header", writer.DamageOverwritten, overwrite(8, "garbage!")},
	} {
		before := w.Version()
		repairs := w.guardStatus().Repairs[tc.kind]
		if err := tc.damage(); err != nil {
			t.Fatal(err)
		}
		if d := nextDamage(t, checks, tc.name); !d.Has(tc.kind) {
			t.Fatalf("%s: found %v, want %s", tc.name, d, tc.kind)
		}
		b, err := reader.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s, err := b.Snapshot()
		b.Close()
		if err != nil || s.Version <= before || len(s.Records) != 2 {
			t.Fatalf("%s: after the repair %+v, %v (version was %d)", tc.name, s, err, before)
		}
		if got := w.guardStatus().Repairs[tc.kind]; got != repairs+1 {
			t.Fatalf("%s: %d %s repairs counted, want %d", tc.name, got, tc.kind, repairs+1)
		}
		// The watch is on the directory and on the file at the path now, nothing else: not on a file the writer
		// left (a watch holds its inode).
		if got, want := watchedInodes(t, rw), []uint64{dirIno, inode(t, path)}; !sameSet(got, want) {
			t.Fatalf("%s: the watch holds inodes %v, want the directory's and the file's %v", tc.name, got, want)
		}
	}
	if len(handed) != 3 {
		t.Fatalf("%d files handed on, want 3 (the recreations)", len(handed))
	}
}

func sameSet(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[uint64]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// A storm of events of other files in the region's directory (created, renamed, removed: the watch reads the
// renames), and publishes (stores through the mapping), run no check and heal nothing; an event of the region
// after them runs exactly one.
func TestWatchIgnoresOtherFiles(t *testing.T) {
	w, path, checks := watchedWorker(t, Integrity{}, nil)
	run(t, w, checks)
	rw := w.regionWatch()
	const files = 2000 // the watch is given one event of each (its rename): well inside the kernel's queue (16,384)
	prefix := fmt.Sprintf("/dev/shm/watchstorm_%d_", os.Getpid())
	for i := range files {
		p := prefix + strconv.Itoa(i)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p, p+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p + ".moved"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if _, err := w.Apply([]announcement.Announcement{{ID: 3, Content: fmt.Sprint("publish ", i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The sentinel: an event of the region that damages nothing (its mode, set to what it is). Events are read in
	// order, so when its check is done every event of the storm has been read.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-checks:
		if r.err != nil || !r.d.None() {
			t.Fatalf("the sentinel's check found %v, %v", r.d, r.err)
		}
	case <-time.After(watchWait):
		t.Fatal("the sentinel ran no check")
	}
	events, matched, ran := rw.stats.events.Load(), rw.stats.matched.Load(), rw.stats.checks.Load()
	t.Logf("events read %d, of the region %d, checks %d", events, matched, ran)
	if events < files {
		t.Errorf("%d events read, want at least %d: the storm did not reach the watch", events, files)
	}
	if matched != 1 || ran != 1 {
		t.Errorf("%d events taken for the region's and %d checks, want 1 and 1 (the sentinel)", matched, ran)
	}
	for k, n := range w.guardStatus().ThisGeneration.Repairs {
		if n != 0 {
			t.Errorf("%d %s repairs", n, k)
		}
	}
	select {
	case r := <-checks:
		t.Errorf("another check ran: %v, %v", r.d, r.err)
	default:
	}
}

// The watch is the generation's: Run opens one inotify instance and closes it when it ends.
func TestWatchClosedWhenRunEnds(t *testing.T) {
	w, _, checks := watchedWorker(t, Integrity{}, nil)
	fds, before := openFds(t)
	stop := run(t, w, checks)
	if n := inotifyFds(t); n != before+1 {
		t.Fatalf("%d inotify instances while running, want %d", n, before+1)
	}
	stop()
	if n := inotifyFds(t); n != before {
		t.Fatalf("%d inotify instances after Run, want %d", n, before)
	}
	if n, _ := openFds(t); n != fds {
		t.Fatalf("%d fds open after Run, %d before", n, fds)
	}
	if w.regionWatch() != nil {
		t.Fatal("the worker still has its watch")
	}
}

// A refused inotify instance (the user's limit) is one log line, and the periodic check alone repairs.
func TestWatchRefusedDegradesToThePeriodicCheck(t *testing.T) {
	orig := inotifyInit
	t.Cleanup(func() { inotifyInit = orig }) // after Run has ended (cleanups run last first)
	inotifyInit = func() (int, error) { return -1, syscall.EMFILE }
	core, logs := observer.New(zapcore.InfoLevel)
	w, path, checks := watchedWorker(t, Integrity{Interval: 5 * time.Millisecond}, zap.New(core))
	run(t, w, checks)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if d := nextDamage(t, checks, "truncate, periodic"); !d.Has(writer.DamageSize) {
		t.Fatalf("found %v", d)
	}
	proctest.WaitUntil(t, watchWait, func() bool { return logs.FilterMessageSnippet("no inotify watch").Len() > 0 }, "the log line")
	if n := logs.FilterMessageSnippet("inotify").Len(); n != 1 {
		t.Fatalf("%d log lines about inotify, want 1: %v", n, logs.FilterMessageSnippet("inotify").All())
	}
	if w.regionWatch() != nil {
		t.Fatal("a watch without an instance")
	}
}

// With the watch off (--region-watch=false) no instance is opened; the periodic check repairs.
func TestWatchOff(t *testing.T) {
	before := inotifyFds(t)
	w, path, checks := watchedWorker(t, Integrity{Interval: 5 * time.Millisecond, NoWatch: true}, nil)
	run(t, w, checks)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if d := nextDamage(t, checks, "rm, periodic"); !d.Has(writer.DamageReplaced) {
		t.Fatalf("found %v", d)
	}
	if n := inotifyFds(t); n != before {
		t.Fatalf("%d inotify instances with the watch off, want %d", n, before)
	}
}

// A recreation puts the writer on a new file before the watch is on it: what happens to the new file in between
// (here a second rm, right after the repair) raises no event the watch gets, so the new file is checked once more
// when the watch moves to it. Repaired without the periodic check.
func TestWatchCoversTheNewFileAtOnce(t *testing.T) {
	w, path, checks := watchedWorker(t, Integrity{}, nil)
	var once sync.Once
	w.guard.afterHeal = func(d writer.Damage) {
		if d.Has(writer.DamageReplaced) {
			once.Do(func() {
				if err := os.Remove(path); err != nil {
					t.Error(err)
				}
			})
		}
	}
	run(t, w, checks)
	before := w.Version()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"the rm", "the rm before the watch was on the new file"} {
		if d := nextDamage(t, checks, what); !d.Has(writer.DamageReplaced) {
			t.Fatalf("%s: found %v", what, d)
		}
	}
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Snapshot()
	b.Close()
	if err != nil || s.Version <= before || len(s.Records) != 2 {
		t.Fatalf("after the repairs %+v, %v (version was %d)", s, err, before)
	}
	if got := w.guardStatus().ThisGeneration.Repairs[writer.DamageReplaced]; got != 2 {
		t.Fatalf("%d replaced repairs, want 2", got)
	}
}

// Without a watch on the file (no /proc, say), the directory's watch is asked for the name's removal too: one log
// line, and rm is still repaired without the periodic check.
func TestWatchWithoutTheFileWatch(t *testing.T) {
	orig := watchFile
	t.Cleanup(func() { watchFile = orig }) // after Run has ended (cleanups run last first)
	watchFile = func(*writer.Writer, int, uint32) (int, error) { return -1, syscall.ENOENT }
	core, logs := observer.New(zapcore.InfoLevel)
	w, path, checks := watchedWorker(t, Integrity{}, zap.New(core))
	run(t, w, checks)
	for i := range 2 {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if d := nextDamage(t, checks, fmt.Sprint("rm ", i)); !d.Has(writer.DamageReplaced) {
			t.Fatalf("found %v", d)
		}
	}
	if n := logs.FilterMessageSnippet("no inotify watch on the region's file").Len(); n != 1 {
		t.Fatalf("%d log lines about the file's watch, want 1", n)
	}
}
