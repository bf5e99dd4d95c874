package proctest

import (
	"testing"
	"time"
)

// pollEvery is the longest pause between two checks of a condition: the first checks come faster (1 ms, doubling).
const pollEvery = 10 * time.Millisecond

// Poll checks cond until it returns true or timeout has passed, and reports whether it returned true. It is the
// one polling loop of the tests; a test uses it through WaitUntil or WaitFor unless it handles the timeout itself.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, pollEvery)
	}
}

// WaitUntil waits until cond returns true, and fails t if it has not within timeout (a guard against a hang, not a
// claim about how long it takes): "waiting for <what>: not within <timeout>".
func WaitUntil(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("waiting for %s: not within %v", what, timeout)
	}
}

// WaitFor is WaitUntil for a condition that says why it does not hold yet: check returns nil once it holds, and
// the failure has its last error.
func WaitFor(t testing.TB, timeout time.Duration, check func() error, what string) {
	t.Helper()
	var last error
	if !Poll(timeout, func() bool { last = check(); return last == nil }) {
		t.Fatalf("waiting for %s: not within %v; last: %v", what, timeout, last)
	}
}

// Slow marks t as one of the slow tests (the built daemon, processes in three languages, stress, the storm): under
// -short (make test-short) it is skipped, saying what it is; make test runs it.
func Slow(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("slow (%s): skipped with -short; make test runs it", what)
	}
}
