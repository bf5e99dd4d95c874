package proctest

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// EnvRole is the one environment variable that makes a test binary a helper process: its value is the role's name.
// Command and Env set it; a helper's children inherit it (the daemon a test binary plays starts its workers from
// the same binary, which must play the daemon again).
const EnvRole = "ANNOUNCEMENTD_TEST_ROLE"

// ExitUnknownRole is the exit status of a helper asked for a role its test binary does not have.
const ExitUnknownRole = 125

// A Role is the main function of a helper process. args are the arguments given to Command (or, for a process
// started by something else, such as a supervisor starting "BINARY worker ...", the whole command line after the
// program name); the result is the exit status.
type Role func(args []string) int

// Roles are the helper roles of a test binary, by name.
type Roles map[string]Role

// registry is what Main registered, for Command and Env in the same process.
var registry struct {
	mu    sync.Mutex
	main  bool // Main was called
	roles Roles
	used  map[string]bool // roles a test asked for
}

// An Option changes what Main does around the tests.
type Option func(*mainConfig)

type mainConfig struct {
	setup  func() (func(), error)
	ignore []goleak.Option
}

// Setup runs f before the tests, in the test process only (never in a helper): a package builds what its tests
// run there. An error ends the run with exit status 1; the function f returns, if not nil, runs after the tests.
func Setup(f func() (teardown func(), err error)) Option {
	return func(c *mainConfig) { c.setup = f }
}

// IgnoreLeak tells the leak check to ignore goroutines whose top function is fn (fully qualified, as goleak names
// it). It is for a goroutine of a dependency that the tests cannot end; why says which and why, and is required so
// that every exception carries its reason where it is made.
func IgnoreLeak(fn, why string) Option {
	if strings.TrimSpace(why) == "" {
		panic("proctest.IgnoreLeak(" + fn + "): say why the goroutine cannot be ended")
	}
	return func(c *mainConfig) { c.ignore = append(c.ignore, goleak.IgnoreTopFunction(fn)) }
}

// Main is the whole of a package's TestMain. When EnvRole is set, this process is a helper: Main runs the role and
// exits with its status (ExitUnknownRole, with a message, for a role that roles lacks). Otherwise it runs the
// Setup, the tests and the Setup's teardown, then, after a passing run:
//
//   - fails it if a role was never asked for by a test (only after a whole run as root, where no test skips for
//     want of privileges: a role nobody starts is dead code);
//   - fails it if a goroutine is left (goleak.Find, which waits a moment for goroutines that are ending).
//
// It exits with the run's status.
func Main(m *testing.M, roles Roles, opts ...Option) {
	if name, ok := os.LookupEnv(EnvRole); ok {
		os.Exit(runRole(roles, name, roleArgs(os.Args[1:])))
	}
	var c mainConfig
	for _, o := range opts {
		o(&c)
	}
	registry.mu.Lock()
	registry.main, registry.roles, registry.used = true, roles, map[string]bool{}
	registry.mu.Unlock()

	var teardown func()
	if c.setup != nil {
		td, err := c.setup()
		if err != nil {
			fmt.Fprintf(os.Stderr, "proctest: setup: %v\n", err)
			os.Exit(1)
		}
		teardown = td
	}
	code := m.Run()
	if teardown != nil {
		teardown()
	}
	if code == 0 && wholeRun() && os.Geteuid() == 0 {
		registry.mu.Lock()
		for _, name := range slices.Sorted(maps.Keys(roles)) {
			if !registry.used[name] {
				fmt.Fprintf(os.Stderr, "proctest: helper role %q is never started by a test: remove it\n", name)
				code = 1
			}
		}
		registry.mu.Unlock()
	}
	if code == 0 && !flagSet("test.fuzzworker") {
		if err := goleak.Find(c.ignore...); err != nil {
			fmt.Fprintf(os.Stderr, "proctest: goroutines left after a passing run (goleak):\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// wholeRun reports whether every test of the package ran: no -run, -skip, -list or fuzzing, and not -short (which
// skips the slow ones).
func wholeRun() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list", "test.fuzz", "test.fuzzworker"} {
		if flagSet(name) {
			return false
		}
	}
	return !testing.Short()
}

// flagSet reports whether the flag name has a value other than its default ("" or false).
func flagSet(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != "" && f.Value.String() != "false"
}

// runRole runs the role name of roles and returns its exit status.
func runRole(roles Roles, name string, args []string) int {
	r, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "proctest: this test binary (%s) has no helper role %q (%s=%s); its roles: %s\n",
			os.Args[0], name, EnvRole, name, roleNames(roles))
		return ExitUnknownRole
	}
	return r(args)
}

// roleArgs drops the test flags and the "--" that Command puts before a role's arguments.
func roleArgs(args []string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-test.") {
		i++
	}
	if i > 0 && i < len(args) && args[i] == "--" {
		i++
	}
	return args[i:]
}

func roleNames(roles Roles) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(roles)), ", ")
}

// useRole checks that role is registered and notes that a test asked for it; it fails t otherwise.
func useRole(t testing.TB, role string) {
	t.Helper()
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if !registry.main {
		t.Fatalf("proctest: helper role %q asked for, but this package's TestMain does not call proctest.Main", role)
	}
	if _, ok := registry.roles[role]; !ok {
		t.Fatalf("proctest: no helper role %q in this package's TestMain (its roles: %s)", role, roleNames(registry.roles))
	}
	registry.used[role] = true
}
