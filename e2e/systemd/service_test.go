package systemd_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// TestStartReloadUpgradeStop: the life of the service under systemctl.
//   - start returns only once the API answers (the first request, with no retry, succeeds) and status shows the
//     supervisor's STATUS= line;
//   - reload after installing a new binary is a self-upgrade: systemctl exits 0, the unit is active (or reloading)
//     throughout, MainPID is the new supervisor (and the pid file says so), and a load generator sees zero failed
//     requests;
//   - reload with a broken binary exits non-zero, and the unit stays active on the old generation;
//   - stop after a MAINPID hand-over keeps the drain: a clean exit, no request cut off, nothing left running, the
//     board kept (readers keep their snapshot, and see the writer stale); start continues above the version.
func TestStartReloadUpgradeStop(t *testing.T) {
	s := newService(t, nil)
	start := time.Now()
	s.mustSystemctl("start", unit)
	t.Logf("systemctl start took %v", time.Since(start).Round(time.Millisecond))
	if err := s.publish(s.api, 1, "first"); err != nil { // no retry: start returned, so the API answers
		t.Fatalf("the API does not answer right after systemctl start: %v", err)
	}
	if st := s.show("StatusText")["StatusText"]; !strings.HasPrefix(st, "serving: generation 1") {
		t.Fatalf("StatusText %q", st)
	}
	if out := s.mustSystemctl("status", unit, "--no-pager"); !strings.Contains(out, "Status: \"serving: generation 1") {
		t.Fatalf("systemctl status does not show the STATUS= line:\n%s", out)
	}
	if code, out := s.ctl("health"); code != 0 {
		t.Fatalf("health under systemd: exit %d: %s", code, out)
	}

	// A self-upgrade through systemctl reload, under load.
	oldMain := s.mainPID()
	l := s.startLoad(4)
	l.waitAcked(t, 20)
	states := s.sampleActiveState()
	s.pushNewBuild("upgrade")
	start = time.Now()
	code, out := s.systemctl("reload", unit)
	took := time.Since(start)
	l.waitAcked(t, 20) // the new supervisor's generation serves the load
	l.end()
	seen := states.end()
	newMain := s.mainPID()
	t.Logf("upgrade: systemctl reload exit %d in %v; MainPID %d -> %d; load %s; ActiveState seen %q", code, took.Round(time.Millisecond),
		oldMain, newMain, l, seen)
	if code != 0 {
		t.Fatalf("systemctl reload of a new build: exit %d\n%s", code, out)
	}
	if l.failed.Load() != 0 {
		t.Fatalf("requests failed during the upgrade: %s", l)
	}
	for _, st := range seen {
		if st != "active" && st != "reloading" {
			t.Fatalf("the unit left active during the upgrade: %q", seen)
		}
	}
	if newMain == oldMain || newMain == 0 {
		t.Fatalf("MainPID %d after the upgrade, was %d", newMain, oldMain)
	}
	if pid := strings.TrimSpace(s.MustSh("cat", runtime+"/announcementd.pid")); pid != strconv.Itoa(newMain) {
		t.Fatalf("the pid file says %s, MainPID is %d", pid, newMain)
	}
	if st := s.show("StatusText")["StatusText"]; !strings.Contains(st, "last upgrade: serving") {
		t.Fatalf("StatusText after the upgrade: %q", st)
	}

	// A broken binary: the reload fails and the old generation serves on.
	status := func() (gen string) {
		_, out := s.ctl("status", "--json")
		if i := strings.Index(out, `"generation":`); i >= 0 {
			gen = strings.TrimRight(strings.Fields(out[i+len(`"generation":`):])[0], ",")
		}
		return gen
	}
	genBefore := status()
	broken := filepath.Join(t.TempDir(), "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n"), 0o755)
	s.MustSh("cp", bindir+"/announcementd", "/root/announcementd.good")
	s.Push(broken, bindir+"/announcementd", 0o755)
	code, out = s.systemctl("reload", unit)
	if code == 0 {
		t.Fatalf("systemctl reload of a broken binary exited 0:\n%s", out)
	}
	if st := s.show("ActiveState")["ActiveState"]; st != "active" {
		t.Fatalf("after a failed reload the unit is %s", st)
	}
	if g := status(); g != genBefore || s.mainPID() != newMain {
		t.Fatalf("after a failed reload: generation %s (was %s), MainPID %d (was %d)", g, genBefore, s.mainPID(), newMain)
	}
	if err := s.publish(s.api, 2, "after the failed reload"); err != nil {
		t.Fatal(err)
	}
	if code, out := s.ctl("health"); code != 1 || !strings.Contains(out, "supervisor.reload") {
		t.Fatalf("health after a failed reload: exit %d: %s (want degraded by the supervisor's reload check)", code, out)
	}
	t.Logf("broken binary: systemctl reload exit %d; generation %s serves on", code, genBefore)
	s.MustSh("mv", "/root/announcementd.good", bindir+"/announcementd")

	// Stop after the hand-over: the drain is kept.
	l = s.startLoad(4)
	l.waitAcked(t, 20)
	b, err := s.board()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start = time.Now()
	s.mustSystemctl("stop", unit)
	took = time.Since(start)
	l.end()
	p := s.show("ActiveState", "Result", "ExecMainStatus")
	t.Logf("stop after the upgrade: %v in %v; load during the stop: %s", p, took.Round(time.Millisecond), l)
	if p["ActiveState"] != "inactive" || p["Result"] != "success" {
		t.Fatalf("after stop: %v", p)
	}
	// Requests that failed during the stop were refused or reset before the daemon read them: once the last worker
	// has drained and exited, the listener closes, and connections still in its backlog (never accepted) are
	// refused or reset. A request the daemon read and then dropped would end in an EOF or a 5xx.
	if l.other.Load() != 0 {
		t.Fatalf("a request was cut off by the stop: %s", l)
	}
	journal, _ := s.Sh("journalctl", "-u", unit, "--no-pager", "-o", "cat")
	stopping := journal[max(strings.LastIndex(journal, `"to": "stopping"`), 0):]
	for _, want := range []string{"api drained", `"status": "exit status 0"`, "supervisor stopped"} {
		if !strings.Contains(stopping, want) {
			t.Fatalf("the stop after the hand-over did not drain: no %q after the supervisor began to stop:\n%s", want, stopping)
		}
	}
	if procs := s.processes(); len(procs) != 0 {
		t.Fatalf("processes left after stop: %v", procs)
	}
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatalf("the board after stop: %v", err)
	}
	proctest.WaitUntil(t, 10*time.Second, func() bool { return b.Stale(time.Second) }, "the stopped writer to be stale")
	last := snap.Version

	s.mustSystemctl("start", unit)
	if v := s.version(); v <= last {
		t.Fatalf("start after stop: version %d, was %d", v, last)
	}
	s.expectSet(t, 1, 2)
}

// expectSet checks that the service holds announcements ids (besides the load's).
func (s *service) expectSet(t *testing.T, ids ...int) {
	t.Helper()
	resp, err := s.api.Get("http://announcementd/v1/announcements")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list wire.ListResponse
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !slices.ContainsFunc(list.Announcements, func(a wire.Announcement) bool { return a.ID == uint64(id) }) {
			t.Fatalf("announcement %d is missing: %+v", id, list)
		}
	}
}

// activeStates samples the unit's ActiveState until end.
type activeStates struct {
	stop chan struct{}
	done chan []string
}

func (s *service) sampleActiveState() *activeStates {
	a := &activeStates{stop: make(chan struct{}), done: make(chan []string, 1)}
	go func() {
		var seen []string
		for {
			out, _ := s.Sh("systemctl", "show", "-p", "ActiveState", "--value", unit)
			if st := strings.TrimSpace(out); len(seen) == 0 || seen[len(seen)-1] != st {
				seen = append(seen, st)
			}
			select {
			case <-a.stop:
				a.done <- seen
				return
			default:
			}
		}
	}()
	return a
}

func (a *activeStates) end() []string {
	close(a.stop)
	return <-a.done
}

// TestRestartsKeepTheSockets: a kill -9 of the main process and a hung supervisor (SIGSTOP, which the watchdog
// catches) each restart the service, which takes the region and the sockets back from systemd's fd store: a client
// connecting in a loop meets no refused connection and no missing socket, and the version continues.
func TestRestartsKeepTheSockets(t *testing.T) {
	s := newService(t, map[string]string{"10-watchdog.conf": "[Service]\nWatchdogSec=3s\n"})
	s.mustSystemctl("start", unit)
	if err := s.publish(s.api, 7, "kept"); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{"KILL", "STOP"} {
		before := s.version()
		main := s.mainPID()
		restarts := s.show("NRestarts")["NRestarts"]
		loop := s.startConnectLoop()
		proctest.WaitUntil(t, 10*time.Second, func() bool { return loop.ok.Load() > 10 }, "the connect loop to be answered")
		s.MustSh("kill", "-"+fault, strconv.Itoa(main))
		proctest.WaitUntil(t, 30*time.Second, func() bool {
			p := s.show("MainPID", "ActiveState", "NRestarts")
			return p["ActiveState"] == "active" && p["MainPID"] != strconv.Itoa(main) && p["MainPID"] != "0" && p["NRestarts"] != restarts
		}, "systemd to restart the service after SIG"+fault)
		answered := loop.ok.Load()
		proctest.WaitUntil(t, 30*time.Second, func() bool { return loop.ok.Load() > answered+10 }, "the restarted service to answer")
		loop.end()
		after := s.version()
		p := s.show("NRestarts", "Result")
		t.Logf("SIG%s of MainPID %d: restarted (NRestarts %s); connect loop: %s; version %d -> %d", fault, main, p["NRestarts"], loop, before, after)
		// No connection is ever refused and the socket never goes missing. After a kill -9 no request fails either:
		// the worker finishes its requests (parent-death signal) while the new main process starts. A watchdog
		// timeout is harsher: systemd 252 sends the hung main process SIGABRT and SIGKILLs the whole unit at once,
		// its serving worker too, so the request that worker was answering at that instant is cut off (an EOF);
		// the ones behind it wait in the backlog and are answered by the restarted service.
		if loop.refused.Load() != 0 || loop.missing.Load() != 0 || fault == "KILL" && loop.other.Load() != 0 ||
			fault == "STOP" && loop.other.Load() > 2 {
			t.Fatalf("SIG%s: %s", fault, loop)
		}
		if after <= before {
			t.Fatalf("SIG%s: version %d after the restart, was %d", fault, after, before)
		}
		journal, _ := s.Sh("journalctl", "-u", unit, "--no-pager")
		if !strings.Contains(journal, "took the region back from the service manager's fd store") {
			t.Fatalf("SIG%s: the region did not come from the fd store", fault)
		}
		if fault == "STOP" && !strings.Contains(journal, "Watchdog timeout") {
			t.Fatalf("the restart after SIGSTOP was not the watchdog's")
		}
	}
	s.expectSet(t, 7)
}

// TestSocketActivation: with announcementd.socket enabled and the service stopped, the first connection starts the
// service, which serves on the activated socket; every client that connected meanwhile is answered.
func TestSocketActivation(t *testing.T) {
	s := newService(t, nil)
	s.mustSystemctl("start", "announcementd.socket")
	if st := s.show("ActiveState")["ActiveState"]; st != "inactive" {
		t.Fatalf("the service is %s before any connection", st)
	}
	const clients = 16
	errs := make(chan error, clients)
	for i := range clients {
		go func() { errs <- s.publish(unixClient(s.Path(runtime+"/api.sock"), 60*time.Second), 100+i, "activated") }()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatalf("a request sent while the service was being activated: %v", err)
		}
	}
	journal, _ := s.Sh("journalctl", "-u", unit, "--no-pager")
	if !strings.Contains(journal, "socket activation: serving on the service manager's socket") {
		t.Fatal("the service did not serve on the activated socket")
	}
	ids := make([]int, clients)
	for i := range ids {
		ids[i] = 100 + i
	}
	s.expectSet(t, ids...)
	// A reload keeps serving on it, and a stop leaves the socket to systemd: the next connection starts it again.
	s.mustSystemctl("reload", unit)
	s.mustSystemctl("stop", unit)
	if err := s.publish(s.api, 200, "again"); err != nil {
		t.Fatalf("after stop, the socket does not start the service again: %v", err)
	}
	if !slices.Contains([]string{"active", "reloading"}, s.show("ActiveState")["ActiveState"]) {
		t.Fatal("the service is not active after the second activation")
	}
}
