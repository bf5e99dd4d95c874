package store

import (
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// Save keeps counters with the floor, durably; they never go back, counters not named are kept, and they survive
// a reopen.
func TestSaveCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	s := open(t, path)
	if c, err := s.Counters(); err != nil || len(c) != 0 {
		t.Fatalf("Counters() of a new store = %v, %v", c, err)
	}
	if err := s.Save(7, map[string]uint64{"repairs.size": 2, "publishes.ok": 10}); err != nil {
		t.Fatal(err)
	}
	// A late, lower save changes nothing; a counter not named is kept; a higher one is raised.
	if err := s.Save(5, map[string]uint64{"repairs.size": 1, "mlock_failures": 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(9, map[string]uint64{"publishes.ok": 11}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"repairs.size": 2, "publishes.ok": 11, "mlock_failures": 3}
	check := func(s *Store) {
		t.Helper()
		if c, err := s.Counters(); err != nil || !maps.Equal(c, want) {
			t.Fatalf("Counters() = %v, %v; want %v", c, err, want)
		}
		if v, err := s.VersionFloor(); err != nil || v != 9 {
			t.Fatalf("VersionFloor() = %d, %v; want 9", v, err)
		}
	}
	check(s)
	s.Close()
	check(open(t, path))

	for _, name := range []string{"", strings.Repeat("x", MaxCounterName+1)} {
		if err := s.Save(1, map[string]uint64{name: 1}); err == nil {
			t.Errorf("Save of a counter named %q: no error", name)
		}
	}
}

// Concurrent saves share commits and end at the highest value of each counter.
func TestSaveCountersConcurrently(t *testing.T) {
	s := tempStore(t)
	var wg sync.WaitGroup
	for i := range uint64(50) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Save(i, map[string]uint64{"a": i, "b": 100 - i}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c, err := s.Counters(); err != nil || c["a"] != 49 || c["b"] != 100 {
		t.Fatalf("Counters() = %v, %v; want a 49, b 100", c, err)
	}
}

// A store from before the counters opens with none; a counter value that does not decode is reported, the others
// are returned, and the next Save replaces it.
func TestCountersOldAndDamagedStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketAnnouncements, bucketMeta} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	if c, err := s.Counters(); err != nil || len(c) != 0 {
		t.Fatalf("Counters() of a store from before counters = %v, %v", c, err)
	}
	if err := s.Save(1, map[string]uint64{"good": 4}); err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCounters).Put([]byte("bad"), []byte{1, 2}) })
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Counters()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"bad" (2 bytes, want 8)`) || !maps.Equal(c, map[string]uint64{"good": 4}) {
		t.Fatalf("Counters() with a damaged value = %v, %v", c, err)
	}
	if err := s.Save(1, map[string]uint64{"bad": 1}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Counters(); err != nil || !maps.Equal(c, map[string]uint64{"good": 4, "bad": 1}) {
		t.Fatalf("Counters() after the damaged value was saved over = %v, %v", c, err)
	}
}
