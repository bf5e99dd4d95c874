// Command announcementctl talks to announcementd through its API socket (publish, delete, list, status,
// health) and its control socket (status, reload) and reads the board directly (dump and watch need no daemon).
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
)

const usage = `usage: announcementctl [--runtime-dir DIR | --addr tcp:HOST:PORT --token-file FILE] COMMAND [flags]

commands:
  publish --id N [--ttl DUR] [--at TIME] [--priority N] TEXT
                                        create or replace an announcement; prints the board version
  delete ID                             remove an announcement
  list [--json]                         the announcements the daemon holds
  status [--json]                       the daemon's state: supervisor, worker, region, health
  reload [--wait] [--timeout D]         roll to a new worker generation (and supervisor, if the binary changed);
                                        --wait exits 0 only once the new generation serves
  health                                exit 0 ok, 1 degraded, 2 failed or unreachable, with one line of reason
  dump --shm PATH [--json]              print the board's current snapshot (no daemon needed)
  watch --shm PATH [--json] [--stale D] print each new version and what changed, until interrupted

TIME is RFC 3339 (2026-11-25T10:00:00Z), now, or +DURATION (+10m). The runtime dir defaults to
$ANNOUNCEMENTD_RUNTIME_DIR, else /run/announcementd. Run 'announcementctl COMMAND -h' for a command's flags.
`

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a mistake on the command line: exit 2 with the message.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	gfs := flag.NewFlagSet("announcementctl", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	var g globals
	gfs.StringVar(&g.runtimeDir, "runtime-dir", runtimeDirDefault(), "the daemon's runtime dir (its API socket)")
	gfs.StringVar(&g.addr, "addr", "", "reach a TCP listener instead: tcp:HOST:PORT")
	gfs.StringVar(&g.tokenFile, "token-file", "", "bearer token for --addr")
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "announcementctl: %v\n", err)
		return exitUsage
	}
	args = gfs.Args()
	if len(args) == 0 || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "publish":
		err = publish(ctx, g, rest, stdout)
	case "delete":
		err = deleteCmd(ctx, g, rest, stdout)
	case "list":
		err = list(ctx, g, rest, stdout)
	case "status":
		err = status(ctx, g, rest, stdout)
	case "reload":
		err = reload(ctx, g, rest, stdout)
	case "health":
		err = health(ctx, g, rest, stdout)
	case "dump":
		err = dump(rest, stdout)
	case "watch":
		err = watch(ctx, rest, stdout)
	default:
		err = usageError{fmt.Sprintf("unknown command %q (try announcementctl help)", cmd)}
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

func runtimeDirDefault() string {
	if d := os.Getenv("ANNOUNCEMENTD_RUNTIME_DIR"); d != "" {
		return d
	}
	return "/run/announcementd"
}

// parse parses a command's flags and wants no positional argument.
func parse(fs *flag.FlagSet, args []string) error { return parseArgs(fs, args, 0, "") }

// parseErr turns a flag error into a usageError (or prints the flags for -h).
func parseErr(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return err
	}
	return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
}
