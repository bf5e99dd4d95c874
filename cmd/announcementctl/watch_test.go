package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

// TestWatchFollowsUnlinkAndStale: watch finds a file recreated at the path without the old one being marked
// (the inode changed), says when the writer's heartbeat goes stale, and when it is back.
func TestWatchFollowsUnlinkAndStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v1, _ := w.Publish([]board.Record{{ID: 1, Content: "old file"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out proctest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"watch", "--json", "--stale", "1m", "--shm", path}, &out, &out) }()
	waitFor(t, &out, `"old file"`)

	os.Remove(path)
	var skew atomic.Int64
	mono := func() int64 {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return ts.Nano() - skew.Load()
	}
	w2, err := writer.Open(path, writer.Options{Size: 64 << 10, VersionFloor: v1, Monotonic: mono})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w2.Publish([]board.Record{{ID: 1, Content: "new file"}})
	waitFor(t, &out, `"event":"reopened"`)
	waitFor(t, &out, `"new file"`)

	skew.Store(int64(time.Hour))
	w2.Heartbeat()
	waitFor(t, &out, `"event":"stale"`)
	skew.Store(0)
	w2.Heartbeat()
	waitFor(t, &out, `"event":"alive"`)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), `"event":"lost"`) {
		t.Fatalf("an unlinked board is not lost:\n%s", out.String())
	}
}

// TestWatchOutlivesACorruptSnapshot: bytes of the slot readers are on are overwritten; watch reports the refused
// snapshot once and keeps watching, and shows the next version the writer publishes. It used to exit 1.
func TestWatchOutlivesACorruptSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v1, _ := w.Publish([]board.Record{{ID: 1, Content: "first"}})
	h := w.Header()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Before watch starts: its first snapshot is of the damaged version.
	f.WriteAt([]byte("scribbled"), int64(h.SlotOffset(v1)+board.SlotHeaderSize+40))
	f.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out proctest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"watch", "--json", "--shm", path}, &out, &out) }()
	waitFor(t, &out, `"event":"corrupt"`)
	w.Publish([]board.Record{{ID: 1, Content: "second"}})
	waitFor(t, &out, `"second"`)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d:\n%s", code, out.String())
	}
	if n := strings.Count(out.String(), `"event":"corrupt"`); n != 1 {
		t.Fatalf("the corruption was reported %d times:\n%s", n, out.String())
	}
}
