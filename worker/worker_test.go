package worker

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/store"
)

func newWorker(t *testing.T) (*Worker, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	path := filepath.Join(dir, "board")
	bw, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bw.Close() })
	boardtest.CheckOnCleanup(t, path, bw.Version)
	w, err := New(Config{Board: bw, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

// Concurrent writes to one id must leave the set, the store and the board agreeing on one of them.
func TestConcurrentWritesToOneIDAgree(t *testing.T) {
	w, path := newWorker(t)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.Apply([]announcement.Announcement{{ID: 7, Content: fmt.Sprint("writer ", i)}}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	stored, _, err := w.cfg.Store.Get(7)
	if err != nil {
		t.Fatal(err)
	}
	held, _ := w.Get(7)
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if held.Content != stored.Content || len(snap.Records) != 1 || snap.Records[0].Content != stored.Content {
		t.Fatalf("store %q, set %q, board %+v", stored.Content, held.Content, snap.Records)
	}
}

// Concurrent writes cannot overfill the board together: exactly its capacity gets in, the rest is refused as full.
func TestConcurrentWritesRespectCapacity(t *testing.T) {
	w, _ := newWorker(t)
	capacity := w.cfg.Board.Capacity()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := range capacity + 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.Apply([]announcement.Announcement{{ID: uint64(i + 1), Content: "x"}}, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, board.ErrFull):
				full++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != capacity || full != 40 || len(w.List()) != capacity {
		t.Fatalf("%d accepted, %d refused as full, %d held; capacity %d", ok, full, len(w.List()), capacity)
	}
}
