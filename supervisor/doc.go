// Package supervisor runs announcementd's worker generations: it starts each one from the binary on disk, hands it
// the service's fds over a handoff connection (package handoff), and replaces it on reload, on crash, and — with an
// Upgrader — replaces itself when the binary has changed. It knows processes, fds and signals; it never imports
// the worker, the board or the store, and it never looks inside the files it hands over.
//
// # Invariants
//
//   - One writer at a time. A new generation is brought to standby (handshake, fds, its own checks) while the old
//     one serves; the old one yields (stops accepting, finishes its requests, saves what it must, closes the store)
//     before the new one is started. Connections that arrive in between wait in the listen backlog.
//   - At most two live generations: the serving one and one in standby. One reload runs at a time; reload requests
//     that arrive during it are served together by the next one, which runs the binary on disk at that time.
//   - A reload reports its real outcome. The new generation failing before it was started (it exits, misses the
//     deadline, or reports unhealthy) leaves the old one serving, untouched: "failed". Failing after it was started
//     starts the old one again: "rolled back". Neither is a crash, so neither is restarted in a loop.
//   - A serving generation that exits unasked is restarted, after a delay that starts at 50 ms and doubles with
//     each crash in a row (capped at Config.RestartBackoff); a generation that served 30 s resets the count, and
//     so does a reload that reaches serving (a new build serves); a failed or rolled-back reload does not. Past
//     Config.RestartLimit crashes in a row Run fails, so that the service manager's restart policy acts.
//   - No worker outlives its turn: a generation told to go is given DrainTimeout, then SIGKILLed and reaped, and a
//     worker whose supervisor dies gets SIGTERM (parent-death signal) and end-of-file on its connection.
//   - Every step that waits on a worker has a deadline (ReadyTimeout, DrainTimeout).
//
// # States
//
// The loop is an explicit state machine (state.go): starting, serving, reloading, upgrading, restarting, stopping,
// stopped. Every change goes through enter, which refuses an edge the table does not have and tells Status and
// Config.OnTransition; every way a generation comes to serve goes through promote. docs/SUPERVISOR.md has the
// diagram. Processes are started through env (generation.go), the seam the in-process tests replace.
//
// # Goroutines
//
// Run's goroutine (the loop) owns every generation and all state but the Status view, which a mutex guards. Each
// generation has one goroutine that reaps its process (cmd.Wait) and closes its exited channel. Reload and Status
// may be called from any goroutine.
package supervisor
