package reader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

const followSize = 64 << 10

func openWriter(t *testing.T, path string, opts writer.Options) *writer.Writer {
	t.Helper()
	opts.Size = followSize
	w, err := writer.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func publish(t *testing.T, w *writer.Writer, content string) uint64 {
	t.Helper()
	v, err := w.Publish([]board.Record{{ID: 1, Content: content}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newFollower(t *testing.T, path string, opts reader.FollowOptions) *reader.Follower {
	t.Helper()
	if opts.CheckEvery == 0 {
		opts.CheckEvery = 10 * time.Millisecond
	}
	f, err := reader.NewFollower(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// next calls Next with a guard against a hang: the follower must have something to report.
func next(t *testing.T, f *reader.Follower, last uint64) reader.Update {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := f.Next(ctx, last)
	if err != nil {
		t.Fatalf("Next(%d): %v (update %+v)", last, err, u)
	}
	return u
}

// nextChange calls Next until it reports a new snapshot, and returns it with the reopens reported on the way.
func nextChange(t *testing.T, f *reader.Follower, last uint64) (reader.Update, int) {
	t.Helper()
	reopened := 0
	for range 100 {
		u := next(t, f, last)
		reopened += u.Reopened
		if u.Changed {
			return u, reopened
		}
	}
	t.Fatalf("no change after 100 updates from version %d", last)
	return reader.Update{}, 0
}

func content(u reader.Update) string {
	if u.Snapshot == nil || len(u.Snapshot.Records) != 1 {
		return "?"
	}
	return u.Snapshot.Records[0].Content
}

// replace puts a new board at path the way the daemon's guard does: a new file at a temporary path, a first
// publish above floor, a rename over path.
func replace(t *testing.T, path string, floor uint64, text string) (*writer.Writer, uint64) {
	t.Helper()
	tmp := path + ".new"
	w := openWriter(t, tmp, writer.Options{VersionFloor: floor})
	v := publish(t, w, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return w, v
}

func TestFollowerSupersededWakesAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w1 := openWriter(t, path, writer.Options{})
	v1 := publish(t, w1, "one")
	f := newFollower(t, path, reader.FollowOptions{CheckEvery: time.Hour}) // only the futex wake-up can end Next
	u := next(t, f, 0)
	if !u.Changed || u.Snapshot.Version != v1 || content(u) != "one" || u.Reopened != 0 || u.Stale || u.Lost != nil {
		t.Fatalf("first update %+v", u)
	}
	got := make(chan reader.Update, 1)
	go func() {
		u, _ := f.Next(context.Background(), v1)
		got <- u
	}()
	waitBlocked(t, proctest.FutexWord{Path: path, Offset: board.OffFutex})
	_, v2 := replace(t, path, v1, "two")
	if err := w1.Supersede(); err != nil {
		t.Fatal(err)
	}
	select {
	case u = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("Next was not woken by Supersede")
	}
	if !u.Changed || u.Snapshot.Version != v2 || v2 <= v1 || content(u) != "two" || u.Reopened != 1 || f.Reopens() != 1 {
		t.Fatalf("after supersede: %+v, want version %d from a reopened file", u, v2)
	}
}

func TestFollowerReplacedWithoutSupersede(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w1 := openWriter(t, path, writer.Options{})
	v1 := publish(t, w1, "one")
	f := newFollower(t, path, reader.FollowOptions{})
	if s, err := f.Snapshot(); err != nil || s.Version != v1 {
		t.Fatalf("snapshot %v, %v", s, err)
	}
	_, v2 := replace(t, path, v1, "two") // the old file is not marked: only the inode check finds the new one
	if s, err := f.Snapshot(); err != nil || s.Version != v2 || s.Records[0].Content != "two" || f.Reopens() != 1 {
		t.Fatalf("snapshot after the rename: %+v, %v (reopens %d), want version %d", s, err, f.Reopens(), v2)
	}
	u, reopened := nextChange(t, f, v1)
	if u.Snapshot.Version != v2 || reopened != 1 {
		t.Fatalf("Next after the rename: %+v, %d reopens reported", u, reopened)
	}
}

func TestFollowerUnlinkedThenRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w1 := openWriter(t, path, writer.Options{})
	v1 := publish(t, w1, "one")
	f := newFollower(t, path, reader.FollowOptions{})
	next(t, f, 0)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// Nothing at the path: the old file is still the board, and its writer may still publish into it.
	v2 := publish(t, w1, "two")
	u, reopened := nextChange(t, f, v1)
	if u.Snapshot.Version != v2 || content(u) != "two" || reopened != 0 || u.Lost != nil {
		t.Fatalf("unlinked board: %+v, %d reopens", u, reopened)
	}
	// Recreated in place (not through a rename), the old one never marked.
	w2 := openWriter(t, path, writer.Options{VersionFloor: v2})
	v3 := publish(t, w2, "three")
	u, reopened = nextChange(t, f, v2)
	if u.Snapshot.Version != v3 || content(u) != "three" || reopened != 1 {
		t.Fatalf("recreated board: %+v, %d reopens, want version %d", u, reopened, v3)
	}
}

func TestFollowerTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w1 := openWriter(t, path, writer.Options{})
	v1 := publish(t, w1, "one")
	f := newFollower(t, path, reader.FollowOptions{})
	next(t, f, 0)
	w1.Close()
	if err := os.Truncate(path, 0); err != nil { // pages under the mapping are gone: touching them is SIGBUS
		t.Fatal(err)
	}
	if _, err := f.Snapshot(); !errors.Is(err, &board.Error{Code: board.CodeTruncated}) {
		t.Fatalf("snapshot of a truncated file: %v", err)
	}
	u := next(t, f, v1)
	if !errors.Is(u.Lost, &board.Error{Code: board.CodeTruncated}) || !u.Stale || u.Changed || u.Snapshot.Version != v1 {
		t.Fatalf("update for a truncated file: %+v", u)
	}
	_, v2 := replace(t, path, v1, "two")
	u, reopened := nextChange(t, f, v1)
	if u.Snapshot.Version != v2 || reopened != 1 || u.Lost != nil {
		t.Fatalf("after the replacement: %+v, %d reopens", u, reopened)
	}
}

func TestFollowerNeverGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w1 := openWriter(t, path, writer.Options{})
	var high uint64
	for i := range 5 {
		high = publish(t, w1, string(rune('a'+i)))
	}
	f := newFollower(t, path, reader.FollowOptions{})
	next(t, f, 0)
	// A new file that starts again from 1, against the contract.
	w2, low := replace(t, path, 0, "low")
	if err := w1.Supersede(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Snapshot(); !errors.Is(err, reader.ErrVersionWentBack) {
		t.Fatalf("snapshot of version %d after %d: %v", low, high, err)
	}
	if u := next(t, f, high); u.Reopened != 1 || u.Changed || u.Snapshot.Version != high {
		t.Fatalf("Next after the move to a lower version: %+v", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	u, err := f.Next(ctx, high)
	if !errors.Is(err, context.DeadlineExceeded) || u.Changed || u.Snapshot.Version != high {
		t.Fatalf("Next while the path shows a lower version: %+v, %v", u, err)
	}
	var v uint64
	for v <= high {
		v = publish(t, w2, "climb "+string(rune('0'+v)))
	}
	u, _ = nextChange(t, f, high)
	if u.Snapshot.Version != v || f.Reopens() != 1 {
		t.Fatalf("after the new file passed version %d: %+v", high, u)
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func TestFollowerStaleIsNotNoChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	var skew atomic.Int64 // how far behind the writer's heartbeat clock is
	w := openWriter(t, path, writer.Options{Monotonic: func() int64 { return monotonic() - skew.Load() }})
	v := publish(t, w, "one")
	f := newFollower(t, path, reader.FollowOptions{StaleAfter: time.Minute})
	if u := next(t, f, 0); !u.Changed || u.Stale {
		t.Fatalf("first update: %+v", u)
	}
	// No change: Next reports nothing until its context ends, and then not stale.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if u, err := f.Next(ctx, v); !errors.Is(err, context.DeadlineExceeded) || u.Changed || u.Stale {
		t.Fatalf("no change: %+v, %v", u, err)
	}
	skew.Store(int64(time.Hour))
	w.Heartbeat() // an hour old
	if u := next(t, f, v); !u.Stale || u.Changed || !f.Stale() {
		t.Fatalf("stale writer: %+v", u)
	}
	skew.Store(0)
	w.Heartbeat()
	if u := next(t, f, v); u.Stale || u.Changed || f.Stale() {
		t.Fatalf("writer alive again: %+v", u)
	}
}

func TestNewFollowerFailsOnMissingPath(t *testing.T) {
	_, err := reader.NewFollower(filepath.Join(t.TempDir(), "none"), reader.FollowOptions{})
	if board.CodeOf(err) != board.CodeIO {
		t.Fatalf("NewFollower on a missing path: %v", err)
	}
}

// A file truncated under the follower's mapping and then restored in place by its writer (same inode, as the
// daemon repairs a truncation) is followed again: the follower opens, validates and maps it afresh. It used to
// stay lost for good, since the path still named the file it had given up on.
func TestFollowerTruncatedAndRestoredInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w := openWriter(t, path, writer.Options{})
	v1 := publish(t, w, "one")
	f := newFollower(t, path, reader.FollowOptions{})
	next(t, f, 0)
	var before syscall.Stat_t
	syscall.Stat(path, &before)
	if err := os.Truncate(path, 1000); err != nil {
		t.Fatal(err)
	}
	if u := next(t, f, v1); !errors.Is(u.Lost, &board.Error{Code: board.CodeTruncated}) {
		t.Fatalf("update for a truncated file: %+v", u)
	}
	if _, _, err := w.Heal(); err != nil { // restores the size in place and republishes above v1
		t.Fatal(err)
	}
	var after syscall.Stat_t
	syscall.Stat(path, &after)
	if after.Ino != before.Ino {
		t.Fatal("the writer did not repair in place: the test tests nothing")
	}
	u, reopened := nextChange(t, f, v1)
	if u.Lost != nil || u.Snapshot.Version <= v1 || content(u) != "one" || reopened != 0 {
		t.Fatalf("after the repair in place: %+v, %d reopens", u, reopened)
	}
}
