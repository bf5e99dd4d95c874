package clients_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

// ctypesWaiter blocks in libnotice's notice_wait (through ctypes) and prints the version it woke up for.
const ctypesWaiter = `
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
b = ctypes.c_void_p()
rc = lib.notice_open(sys.argv[2].encode(), ctypes.byref(b))
assert rc == 0, rc
lib.notice_version.restype = ctypes.c_uint64
lib.notice_error_name.restype = ctypes.c_char_p
last = lib.notice_version(b)
print("ready", last, flush=True)
v = ctypes.c_uint64()
rc = lib.notice_wait(b, ctypes.c_uint64(last), int(sys.argv[3]), ctypes.byref(v))
print(lib.notice_error_name(rc).decode(), v.value, flush=True)
`

// goWaiter is the Go helper role: block in Board.Wait and print the version it woke up for.
func goWaiter(path string) int {
	b, err := reader.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	last := b.Version()
	fmt.Println("ready", last)
	v, err := b.Wait(context.Background(), last, 0) // no limit: only a wake-up ends it
	name := "ok"
	if err != nil {
		name = string(board.CodeOf(err))
		if err == context.DeadlineExceeded {
			name = "timed_out"
		}
	}
	fmt.Println(name, v)
	return 0
}

// TestFutexWakeAcrossProcesses: a publish wakes readers blocked on the futex in other processes, one in Go and
// one in C (libnotice.so through ctypes). They wait without a time limit, so only the writer's FUTEX_WAKE can
// end their wait; a lost wake-up leaves them asleep and the test fails when its 30 s guard expires.
func TestFutexWakeAcrossProcesses(t *testing.T) {
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_wait_%d_%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() { os.Remove(path) })
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first, _ := w.Publish(nil)

	lib, _ := filepath.Abs("c/libnotice.so")
	waiters := map[string]*exec.Cmd{
		"go": proctest.Command(t, "waiter", path),
		"c":  exec.Command(need(t, "python3"), "-c", ctypesWaiter, lib, path, "-1"),
	}
	outs := map[string]*bufio.Reader{}
	for name, cmd := range waiters {
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		outs[name] = bufio.NewReader(out)
		if line, _ := outs[name].ReadString('\n'); line != fmt.Sprintf("ready %d\n", first) {
			t.Fatalf("%s waiter: %q", name, line)
		}
	}
	for _, cmd := range waiters { // the publish must find both asleep in futex(2): a late one would not wait at all
		proctest.WaitBlockedInFutex(t, 30*time.Second, cmd.Process.Pid, proctest.FutexWord{Path: path, Offset: board.OffFutex})
	}
	v, _ := w.Publish([]board.Record{{ID: 1, Content: "wake up"}})
	guard := time.AfterFunc(30*time.Second, func() {
		for _, cmd := range waiters {
			cmd.Process.Kill()
		}
	})
	defer guard.Stop()
	for name, cmd := range waiters {
		line, _ := outs[name].ReadString('\n')
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "ok" || f[1] != strconv.FormatUint(v, 10) {
			t.Errorf("%s waiter woke with %q, want ok %d", name, line, v)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s waiter: %v", name, err)
		}
	}
}
