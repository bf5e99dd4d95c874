package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/announcementd/announcementd/wire"
)

// serveControl answers on <dir>/control.sock: GET /v1/status with st, POST /v1/reload?wait=1 with a 503 error.
func serveControl(t *testing.T, dir string, st wire.SupervisorStatus) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(rw http.ResponseWriter, r *http.Request) { wire.WriteJSON(rw, http.StatusOK, st) })
	mux.HandleFunc("POST /v1/reload", func(rw http.ResponseWriter, r *http.Request) {
		wire.WriteError(rw, http.StatusServiceUnavailable, wire.CodeUnavailable, "the supervisor is stopping")
	})
	srv := &http.Server{Handler: wire.Handler(mux, "docs/SUPERVISOR.md")}
	go srv.Serve(wire.Listener(l))
	t.Cleanup(func() { srv.Close() })
}

// status merges the worker's status with the supervisor's: with a control socket, the "supervisor" object is the
// supervisor's own status; without one, the worker's brief view of it. Either way the rest is the worker's.
func TestStatusMergesTheSupervisors(t *testing.T) {
	var mono atomic.Int64
	mono.Store(1e12)
	dir, _ := serveWorker(t, &mono)
	keysOf := func(out string) (top, sup []string) {
		t.Helper()
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var s map[string]json.RawMessage
		json.Unmarshal(m["supervisor"], &s)
		for k := range m {
			top = append(top, k)
		}
		for k := range s {
			sup = append(sup, k)
		}
		slices.Sort(top)
		slices.Sort(sup)
		return top, sup
	}
	worker := []string{"announcements", "checks", "counters_saved", "guard", "health", "health_reasons", "region", "supervisor", "worker"}

	code, out, errb := runCtl("--runtime-dir", dir, "status", "--json")
	if top, sup := keysOf(out); code != 0 || !slices.Equal(top, worker) || !slices.Equal(sup, []string{"build", "pid"}) {
		t.Fatalf("without a control socket: exit %d %s: keys %v, supervisor %v\n%s", code, errb, top, sup, out)
	}

	last := &wire.ReloadResult{Kind: wire.KindReload, Outcome: wire.OutcomeRolledBack, From: 2, To: 3, Reason: "not ready", Duration: 1500 * time.Millisecond}
	serveControl(t, dir, wire.SupervisorStatus{PID: 4242, Build: "sup-build", State: "serving", Restarts: 2, LastReload: last,
		Generations: []wire.GenerationStatus{{Generation: 2, PID: os.Getpid(), State: wire.GenerationServing}}})
	code, out, errb = runCtl("--runtime-dir", dir, "status", "--json")
	top, sup := keysOf(out)
	var st wire.ServiceStatus
	if code != 0 || !slices.Equal(top, worker) || !slices.Contains(sup, "generations") || json.Unmarshal([]byte(out), &st) != nil ||
		st.Supervisor.PID != 4242 || st.Supervisor.Restarts != 2 || st.Worker.PID != os.Getpid() || st.Region.Capacity == 0 {
		t.Fatalf("with a control socket: exit %d %s: keys %v, supervisor %v\n%s", code, errb, top, sup, out)
	}
	code, out, _ = runCtl("--runtime-dir", dir, "status")
	for _, want := range []string{"supervisor:    pid 4242, build sup-build\n", "restarts:      2\n", "last reload:   rolled back, generation 2 → 3, 1.5s: not ready\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, want %q in\n%s", code, want, out)
		}
	}
	// A control error is shown with its message, not its status text.
	if code, _, errb := runCtl("--runtime-dir", dir, "reload", "--wait"); code != 1 || !strings.Contains(errb, "reload: the supervisor is stopping") {
		t.Errorf("reload --wait against a stopping supervisor: exit %d %q", code, errb)
	}
}
