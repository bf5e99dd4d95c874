package worker

import (
	"os"
	"testing"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/healthcheck"
)

// The integrity check repairs the region in place and hands a recreated file on; each repair is counted and the
// readers find the whole set at a higher version.
func TestIntegrityCheckRepairsTheRegion(t *testing.T) {
	w, path := newWorker(t)
	var handed []*os.File
	w.cfg.RegionReplaced = func(f *os.File) { handed = append(handed, f) }
	defer func() {
		for _, f := range handed {
			f.Close()
		}
	}()
	if _, err := w.Apply([]announcement.Announcement{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind   string
		damage func() error
	}{
		{writer.DamageSize, func() error { return os.Truncate(path, 0) }},
		{writer.DamageReplaced, func() error { return os.Remove(path) }},
		{writer.DamageOverwritten, func() error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("garbage!"), 8)
			return err
		}},
	} {
		before := w.Version()
		if err := tc.damage(); err != nil {
			t.Fatal(err)
		}
		w.checkIntegrity()
		b, err := reader.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		s, err := b.Snapshot()
		b.Close()
		if err != nil || s.Version <= before || len(s.Records) != 2 {
			t.Fatalf("%s: after the repair %+v, %v (version was %d)", tc.kind, s, err, before)
		}
		if got := w.guardStatus().Repairs[tc.kind]; got != 1 {
			t.Fatalf("%s: %d repairs counted", tc.kind, got)
		}
		if r := w.Health(false); r.Health != healthcheck.OK {
			t.Fatalf("%s: health %+v", tc.kind, r)
		}
	}
	if len(handed) != 1 {
		t.Fatalf("%d files handed on, want 1 (the recreation)", len(handed))
	}
}
