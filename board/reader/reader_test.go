package reader_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

func newBoard(t *testing.T) (*writer.Writer, *reader.Board) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.Publish(nil); err != nil {
		t.Fatal(err)
	}
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return w, b
}

func TestWaitWakesOnPublish(t *testing.T) {
	w, b := newBoard(t)
	last := b.Version()
	got := make(chan uint64)
	go func() {
		v, err := b.Wait(context.Background(), last, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	v, _ := w.Publish([]board.Record{{ID: 1, Content: "wake"}})
	if seen := <-got; seen != v {
		t.Fatalf("Wait returned %d, published %d", seen, v)
	}
}

func TestWaitTimesOutAndCancels(t *testing.T) {
	_, b := newBoard(t)
	if _, err := b.Wait(context.Background(), b.Version(), 30*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	if _, err := b.Wait(ctx, b.Version(), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	// A version different from last returns at once.
	if v, err := b.Wait(context.Background(), 0, time.Millisecond); err != nil || v != b.Version() {
		t.Fatalf("changed version: %d, %v", v, err)
	}
}

func TestSupersedeWakesWaitersAndFailsSnapshots(t *testing.T) {
	w, b := newBoard(t)
	errc := make(chan error)
	go func() {
		_, err := b.Wait(context.Background(), b.Version(), 10*time.Second)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := w.Supersede(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, board.ErrSuperseded) {
		t.Fatalf("waiter: %v", err)
	}
	if _, err := b.Snapshot(); !errors.Is(err, board.ErrSuperseded) {
		t.Fatalf("snapshot: %v", err)
	}
}

func TestStaleHeartbeat(t *testing.T) {
	w, b := newBoard(t)
	w.Heartbeat()
	if b.Stale(time.Minute) {
		t.Fatalf("fresh heartbeat is stale: age %v", b.HeartbeatAge())
	}
	time.Sleep(20 * time.Millisecond)
	if !b.Stale(10 * time.Millisecond) {
		t.Fatalf("heartbeat %v old is not stale after 10ms", b.HeartbeatAge())
	}
}
