package reader_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
)

// TestReaderMemoryFollowsEveryChange: through versions that change, add, remove and move records (so runs of known
// records break and records shift to other indexes), a Reader's snapshot, which reads again only what changed,
// holds exactly the published set, as Board.Snapshot (which remembers nothing) does; a content unchanged since the
// Reader's last snapshot is the same string.
func TestReaderMemoryFollowsEveryChange(t *testing.T) {
	w, _, b := openBoard(t, 1<<20)
	r := b.NewReader()
	rng := rand.New(rand.NewPCG(3, 4))
	set := map[uint64]string{}
	var last []board.Record
	shared := 0
	for n := range 400 {
		switch op := rng.IntN(10); {
		case op == 0: // a new set
			clear(set)
			for range rng.IntN(5 * board.MemoryRun) {
				set[1+rng.Uint64N(200)] = fmt.Sprint("new ", n, rng.IntN(9))
			}
		default:
			for range rng.IntN(3) { // changes
				for id := range set {
					set[id] = fmt.Sprint("changed ", n)
					break
				}
			}
			for range rng.IntN(3) { // additions anywhere in the order, and removals
				set[1+rng.Uint64N(200)] = fmt.Sprint("added ", n)
			}
			for range rng.IntN(2) {
				for id := range set {
					delete(set, id)
					break
				}
			}
		}
		want := make([]board.Record, 0, len(set))
		for id, c := range set {
			want = append(want, board.Record{ID: id, Content: c})
		}
		slices.SortFunc(want, func(a, b board.Record) int { return int(a.ID) - int(b.ID) })
		if _, err := w.Publish(want); err != nil {
			t.Fatal(err)
		}
		got, err := r.Snapshot()
		if err != nil {
			t.Fatalf("version %d: %v", n, err)
		}
		cold, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Records, want) || !slices.Equal(cold.Records, want) {
			t.Fatalf("version %d: reader %+v, board %+v, published %+v", n, got.Records, cold.Records, want)
		}
		for _, rec := range got.Records {
			if i, ok := slices.BinarySearchFunc(last, rec.ID, func(r board.Record, id uint64) int { return int(r.ID) - int(id) }); ok && last[i].Content == rec.Content && rec.Content != "" {
				if unsafe.StringData(last[i].Content) != unsafe.StringData(rec.Content) {
					t.Fatalf("version %d: record %d's content is unchanged but not shared", n, rec.ID)
				}
				shared++
			}
		}
		last = got.Records
	}
	if shared < 1000 {
		t.Fatalf("only %d contents shared across 400 versions: the memory was hardly used", shared)
	}
}

// TestReaderMemoryDetectsOverwrite: bytes of a record the Reader knows, changed inside the mapping without a
// publish (a stray write, a hostile process with write access), fail the next snapshot as they fail a reader that
// remembers nothing: the Reader compares every record with what it verified, it does not trust what it knows. Put
// back, the snapshot succeeds again.
func TestReaderMemoryDetectsOverwrite(t *testing.T) {
	w, path, b := openBoard(t, 1<<20)
	set := make([]board.Record, 3*board.MemoryRun)
	for i := range set {
		set[i] = board.Record{ID: uint64(i + 1), Content: fmt.Sprint("announcement ", i+1)}
	}
	v, err := w.Publish(set)
	if err != nil {
		t.Fatal(err)
	}
	r := b.NewReader()
	if _, err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	h := b.Header()
	at := int(h.SlotOffset(v)) + board.SlotHeaderSize + 20*int(h.Stride) + int(h.Layout.Content) + 3
	mem[at] ^= 0x01 // "announcement 21" → "anoouncement 21": still valid UTF-8, only the crcs tell
	for _, snap := range []func() (*board.Snapshot, error){r.Snapshot, b.Snapshot} {
		if s, err := snap(); board.CodeOf(err) != board.CodeSnapshotChecksum {
			t.Fatalf("a record overwritten in the mapping: %v, %v", err, s)
		}
	}
	mem[at] ^= 0x01
	s, err := r.Snapshot()
	if err != nil || !slices.Equal(s.Records, set) {
		t.Fatalf("put back: %v %+v", err, s)
	}
}

// TestReaderWaitReadiesTheNextSnapshot: after Reader.Wait, the snapshot of the new version allocates nothing (its
// records, its new contents and the Snapshot were allocated, and their pages touched, before the wait), where one
// without Wait allocates each of them.
func TestReaderWaitReadiesTheNextSnapshot(t *testing.T) {
	w, _, b := openBoard(t, 1<<20)
	set := make([]board.Record, 3*board.MemoryRun)
	for i := range set {
		set[i] = board.Record{ID: uint64(i + 1), Content: fmt.Sprint("announcement ", i+1)}
	}
	r := b.NewReader()
	// mallocs is the fewest heap allocations one snapshot of a new version made, over a few tries (the count is
	// process-wide: the fewest is the snapshot's own).
	mallocs := func(wait bool) uint64 {
		fewest := uint64(math.MaxUint64)
		for i := range 5 {
			last := b.Version()
			set[7].Content = fmt.Sprint("changed ", i, wait)
			if _, err := w.Publish(set); err != nil {
				t.Fatal(err)
			}
			if wait {
				if _, err := r.Wait(context.Background(), last, time.Second); err != nil {
					t.Fatal(err)
				}
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			s, err := r.Snapshot()
			runtime.ReadMemStats(&m1)
			if err != nil || s.Records[7].Content != set[7].Content {
				t.Fatalf("%v %+v", err, s)
			}
			fewest = min(fewest, m1.Mallocs-m0.Mallocs)
		}
		return fewest
	}
	if _, err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if n := mallocs(false); n < 3 {
		t.Fatalf("a snapshot without Wait made %d allocations, want its records, a content and the Snapshot", n)
	}
	if n := mallocs(true); n != 0 {
		t.Fatalf("a snapshot after Wait made %d allocations, want none", n)
	}
}
