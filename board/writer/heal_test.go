package writer_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

func healSet() []board.Record {
	return []board.Record{{ID: 1, Content: "one"}, {ID: 2, Content: "two", Priority: 5}, {ID: 40, Content: "forty"}}
}

// published opens a writer, publishes healSet and returns the version.
func published(t *testing.T) (*writer.Writer, string, uint64) {
	t.Helper()
	path := tempRegion(t)
	w := open(t, path, writer.Options{})
	v, err := w.Publish(healSet())
	if err != nil {
		t.Fatal(err)
	}
	return w, path, v
}

// expectHealed checks that readers of path find healSet above version before, and that a new check is clean.
func expectHealed(t *testing.T, w *writer.Writer, path string, before uint64) *board.Snapshot {
	t.Helper()
	s := read(t, path)
	if s.Version <= before || !slices.Equal(s.Records, healSet()) {
		t.Fatalf("after the repair: version %d (was %d), records %+v", s.Version, before, s.Records)
	}
	if d, err := w.Check(); err != nil || !d.None() {
		t.Fatalf("check after the repair: %v, %v", d, err)
	}
	return s
}

func TestCheckFindsNothingOnAHealthyRegion(t *testing.T) {
	w, _, _ := published(t)
	for i := range 20 {
		if _, err := w.Publish(append(healSet(), board.Record{ID: 100 + uint64(i), Content: "x"})); err != nil {
			t.Fatal(err)
		}
		w.Heartbeat()
		if d, err := w.Check(); err != nil || !d.None() {
			t.Fatalf("publish %d: check found %v, %v", i, d, err)
		}
	}
	if f, d, err := w.Heal(); f != nil || !d.None() || err != nil {
		t.Fatalf("heal of a healthy region: %v %v %v", f, d, err)
	}
}

func TestHealSize(t *testing.T) {
	for name, size := range map[string]int64{"truncated to 0": 0, "truncated to half": 32 << 10, "grown": 1 << 20} {
		t.Run(name, func(t *testing.T) {
			w, path, v := published(t)
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			d, err := w.Check()
			if err != nil || !d.Has(writer.DamageSize) {
				t.Fatalf("check: %v, %v", d, err)
			}
			f, d, err := w.Heal()
			if err != nil || f != nil {
				t.Fatalf("heal: %v (file %v)", err, f)
			}
			if st, _ := os.Stat(path); st.Size() != 64<<10 {
				t.Fatalf("the file is %d bytes after the repair", st.Size())
			}
			expectHealed(t, w, path, v)
			if w.Healed()[writer.DamageSize] != 1 {
				t.Fatalf("healed %v", w.Healed())
			}
		})
	}
}

// A publish into a file truncated under the mapping faults (SIGBUS). The writer catches it, restores the file and
// publishes anyway; so does a heartbeat.
func TestFaultsAreCaughtAndRepaired(t *testing.T) {
	w, path, v := published(t)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	next := slices.Insert(healSet(), 2, board.Record{ID: 7, Content: "after the fault"}) // sorted by id
	v2, err := w.Publish(next)
	if err != nil || v2 <= v {
		t.Fatalf("publish into a truncated file: %d, %v", v2, err)
	}
	if s := read(t, path); s.Version != v2 || !slices.Equal(s.Records, next) {
		t.Fatalf("after the fault: %+v", s)
	}
	if w.Faults() != 1 || w.Healed()[writer.DamageFault] != 1 {
		t.Fatalf("faults %d, healed %v", w.Faults(), w.Healed())
	}

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	w.Heartbeat()
	if s := read(t, path); s.Version <= v2 || !slices.Equal(s.Records, next) || w.Faults() != 2 {
		t.Fatalf("after a heartbeat fault: version %d (was %d), faults %d", s.Version, v2, w.Faults())
	}
}

func TestHealRecreatesAReplacedOrRemovedFile(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"removed": os.Remove,
		"replaced": func(path string) error {
			junk := path + ".junk"
			if err := os.WriteFile(junk, []byte("not a board"), 0o644); err != nil {
				return err
			}
			return os.Rename(junk, path)
		},
	} {
		t.Run(name, func(t *testing.T) {
			w, path, v := published(t)
			old, err := reader.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			f, d, err := w.Heal()
			if err != nil || !d.Has(writer.DamageReplaced) || f == nil {
				t.Fatalf("heal: %v, %v, file %v", d, err, f)
			}
			defer f.Close()
			if old.State() != board.StateSuperseded {
				t.Fatalf("the old file's state is %v, want superseded", old.State())
			}
			expectHealed(t, w, path, v)
			// The returned file is the new one at the path.
			var a, b os.FileInfo
			if a, err = f.Stat(); err == nil {
				b, err = os.Stat(path)
			}
			if err != nil || !os.SameFile(a, b) {
				t.Fatalf("the returned file is not the one at the path: %v", err)
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
				t.Fatalf("the new file's mode is %v", st.Mode())
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*new-*")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			// And the writer goes on publishing into it.
			if v2, err := w.Publish(healSet()[:1]); err != nil || read(t, path).Version != v2 {
				t.Fatalf("publish after the recreation: %v", err)
			}
		})
	}
}

func TestHealOverwrittenBytes(t *testing.T) {
	for name, off := range map[string]int64{
		"magic":          8,
		"layout table":   300,
		"version word":   0,
		"current slot":   -1, // resolved below: inside the published records
		"the other slot": -2,
	} {
		t.Run(name, func(t *testing.T) {
			w, path, v := published(t)
			if _, err := w.Publish(healSet()[:2]); err != nil { // both slots now have shadows
				t.Fatal(err)
			}
			if _, err := w.Publish(healSet()); err != nil {
				t.Fatal(err)
			}
			v = w.Version()
			h := w.Header()
			switch off {
			case -1:
				off = int64(h.SlotOffset(v&1) + board.SlotHeaderSize + 20)
			case -2:
				off = int64(h.SlotOffset(1-v&1) + board.SlotHeaderSize + 20)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, off)
			f.Close()
			d, err := w.Check()
			if err != nil || !d.Has(writer.DamageOverwritten) {
				t.Fatalf("check: %v, %v", d, err)
			}
			if _, _, err := w.Heal(); err != nil {
				t.Fatal(err)
			}
			expectHealed(t, w, path, v)
		})
	}
}

// A writer killed in the middle of a publish leaves the slot it was writing with an odd sequence word and half of
// its bytes. Readers are on the other slot meanwhile. The next writer's first publish lands in that slot, writes it
// whole and makes its sequence word even: readers get the whole set at a higher version.
func TestNextWriterRepairsASlotLeftMidPublish(t *testing.T) {
	path := tempRegion(t)
	a, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(healSet()[:1]); err != nil {
		t.Fatal(err)
	}
	v, err := a.Publish(healSet())
	if err != nil {
		t.Fatal(err)
	}
	h := a.Header()
	a.Close()
	// The crash: the next slot's sequence word odd, some of its records scribbled over.
	next := h.SlotOffset((v + 1) & 1)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{7, 0, 0, 0, 0, 0, 0, 0}, int64(next)) // seq = 7
	f.WriteAt([]byte("half a record"), int64(next+board.SlotHeaderSize+10))
	f.Close()
	if s := read(t, path); s.Version != v { // readers are unaffected: they read the other slot
		t.Fatalf("readers after the crash: version %d, want %d", s.Version, v)
	}

	b := open(t, path, writer.Options{})
	v2, err := b.Publish(healSet())
	if err != nil || v2 != v+1 {
		t.Fatalf("the next writer's first publish: %d, %v (want %d)", v2, err, v+1)
	}
	expectHealed(t, b, path, v)
}

// A repair writes the slots up to the larger of their counts, not the capacity: the slots must still be zero
// past the count of each version published after it, whatever the two slots held before (a larger set, then a
// smaller one, so that the slots' counts differ).
func TestRepairsKeepTheSlotsZeroPastTheCount(t *testing.T) {
	big := make([]board.Record, 40)
	for i := range big {
		big[i] = board.Record{ID: uint64(i + 1), Content: strings.Repeat("x", 200)}
	}
	for name, damage := range map[string]func(path string) error{
		"truncated": func(p string) error { return os.Truncate(p, 4096) },
		"grown":     func(p string) error { return os.Truncate(p, 1<<20) },
		"removed":   os.Remove,
	} {
		t.Run(name, func(t *testing.T) {
			path := tempRegion(t)
			w := open(t, path, writer.Options{})
			for _, set := range [][]board.Record{big, healSet()} {
				if _, err := w.Publish(set); err != nil {
					t.Fatal(err)
				}
			}
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			f, d, err := w.Heal()
			if err != nil || d.None() {
				t.Fatalf("heal: %v, %v", d, err)
			}
			if f != nil {
				f.Close()
			}
			boardtest.MustCheck(t, path, w.Version())
			for _, set := range [][]board.Record{big[:10], healSet(), big, healSet()[:1]} {
				if _, err := w.Publish(set); err != nil {
					t.Fatal(err)
				}
				boardtest.MustCheck(t, path, w.Version())
			}
		})
	}
}
