package worker

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/sandbox"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/wire"
)

func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{"lock-refused": helperLockRefused, "tmpfs-full": helperTmpfsFull})
}

// fakeClock is a settable clock, for the writer's heartbeat (monotonic ns) or the worker's wall time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Mono() int64         { return c.Now().UnixNano() }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// openWorker opens a store in dir and a board at path with opts, and a worker on them; close releases them.
func openWorker(dir, path string, opts writer.Options, now func() time.Time) (w *Worker, close func(), err error) {
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: true})
	if err != nil {
		return nil, nil, err
	}
	if opts.Size == 0 {
		opts.Size = 64 << 10
	}
	bw, err := writer.Open(path, opts)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	w, err = New(Config{Board: bw, Store: st, Now: now})
	if err != nil {
		bw.Close()
		st.Close()
		return nil, nil, err
	}
	return w, func() { bw.Close(); st.Close() }, nil
}

func startWorker(t *testing.T, path string, opts writer.Options, now func() time.Time) *Worker {
	t.Helper()
	w, closeAll, err := openWorker(t.TempDir(), path, opts, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	boardtest.CheckOnCleanup(t, path, w.Version)
	return w
}

// api serves w's API on a real HTTP server.
type api struct{ url string }

func serve(t *testing.T, w *Worker) api {
	t.Helper()
	srv := httptest.NewServer(w.Handler(""))
	t.Cleanup(srv.Close)
	return api{srv.URL}
}

// get answers the status and the body of GET path.
func (a api) get(path string) (int, []byte, error) {
	resp, err := http.Get(a.url + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// health answers the status and the parsed report of GET path (/healthz or /readyz).
func (a api) health(path string) (int, healthcheck.Report, error) {
	code, b, err := a.get(path)
	if err != nil {
		return code, healthcheck.Report{}, err
	}
	r, err := healthcheck.Parse(b)
	return code, r, err
}

// metric is the value of one series ("name" or `name{label="v"}`) of w's metrics.
func metric(w *Worker, series string) (float64, error) {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(w.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no series %s", series)
}

func mustMetric(t *testing.T, w *Worker, series string) float64 {
	t.Helper()
	v, err := metric(w, series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkNamed(r healthcheck.Report, name string) healthcheck.Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return healthcheck.Check{Name: name, State: healthcheck.Failed, Reason: "missing"}
}

func TestHealthOK(t *testing.T) {
	w := startWorker(t, filepath.Join(t.TempDir(), "board"), writer.Options{}, nil)
	if locked, err := w.cfg.Board.Locked(); !locked {
		t.Skipf("this process may not lock 64 KiB (%v); the sandboxed test covers a refused lock", err)
	}
	a := serve(t, w)
	for _, path := range []string{"/healthz", "/healthz?check=1", "/readyz"} {
		code, r, err := a.health(path)
		if err != nil || code != 200 || r.Health != healthcheck.OK || !r.Ready || len(r.Reasons) != 0 || r.Version != w.Version() {
			t.Fatalf("%s: %d %+v %v", path, code, r, err)
		}
		var names []string
		for _, c := range r.Checks {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != "heartbeat,publish,region.integrity,region.lock,region.residency" {
			t.Fatalf("%s: checks %v", path, names)
		}
	}
	_, b, err := a.get("/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var s wire.WorkerStatus
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Health != healthcheck.OK || s.HealthReasons == nil || len(s.HealthReasons) != 0 || len(s.Checks) != 5 || !s.Guard.Locked ||
		s.Guard.Pages != 16 || s.Guard.ResidentPages != 16 || s.Guard.Repairs[RepairResidency] != 0 {
		t.Fatalf("status %s", b)
	}
	for series, want := range map[string]float64{
		"announcementd_health_state": 0, "announcementd_region_resident_ratio": 1, "announcementd_region_locked": 1,
		"announcementd_mlock_failures_total": 0, `announcementd_region_repairs_total{kind="residency"}`: 0,
		"announcementd_region_faults_recovered_total": 0,
	} {
		if got := mustMetric(t, w, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// The heartbeat readers see ages: degraded after 5 s (still live and ready), failed after 30 s (neither), and ok
// again with the next beat.
func TestHealthFollowsTheHeartbeat(t *testing.T) {
	mono := newFakeClock()
	w := startWorker(t, filepath.Join(t.TempDir(), "board"), writer.Options{Monotonic: mono.Mono}, nil)
	a := serve(t, w)
	steps := []struct {
		age         time.Duration
		state       healthcheck.State
		live, ready int
		reason      string
	}{
		{4 * time.Second, healthcheck.OK, 200, 200, ""},
		{6 * time.Second, healthcheck.Degraded, 200, 200, "heartbeat: the heartbeat readers see is 6s old"},
		{31 * time.Second, healthcheck.Failed, 503, 503, "heartbeat: the heartbeat readers see is 31s old"},
	}
	start := mono.Now()
	for _, s := range steps {
		mono.Add(start.Add(s.age).Sub(mono.Now()))
		live, r, err := a.health("/healthz")
		if err != nil || live != s.live || r.Health != s.state {
			t.Fatalf("age %v: /healthz %d %+v %v", s.age, live, r, err)
		}
		if len(r.Reasons) > 0 != (s.reason != "") || s.reason != "" && !strings.HasPrefix(r.Reasons[0], s.reason) {
			t.Fatalf("age %v: reasons %q, want %q", s.age, r.Reasons, s.reason)
		}
		ready, r2, err := a.health("/readyz")
		if err != nil || ready != s.ready || r2.Health != s.state {
			t.Fatalf("age %v: /readyz %d %+v %v", s.age, ready, r2, err)
		}
		if got := mustMetric(t, w, "announcementd_health_state"); got != float64(s.state) {
			t.Fatalf("age %v: health_state %v", s.age, got)
		}
		if got := mustMetric(t, w, "announcementd_heartbeat_age_seconds"); got != s.age.Seconds() {
			t.Fatalf("age %v: heartbeat_age_seconds %v", s.age, got)
		}
	}
	w.cfg.Board.Heartbeat()
	if code, r, err := a.health("/healthz"); err != nil || code != 200 || r.Health != healthcheck.OK {
		t.Fatalf("after a beat: %d %+v %v", code, r, err)
	}
	var s wire.WorkerStatus
	if _, b, _ := a.get("/v1/status"); json.Unmarshal(b, &s) != nil || s.Health != healthcheck.OK {
		t.Fatalf("status after a beat: %+v", s)
	}
}

// A publish that cannot reach the board makes the worker degraded and not ready (the board lags the store), but
// alive.
func TestHealthAfterAFailedPublish(t *testing.T) {
	w := startWorker(t, filepath.Join(t.TempDir(), "board"), writer.Options{}, nil)
	a := serve(t, w)
	if err := w.cfg.Board.Supersede(); err != nil { // readers moved on: the writer refuses to publish
		t.Fatal(err)
	}
	if _, err := w.Apply([]announcement.Announcement{{ID: 1, Content: "stored, not shown"}}, nil); err == nil {
		t.Fatal("a publish into a superseded board succeeded")
	}
	live, r, err := a.health("/healthz")
	if err != nil || live != 200 || r.Health != healthcheck.Degraded || r.Ready ||
		len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "publish: the last publish failed") || !strings.Contains(r.Reasons[0], "superseded") {
		t.Fatalf("/healthz %d %+v %v", live, r, err)
	}
	if ready, _, err := a.health("/readyz"); err != nil || ready != 503 {
		t.Fatalf("/readyz %d %v", ready, err)
	}
	var s wire.WorkerStatus
	if _, b, _ := a.get("/v1/status"); json.Unmarshal(b, &s) != nil || s.Health != healthcheck.Degraded || len(s.HealthReasons) != 1 {
		t.Fatalf("status %+v", s)
	}
}

// shmDir is a directory on /dev/shm (tmpfs, where boards live), removed after the test.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "worker-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Pages found missing are brought back by the check that finds them (on demand here; Run's every 10 s), counted
// as a repair, and health stays ok.
func TestResidencyRepairedByACheck(t *testing.T) {
	path := filepath.Join(shmDir(t), "board")
	w := startWorker(t, path, writer.Options{Size: 1 << 20}, nil)
	a := serve(t, w)
	if err := sandbox.PunchPages(path, 16, 16); err != nil { // inside the slot the board does not show
		t.Fatal(err)
	}
	if r, _ := w.cfg.Board.Residency(); r.Missing() != 16 {
		t.Fatalf("after the punch: %+v", r)
	}
	// /healthz answers from the last check, made before the punch.
	if _, r, err := a.health("/healthz"); err != nil || r.Health != healthcheck.OK || mustMetric(t, w, `announcementd_region_repairs_total{kind="residency"}`) != 0 {
		t.Fatalf("/healthz: %+v %v", r, err)
	}
	for i, path := range []string{"/healthz?check=1", "/readyz"} {
		code, r, err := a.health(path)
		if err != nil || code != 200 || r.Health != healthcheck.OK {
			t.Fatalf("%s: %d %+v %v", path, code, r, err)
		}
		if got := mustMetric(t, w, `announcementd_region_repairs_total{kind="residency"}`); got != 1 {
			t.Fatalf("after %s (check %d): %v residency repairs, want 1", path, i+1, got)
		}
	}
	var s wire.WorkerStatus
	if _, b, _ := a.get("/v1/status"); json.Unmarshal(b, &s) != nil || s.Guard.Repairs[RepairResidency] != 1 || s.Guard.ResidentPages != 256 {
		t.Fatalf("status %+v", s.Guard)
	}
	if mustMetric(t, w, "announcementd_region_resident_ratio") != 1 {
		t.Fatal("resident ratio is not 1 after the repair")
	}
}

// observed is what a sandboxed helper saw, in order.
type observed struct {
	Steps []step
	Err   string
}

type step struct {
	What         string
	Live, Ready  int
	Report       healthcheck.Report
	MlockFails   float64
	Repairs      float64
	Locked       float64
	ResidentPage int
	PutStatus    int
}

// observe records the answers of /healthz?check=1 and /readyz and some metrics.
func observe(w *Worker, a api, what string) (step, error) {
	s := step{What: what}
	var err error
	var b []byte
	if s.Live, b, err = a.get("/healthz?check=1"); err != nil {
		return s, err
	}
	if s.Report, err = healthcheck.Parse(b); err != nil {
		return s, err
	}
	if s.Ready, _, err = a.get("/readyz"); err != nil {
		return s, err
	}
	for series, v := range map[string]*float64{
		"announcementd_mlock_failures_total":                   &s.MlockFails,
		`announcementd_region_repairs_total{kind="residency"}`: &s.Repairs,
		"announcementd_region_locked":                          &s.Locked,
	} {
		if *v, err = metric(w, series); err != nil {
			return s, err
		}
	}
	s.ResidentPage = w.guardStatus().ResidentPages
	return s, nil
}

// runHelper runs body with a worker on a 1 MiB board at path, serving on a real server, and prints what it
// observed as JSON.
func runHelper(path string, now func() time.Time, body func(w *Worker, a api, o *observed) error) int {
	dir, err := os.MkdirTemp("", "worker-helper-")
	if err != nil {
		return helperFail(err)
	}
	defer os.RemoveAll(dir)
	w, closeAll, err := openWorker(dir, path, writer.Options{Size: 1 << 20}, now)
	if err != nil {
		return helperFail(err)
	}
	defer closeAll()
	srv := httptest.NewServer(w.Handler(""))
	defer srv.Close()
	var o observed
	if err := body(w, api{srv.URL}, &o); err != nil {
		o.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(o); err != nil {
		return helperFail(err)
	}
	return 0
}

func helperFail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// helperLockRefused runs in a sandbox (no CAP_IPC_LOCK) with RLIMIT_MEMLOCK 0: the worker starts degraded and
// serves; once the limit is back and 10 s have passed, a check locks the region.
func helperLockRefused([]string) int {
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &orig); err != nil {
		return helperFail(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: orig.Max}); err != nil {
		return helperFail(err)
	}
	clock := newFakeClock()
	return runHelper(filepath.Join(os.Getenv("GUARD_DIR"), "board"), clock.Now, func(w *Worker, a api, o *observed) error {
		s, err := observe(w, a, "refused")
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(mustRequest("PUT", a.url+"/v1/announcements/1", `{"content":"served anyway"}`))
		if err != nil {
			return err
		}
		resp.Body.Close()
		s.PutStatus = resp.StatusCode
		o.Steps = append(o.Steps, s)
		// Within 10 s of the last attempt, a check does not try again.
		clock.Add(5 * time.Second)
		if s, err = observe(w, a, "too soon"); err != nil {
			return err
		}
		o.Steps = append(o.Steps, s)
		// Still refused 10 s later: one more failure.
		clock.Add(5 * time.Second)
		if s, err = observe(w, a, "refused again"); err != nil {
			return err
		}
		o.Steps = append(o.Steps, s)
		if orig.Cur < 1<<20 {
			return errors.New("RLIMIT_MEMLOCK is under the 1 MiB the retry needs")
		}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &orig); err != nil {
			return err
		}
		clock.Add(10 * time.Second)
		s, err = observe(w, a, "limit raised")
		o.Steps = append(o.Steps, s)
		return err
	})
}

func mustRequest(method, url, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	return req
}

// A refused lock (RLIMIT_MEMLOCK without CAP_IPC_LOCK) is degraded but live and ready, counted, retried at most
// every 10 s, and ok once a retry succeeds. Root always may lock, so this runs in a sandbox without the capability.
func TestHealthWhenTheLockIsRefused(t *testing.T) {
	out := sandbox.Run(t, "lock-refused", "GUARD_DIR="+shmDir(t))
	var o observed
	if err := json.Unmarshal(out, &o); err != nil || o.Err != "" || len(o.Steps) != 4 {
		t.Fatalf("%v %s", err, out)
	}
	for i, want := range []struct {
		state      healthcheck.State
		mlockFails float64
		locked     float64
	}{
		{healthcheck.Degraded, 1, 0}, // at map time
		{healthcheck.Degraded, 1, 0}, // not retried within 10 s
		{healthcheck.Degraded, 2, 0}, // retried, refused
		{healthcheck.OK, 2, 1},       // retried, locked
	} {
		s := o.Steps[i]
		if s.Live != 200 || s.Ready != 200 || s.Report.Health != want.state || s.MlockFails != want.mlockFails || s.Locked != want.locked || s.ResidentPage != 256 {
			t.Errorf("%s: live %d ready %d %v, %v mlock failures, locked %v, %d pages in memory; want %v, %v, %v",
				s.What, s.Live, s.Ready, s.Report.Health, s.MlockFails, s.Locked, s.ResidentPage, want.state, want.mlockFails, want.locked)
		}
		lock := checkNamed(s.Report, CheckLock)
		if want.state != healthcheck.OK && (len(s.Report.Reasons) != 1 || !strings.HasPrefix(s.Report.Reasons[0], "region.lock: mlock of the 1 MiB region: operation not permitted (RLIMIT_MEMLOCK is 0 bytes")) {
			t.Errorf("%s: reasons %q", s.What, s.Report.Reasons)
		}
		if i > 0 && i < 3 && !lock.Since.Equal(checkNamed(o.Steps[0].Report, CheckLock).Since) {
			t.Errorf("%s: the lock check's since moved while it stayed degraded: %v", s.What, lock.Since)
		}
	}
	if o.Steps[0].PutStatus != 200 {
		t.Errorf("a publish without the lock: %d", o.Steps[0].PutStatus)
	}
}

// helperTmpfsFull runs in a sandbox with a 2 MiB tmpfs of its own: pages of the board go missing while the tmpfs
// is full (degraded: the repair cannot bring them back), and come back once there is room.
func helperTmpfsFull([]string) int {
	mnt, err := sandbox.MountTmpfs(os.Getenv("GUARD_DIR"), "2m")
	if err != nil {
		return helperFail(err)
	}
	path := filepath.Join(mnt, "board")
	return runHelper(path, nil, func(w *Worker, a api, o *observed) error {
		if err := sandbox.PunchPages(path, 16, 16); err != nil {
			return err
		}
		filler := filepath.Join(mnt, "filler")
		if err := sandbox.Fill(filler); err != nil {
			return err
		}
		s, err := observe(w, a, "full")
		o.Steps = append(o.Steps, s)
		if err != nil {
			return err
		}
		s, err = observe(w, a, "still full")
		o.Steps = append(o.Steps, s)
		if err != nil {
			return err
		}
		if err := os.Remove(filler); err != nil {
			return err
		}
		s, err = observe(w, a, "room again")
		o.Steps = append(o.Steps, s)
		return err
	})
}

// Pages that cannot be brought back keep health degraded (live and ready: readers still read the board) until a
// check brings them back.
func TestHealthWhilePagesCannotComeBack(t *testing.T) {
	out := sandbox.Run(t, "tmpfs-full", "GUARD_DIR="+t.TempDir())
	var o observed
	if err := json.Unmarshal(out, &o); err != nil || o.Err != "" || len(o.Steps) != 3 {
		t.Fatalf("%v %s", err, out)
	}
	for i, want := range []struct {
		state    healthcheck.State
		repairs  float64
		resident int
	}{
		{healthcheck.Degraded, 0, 240},
		{healthcheck.Degraded, 0, 240},
		{healthcheck.OK, 1, 256},
	} {
		s := o.Steps[i]
		if s.Live != 200 || s.Ready != 200 || s.Report.Health != want.state || s.Repairs != want.repairs || s.ResidentPage != want.resident {
			t.Errorf("%s: live %d ready %d %v, %v repairs, %d pages in memory; want %v, %v, %d",
				s.What, s.Live, s.Ready, s.Report.Health, s.Repairs, s.ResidentPage, want.state, want.repairs, want.resident)
		}
		if want.state != healthcheck.OK && (len(s.Report.Reasons) != 1 ||
			!strings.HasPrefix(s.Report.Reasons[0], "region.residency: 16 of 256 pages are not in memory and could not be brought back")) {
			t.Errorf("%s: reasons %q", s.What, s.Report.Reasons)
		}
	}
	if a, b := checkNamed(o.Steps[0].Report, CheckResidency).Since, checkNamed(o.Steps[1].Report, CheckResidency).Since; !a.Equal(b) {
		t.Errorf("since moved while degraded: %v, %v", a, b)
	}
}
