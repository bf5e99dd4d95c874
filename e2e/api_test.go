package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// TestPublishListDeleteBatch drives the daemon through the CLI and the raw API, and checks after each step that
// the board, read by the Go, C and Python readers and announcementctl dump, shows what the API says.
func TestPublishListDeleteBatch(t *testing.T) {
	d := newDaemon(t)
	d.mustCtl("publish", "--id", "1", "hello")
	d.mustCtl("publish", "--id", "2", "--priority", "5", "--ttl", "1h", "公告: 维护 🚧")
	out := d.mustCtl("publish", "--id", "3", "three")
	if !strings.Contains(out, "published 3: version") {
		t.Fatalf("publish output %q", out)
	}
	d.checkBoardMatchesAPI(1, 2, 3)

	d.mustCtl("delete", "2")
	d.checkBoardMatchesAPI(1, 3)
	if code, _, errs := d.ctl("delete", "2"); code != 1 || !strings.Contains(errs, "no announcement with id 2") {
		t.Fatalf("delete of a missing id: exit %d %q", code, errs)
	}

	// A batch is one store transaction and one board version.
	before := d.boardSnapshot().Version
	var res wire.BatchResponse
	code, e := d.api("POST", "/v1/batch", `{"put":[{"id":10,"content":"ten"},{"id":11,"content":"eleven"},{"id":1,"content":"one, replaced"}],"delete":[3]}`, &res)
	if code != 200 || res.Version != before+1 {
		t.Fatalf("batch: %d %v %+v (board was at %d)", code, e, res, before)
	}
	d.checkBoardMatchesAPI(1, 10, 11)
	if s := d.boardSnapshot(); s.Records[0].Content != "one, replaced" {
		t.Fatalf("batch replace: %+v", s.Records[0])
	}
	status := d.mustCtl("status", "--json")
	var st wire.ServiceStatus
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Region.Path != d.shm || st.Region.Version != before+1 ||
		st.Health != healthcheck.OK || st.Supervisor.PID != d.proc.PID() || st.Worker.PID == 0 || st.Worker.PID == st.Supervisor.PID {
		t.Fatalf("status: %v %s", err, status)
	}
	if code, out, _ := d.ctl("health"); code != 0 || !strings.HasPrefix(out, "ok") {
		t.Fatalf("health: %d %q", code, out)
	}
}

// checkBoardMatchesAPI asserts that list shows exactly ids and every reader's dump shows the same records.
func (d *daemon) checkBoardMatchesAPI(ids ...uint64) {
	d.t.Helper()
	var list wire.ListResponse
	if err := json.Unmarshal([]byte(d.mustCtl("list", "--json")), &list); err != nil {
		d.t.Fatal(err)
	}
	var got []uint64
	for _, a := range list.Announcements {
		got = append(got, a.ID)
	}
	if !reflect.DeepEqual(got, ids) {
		d.t.Fatalf("list shows %v, want %v", got, ids)
	}
	snap := d.boardSnapshot()
	if snap.Version != list.Version || len(snap.Records) != len(ids) {
		d.t.Fatalf("board version %d with %d records, list says version %d with %v", snap.Version, len(snap.Records), list.Version, ids)
	}
	for i, r := range snap.Records {
		a := list.Announcements[i]
		if r.ID != a.ID || r.Content != a.Content || r.Priority != a.Priority {
			d.t.Fatalf("board record %+v, API %+v", r, a)
		}
	}
	for name, dump := range d.readerDumps() {
		if dump.Version != snap.Version || !reflect.DeepEqual(dump.Records, snap.Records) {
			d.t.Fatalf("%s reader: version %d %+v; Go reader: version %d %+v", name, dump.Version, dump.Records, snap.Version, snap.Records)
		}
	}
}

// TestDurabilityAcrossKill9 publishes concurrently, kills the daemon with SIGKILL, restarts it, and checks that
// every acknowledged announcement is on the board with a version at least as high as before. Then it does it again
// with the region file removed as well (a crash, then a reboot): the board is rebuilt from the store and its
// version still stays above every acknowledged one.
func TestDurabilityAcrossKill9(t *testing.T) {
	d := newDaemon(t)
	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[uint64]string{}
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("durable %d", i)
			if code, _, errs := d.ctl("publish", "--id", fmt.Sprint(i), text); code == 0 {
				mu.Lock()
				acked[uint64(i)] = text
				mu.Unlock()
			} else {
				t.Errorf("publish %d: %s", i, errs)
			}
		}()
	}
	wg.Wait()
	before := d.boardSnapshot().Version
	d.stop(syscall.SIGKILL)
	d.start()
	snap := d.boardSnapshot()
	if snap.Version < before {
		t.Fatalf("version went back: %d after the kill, %d before", snap.Version, before)
	}
	got := map[uint64]string{}
	for _, r := range snap.Records {
		got[r.ID] = r.Content
	}
	if len(acked) != n || !reflect.DeepEqual(got, acked) {
		t.Fatalf("after kill -9: board holds %d announcements, %d were acknowledged", len(got), len(acked))
	}

	var res wire.AnnouncementResponse
	json.Unmarshal([]byte(d.mustCtl("publish", "--json", "--id", "1", "last before the crash")), &res)
	d.stop(syscall.SIGKILL) // at once: the floor may not have been saved yet
	os.Remove(d.shm)
	d.start()
	snap = d.boardSnapshot()
	if snap.Version <= res.Version || snap.Records[0].Content != "last before the crash" {
		t.Fatalf("board rebuilt after kill -9 and removal: version %d (acknowledged %d), record 1 %q",
			snap.Version, res.Version, snap.Records[0].Content)
	}
}

// TestScheduling: a future announcement appears when its time comes, an expiring one disappears, and an expired
// one leaves the store too.
func TestScheduling(t *testing.T) {
	d := newDaemon(t)
	d.mustCtl("publish", "--id", "1", "always")
	// Margins of seconds, not milliseconds: the three publishes and the first look at the board must fit before 2
	// expires even on a loaded machine (with 700 ms, a make test beside a benchmark saw 2 gone already).
	d.mustCtl("publish", "--id", "2", "--ttl", "3s", "short-lived")
	d.mustCtl("publish", "--id", "3", "--at", "+4s", "later")
	ids := func() []uint64 {
		var out []uint64
		for _, r := range d.boardSnapshot().Records {
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("at first the board shows %v, want [1 2]", got)
	}
	// Wait for each change by its version rather than by the clock: first 2 goes, then 3 comes.
	waitBoard(t, d, func(s *board.Snapshot) bool { return len(s.Records) == 1 }, "2 to expire")
	if got := ids(); !reflect.DeepEqual(got, []uint64{1}) {
		t.Fatalf("after the expiry the board shows %v, want [1]", got)
	}
	waitBoard(t, d, func(s *board.Snapshot) bool { return len(s.Records) == 2 }, "3 to appear")
	if got := ids(); !reflect.DeepEqual(got, []uint64{1, 3}) {
		t.Fatalf("after 3's time the board shows %v, want [1 3]", got)
	}
	if code, _, errs := d.ctl("delete", "2"); code != 1 || !strings.Contains(errs, "no announcement with id 2") {
		t.Fatalf("expired announcement 2 is still in the store: exit %d %s", code, errs)
	}
}

func waitBoard(t *testing.T, d *daemon, ok func(*board.Snapshot) bool, what string) {
	t.Helper()
	proctest.WaitUntil(t, 10*time.Second, func() bool { return ok(d.boardSnapshot()) }, what)
}

// TestBadInputChangesNothing: each bad input is refused with a clear message, through the CLI and the raw API,
// and neither the board nor the store changes.
func TestBadInputChangesNothing(t *testing.T) {
	d := newDaemon(t)
	d.mustCtl("publish", "--id", "1", "keep me")
	before := d.boardSnapshot()

	cli := []struct {
		args []string
		want string
	}{
		{[]string{"publish", "--id", "2", strings.Repeat("x", 257)}, "content is 257 bytes, the limit is 256"},
		{[]string{"publish", "--id", "2", "\xff\xfe"}, "not valid UTF-8"},
		{[]string{"publish", "--id", "0", "zero"}, "--id must be a positive integer"},
		{[]string{"publish", "--id", "2", "--ttl", "-5m", "neg"}, "is negative"},
		{[]string{"publish", "--id", "2", "--ttl", "100000h", "absurd"}, "longer than the limit"},
		{[]string{"publish", "--id", "2", "--at", "tomorrow-ish", "x"}, "want RFC 3339"},
		{[]string{"publish", "--id", "2"}, "want exactly one TEXT"},
		{[]string{"delete", "abc"}, "not a positive integer"},
	}
	for _, c := range cli {
		code, _, errs := d.ctl(c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("announcementctl %v: exit %d, stderr %q; want one line with %q", c.args[:2], code, errs, c.want)
		}
	}

	d.expectErrors([]apiCase{
		{"PUT", "/v1/announcements/2", `{"content":"` + strings.Repeat("é", 129) + `"}`, 400, "258 bytes, the limit is 256"},
		{"PUT", "/v1/announcements/2", `{"content":"\udcff"}`, 400, "not valid UTF-8"},
		{"PUT", "/v1/announcements/0", `{"content":"x"}`, 400, "not a positive integer"},
		{"PUT", "/v1/announcements/2", `{"content":"x","ttl":"-1s"}`, 400, "negative"},
		{"PUT", "/v1/announcements/2", `{"content":"x","effective_at":"soon"}`, 400, "not valid JSON"},
		{"PUT", "/v1/announcements/2", `{"content":"x","colour":"red"}`, 400, "unknown field"},
		{"PUT", "/v1/announcements/2", `{"content":`, 400, "not valid JSON"},
		{"PUT", "/v1/announcements/2", `{"content":"` + strings.Repeat("x", 20000) + `"}`, 413, "larger than"},
		{"POST", "/v1/batch", `{"put":[{"id":5,"content":"ok"},{"id":0,"content":"bad"}]}`, 400, "id must be a positive integer"},
		{"DELETE", "/v1/announcements/99", ``, 404, "no announcement with id 99"},
	})

	// Full: the 64 KiB board holds 95; a batch of 95 new ones (plus the one held) is refused whole.
	var puts []string
	for i := 100; i < 195; i++ {
		puts = append(puts, fmt.Sprintf(`{"id":%d,"content":"x"}`, i))
	}
	status, e := d.api("POST", "/v1/batch", `{"put":[`+strings.Join(puts, ",")+`]}`, nil)
	if status != 409 || e.Code != wire.CodeFull || !strings.Contains(e.Message, "capacity is 95") {
		t.Errorf("full board: %d %v", status, e)
	}

	after := d.boardSnapshot()
	if after.Version != before.Version || !reflect.DeepEqual(after.Records, before.Records) {
		t.Fatalf("bad input changed the board: version %d -> %d", before.Version, after.Version)
	}
	d.checkBoardMatchesAPI(1)
}

// TestTCPListenerNeedsToken: the daemon refuses a TCP listener without --token-file; with one, a request without
// the right token gets 401 and changes nothing, and the token never appears in the logs.
func TestTCPListenerNeedsToken(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()

	dir := t.TempDir()
	refusedShm := shmPath("refused")
	code, out := runToExit(t, nil, "--shm", refusedShm, "--state-dir", dir+"/s", "--runtime-dir", dir+"/r", "--listen", "tcp:"+addr)
	os.Remove(refusedShm)
	if code == 0 || !strings.Contains(out, "needs --token-file") {
		t.Fatalf("TCP without a token: exit %d\n%s", code, out)
	}

	token := "s3cret-token-value"
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	d := newDaemon(t, "--listen", "tcp:"+addr, "--token-file", tokenFile)
	before := d.boardSnapshot().Version

	ctl := func(args ...string) (int, string) {
		cmd := exec.Command(filepath.Join(binDir, "announcementctl"), args...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("nope"), 0o600)
	if code, out := ctl("--addr", "tcp:"+addr, "--token-file", wrong, "publish", "--id", "1", "x"); code != 1 || !strings.Contains(out, "bearer token") {
		t.Fatalf("wrong token: exit %d %s", code, out)
	}
	if v := d.boardSnapshot().Version; v != before {
		t.Fatalf("a refused request changed the board: %d -> %d", before, v)
	}
	if code, out := ctl("--addr", "tcp:"+addr, "--token-file", tokenFile, "publish", "--id", "1", "x"); code != 0 {
		t.Fatalf("right token: exit %d %s", code, out)
	}
	d.stop(syscall.SIGTERM)
	if strings.Contains(d.logs.String(), token) {
		t.Fatalf("the token appears in the logs:\n%s", d.logs)
	}
}

// TestSocketModeAndMetrics: the API socket is 0660, and --metrics serves the publish counters.
func TestSocketModeAndMetrics(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	d := newDaemon(t, "--metrics", addr, "--pprof")
	st, err := os.Stat(filepath.Join(d.runtime, "api.sock"))
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
	d.mustCtl("publish", "--id", "1", "counted")
	d.ctl("publish", "--id", "0", "refused")
	d.api("PUT", "/v1/announcements/2", `{"content":"`+strings.Repeat("x", 300)+`"}`, nil)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp, err := http.Get("http://" + addr + "/debug/pprof/"); err != nil || resp.StatusCode != 200 {
		t.Errorf("--pprof: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	for _, want := range []string{
		`announcementd_publishes_total{result="ok"} 1`,
		`announcementd_publishes_total{result="invalid"} 1`,
		`announcementd_announcements 1`,
		`announcementd_publish_duration_seconds_count 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestGracefulShutdownUnderLoad: SIGTERM while clients publish. Requests that got an answer got 200 (none is cut
// off with a 5xx), each id holds its last acknowledged text after a restart, and the version floor saved after
// the drain keeps the version from going back even when the region file is gone (as after a reboot).
func TestGracefulShutdownUnderLoad(t *testing.T) {
	d := newDaemon(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	last := map[uint64]string{} // id -> last acknowledged text; each client owns its ids, so "last" is defined
	var maxVersion uint64
	acks := 0
	stop := make(chan struct{})
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := uint64(1 + c*10 + i%10)
				text := fmt.Sprintf("client %d #%d", c, i)
				code, out, errs := d.ctl("publish", "--json", "--id", fmt.Sprint(id), text)
				switch {
				case code == 0:
					var res wire.AnnouncementResponse
					json.Unmarshal([]byte(out), &res)
					mu.Lock()
					last[id] = text
					maxVersion = max(maxVersion, res.Version)
					acks++
					mu.Unlock()
				case strings.Contains(errs, "cannot reach announcementd"):
					return // the listener is closed: refused before any work, as expected during shutdown
				default:
					t.Errorf("publish during shutdown: exit %d %s", code, errs)
					return
				}
			}
		}()
	}
	// SIGTERM once the clients are publishing: some acknowledgements in.
	proctest.WaitUntil(t, time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return acks >= 40 }, "40 acknowledged publishes")
	err := d.proc.Stop(40 * time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
	if len(last) == 0 {
		t.Fatal("no publish was acknowledged: the test proves nothing")
	}
	os.Remove(d.shm) // the board is recreated from the store; its version must continue above the floor
	d.start()
	snap := d.boardSnapshot()
	if snap.Version <= maxVersion {
		t.Errorf("recreated board at version %d, an acknowledged publish had %d", snap.Version, maxVersion)
	}
	have := map[uint64]string{}
	for _, r := range snap.Records {
		have[r.ID] = r.Content
	}
	for id, text := range last {
		if have[id] != text {
			t.Errorf("announcement %d: %q after the restart, last acknowledged %q", id, have[id], text)
		}
	}
}

// TestMoreBadInputAndFullReplace: times the board cannot represent, announcements already expired, ids twice in
// a batch and unknown endpoints are refused with JSON; a batch that swaps announcements in a full board fits.
func TestMoreBadInputAndFullReplace(t *testing.T) {
	d := newDaemon(t)
	d.expectErrors([]apiCase{
		{"PUT", "/v1/announcements/1", `{"content":"x","effective_at":"2300-01-01T00:00:00Z"}`, 400, "outside the years 1678 to 2262"},
		{"PUT", "/v1/announcements/1", `{"content":"x","effective_at":"1600-01-01T00:00:00Z"}`, 400, "outside the years 1678 to 2262"},
		{"PUT", "/v1/announcements/1", `{"content":"x","effective_at":"2020-01-01T00:00:00Z","ttl":"1h"}`, 400, "already have expired"},
		{"POST", "/v1/batch", `{"put":[{"id":3,"content":"x"}],"delete":[3]}`, 400, "appears twice"},
		{"POST", "/v1/batch", `{"delete":[4,4]}`, 400, "appears twice"},
		{"GET", "/v2/nothing", ``, 404, "no such endpoint"},
	})
	var puts []string
	for i := 1; i <= 95; i++ {
		puts = append(puts, fmt.Sprintf(`{"id":%d,"content":"x"}`, i))
	}
	if status, e := d.api("POST", "/v1/batch", `{"put":[`+strings.Join(puts, ",")+`]}`, nil); status != 200 {
		t.Fatalf("fill the board: %d %v", status, e)
	}
	if status, e := d.api("POST", "/v1/batch", `{"put":[{"id":500,"content":"new"}],"delete":[1]}`, nil); status != 200 {
		t.Fatalf("swap one in a full board: %d %v", status, e)
	}
	if status, _ := d.api("PUT", "/v1/announcements/501", `{"content":"one too many"}`, nil); status != 409 {
		t.Fatalf("one too many: %d", status)
	}
}
