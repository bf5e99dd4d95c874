package proctest

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// WaitGoroutineBlocked waits until a goroutine of this process is blocked with fn (a function as a stack shows it:
// "net.(*TCPListener).Accept") in its stack: parked (waiting on I/O, a channel, a lock...) or in a system call. It
// fails t if none is within timeout. A test that then acts (closes what the goroutine waits on) knows the goroutine
// was waiting, not about to start.
func WaitGoroutineBlocked(t testing.TB, timeout time.Duration, fn string) {
	t.Helper()
	var last string
	if !Poll(timeout, func() bool {
		var ok bool
		ok, last = goroutineBlocked(fn)
		return ok
	}) {
		t.Fatalf("waiting for a goroutine blocked in %s: not within %v; goroutines with it:\n%s", fn, timeout, last)
	}
}

// goroutineBlocked reports whether a goroutine with fn in its stack is blocked; if not, the stacks that have fn.
func goroutineBlocked(fn string) (bool, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var with []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if !bytes.Contains(g, []byte(fn+"(")) {
			continue
		}
		// goroutine 7 [IO wait]:   or   goroutine 7 [chan receive, 2 minutes]:
		header, _, _ := strings.Cut(string(g), "\n")
		_, state, _ := strings.Cut(header, "[")
		state, _, _ = strings.Cut(state, "]")
		state, _, _ = strings.Cut(state, ",")
		if state != "running" && state != "runnable" && state != "" {
			return true, ""
		}
		with = append(with, header)
	}
	return false, fmt.Sprint(with)
}
