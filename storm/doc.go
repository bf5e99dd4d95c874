// Package storm is the project's own fault storm (issue 9, item 11; docs/STRESS.md, "Storm"): TestStorm runs the
// built announcementd under continuous acknowledged load, with two version watchers and a Go, a C and a Python
// follower, injects faults at random moments (kill -9 of the worker and of the supervisor, SIGHUP bursts,
// `reload --wait`, SIGSTOP/SIGCONT, damage to the board, a full state file system) and checks that every
// acknowledged change survives, that no reader ever sees the version go back or accepts a torn snapshot, that no
// request fails during reloads, that every fault is recovered within 10 s, that no process is left behind and that
// the supervisor's fd count stays flat.
//
// The package has no code of its own outside its tests: `go test ./storm` runs the short storm (about 100 faults),
// `make storm` the long one (at least 1,000). It needs root (it mounts a small tmpfs for the state directory).
package storm
