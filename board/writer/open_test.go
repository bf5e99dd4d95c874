package writer_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

const jump = 1 << 20

// damaged publishes healSet twice into a board at a new path, closes the writer, applies damage to the file and
// returns the path and the last version published.
func damaged(t *testing.T, damage func(path string, f *os.File, h board.Header, v uint64)) (string, uint64) {
	t.Helper()
	path := tempRegion(t)
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	w.Publish(healSet()[:1])
	v, err := w.Publish(healSet())
	if err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	w.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	damage(path, f, h, v)
	f.Close()
	return path, v
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestStartRepairsADamagedBoard: whatever the damage, the next writer starts, repairs the file in place and
// publishes above every version the file still shows, or, when it shows none it can trust, above the floor and
// the jump. Today's code refused each of these with "remove it", which made every later start fail.
func TestStartRepairsADamagedBoard(t *testing.T) {
	garbage := func(n int) []byte {
		b := make([]byte, n)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	cases := []struct {
		name    string
		damage  func(path string, f *os.File, h board.Header, v uint64)
		trusted bool // the file still shows the last version: the next one is just above it
	}{
		{"grown by a page", func(_ string, f *os.File, h board.Header, _ uint64) { f.Truncate(int64(h.RegionSize) + 4096) }, true},
		{"shrunk to the header", func(_ string, f *os.File, _ board.Header, _ uint64) { f.Truncate(4096) }, true},
		{"shrunk below the header", func(_ string, f *os.File, _ board.Header, _ uint64) { f.Truncate(1000) }, true},
		{"bad layout", func(_ string, f *os.File, _ board.Header, _ uint64) { f.WriteAt([]byte{0xff, 0xff}, board.OffFields+2) }, true},
		{"bad magic", func(_ string, f *os.File, _ board.Header, _ uint64) { f.WriteAt([]byte("NOTBOARD"), board.OffMagic) }, false},
		{"truncated to 0", func(_ string, f *os.File, _ board.Header, _ uint64) { f.Truncate(0) }, false},
		{"zeros", func(_ string, f *os.File, h board.Header, _ uint64) { f.WriteAt(make([]byte, h.RegionSize), 0) }, false},
		{"garbage", func(_ string, f *os.File, h board.Header, _ uint64) { f.WriteAt(garbage(int(h.RegionSize)), 0) }, false},
		{"version word zeroed", func(_ string, f *os.File, _ board.Header, _ uint64) { f.WriteAt(make([]byte, 8), 0) }, false},
		{"version word beyond 2^63", func(_ string, f *os.File, _ board.Header, _ uint64) {
			f.WriteAt(binary.LittleEndian.AppendUint64(nil, 1<<63+5), 0)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, v := damaged(t, c.damage)
			ino := inode(t, path)
			floor := v - 1 // the store's floor trails the last publish
			w := open(t, path, writer.Options{VersionFloor: floor, RecreateJump: jump})
			v2, err := w.Publish(healSet())
			if err != nil {
				t.Fatalf("first publish after %s: %v", c.name, err)
			}
			want := v + 1
			if !c.trusted {
				want = floor + jump + 1
			}
			if v2 < want || (!c.trusted && v2 > want+1) || (c.trusted && v2 != want) {
				t.Fatalf("after %s: published %d, want %d (last was %d, floor %d)", c.name, v2, want, v, floor)
			}
			expectHealed(t, w, path, v)
			if st, _ := os.Stat(path); st.Size() != 64<<10 || inode(t, path) != ino {
				t.Fatalf("after %s: the file is %d bytes, inode %d (was %d): want it repaired in place", c.name, st.Size(), inode(t, path), ino)
			}
			if w.Opened() == "" {
				t.Fatalf("after %s: the writer says it found an intact board", c.name)
			}
		})
	}
}

// A board of another size moves to a new file of the asked size at the first publish (not before: until then the
// old board is what readers have), and the old one is marked superseded, so its readers reopen the path.
func TestOtherGeometryMovesToANewFile(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Size: 64 << 10})
	v, _ := w.Publish(healSet())
	w.Close()
	old, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ino := inode(t, path)

	w2 := open(t, path, writer.Options{Size: 128 << 10})
	if w2.Capacity() <= 95 || inode(t, path) != ino {
		t.Fatalf("before the first publish: capacity %d, inode %d (was %d)", w2.Capacity(), inode(t, path), ino)
	}
	v2, err := w2.Publish(healSet())
	if err != nil || v2 != v+1 {
		t.Fatalf("first publish: %d, %v (want %d)", v2, err, v+1)
	}
	if st, _ := os.Stat(path); st.Size() != 128<<10 || inode(t, path) == ino {
		t.Fatalf("the path names a file of %d bytes, inode %d (was %d)", st.Size(), inode(t, path), ino)
	}
	if old.State() != board.StateSuperseded {
		t.Fatalf("the old board is %v, want superseded", old.State())
	}
	expectHealed(t, w2, path, v)
	moved := w2.TakeMoved()
	if moved == nil {
		t.Fatal("TakeMoved: nil after a move")
	}
	defer moved.Close()
	var st unix.Stat_t
	unix.Fstat(int(moved.Fd()), &st)
	if st.Ino != inode(t, path) || w2.TakeMoved() != nil {
		t.Fatalf("TakeMoved gave inode %d, the path names %d", st.Ino, inode(t, path))
	}
}

// A board handed to a writer after it was removed from its path (a worker got the old fd) moves to a new file at
// the path, above its version.
func TestBoardNoLongerAtItsPathMoves(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{})
	v, _ := w.Publish(healSet())
	w.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	w2, err := writer.New(f, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	boardtest.CheckOnCleanup(t, path, w2.Version)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a board appeared at the path before the first publish: %v", err)
	}
	if v2, err := w2.Publish(healSet()); err != nil || v2 != v+1 {
		t.Fatalf("publish: %d, %v", v2, err)
	}
	expectHealed(t, w2, path, v)
}

// A writer given a new file without a name (what the supervisor hands the first worker) puts it at the path with
// its first version: readers never find a board that holds none, and a writer that never publishes leaves nothing.
func TestNewFileAppearsWithItsFirstVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "board")
	unnamed := func() *os.File {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(fd), path)
	}
	w, err := writer.New(unnamed(), writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a writer that never published left %v", ents)
	}
	w, err = writer.New(unnamed(), writer.Options{Size: 64 << 10, VersionFloor: 41})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	boardtest.CheckOnCleanup(t, path, w.Version)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the board is at its path before its first publish: %v", err)
	}
	v, err := w.Publish(healSet())
	if err != nil || v <= 41 {
		t.Fatalf("first publish: %d, %v", v, err)
	}
	if s := read(t, path); s.Version != v || !slices.Equal(s.Records, healSet()) {
		t.Fatalf("readers see %+v", s)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory holds %v, want the board alone", ents)
	}
}

// The install never replaces a board another writer holds.
func TestNewFileNeverReplacesALiveBoard(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "board")
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w, err := writer.New(os.NewFile(uintptr(fd), path), writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	live := open(t, path, writer.Options{}) // meanwhile another writer put a board there and holds it
	lv, _ := live.Publish(healSet()[:1])
	if _, err := w.Publish(healSet()); !errors.Is(err, writer.ErrLocked) {
		t.Fatalf("publish over a live board: %v", err)
	}
	if s := read(t, path); s.Version != lv || len(s.Records) != 1 {
		t.Fatalf("the live board changed: %+v", s)
	}
}

// TestRepairNeverShowsVersionZero: while the writer repairs a file truncated to 0 again and again, a reader that
// reads the magic and then the version (as a reader checks the file and then polls) never sees the board's magic
// with version 0. The old repair wrote the header, magic first, and left the version word for the next commit.
// The reader uses pread, magic first: a read of a truncated file cannot fault, and each pread is a full barrier,
// so a whole magic means the version stored before it is visible too. Samples that a truncation overlaps do not
// count: a truncation zeroes the file, version and all, which a reader finds out from the file's size.
func TestRepairNeverShowsVersionZero(t *testing.T) {
	w, path, _ := published(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stop atomic.Bool
	var truncations atomic.Uint64 // odd while the test truncates the file
	var samples, zeros, valid atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m, v [8]byte
		for !stop.Load() {
			before := truncations.Load()
			n1, _ := f.ReadAt(m[:], board.OffMagic)
			n2, _ := f.ReadAt(v[:], board.OffVersion)
			if before%2 != 0 || truncations.Load() != before {
				continue
			}
			samples.Add(1)
			if n1 == 8 && n2 == 8 && string(m[:]) == board.Magic {
				valid.Add(1)
				if binary.LittleEndian.Uint64(v[:]) == 0 {
					zeros.Add(1)
				}
			}
		}
	}()
	for range 2000 {
		truncations.Add(1)
		err := os.Truncate(path, 0)
		truncations.Add(1)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Heal(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d samples, %d with the magic, %d of those at version 0", samples.Load(), valid.Load(), zeros.Load())
	if zeros.Load() != 0 {
		t.Fatalf("%d samples saw the board's magic with version 0", zeros.Load())
	}
	if valid.Load() == 0 {
		t.Fatal("no sample saw the board: the test measured nothing")
	}
}

// TestPublishWritesTheWholeSnapshot: bytes of a record that does not change are overwritten in both slots from
// outside; the next publish, of a change to another record, produces a version that reads clean at once. The old
// publish wrote only what differed from its own copy of the slot, so that version failed its checksum until the
// periodic check repaired it.
func TestPublishWritesTheWholeSnapshot(t *testing.T) {
	w, path, _ := published(t)
	w.Publish(append(healSet(), board.Record{ID: 50, Content: "fifty"}))
	v, _ := w.Publish(healSet()) // both slots have been written by this writer
	h := w.Header()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := range uint64(2) { // record 1 (id 2), which the next publish leaves as it is, in both slots
		f.WriteAt([]byte("scribbled"), int64(h.SlotOffset(s)+board.SlotHeaderSize+uint64(h.Stride)+40))
	}
	f.Close()
	next := slices.Clone(healSet())
	next[2].Content = "forty, changed"
	v2, err := w.Publish(next)
	if err != nil || v2 != v+1 {
		t.Fatalf("publish: %d, %v", v2, err)
	}
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.Snapshot()
	if err != nil || s.Version != v2 || !slices.Equal(s.Records, next) {
		t.Fatalf("version %d right after the publish: %+v, %v", v2, s, err)
	}
}
