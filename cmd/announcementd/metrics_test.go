package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/announcementd/announcementd/internal/proctest"
)

// TestMetrics scrapes a running daemon after a reload: the supervisor's series are on the worker's /metrics (up,
// reloads by outcome, restarts, crash streak, generation, health, both builds, the supervisor's process_*), every
// announcementd_* family is documented in docs/API.md and every documented one is served, and the exposition is
// clean by promlint (what `promtool check metrics` runs; promtool itself too, when it is installed). Without
// --pprof, nothing answers under /debug/pprof/ (TestPprofOptIn has the daemon with it).
func TestMetrics(t *testing.T) {
	addr := loopbackAddr(t)
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_metrics_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	d := proctest.StartDaemon(t, daemonConfig(t, path, dir, "--metrics", addr))
	control := proctest.UnixClient(dir+"/run/control.sock", 0, true)
	resp, err := control.Post("http://supervisor/v1/reload?wait=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var body []byte
	proctest.WaitFor(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	}, "a scrape of /metrics")
	text := string(body)
	hc := &http.Client{Timeout: 20 * time.Second}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/cmdline"} {
		if code, _ := pprofGet(t, hc, "http://"+addr+p); code != http.StatusNotFound {
			t.Errorf("without --pprof, GET %s: %d, want 404", p, code)
		}
	}
	for _, want := range []string{
		"announcementd_supervisor_up 1",
		`announcementd_supervisor_reloads_total{outcome="serving"} 1`,
		`announcementd_supervisor_reloads_total{outcome="rolled_back"} 0`,
		"announcementd_supervisor_worker_restarts_total 0",
		"announcementd_supervisor_crash_streak 0",
		"announcementd_supervisor_generation 2",
		"announcementd_supervisor_health_state 0",
		`announcementd_build_info{build=`,
		`role="supervisor"} 1`,
		`role="worker"} 1`,
		"announcementd_supervisor_process_cpu_seconds_total ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool is not installed; promlint checked the exposition")
	}

	served := families(text)
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := slices.Compact(slices.Sorted(slices.Values(regexp.MustCompile(`announcementd_[a-z_]+`).FindAllString(string(doc), -1))))
	isDocumented := func(f string) bool {
		return slices.ContainsFunc(documented, func(d string) bool { // a name ending in _ documents a family: _*
			return d == f || strings.HasSuffix(d, "_") && strings.HasPrefix(f, d)
		})
	}
	for _, f := range served {
		if strings.HasPrefix(f, "announcementd_") && !isDocumented(f) {
			t.Errorf("%s is served but not documented in docs/API.md", f)
		}
	}
	for _, f := range documented {
		if !slices.Contains(served, f) && !strings.HasSuffix(f, "_") {
			t.Errorf("docs/API.md documents %s, which /metrics does not serve", f)
		}
	}
	d.Stop(30 * time.Second)
}

// families lists the metric families of an exposition (from its # TYPE lines).
func families(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			out = append(out, strings.Fields(f)[0])
		}
	}
	return out
}
