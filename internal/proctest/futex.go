package proctest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FutexWord is a futex word in a file that processes map shared (a board's futex word: its path and
// board.OffFutex).
type FutexWord struct {
	Path   string
	Offset int64
}

// futex(2) operations a waiter sleeps in (the op's low bits, without FUTEX_PRIVATE_FLAG or FUTEX_CLOCK_REALTIME).
const (
	futexWait       = 0
	futexWaitBitset = 9
	futexCmdMask    = 0x7f
)

// WaitBlockedInFutex waits until a thread of process pid (os.Getpid() for a goroutine of the test itself) sleeps
// in futex(2) FUTEX_WAIT on word, and fails t if none does within timeout. It reads, for every thread, the system
// call it is blocked in (/proc/PID/task/TID/syscall: the number, unix.SYS_FUTEX, then the arguments: the address
// first) and compares the address with where pid maps word's file (/proc/PID/maps, matched by device and inode, so
// a file since renamed or unlinked still matches). A thread that is merely about to call futex, or that sleeps on
// another word (a Go runtime thread parks on a futex of its own), does not count: a test that wakes the waiter
// after this knows the wake-up went through the futex.
func WaitBlockedInFutex(t testing.TB, timeout time.Duration, pid int, word FutexWord) {
	t.Helper()
	var last string
	if !Poll(timeout, func() bool {
		ok, why, err := blockedInFutex(pid, word)
		if err != nil {
			last = err.Error()
			return false
		}
		last = why
		return ok
	}) {
		t.Fatalf("waiting for a thread of pid %d to sleep in futex(2) on %s+%d: not within %v; %s", pid, word.Path, word.Offset, timeout, last)
	}
}

// blockedInFutex reports whether a thread of pid sleeps in FUTEX_WAIT on word; if not, why says what the threads
// are doing.
func blockedInFutex(pid int, word FutexWord) (ok bool, why string, err error) {
	addrs, err := futexAddrs(pid, word)
	if err != nil {
		return false, "", err
	}
	if len(addrs) == 0 {
		return false, fmt.Sprintf("pid %d does not map %s at offset %d", pid, word.Path, word.Offset), nil
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, "", err
	}
	var seen []string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if err != nil {
			continue // the thread has exited
		}
		line := strings.TrimSpace(string(b))
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != strconv.Itoa(unix.SYS_FUTEX) {
			if len(seen) < 8 {
				seen = append(seen, task.Name()+": "+first(f))
			}
			continue
		}
		addr, err1 := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
		op, err2 := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if cmd := op & futexCmdMask; addrs[uintptr(addr)] && (cmd == futexWait || cmd == futexWaitBitset) {
			return true, "", nil
		}
		if len(seen) < 8 {
			seen = append(seen, fmt.Sprintf("%s: futex(%#x, op %d)", task.Name(), addr, op))
		}
	}
	return false, fmt.Sprintf("the word is at %v in pid %d; its threads: %s", keys(addrs), pid, strings.Join(seen, ", ")), nil
}

// futexAddrs returns the addresses at which pid maps word (one per mapping of its file that covers it).
func futexAddrs(pid int, word FutexWord) (map[uintptr]bool, error) {
	path, err := filepath.Abs(word.Path)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("the futex word's file: %w", err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	addrs := map[uintptr]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// start-end perms offset major:minor inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		inode, err := strconv.ParseUint(fs[4], 10, 64)
		if err != nil || inode != st.Ino {
			continue
		}
		major, minor, ok := strings.Cut(fs[3], ":")
		maj, err1 := strconv.ParseUint(major, 16, 32)
		mnr, err2 := strconv.ParseUint(minor, 16, 32)
		if !ok || err1 != nil || err2 != nil || unix.Mkdev(uint32(maj), uint32(mnr)) != st.Dev {
			continue
		}
		lo, hi, _ := strings.Cut(fs[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		pgoff, err3 := strconv.ParseUint(fs[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if off := uint64(word.Offset); off >= pgoff && off < pgoff+(end-start) {
			addrs[uintptr(start+off-pgoff)] = true
		}
	}
	return addrs, sc.Err()
}

func first(f []string) string {
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func keys(m map[uintptr]bool) []string {
	var out []string
	for a := range m {
		out = append(out, fmt.Sprintf("%#x", a))
	}
	return out
}
