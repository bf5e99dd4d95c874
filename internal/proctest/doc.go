// Package proctest is the harness of the module's tests and benchmarks that run processes: the test binary
// re-executed as a helper, the built daemon, and the waits between them. Only tests (and bench/reloadbench) import
// it.
//
// What is always true:
//
//   - A test binary has one way to become a helper: the environment variable EnvRole names a role that the
//     package's TestMain registered with Main. A name it did not register makes the helper exit ExitUnknownRole with
//     a message, and Command fails the test that asked for it before anything starts. A helper never runs the
//     tests.
//   - Main checks for leaked goroutines (go.uber.org/goleak) after every passing run, in every package that calls it.
//   - Every process a test starts through this package is killed and reaped by the test's cleanup at the latest,
//     and every goroutine the package starts has an owner that ends it there.
//   - A Daemon is ready when it says so: READY=1 on the sd_notify socket the harness gives it (NOTIFY_SOCKET), never
//     a pid file or a socket that happens to exist. A start that fails reports the exit status and the log.
//   - Waits are on events: WaitUntil polls a condition with a timeout, and WaitBlockedInFutex reads from /proc that
//     a thread really sleeps in futex(2) on a given word. Nothing here measures or asserts a duration.
//
// A package's TestMain is one line:
//
//	func TestMain(m *testing.M) { proctest.Main(m, proctest.Roles{"crash": crashHelper}) }
//
// and a test starts a helper with
//
//	p := proctest.Start(t, proctest.Command(t, "crash", path))
package proctest
