package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/internal/proctest"
)

// The test binary doubles as the helper process of the crash and lock tests: the roles get the store's path.
func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{
		"crash": func(args []string) int { crashHelper(args[0]); return 0 },
		"hold":  func(args []string) int { holdHelper(args[0]); return 0 },
	})
}

// crashHelper applies announcements from 8 goroutines forever, printing each id once its Apply has returned,
// until the parent kills it.
func crashHelper(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var next atomic.Uint64
	var mu sync.Mutex // one whole line per write
	for range 8 {
		go func() {
			for {
				id := next.Add(1)
				if _, err := s.Apply([]announcement.Announcement{ann(id)}, nil, 0); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(os.Stdout, id) // unbuffered: a write(2) to the pipe
				mu.Unlock()
			}
		}()
	}
	select {}
}

// holdHelper opens the store, says so, and keeps it open until its stdin closes.
func holdHelper(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
	os.Exit(0)
}

func helper(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := proctest.Command(t, mode, path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if mode == "hold" {
		if _, err := cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

func ann(id uint64) announcement.Announcement {
	return announcement.Announcement{
		ID: id, Content: fmt.Sprintf("announcement %d ✓", id), Priority: int32(id%7) - 3,
		EffectiveAt: 1_700_000_000_000_000_000 + int64(id), ExpiresAt: 1_800_000_000_000_000_000,
	}
}

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tempStore(t testing.TB) *Store {
	t.Helper()
	return open(t, filepath.Join(t.TempDir(), "announcements.db"))
}

func mustApply(t *testing.T, s *Store, puts []announcement.Announcement, deletes ...uint64) []uint64 {
	t.Helper()
	deleted, err := s.Apply(puts, deletes, 0)
	if err != nil {
		t.Fatal(err)
	}
	return deleted
}

func wantLen(t *testing.T, s *Store, want int) {
	t.Helper()
	if n, err := s.Len(); err != nil || n != want {
		t.Fatalf("Len() = %d, %v; want %d", n, err, want)
	}
}

// commits returns how many write transactions the file has committed: bbolt's txid, which each commit raises by one.
func commits(t testing.TB, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	s := open(t, path)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	wantLen(t, s, 0)
	if got, err := s.List(); err != nil || len(got) != 0 {
		t.Fatalf("List() of an empty store = %v, %v", got, err)
	}
	edge := announcement.Announcement{ID: 1<<64 - 1, Content: "e", Priority: -1 << 31, EffectiveAt: -5} // no expiry, one byte
	puts := []announcement.Announcement{ann(30), ann(2), edge, ann(1 << 40), ann(7)}
	mustApply(t, s, puts)
	want := []announcement.Announcement{ann(2), ann(7), ann(30), ann(1 << 40), edge}
	wantLen(t, s, 5)
	if got, err := s.List(); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("List() = %v, %v; want %v", got, err, want)
	}
	for _, a := range want {
		if got, ok, err := s.Get(a.ID); err != nil || !ok || got != a {
			t.Errorf("Get(%d) = %v, %v, %v; want %v", a.ID, got, ok, err, a)
		}
	}
	if got, ok, err := s.Get(3); err != nil || ok || got != (announcement.Announcement{}) {
		t.Errorf("Get(3) of a missing id = %v, %v, %v", got, ok, err)
	}

	// A put replaces; puts come before deletes, so an id in both ends up deleted.
	changed := ann(7)
	changed.Content = "changed"
	if d := mustApply(t, s, []announcement.Announcement{changed, ann(99)}, 30, 99, 3, 30); !reflect.DeepEqual(d, []uint64{30, 99}) {
		t.Errorf("deleted = %v, want [30 99] (3 was never stored, 30 is gone the second time)", d)
	}
	if d := mustApply(t, s, nil, 30, 3); len(d) != 0 {
		t.Errorf("deleting only missing ids: deleted = %v, want none", d)
	}
	if d, err := s.Apply(nil, nil, 0); err != nil || d != nil {
		t.Errorf("empty Apply = %v, %v", d, err)
	}

	// Survives a reopen.
	s.Close()
	s = open(t, path)
	want = []announcement.Announcement{ann(2), changed, ann(1 << 40), edge}
	if got, err := s.List(); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("List() after reopen = %v, %v; want %v", got, err, want)
	}
	if d := mustApply(t, s, nil, edge.ID); !reflect.DeepEqual(d, []uint64{edge.ID}) {
		t.Errorf("deleted = %v, want [%d]", d, edge.ID)
	}
	wantLen(t, s, 3)
}

func TestApplyIsAtomic(t *testing.T) {
	s := tempStore(t)
	mustApply(t, s, []announcement.Announcement{ann(1), ann(2)})
	before := commits(t, s)
	for _, bad := range []announcement.Announcement{
		{ID: 0, Content: "no id"},
		{ID: 9, Content: "\xff"},
		{ID: 9, EffectiveAt: 10, ExpiresAt: 10},
		{ID: 9, Content: strings.Repeat("x", 1<<20)},
	} {
		_, err := s.Apply([]announcement.Announcement{ann(3), bad, ann(4)}, []uint64{1, 2}, 0)
		var verr *announcement.ValidationError
		if !announcement.IsValidation(err) || !errors.As(err, &verr) || err != error(verr) {
			t.Errorf("Apply with %+.40v: err = %v, want the *ValidationError unwrapped", bad, err)
		}
	}
	if got := commits(t, s); got != before {
		t.Errorf("rejected batches committed %d transactions", got-before)
	}
	wantLen(t, s, 2)
	for id, want := range map[uint64]bool{1: true, 2: true, 3: false, 4: false} {
		if _, ok, err := s.Get(id); err != nil || ok != want {
			t.Errorf("Get(%d): ok = %v, %v; want %v", id, ok, err, want)
		}
	}
}

// TestConcurrentApply has 64 callers apply at once: every put lands, every deletion is reported to exactly one
// caller, and they share commits.
func TestConcurrentApply(t *testing.T) {
	const callers = 64
	s := tempStore(t)
	var seed []announcement.Announcement
	for i := range uint64(callers / 2) {
		seed = append(seed, ann(1000+i))
	}
	mustApply(t, s, seed)
	before := commits(t, s)

	var wg sync.WaitGroup
	start := make(chan struct{})
	deletedBy := make([][]uint64, callers)
	for i := range uint64(callers) {
		wg.Go(func() {
			<-start
			// Callers i and i+32 both delete 1000+i%32: exactly one of them finds it.
			d, err := s.Apply([]announcement.Announcement{ann(i + 1)}, []uint64{1000 + i%(callers/2)}, 0)
			if err != nil {
				t.Error(err)
			}
			deletedBy[i] = d
		})
	}
	close(start)
	wg.Wait()

	n := commits(t, s) - before
	t.Logf("%d Apply calls, %d commits", callers, n)
	if n >= callers || n < 1 {
		t.Errorf("%d Apply calls made %d commits: no group commit", callers, n)
	}
	for i := range uint64(callers / 2) {
		a, b := deletedBy[i], deletedBy[i+callers/2]
		if len(a)+len(b) != 1 {
			t.Errorf("id %d: callers %d and %d were told deleted = %v and %v; want exactly one", 1000+i, i, i+callers/2, a, b)
		}
	}
	all, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != callers {
		t.Fatalf("%d announcements stored, want %d", len(all), callers)
	}
	for i, a := range all {
		if want := ann(uint64(i + 1)); a != want {
			t.Errorf("List()[%d] = %v, want %v", i, a, want)
		}
	}
}

// TestBatchRetry shares batches between Apply calls and SetVersionFloor calls that fail (the floor is corrupt):
// the group commit (group.go) then rolls back and reruns the rest, so Apply's function runs more than once, and each must still
// report exactly its own deletion.
func TestBatchRetry(t *testing.T) {
	const n = 32
	s := tempStore(t)
	var seed []announcement.Announcement
	for i := range uint64(n) {
		seed = append(seed, ann(i+1))
	}
	mustApply(t, s, seed)
	err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersionFloor, []byte{1}) })
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range uint64(n) {
		wg.Go(func() {
			<-start
			if err := s.SetVersionFloor(i); !errors.Is(err, ErrCorrupt) {
				t.Errorf("SetVersionFloor over a corrupt floor: err = %v", err)
			}
		})
		wg.Go(func() {
			<-start
			if d, err := s.Apply([]announcement.Announcement{ann(100 + i)}, []uint64{i + 1}, 0); err != nil || len(d) != 1 || d[0] != i+1 {
				t.Errorf("Apply deleting %d: deleted = %v, %v", i+1, d, err)
			}
		})
	}
	close(start)
	wg.Wait()
	all, err := s.List()
	if err != nil || len(all) != n || all[0] != ann(100) || all[n-1] != ann(100+n-1) {
		t.Errorf("List() = %d announcements, %v; want ids 100..%d", len(all), err, 100+n-1)
	}
}

func TestVersionFloor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	s := open(t, path)
	floor := func(want uint64) {
		t.Helper()
		if v, err := s.VersionFloor(); err != nil || v != want {
			t.Fatalf("VersionFloor() = %d, %v; want %d", v, err, want)
		}
	}
	floor(0)
	for _, step := range []struct{ set, want uint64 }{{5, 5}, {3, 5}, {5, 5}, {0, 5}, {1 << 40, 1 << 40}} {
		if err := s.SetVersionFloor(step.set); err != nil {
			t.Fatal(err)
		}
		floor(step.want)
	}
	var wg sync.WaitGroup
	for i := range uint64(64) {
		wg.Go(func() {
			if err := s.SetVersionFloor(1<<40 + (i*37)%64); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	floor(1<<40 + 63)
	s.Close()
	s = open(t, path)
	floor(1<<40 + 63)
}

// TestCrashDurability kills a process that is applying from 8 goroutines with SIGKILL and checks that every
// Apply it acknowledged is in the file. (A process crash, not a power cut: that the fsync reached the disk is
// bbolt's and the kernel's part.)
func TestCrashDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	cmd, out := helper(t, "crash", path)
	var acked []uint64
	killed := false
	for out.Scan() {
		id, err := strconv.ParseUint(out.Text(), 10, 64)
		if err != nil {
			t.Fatalf("helper said %q", out.Text())
		}
		acked = append(acked, id)
		if len(acked) == 300 && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading: what the helper wrote before it died was acknowledged too
		}
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !killed || !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v after %d acknowledgements, not by our SIGKILL", err, len(acked))
	}

	s := open(t, path)
	n, err := s.Len()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledged, %d stored after SIGKILL", len(acked), n)
	for _, id := range acked {
		if a, ok, err := s.Get(id); err != nil || !ok || a != ann(id) {
			t.Errorf("acknowledged id %d: Get = %v, %v, %v", id, a, ok, err)
		}
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	check := func(err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, bolterrors.ErrTimeout) {
			t.Errorf("second Open: err = %v; want a timeout naming %s", err, path)
		}
	}

	// flock locks belong to the open file description, so a second open conflicts even within one process.
	s := open(t, path)
	t0 := time.Now()
	_, err := Open(path, Options{Timeout: 200 * time.Millisecond})
	check(err)
	if d := time.Since(t0); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("second Open gave up after %s, want about 200ms", d)
	}
	s.Close()

	// From another process; and the lock goes when that process dies.
	cmd, out := helper(t, "hold", path)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper: %q, %v", out.Text(), out.Err())
	}
	_, err = Open(path, Options{Timeout: 100 * time.Millisecond})
	check(err)
	cmd.Process.Kill()
	cmd.Wait()
	open(t, path).Close()
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.db")
	open(t, path).Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	missing := filepath.Join(dir, "no-such-dir", "a.db")
	if _, err := Open(missing, Options{}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open in a missing directory: err = %v, want one naming %s", err, missing)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(garbage, Options{}); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Errorf("Open of a non-bbolt file: err = %v, want one naming %s", err, garbage)
	}
}

// TestCorruptValues writes what the store never would under its keys and checks Get and List report it.
func TestCorruptValues(t *testing.T) {
	enc := func(a announcement.Announcement) []byte { return encode(&a) }
	for _, tc := range []struct {
		name, want string
		key, val   []byte
	}{
		{"empty", "id 5: empty value", idKey(5), []byte{}},
		{"version", "id 5: unknown format version 9", idKey(5), append([]byte{9}, enc(ann(5))[1:]...)},
		{"short", "id 5: 4 bytes, want at least 21", idKey(5), []byte{formatV1, 1, 2, 3}},
		{"utf8", "id 5: decodes to an invalid announcement: content is not valid UTF-8", idKey(5), append(enc(announcement.Announcement{ID: 5}), 0xff)},
		{"expiry", "id 5: decodes to an invalid announcement: expires_at", idKey(5), enc(announcement.Announcement{ID: 5, EffectiveAt: 9, ExpiresAt: 1})},
		{"id0", "id 0: decodes to an invalid announcement", idKey(0), enc(announcement.Announcement{ID: 1})},
		{"key", "key 0005: 2 bytes, want 8", []byte{0, 5}, enc(announcement.Announcement{ID: 5})},
		{"bucket", "id 5: empty value", idKey(5), nil}, // a nested bucket: ForEach gives it a nil value
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tempStore(t)
			mustApply(t, s, []announcement.Announcement{ann(1), ann(9)})
			err := s.db.Update(func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketAnnouncements)
				if tc.val == nil {
					_, err := b.CreateBucket(tc.key)
					return err
				}
				return b.Put(tc.key, tc.val)
			})
			if err != nil {
				t.Fatal(err)
			}
			check := func(op string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), s.Path()) ||
					!errors.Is(err, ErrCorrupt) || announcement.IsValidation(err) {
					t.Errorf("%s: err = %v; want ErrCorrupt with %q", op, err, tc.want)
				}
			}
			_, err = s.List()
			check("List", err)
			if len(tc.key) == 8 && tc.val != nil {
				_, _, err = s.Get(binary.BigEndian.Uint64(tc.key))
				check("Get", err)
			}
			if a, ok, err := s.Get(9); err != nil || !ok || a != ann(9) {
				t.Errorf("Get(9) next to the damage = %v, %v, %v", a, ok, err)
			}
		})
	}

	t.Run("version_floor", func(t *testing.T) {
		s := tempStore(t)
		err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersionFloor, []byte{1, 2, 3}) })
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.VersionFloor()
		if err == nil || !strings.Contains(err.Error(), `"version_floor": 3 bytes, want 8`) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("VersionFloor: err = %v", err)
		}
		if err := s.SetVersionFloor(7); err == nil || !errors.Is(err, ErrCorrupt) {
			t.Errorf("SetVersionFloor over a corrupt floor: err = %v", err)
		}
	})
}

// BenchmarkApply measures Apply of one announcement from 1, 16 and 64 concurrent clients, with and without
// fsync (NoSync is the ceiling), reporting applies per second and how many share a commit.
func BenchmarkApply(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		mode := "sync"
		if noSync {
			mode = "nosync"
		}
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", mode, clients), func(b *testing.B) {
				s, err := Open(filepath.Join(b.TempDir(), "a.db"), Options{NoSync: noSync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				before := commits(b, s)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range clients {
					wg.Go(func() {
						for {
							id := next.Add(1)
							if id > int64(b.N) {
								return
							}
							if _, err := s.Apply([]announcement.Announcement{ann(uint64(id))}, nil, 0); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				b.ReportMetric(float64(b.N)/float64(max(commits(b, s)-before, 1)), "applies/commit")
			})
		}
	}
}

// TestApplyLimit: the limit is checked on the result, inside the transaction: a change that replaces or deletes
// as much as it adds fits a full store; one that grows past the limit changes nothing.
func TestApplyLimit(t *testing.T) {
	s := tempStore(t)
	if _, err := s.Apply([]announcement.Announcement{ann(1), ann(2), ann(3)}, nil, 3); err != nil {
		t.Fatal(err)
	}
	var full *board.FullError
	if _, err := s.Apply([]announcement.Announcement{ann(4)}, nil, 3); !errors.As(err, &full) || full.Count != 4 || full.Capacity != 3 {
		t.Fatalf("growing past the limit: %v", err)
	}
	if _, err := s.Apply([]announcement.Announcement{ann(4), ann(1)}, []uint64{2}, 3); err != nil {
		t.Fatalf("replace one and swap one in a full store: %v", err)
	}
	if n, _ := s.Len(); n != 3 {
		t.Fatalf("%d stored, want 3", n)
	}
}

// TestDeleteExpiredKeepsRepublished: an id whose stored value is no longer expired (republished meanwhile) is
// kept; only what is still expired at now goes.
func TestDeleteExpiredKeepsRepublished(t *testing.T) {
	s := tempStore(t)
	old := announcement.Announcement{ID: 1, Content: "old", EffectiveAt: 10, ExpiresAt: 20}
	gone := announcement.Announcement{ID: 2, Content: "gone", EffectiveAt: 10, ExpiresAt: 20}
	if _, err := s.Apply([]announcement.Announcement{old, gone}, nil, 0); err != nil {
		t.Fatal(err)
	}
	// The caller saw 1 and 2 expire at 30; then 1 was republished without an expiry.
	if _, err := s.Apply([]announcement.Announcement{{ID: 1, Content: "new", EffectiveAt: 25}}, nil, 0); err != nil {
		t.Fatal(err)
	}
	deleted, err := s.DeleteExpired([]uint64{1, 2, 3}, 30)
	if err != nil || len(deleted) != 1 || deleted[0] != 2 {
		t.Fatalf("deleted %v, %v; want [2]", deleted, err)
	}
	if a, ok, _ := s.Get(1); !ok || a.Content != "new" {
		t.Fatalf("the republished announcement: %+v %v", a, ok)
	}
}

// Builds before content was required stored announcements with an empty content: such a store still opens and
// reads them back (the daemon must start on it), while Apply refuses a new one.
func TestEmptyContentFromAnOlderBuild(t *testing.T) {
	s := tempStore(t)
	legacy := announcement.Announcement{ID: 5, Priority: 2, EffectiveAt: 9}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketAnnouncements).Put(idKey(5), encode(&legacy)); err != nil {
			return err
		}
		return putCount(tx, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(); err != nil || len(got) != 1 || got[0] != legacy {
		t.Fatalf("List() = %v, %v; want %v", got, err, legacy)
	}
	if got, ok, err := s.Get(5); err != nil || !ok || got != legacy {
		t.Fatalf("Get(5) = %v, %v, %v; want %v", got, ok, err, legacy)
	}
	if _, err := s.Apply([]announcement.Announcement{{ID: 6}}, nil, 0); !announcement.IsValidation(err) {
		t.Fatalf("Apply of an empty content: %v; want a validation error", err)
	}
}

// A damaged count is ErrCorrupt, as a damaged floor is: it once read as 0, which let Apply fill past the limit.
// Open counts again and repairs it.
func TestDamagedCountIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "announcements.db")
	s := open(t, path)
	mustApply(t, s, []announcement.Announcement{ann(1), ann(2), ann(3)})
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCount, []byte("bad")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Len(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Len with a damaged count: %v", err)
	}
	if _, err := s.Apply([]announcement.Announcement{ann(4)}, nil, 3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Apply with a damaged count and a limit: %v", err)
	}
	s.Close()
	s = open(t, path)
	if n, err := s.Len(); err != nil || n != 3 {
		t.Fatalf("after reopening: %d, %v", n, err)
	}
}
