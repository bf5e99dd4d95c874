package e2e_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
)

// What happens to files in /dev/shm in real life, done to a running daemon's region: each time every reader (Go,
// C, Python, the CLI) ends up with the whole set at a higher version, and a reload afterwards hands the next
// generation the live file (it publishes where readers look), not a removed one.
func TestRegionHealsUnderADaemon(t *testing.T) {
	d := newDaemon(t)
	var want []board.Record
	for id := uint64(1); id <= 5; id++ {
		content := fmt.Sprintf("announcement %d", id)
		d.mustCtl("publish", "--id", fmt.Sprint(id), content)
		want = append(want, board.Record{ID: id, Content: content})
	}
	damages := []struct {
		name   string
		damage func() error
	}{
		{"truncated to 0", func() error { return os.Truncate(d.shm, 0) }},
		{"grown", func() error { return os.Truncate(d.shm, 1<<20) }},
		{"removed", func() error { return os.Remove(d.shm) }},
		{"replaced", func() error {
			junk := d.shm + ".junk"
			if err := os.WriteFile(junk, []byte("not a board at all"), 0o644); err != nil {
				return err
			}
			return os.Rename(junk, d.shm)
		}},
		{"header overwritten", func() error { return overwrite(d.shm, 8, "NOTABORD") }},
		{"records overwritten", func() error { // in the slot readers are on
			s := d.boardSnapshot()
			return overwrite(d.shm, int64(s.Header.SlotOffset(s.Version&1)+board.SlotHeaderSize+40), "garbage in the records")
		}},
	}
	for _, dmg := range damages {
		before := d.boardSnapshot().Version
		if err := dmg.damage(); err != nil {
			t.Fatal(err)
		}
		got := waitHealed(t, d.shm, before, want)
		if got == nil {
			t.Fatalf("%s: the region was not repaired within 10 s\n%s", dmg.name, d.logs)
		}
		for name, dump := range d.readerDumps() {
			if dump.Version < got.Version || len(dump.Records) != len(want) {
				t.Fatalf("%s: the %s reader sees version %d with %d records", dmg.name, name, dump.Version, len(dump.Records))
			}
		}
	}

	// The supervisor was handed the recreated file: the next generation publishes into the file at the path.
	d.mustCtl("reload", "--wait")
	d.mustCtl("publish", "--id", "6", "after the reload")
	want = append(want, board.Record{ID: 6, Content: "after the reload"})
	if s := d.boardSnapshot(); !sameRecords(s.Records, want) {
		t.Fatalf("after a reload the board at the path holds %+v", s.Records)
	}
	if code, out, _ := d.ctl("health"); code != 0 {
		t.Fatalf("health after the repairs: exit %d, %s", code, out)
	}
}

func overwrite(path string, off int64, s string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt([]byte(s), off)
	return err
}

// waitHealed polls the board at path until it holds want above version before; nil after 10 s.
func waitHealed(t *testing.T, path string, before uint64, want []board.Record) *board.Snapshot {
	t.Helper()
	var healed *board.Snapshot
	proctest.Poll(10*time.Second, func() bool {
		b, err := reader.Open(path)
		if err != nil {
			return false
		}
		s, err := b.Snapshot()
		b.Close()
		if err == nil && s.Version > before && sameRecords(s.Records, want) {
			healed = s
		}
		return healed != nil
	})
	return healed
}

func sameRecords(got, want []board.Record) bool {
	return slices.EqualFunc(got, want, func(a, b board.Record) bool { return a.ID == b.ID && a.Content == b.Content })
}
