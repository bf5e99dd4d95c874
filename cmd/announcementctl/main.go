// Command announcementctl talks to announcementd through its API socket (publish, delete, list, status,
// health) and its control socket (status, reload, stop) and reads the board directly (dump and watch need no
// daemon). Run `announcementctl -h` for the commands, `announcementctl COMMAND -h` for one's flags; the manual
// page is docs/man/announcementctl.1.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/announcementd/announcementd/internal/buildinfo"
)

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// command is one of announcementctl's commands: its line in the usage, its help, and what runs it.
type command struct {
	name     string
	synopsis string // what follows the name in its usage line: flags and arguments
	summary  string // one line, for announcementctl -h and the command's own -h
	notes    string // more for the command's -h (optional)
	// daemon: it reaches the daemon, so the global flags (--runtime-dir, --addr, --token-file) may follow its
	// name too.
	daemon bool
	run    func(ctx context.Context, c *call) error
}

// commands are announcementctl's commands, in the order of its usage. (help's run is nil: run calls helpCmd,
// which reads this table.)
var commands = []*command{
	{name: "publish", synopsis: "--id N [--ttl DUR] [--at TIME] [--priority N] [--json] TEXT", daemon: true, run: publish,
		summary: "create or replace announcement N; prints the board's version once it is on disk and on the board",
		notes:   timeNote + "\nA TEXT that begins with '-' goes after '--': publish --id 3 -- '-5 °C tonight'.\n"},
	{name: "delete", synopsis: "ID", daemon: true, run: deleteCmd,
		summary: "remove announcement ID; prints the board's version"},
	{name: "list", synopsis: "[--json]", daemon: true, run: list,
		summary: "list the announcements the daemon holds, visible and scheduled"},
	{name: "status", synopsis: "[--json]", daemon: true, run: status,
		summary: "the service's state: health, board, worker, supervisor, last reload"},
	{name: "health", synopsis: "", daemon: true, run: health,
		summary: "one line of health; exit 0 ok, 1 degraded, 2 failed or unreachable"},
	{name: "reload", synopsis: "[--wait] [--timeout DUR]", daemon: true, run: reload,
		summary: "roll to a new worker generation (and supervisor, if the binary changed); --wait exits 0 only once it serves"},
	{name: "stop", synopsis: "[--timeout DUR]", daemon: true, run: stop,
		summary: "stop the service; returns once the supervisor has exited (the unit's ExecStop)",
		notes:   stopNote},
	{name: "dump", synopsis: "[--shm PATH] [--json]", run: dump,
		summary: "print the board's current snapshot, read from the file (no daemon needed)"},
	{name: "watch", synopsis: "[--shm PATH] [--json] [--stale DUR]", run: watch,
		summary: "print each new version of the board and what changed, until interrupted (no daemon needed)"},
	{name: "version", synopsis: "", run: version,
		summary: "print announcementctl's build (as --version does)"},
	{name: "help", synopsis: "[COMMAND]",
		summary: "this text, or a command's"},
}

const timeNote = `TIME is RFC 3339 (2026-11-25T10:00:00Z), now, or +DURATION (+10m); DUR is a Go duration (90s, 2h30m).`

const stopNote = `It asks the supervisor over control.sock to stop as on SIGTERM (the serving generation finishes its
requests), then waits until the supervisor's process has exited; on --timeout it exits 1 and says so.
A service that is not running (nothing listens on control.sock, or announcementd.pid names a process that has
exited) is not an error: it says so and exits 0.
`

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// globals are the flags before the command (and, for a command that reaches the daemon, after it too).
type globals struct {
	runtimeDir string
	addr       string
	tokenFile  string
}

// define defines the global flags on fs, with their current values as defaults.
func (g *globals) define(fs *flag.FlagSet) {
	fs.StringVar(&g.runtimeDir, "runtime-dir", g.runtimeDir, "the daemon's runtime dir: api.sock, control.sock")
	fs.StringVar(&g.addr, "addr", g.addr, "reach the API on a TCP listener instead (publish, delete, list, status, health)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "the file holding the bearer token --addr needs")
}

func runtimeDirDefault() string {
	if d := os.Getenv("ANNOUNCEMENTD_RUNTIME_DIR"); d != "" {
		return d
	}
	return "/run/announcementd"
}

// call is one run of a command: its arguments after the name, the global flags, and where its output goes.
type call struct {
	cmd    *command
	g      globals
	args   []string
	stdout io.Writer
}

// usageError is a mistake on the command line: exit 2 with the message.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := globals{runtimeDir: runtimeDirDefault()}
	var showVersion bool
	gfs := globalFlags(&g, &showVersion)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "announcementctl: %v (see announcementctl -h)\n", err)
		return exitUsage
	}
	if showVersion {
		fmt.Fprintln(stdout, buildinfo.Line("announcementctl"))
		return exitOK
	}
	args = gfs.Args()
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	var err error
	if cmd := lookup(args[0]); cmd != nil {
		c := &call{cmd: cmd, g: g, args: args[1:], stdout: stdout}
		if cmd.run == nil {
			err = helpCmd(ctx, c)
		} else {
			err = cmd.run(ctx, c)
		}
	} else {
		err = usageError{fmt.Sprintf("unknown command %q (announcementctl -h lists them)", args[0])}
	}
	var ue usageError
	var he healthExit
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "announcementctl: %s\n", ue.msg)
		return exitUsage
	case errors.As(err, &he):
		fmt.Fprintln(stdout, he.line)
		return he.code
	default:
		fmt.Fprintf(stderr, "announcementctl: %v\n", err)
		return exitError
	}
}

// globalFlags is the flag set of what comes before the command: the globals and --version.
func globalFlags(g *globals, showVersion *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("announcementctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.define(fs)
	fs.BoolVar(showVersion, "version", false, "print announcementctl's build and exit")
	return fs
}

// usage is announcementctl -h: every command in one line, the global flags, the environment.
func usage(w io.Writer) {
	fmt.Fprint(w, `usage: announcementctl [--runtime-dir DIR | --addr tcp:HOST:PORT --token-file FILE] COMMAND [flags] [ARGS]

Publishes and removes announcements through announcementd, reports and controls the service, and reads the
shared-memory board directly.

commands:
`)
	printTable(w, len(commands), func(i int) (string, string) { return commands[i].name, commands[i].summary })
	fmt.Fprint(w, "\nglobal flags (all but --version may also follow the command):\n")
	printFlags(w, globalFlags(&globals{runtimeDir: runtimeDirDefault()}, new(bool)))
	fmt.Fprint(w, `
environment:
  ANNOUNCEMENTD_RUNTIME_DIR  the default of --runtime-dir (else /run/announcementd)

A command's flags and arguments may come in any order; '--' ends the flags.
`+timeNote+`
Run 'announcementctl COMMAND -h' for a command's usage and flags, 'man announcementctl' for more.
`)
}

// help prints a command's help: its usage line, what it does, its flags.
func (c *call) help(fs *flag.FlagSet) {
	w := c.stdout
	fmt.Fprintf(w, "usage: announcementctl %s\n\n%s.\n", join(c.cmd.name, c.cmd.synopsis), capitalize(c.cmd.summary))
	if c.cmd.notes != "" {
		fmt.Fprintf(w, "\n%s", c.cmd.notes)
	}
	if hasFlags(fs) {
		fmt.Fprint(w, "\nflags:\n")
		printFlags(w, fs)
	}
	if c.cmd.daemon {
		fmt.Fprint(w, "\nglobal flags (before or after the command):\n")
		g := c.g
		gfs := flag.NewFlagSet("", flag.ContinueOnError)
		g.define(gfs)
		printFlags(w, gfs)
	}
}

// version prints the build, as --version does.
func version(_ context.Context, c *call) error {
	if _, err := c.parse(c.flags(), 0, ""); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, buildinfo.Line("announcementctl"))
	return nil
}

// helpCmd is `help [COMMAND]`.
func helpCmd(_ context.Context, c *call) error {
	args, err := c.parse(c.flags(), -1, "")
	if err != nil {
		return err
	}
	switch len(args) {
	case 0:
		usage(c.stdout)
		return nil
	case 1:
		cmd := lookup(args[0])
		if cmd == nil {
			return usageError{fmt.Sprintf("help: unknown command %q (announcementctl -h lists them)", args[0])}
		}
		run := cmd.run
		if run == nil { // help help
			run = helpCmd
		}
		return run(context.Background(), &call{cmd: cmd, g: c.g, args: []string{"-h"}, stdout: c.stdout})
	}
	return usageError{"help: want at most one COMMAND"}
}
