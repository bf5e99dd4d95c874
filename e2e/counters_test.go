package e2e_test

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// countStatus is `status --json`, read for the service's counts.
type countStatus struct{ wire.ServiceStatus }

func (s countStatus) repairs() (n uint64) {
	for _, v := range s.Guard.Repairs {
		n += v
	}
	return n
}

func (s countStatus) repairsThisGeneration() (n uint64) {
	for _, v := range s.Guard.ThisGeneration.Repairs {
		n += v
	}
	return n
}

func (d *daemon) countStatus(t *testing.T) countStatus {
	t.Helper()
	code, out, errs := d.ctlTimeout(30*time.Second, "status", "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s%s\n%s", code, out, errs, d.logs)
	}
	var s countStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	return s
}

// waitCounted polls status until the service has counted repairs repairs and saved its counts.
func (d *daemon) waitCounted(t *testing.T, repairs uint64) countStatus {
	t.Helper()
	var s countStatus
	if !proctest.Poll(20*time.Second, func() bool { s = d.countStatus(t); return s.repairs() == repairs && s.CountersSaved }) {
		t.Fatalf("the service did not count and save %d repairs within 20 s: %+v\n%s", repairs, s, d.logs)
	}
	return s
}

// scrape returns /metrics at addr as series -> value, with the series given by prefix summed under the prefix.
func scrape(t *testing.T, addr string, sum ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(series, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		m[series] = v
		for _, p := range sum {
			if strings.HasPrefix(series, p+"{") {
				m[p] += v
			}
		}
	}
	return m
}

// TestCountsSurviveGenerations: the service's counts (status' guard.repairs and faults_recovered, and the
// counters of /metrics) carry on across a reload, a kill -9 of the worker after they were saved, and a kill -9 of
// the whole service (supervisor and worker) followed by a restart; guard.this_generation starts from zero in
// each generation. (Before: every generation started from zero; after 5 repairs across reloads status showed none.)
func TestCountsSurviveGenerations(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	d := newDaemon(t, "--metrics", addr)
	for _, id := range []string{"1", "2", "3"} {
		d.mustCtl("publish", "--id", id, "counted "+id)
	}
	if code, _ := d.api("PUT", "/v1/announcements/4", `{"content":""}`, nil); code != 400 {
		t.Fatalf("an empty content: %d, want 400", code)
	}
	const (
		ok      = `announcementd_publishes_total{result="ok"}`
		invalid = `announcementd_publishes_total{result="invalid"}`
		repairs = `announcementd_region_repairs_total`
		faults  = `announcementd_region_faults_recovered_total`
	)
	check := func(where string, wantRepairs uint64, wantFaults uint64) {
		t.Helper()
		s := d.countStatus(t)
		if s.repairs() != wantRepairs || s.Guard.FaultsRecovered != wantFaults {
			t.Errorf("%s: status shows %d repairs (%v), %d faults recovered; want %d, %d", where, s.repairs(), s.Guard.Repairs, s.Guard.FaultsRecovered, wantRepairs, wantFaults)
		}
		m := scrape(t, addr, repairs)
		if m[ok] != 3 || m[invalid] != 1 || m[repairs] != float64(wantRepairs) || m[faults] != float64(wantFaults) {
			t.Errorf("%s: /metrics shows %s %v, %s %v, %s %v, %s %v; want 3, 1, %d, %d", where, ok, m[ok], invalid, m[invalid], repairs, m[repairs], faults, m[faults], wantRepairs, wantFaults)
		}
	}

	// A repair, then a reload: the new generation shows it, and has none of its own.
	if err := os.Truncate(d.shm, 0); err != nil {
		t.Fatal(err)
	}
	first := d.waitCounted(t, 1)
	check("after the first repair", 1, first.Guard.FaultsRecovered)
	d.mustCtl("reload", "--wait")
	s := d.countStatus(t)
	if s.Worker.Generation == first.Worker.Generation || s.repairsThisGeneration() != 0 || s.Guard.ThisGeneration.FaultsRecovered != 0 {
		t.Errorf("after the reload: generation %d (was %d), this_generation %+v; want a new generation with no repairs of its own", s.Worker.Generation, first.Worker.Generation, s.Guard.ThisGeneration)
	}
	check("after the reload", 1, first.Guard.FaultsRecovered)

	// Another repair, saved; then the worker is killed: its successor shows both.
	if err := os.Truncate(d.shm, 0); err != nil {
		t.Fatal(err)
	}
	second := d.waitCounted(t, 2)
	if second.repairsThisGeneration() != 1 {
		t.Errorf("this generation counted %d repairs (%v); want 1", second.repairsThisGeneration(), second.Guard.ThisGeneration.Repairs)
	}
	if err := syscall.Kill(second.Worker.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := waitServing(d.controlClient(), second.Worker.PID); err != nil {
		t.Fatalf("after the kill -9 of the worker: %v\n%s", err, d.logs)
	}
	check("after a kill -9 of the worker", 2, second.Guard.FaultsRecovered)

	// The whole service killed and started again, as after a crash of the host's service manager's unit.
	d.stop(syscall.SIGKILL)
	d.start()
	check("after a kill -9 of the service and a restart", 2, second.Guard.FaultsRecovered)
}
