package reader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m, nil) }

// newBoard makes a board with a first version, and returns its writer, a reader and its futex word.
func newBoard(t *testing.T) (*writer.Writer, *reader.Board, proctest.FutexWord) {
	t.Helper()
	w, path, b := openBoard(t, 64<<10)
	return w, b, proctest.FutexWord{Path: path, Offset: board.OffFutex}
}

// openBoard makes a board of size bytes with a first version, and returns its writer, its path and a reader.
func openBoard(t testing.TB, size uint64) (*writer.Writer, string, *reader.Board) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: size})
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
	return w, path, b
}

// waitBlocked waits until a goroutine of the test sleeps in futex(2) on the board's word: a waiter that has not
// got there yet would see the new version without waiting, and the test would not test the wake-up.
func waitBlocked(t *testing.T, word proctest.FutexWord) {
	t.Helper()
	proctest.WaitBlockedInFutex(t, 10*time.Second, os.Getpid(), word)
}

func TestWaitWakesOnPublish(t *testing.T) {
	w, b, word := newBoard(t)
	last := b.Version()
	got := make(chan uint64)
	go func() {
		v, err := b.Wait(context.Background(), last, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	waitBlocked(t, word)
	v, _ := w.Publish([]board.Record{{ID: 1, Content: "wake"}})
	if seen := <-got; seen != v {
		t.Fatalf("Wait returned %d, published %d", seen, v)
	}
}

func TestWaitTimesOutAndCancels(t *testing.T) {
	_, b, _ := newBoard(t)
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
	w, b, word := newBoard(t)
	errc := make(chan error)
	go func() {
		_, err := b.Wait(context.Background(), b.Version(), 10*time.Second)
		errc <- err
	}()
	waitBlocked(t, word)
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
	w, b, _ := newBoard(t)
	w.Heartbeat()
	if b.Stale(time.Minute) {
		t.Fatalf("fresh heartbeat is stale: age %v", b.HeartbeatAge())
	}
	time.Sleep(20 * time.Millisecond) // on purpose: the heartbeat must age past the 10 ms the check allows
	if !b.Stale(10 * time.Millisecond) {
		t.Fatalf("heartbeat %v old is not stale after 10ms", b.HeartbeatAge())
	}
}
