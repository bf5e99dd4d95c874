package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/wire"
	"github.com/announcementd/announcementd/worker"
)

// serveWorker runs a real worker on <runtime dir>/api.sock, its board's heartbeat on the clock *mono (ns), and
// returns the runtime dir and the board.
func serveWorker(t *testing.T, mono *atomic.Int64) (string, *writer.Writer) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bw, err := writer.Open(filepath.Join(dir, "board"), writer.Options{Size: 64 << 10, Monotonic: mono.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bw.Close() })
	w, err := worker.New(worker.Config{Board: bw, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx, []worker.Listener{{Listener: l}}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return dir, bw
}

// serveCanned answers every request on <runtime dir>/api.sock with status and body.
func serveCanned(t *testing.T, status int, body string) string {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		rw.Write([]byte(body))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return dir
}

func runCtl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// health exits 0, 1 or 2 with one line, as the worker answers ok, degraded or failed; here the heartbeat readers
// see ages (degraded after 5 s, failed after 30 s) and comes back.
func TestHealthExitCodes(t *testing.T) {
	var mono atomic.Int64
	mono.Store(1e12)
	dir, board := serveWorker(t, &mono)
	steps := []struct {
		age  time.Duration
		code int
		line string
	}{
		{0, 0, "ok: version 1\n"},
		{6 * time.Second, 1, "degraded: heartbeat: the heartbeat readers see is 6s old (refreshed every second)\n"},
		{31 * time.Second, 2, "failed: heartbeat: the heartbeat readers see is 31s old (refreshed every second): readers may take the writer for dead\n"},
	}
	for _, s := range steps {
		mono.Store(1e12 + s.age.Nanoseconds())
		code, out, errb := runCtl("--runtime-dir", dir, "health")
		if code != s.code || out != s.line || errb != "" {
			t.Errorf("heartbeat %v old: exit %d %q %q, want %d %q", s.age, code, out, errb, s.code, s.line)
		}
	}
	if code, out, _ := runCtl("--runtime-dir", dir, "status"); code != 0 ||
		!strings.Contains(out, "health:        failed (heartbeat: the heartbeat readers see is 31s old") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	board.Heartbeat()
	if code, out, _ := runCtl("--runtime-dir", dir, "health"); code != 0 || out != "ok: version 1\n" {
		t.Errorf("after a beat: exit %d %q", code, out)
	}
}

// Anything but a health report is a failure: exit 2 with what was wrong.
func TestHealthFailsWithoutAReport(t *testing.T) {
	cases := []struct {
		name string
		dir  string
		want string
	}{
		{"nothing listens", t.TempDir(), "failed: cannot reach announcementd at "},
		{"not a report", serveCanned(t, 200, `{"hello":1}`), `failed: GET /healthz answered 200: not a health report: no "health"`},
		{"an error", serveCanned(t, 500, `{"error":"boom","code":"internal"}`), "failed: 500 boom"},
		{"a broken report", serveCanned(t, 200, `{"health":"degraded","version":3}`), "failed: GET /healthz answered 200: invalid health report: degraded without a reason"},
	}
	for _, c := range cases {
		code, out, _ := runCtl("--runtime-dir", c.dir, "health")
		if code != 2 || !strings.HasPrefix(out, c.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: exit %d %q, want 2 %q", c.name, code, out, c.want)
		}
	}
	// A daemon from before checks answered {"health":"ok","version":V}.
	if code, out, _ := runCtl("--runtime-dir", serveCanned(t, 200, `{"health":"ok","version":4}`), "health"); code != 0 || out != "ok: version 4\n" {
		t.Errorf("an old daemon: exit %d %q", code, out)
	}
}

// health and status are the service's: a worker that is ok with a supervisor whose last reload failed is degraded
// (exit 1, "supervisor.reload: ..."); a control socket that refuses is degraded too; none at all adds nothing.
func TestHealthIncludesTheSupervisor(t *testing.T) {
	var mono atomic.Int64
	mono.Store(1e12)
	dir, _ := serveWorker(t, &mono)
	if code, out, errOut := runCtl("--runtime-dir", dir, "health"); code != 0 {
		t.Fatalf("no control socket: exit %d: %s%s", code, out, errOut)
	}
	sup := wire.SupervisorStatus{PID: 1, State: "serving", Health: healthcheck.Combine(0, []healthcheck.Check{
		{Name: "worker"},
		{Name: "reload", State: healthcheck.Degraded, Reason: "the last reload rolled back: generation 3 not ready"},
	})}
	body, _ := json.Marshal(sup)
	l, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false) // as a supervisor killed with -9 leaves it
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.Write(body)
	})}
	go srv.Serve(l)
	code, out, errOut := runCtl("--runtime-dir", dir, "health")
	if code != 1 || !strings.Contains(out+errOut, "supervisor.reload: the last reload rolled back") {
		t.Fatalf("a degraded supervisor: exit %d: %s%s", code, out, errOut)
	}
	code, out, _ = runCtl("--runtime-dir", dir, "status")
	if !strings.Contains(out, "health:        degraded (supervisor.reload: the last reload rolled back") {
		t.Fatalf("status with a degraded supervisor (exit %d):\n%s", code, out)
	}
	srv.Close() // the socket file stays: a supervisor that is gone
	code, out, errOut = runCtl("--runtime-dir", dir, "health")
	if code != 1 || !strings.Contains(out+errOut, "supervisor: the control socket does not answer") {
		t.Fatalf("a control socket nobody answers: exit %d: %s%s", code, out, errOut)
	}
}
