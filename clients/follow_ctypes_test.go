package clients_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// ctypesFollower drives libnotice's follower through ctypes (its ABI: notice_follow_status as declared in
// notice.h), one step per line on stdin, and prints what each call returned.
const ctypesFollower = `
import ctypes, sys

class Status(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint64), ("reopens", ctypes.c_uint64), ("reopened", ctypes.c_uint32),
                ("changed", ctypes.c_int32), ("stale", ctypes.c_int32), ("lost", ctypes.c_int32)]

lib = ctypes.CDLL(sys.argv[1])
lib.notice_error_name.restype = ctypes.c_char_p
lib.notice_follow_reopens.restype = ctypes.c_uint64
assert lib.notice_guard_faults() == 0  # a truncation during a read: "truncated", not SIGBUS
f, snap, st = ctypes.c_void_p(), ctypes.c_void_p(), Status()
rc = lib.notice_follow_open(sys.argv[2].encode(), ctypes.c_int64(60 * 10**9), ctypes.byref(f))
assert rc == 0, rc

def name(rc):
    return lib.notice_error_name(rc).decode()

def wait(last, timeout_ms):
    rc = lib.notice_follow_wait(f, ctypes.c_uint64(last), timeout_ms, ctypes.byref(snap), ctypes.byref(st))
    print(name(rc), st.version, st.reopens, st.reopened, st.changed, st.stale, st.lost, flush=True)

for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "wait":
        wait(int(cmd[1]), int(cmd[2]))
    elif cmd[0] == "snapshot":
        print(name(lib.notice_follow_snapshot(f, ctypes.byref(snap))), flush=True)
lib.notice_snapshot_free(snap)
lib.notice_follow_close(f)
`

// TestFollowNeverGoesBackC: the C follower (libnotice.so) refuses a lower version from a new file at the path,
// keeps waiting while the version is below the one it returned, and reports the new file once it passes it.
func TestFollowNeverGoesBackC(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notice")
	w1, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Close()
	var high uint64
	for i := range 5 {
		high, _ = w1.Publish([]board.Record{{ID: 1, Content: fmt.Sprint("old ", i)}})
	}

	lib, _ := filepath.Abs("c/libnotice.so")
	cmd := exec.Command(need(t, "python3"), "-c", ctypesFollower, lib, path)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	step := func(line, want string) {
		t.Helper()
		fmt.Fprintln(stdin, line)
		got, err := out.ReadString('\n')
		if strings.TrimSpace(got) != want {
			t.Fatalf("%s: got %q (%v), want %q", line, got, err, want)
		}
	}
	// name version reopens reopened changed stale lost
	step("wait 0 10000", fmt.Sprintf("ok %d 0 0 1 0 0", high))
	step(fmt.Sprintf("wait %d 0", high), fmt.Sprintf("timed_out %d 0 0 0 0 0", high)) // no change, not stale

	// A new file starting again from 1, against the contract.
	tmp := path + ".new"
	w2, err := writer.Open(tmp, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w2.Publish([]board.Record{{ID: 1, Content: "low"}})
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	w1.Supersede()
	step("snapshot", "version_went_back")
	step(fmt.Sprintf("wait %d 10000", high), fmt.Sprintf("ok %d 1 1 0 0 0", high)) // the reopen, no change
	step(fmt.Sprintf("wait %d 50", high), fmt.Sprintf("timed_out %d 1 0 0 0 0", high))

	var v uint64
	for v <= high {
		v, _ = w2.Publish([]board.Record{{ID: 1, Content: fmt.Sprint("new ", v)}})
	}
	step(fmt.Sprintf("wait %d 10000", high), fmt.Sprintf("ok %d 1 0 1 0 0", v))
	step("snapshot", "ok")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
