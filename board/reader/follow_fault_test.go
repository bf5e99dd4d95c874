package reader

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// TestFollowerSurvivesAFault truncates the file between the follower's checks and its read of the slots: the
// SIGBUS becomes a truncated file, not a crash.
func TestFollowerSurvivesAFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish([]board.Record{{ID: 1, Content: "one"}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, err := NewFollower(path, FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if f.touch(func() { f.cur.r.Snapshot() }) {
		t.Fatal("reading a truncated mapping did not fault")
	}
	if !errors.Is(f.cur.bad, &board.Error{Code: board.CodeTruncated}) {
		t.Fatalf("after the fault: %v", f.cur.bad)
	}
	if _, err := f.Snapshot(); !errors.Is(err, &board.Error{Code: board.CodeTruncated}) {
		t.Fatalf("snapshot after the fault: %v", err)
	}
	if !f.Stale() {
		t.Fatal("a truncated file is not stale")
	}
}
