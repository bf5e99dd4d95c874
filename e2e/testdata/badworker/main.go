// Command badworker is a broken announcementd for e2e/reload_test.go (TestBadBinaries). As `badworker worker ...`
// it speaks the handoff protocol like a real worker but fails on purpose, by its build-time mode:
//
//	-X main.mode=standby   answers an unhealthy Standby (the reload fails before the new generation starts)
//	-X main.mode=ready     answers a healthy Standby, then an unhealthy Ready after Start (the supervisor rolls back)
//
// Started any other way it is being started as the supervisor: a reload runs a changed binary as the new supervisor
// (self-upgrade) before any worker. With -X main.supervisor=PATH it then executes PATH, a good announcementd, with the
// same arguments (argv[0] stays the bad binary's path, so the supervisor starts its workers from it): a release whose
// supervisor is fine and whose worker is broken. Without it, it exits 4.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/handoff"
)

var (
	mode       = "standby"
	supervisor = ""
)

// Reasons the worker gives; the test looks for them in the reload's output.
const (
	standbyReason = "badworker: refusing standby on purpose"
	readyReason   = "badworker: refusing to serve on purpose"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "worker" {
		if supervisor == "" {
			fmt.Fprintln(os.Stderr, "badworker: started as a supervisor, and no good supervisor to run")
			os.Exit(4)
		}
		err := syscall.Exec(supervisor, os.Args, os.Environ())
		fmt.Fprintf(os.Stderr, "badworker: exec %s: %v\n", supervisor, err)
		os.Exit(4)
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "badworker: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	gen, err := strconv.ParseUint(os.Getenv("ANNOUNCEMENTD_GENERATION"), 10, 64)
	if err != nil {
		return fmt.Errorf("$ANNOUNCEMENTD_GENERATION: %w", err)
	}
	if mode != "standby" && mode != "ready" {
		return fmt.Errorf("unknown mode %q", mode)
	}
	conn, err := handoff.FileConn(os.NewFile(3, "handoff"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, files, err := handoff.Join(ctx, conn, handoff.Hello{Role: handoff.RoleWorker, Generation: gen, Build: "badworker " + mode}, os.Getppid(), os.Getuid())
	if err != nil {
		conn.Close()
		return err
	}
	defer files.Close()
	// Until the supervisor closes the connection or kills this process.
	return handoff.Serve(ctx, conn, bad{}, handoff.ServeOptions{})
}

// bad fails where its mode says.
type bad struct{}

func (bad) Prepare(context.Context) error {
	if mode == "standby" {
		return errors.New(standbyReason)
	}
	return nil
}

func (bad) Start(context.Context, handoff.Start) handoff.Ready {
	return handoff.Ready{Reason: readyReason}
}

func (bad) Yield(context.Context, handoff.Yield) handoff.Yielded { return handoff.Yielded{} }
