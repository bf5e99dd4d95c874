package writer_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/sandbox"
)

func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{"lock": helperLock, "tmpfs-full": helperTmpfsFull})
}

const regionSize = 1 << 20 // 256 pages of 4 KiB

var pageSize = os.Getpagesize()

// shmDir is a directory on /dev/shm (tmpfs, where boards live), removed after the test.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "writer-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// vmLocked is the memory this process has locked (VmLck in /proc/self/status), in bytes.
func vmLocked() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmLck:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmLck in /proc/self/status")
}

// punch removes count pages from the file at page first (as if the kernel had dropped them); the bytes read
// back as zero.
func punch(t *testing.T, path string, first, count int) {
	t.Helper()
	if err := sandbox.PunchPages(path, first, count); err != nil {
		t.Fatal(err)
	}
}

func TestMappingIsLockedAndResident(t *testing.T) {
	before, err := vmLocked()
	if err != nil {
		t.Fatal(err)
	}
	w := open(t, filepath.Join(shmDir(t), "notice"), writer.Options{Size: regionSize})
	locked, lockErr := w.Locked()
	if !locked {
		t.Skipf("this process may not lock 1 MiB (%v); the sandboxed tests cover a refused lock", lockErr)
	}
	after, err := vmLocked()
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.Residency()
	if err != nil {
		t.Fatal(err)
	}
	if lockErr != nil || after-before != regionSize || r.Pages != regionSize/pageSize || r.Missing() != 0 || r.Ratio() != 1 {
		t.Fatalf("locked %v (%v), %d more bytes locked, residency %+v", locked, lockErr, after-before, r)
	}
	if err := w.Lock(); err != nil { // already locked: nothing to do
		t.Fatal(err)
	}
	w.Close()
	if end, _ := vmLocked(); end != before {
		t.Fatalf("locked memory %d after close, %d before the writer", end, before)
	}
}

// A fresh region is sparse: without the lock only the pages written are in memory, and Repair brings in the rest.
func TestRepairFillsAFreshRegion(t *testing.T) {
	path := filepath.Join(shmDir(t), "notice")
	w := open(t, path, writer.Options{Size: regionSize, NoLock: true})
	if _, err := w.Publish([]board.Record{{ID: 1, Content: "one"}}); err != nil {
		t.Fatal(err)
	}
	r, err := w.Residency()
	if err != nil {
		t.Fatal(err)
	}
	// In memory: the header page and the page with slot 1's header (the one published); the rest was never touched.
	if r.Pages != 256 || r.Resident < 2 || r.Missing() == 0 {
		t.Fatalf("fresh region: %+v", r)
	}
	if locked, err := w.Locked(); locked || err != nil {
		t.Fatalf("NoLock: locked %v, %v", locked, err)
	}
	r, err = w.Repair()
	if err != nil || r.Missing() != 0 {
		t.Fatalf("after repair: %+v, %v", r, err)
	}
	if s := read(t, path); len(s.Records) != 1 || s.Records[0].Content != "one" {
		t.Fatalf("content after repair: %+v", s.Records)
	}
}

// Pages taken from a locked region are seen missing, and Repair brings them back; the lock still holds.
func TestRepairAfterPagesDropped(t *testing.T) {
	path := filepath.Join(shmDir(t), "notice")
	w := open(t, path, writer.Options{Size: regionSize})
	if locked, err := w.Locked(); !locked {
		t.Skipf("this process may not lock 1 MiB (%v)", err)
	}
	v, err := w.Publish([]board.Record{{ID: 1, Content: "one"}})
	if err != nil {
		t.Fatal(err)
	}
	punch(t, path, 16, 16) // inside slot 0, which holds nothing yet
	r, err := w.Residency()
	if err != nil || r.Missing() != 16 {
		t.Fatalf("after punching 16 pages: %+v, %v", r, err)
	}
	r, err = w.Repair()
	if err != nil || r.Missing() != 0 {
		t.Fatalf("after repair: %+v, %v", r, err)
	}
	if locked, _ := w.Locked(); !locked {
		t.Fatal("the lock was lost")
	}
	// The repaired slot takes the next publish.
	if v2, err := w.Publish([]board.Record{{ID: 2, Content: "two"}}); err != nil || v2 != v+1 {
		t.Fatalf("publish after repair: %d, %v", v2, err)
	}
	if s := read(t, path); len(s.Records) != 1 || s.Records[0].Content != "two" {
		t.Fatalf("content after repair: %+v", s.Records)
	}
}

func TestHeartbeatAge(t *testing.T) {
	now := int64(1e12)
	w := open(t, tempRegion(t), writer.Options{Monotonic: func() int64 { return now }})
	now += 7e9
	if age, err := w.HeartbeatAge(); err != nil || age.Seconds() != 7 {
		t.Fatalf("age %v, %v", age, err)
	}
	w.Heartbeat()
	if age, _ := w.HeartbeatAge(); age != 0 {
		t.Fatalf("age %v after a heartbeat", age)
	}
	w.Close()
	if _, err := w.HeartbeatAge(); err == nil {
		t.Fatal("no error after close")
	}
	if _, err := w.Residency(); err == nil {
		t.Fatal("no error after close")
	}
}

// lockResult is what the "lock" helper saw.
type lockResult struct {
	Locked        bool
	Err           string
	EPERM, ENOMEM bool
	Pages         int
	Missing       int
	VmLck         int
	Published     uint64
	// After raising RLIMIT_MEMLOCK back and calling Lock again:
	RetryErr   string
	RetryVmLck int
}

// helperLock runs in a sandbox, without CAP_IPC_LOCK: it lowers RLIMIT_MEMLOCK to $GUARD_MEMLOCK, opens a 1 MiB
// board, publishes, then raises the limit back and retries the lock.
func helperLock([]string) int {
	limit, _ := strconv.ParseUint(os.Getenv("GUARD_MEMLOCK"), 10, 64)
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &orig); err != nil {
		return fail(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: orig.Max}); err != nil {
		return fail(err)
	}
	w, err := writer.Open(filepath.Join(os.Getenv("GUARD_DIR"), "notice"), writer.Options{Size: regionSize})
	if err != nil {
		return fail(err)
	}
	var res lockResult
	locked, lockErr := w.Locked()
	res.Locked = locked
	if lockErr != nil {
		res.Err, res.EPERM, res.ENOMEM = lockErr.Error(), errors.Is(lockErr, unix.EPERM), errors.Is(lockErr, unix.ENOMEM)
	}
	r, err := w.Residency()
	if err != nil {
		return fail(err)
	}
	res.Pages, res.Missing = r.Pages, r.Missing()
	if res.VmLck, err = vmLocked(); err != nil {
		return fail(err)
	}
	if res.Published, err = w.Publish([]board.Record{{ID: 1, Content: "served anyway"}}); err != nil {
		return fail(err)
	}
	if orig.Cur < regionSize {
		return fail(fmt.Errorf("RLIMIT_MEMLOCK is %d, under the 1 MiB the retry needs", orig.Cur))
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &orig); err != nil {
		return fail(err)
	}
	if err := w.Lock(); err != nil {
		res.RetryErr = err.Error()
	}
	res.RetryVmLck, _ = vmLocked()
	return emit(res)
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

func emit(v any) int {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		return fail(err)
	}
	return 0
}

// A refused lock is reported, the pages are brought in anyway, the writer keeps publishing, and a retry after the
// limit is raised locks. Root would always be allowed (CAP_IPC_LOCK), so this runs in a sandbox without it.
func TestLockRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		limit  uint64
		errno  func(lockResult) bool
		reason string
	}{
		{"RLIMIT_MEMLOCK 0", 0, func(r lockResult) bool { return r.EPERM }, "RLIMIT_MEMLOCK is 0 bytes"},
		{"RLIMIT_MEMLOCK under the region", 64 << 10, func(r lockResult) bool { return r.ENOMEM }, "RLIMIT_MEMLOCK is 64 KiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := sandbox.Run(t, "lock", "GUARD_DIR="+shmDir(t), fmt.Sprint("GUARD_MEMLOCK=", c.limit))
			var r lockResult
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if r.Locked || !c.errno(r) || !strings.Contains(r.Err, "mlock of the 1 MiB region") || !strings.Contains(r.Err, c.reason) {
				t.Errorf("lock: %+v", r)
			}
			if r.VmLck != 0 || r.Pages != 256 || r.Missing != 0 || r.Published != 1 {
				t.Errorf("refused lock: %d bytes locked, %d of %d pages missing, published %d", r.VmLck, r.Missing, r.Pages, r.Published)
			}
			if r.RetryErr != "" || r.RetryVmLck != regionSize {
				t.Errorf("retry with the limit raised: %q, %d bytes locked", r.RetryErr, r.RetryVmLck)
			}
		})
	}
}

// fullResult is what the "tmpfs-full" helper saw.
type fullResult struct {
	Punched, Full, Freed struct {
		Missing int
		Err     string
	}
	TouchErr string
	Content  string
}

// helperTmpfsFull runs in a sandbox with its own 2 MiB tmpfs: it opens a 1 MiB board there, takes 16 pages away,
// fills the tmpfs, repairs (which must fail), frees the space and repairs again.
func helperTmpfsFull([]string) int {
	mnt, err := sandbox.MountTmpfs(os.Getenv("GUARD_DIR"), "2m")
	if err != nil {
		return fail(err)
	}
	path := filepath.Join(mnt, "notice")
	w, err := writer.Open(path, writer.Options{Size: regionSize})
	if err != nil {
		return fail(err)
	}
	if _, err := w.Publish([]board.Record{{ID: 1, Content: "kept"}}); err != nil {
		return fail(err)
	}
	var res fullResult
	step := func(s *struct {
		Missing int
		Err     string
	}, r writer.Residency, err error) {
		s.Missing = r.Missing()
		if err != nil {
			s.Err = err.Error()
		}
	}
	if err := sandbox.PunchPages(path, 16, 16); err != nil {
		return fail(err)
	}
	r, err := w.Residency()
	step(&res.Punched, r, err)
	filler := filepath.Join(mnt, "filler")
	if err := sandbox.Fill(filler); err != nil {
		return fail(err)
	}
	r, err = w.Repair()
	step(&res.Full, r, err)
	// The fallback for kernels without MADV_POPULATE_READ reads the pages: SIGBUS, which must become an error.
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, regionSize, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		return fail(err)
	}
	if err := writer.Touch(m[16*pageSize : 32*pageSize]); err != nil {
		res.TouchErr = err.Error()
	}
	unix.Munmap(m)
	if err := os.Remove(filler); err != nil {
		return fail(err)
	}
	r, err = w.Repair()
	step(&res.Freed, r, err)
	b, err := os.ReadFile(path) // the published record survived all of it
	if err != nil {
		return fail(err)
	}
	if i := strings.Index(string(b), "kept"); i >= 0 {
		res.Content = "kept"
	}
	return emit(res)
}

// On a full tmpfs missing pages cannot come back: Repair says so (it does not fault), and succeeds once there is
// room again.
func TestRepairOnAFullTmpfs(t *testing.T) {
	out := sandbox.Run(t, "tmpfs-full", "GUARD_DIR="+t.TempDir())
	var r fullResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Punched.Missing != 16 || r.Punched.Err != "" {
		t.Errorf("after the punch: %+v", r.Punched)
	}
	if r.Full.Missing != 16 || !strings.Contains(r.Full.Err, "pages 16–31") {
		t.Errorf("repair on a full tmpfs: %+v", r.Full)
	}
	if !strings.Contains(r.TouchErr, "faulted") {
		t.Errorf("touching missing pages on a full tmpfs: %q", r.TouchErr)
	}
	if r.Freed.Missing != 0 || r.Freed.Err != "" || r.Content != "kept" {
		t.Errorf("repair with room again: %+v, content %q", r.Freed, r.Content)
	}
}
