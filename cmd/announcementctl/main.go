// Command announcementctl talks to announcementd and reads its board.
//
// This version reads the board directly: dump and watch need no daemon. The publishing commands arrive with the
// worker's API.
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

const usage = `usage: announcementctl COMMAND [flags]

commands:
  dump --shm PATH [--json]              print the board's current snapshot (no daemon needed)
  watch --shm PATH [--json] [--stale D] print each new version and what changed, until interrupted

Run 'announcementctl COMMAND -h' for a command's flags.
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
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "dump":
		err = dump(rest, stdout)
	case "watch":
		err = watch(ctx, rest, stdout)
	default:
		err = usageError{fmt.Sprintf("unknown command %q (try announcementctl help)", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "announcementctl: %s\n", ue.msg)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "announcementctl: %v\n", err)
		return exitError
	}
}

// parse parses a command's flags, turning a bad flag into a usageError.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}
