// Package wire is the JSON of announcementd's two HTTP APIs, named once: the worker's publishing API on api.sock
// (and TCP listeners), docs/API.md, and the supervisor's control API on control.sock, docs/SUPERVISOR.md. The
// daemon writes these types and announcementctl and the tests read them; nobody declares a mirror of its own.
//
// It holds every request and response body of both APIs (api.go, status.go), the one error envelope and its
// codes (errors.go), the one way to write an answer (WriteJSON, WriteError), and what makes the answers that
// net/http writes itself JSON too (Handler for the mux's 404 and 405, Listener for the errors written before any
// handler runs: listener.go).
//
// # Invariants
//
//   - Every answer on either socket is JSON (Content-Type: application/json), an error as much as a success.
//     Every error is an Error, {"error": MESSAGE, "code": CODE}: the same envelope on both sockets, whatever
//     refused the request (a handler, the mux, or net/http before the request reached a handler).
//   - The codes are the contract; the messages are for people and may change.
//   - The package imports only the standard library and healthcheck (the health report's one definition), so
//     that announcementctl can import it without the daemon's dependencies; deps_test.go checks it.
//   - Types are plain data: no logic of the worker or the supervisor lives here, and no map[string]any.
package wire
