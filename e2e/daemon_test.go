// Package e2e_test runs the built announcementd and announcementctl as real processes against a real store and a
// real board in /dev/shm, and reads the board with the Go, C and Python readers.
package e2e_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

var binDir string

func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{"goreader": goReaderRole}, proctest.Setup(build)) // goreader: reload_test.go
}

// build builds announcementd, announcementctl and the C reader for the tests (not under -short, where they skip).
func build() (func(), error) {
	if flag.Parse(); testing.Short() {
		return nil, nil
	}
	dir, cleanup, err := proctest.BuildBinaries("..", "e2e-bin")
	if err != nil {
		return nil, err
	}
	binDir = dir
	return cleanup, nil
}

// daemon is announcementd with its own region, state and runtime dirs, started again on them by start.
type daemon struct {
	t          *testing.T
	shm, state string
	runtime    string
	proc       *proctest.Daemon // the last start
	logs       *proctest.Buffer // its output
	extra      []string
	bin        string // the announcementd it runs
}

func newDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	return newDaemonFrom(t, filepath.Join(binDir, "announcementd"), extra...)
}

// newDaemonFrom starts the announcementd at bin (the supervisor starts its workers from the same path).
func newDaemonFrom(t *testing.T, bin string, extra ...string) *daemon {
	t.Helper()
	return newDaemonAt(t, shmPath("d"), bin, extra...)
}

// slowE2E is what every test of the package is, for proctest.Slow: newDaemonAt, runToExit and newUser skip under
// -short, and so every test, which starts the daemon through them.
const slowE2E = "e2e: the built daemon and CLI as real processes"

// newDaemonAt starts the announcementd at bin on the region at shm, which is removed after the test.
func newDaemonAt(t *testing.T, shm, bin string, extra ...string) *daemon {
	t.Helper()
	proctest.Slow(t, slowE2E)
	dir := t.TempDir()
	d := &daemon{t: t, bin: bin, state: filepath.Join(dir, "state"), runtime: filepath.Join(dir, "run"), extra: extra, shm: shm}
	t.Cleanup(func() { os.Remove(d.shm) }) // after every start's own cleanup, which kills it
	d.start()
	return d
}

func shmPath(tag string) string {
	return filepath.Join("/dev/shm", fmt.Sprintf("notice_e2e_%s_%d_%d", tag, os.Getpid(), time.Now().UnixNano()))
}

// start starts the daemon (again) and returns once it has said READY=1.
func (d *daemon) start() {
	d.t.Helper()
	args := append([]string{"--shm-size", "64KiB"}, d.extra...)
	if strings.Contains(strings.Join(d.extra, " "), "--listen") { // explicit listeners replace the default socket
		args = append(args, "--listen", "unix:"+filepath.Join(d.runtime, "api.sock"))
	}
	d.proc = proctest.StartDaemon(d.t, proctest.DaemonConfig{Binary: d.bin, Ctl: filepath.Join(binDir, "announcementctl"),
		Shm: d.shm, StateDir: d.state, RuntimeDir: d.runtime, Args: args})
	d.logs = d.proc.Log()
}

// stop signals the daemon and waits until all its processes have exited: SIGKILL goes to the whole process group
// (the supervisor and its worker, as a crash of the service), any other signal to the supervisor, which stops its
// worker itself.
func (d *daemon) stop(sig syscall.Signal) {
	d.t.Helper()
	if sig == syscall.SIGKILL {
		if err := d.proc.Kill(); err != nil {
			d.t.Fatal(err)
		}
		return
	}
	d.proc.Signal(sig)
	if err := d.proc.WaitGone(40 * time.Second); err != nil {
		d.t.Fatal(err)
	}
}

// ctl runs announcementctl against the daemon and returns its exit code, stdout and stderr.
func (d *daemon) ctl(args ...string) (int, string, string) {
	d.t.Helper()
	code, out, errs := d.proc.Ctl(2*time.Minute, args...)
	if code == -1 {
		d.t.Fatalf("announcementctl %v: %s", args, errs)
	}
	return code, out, errs
}

// runToExit runs announcementd with args (as cred, when not nil) for a start that must fail, and returns its exit
// code and output. It runs as a start by hand, with no service manager (a daemon under one leaves its sockets to
// the manager's fd store). A daemon that runs on for 30 s fails the test.
func runToExit(t *testing.T, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	proctest.Slow(t, slowE2E)
	d := proctest.LaunchDaemon(t, proctest.DaemonConfig{Binary: filepath.Join(binDir, "announcementd"), Args: args, Cred: cred,
		NoNotify: true})
	code, err := d.ExitBeforeReady(30 * time.Second)
	if err != nil {
		t.Fatalf("announcementd %v: %v", args, err)
	}
	return code, d.Log().String()
}

// mustCtl runs announcementctl and fails the test unless it exits 0.
func (d *daemon) mustCtl(args ...string) string {
	d.t.Helper()
	code, out, errs := d.ctl(args...)
	if code != 0 {
		d.t.Fatalf("announcementctl %v: exit %d\n%s%s\ndaemon:\n%s", args, code, out, errs, d.logs)
	}
	return out
}

// raw sends a request on the daemon's API socket (what curl --unix-socket does) and returns the answer's status
// and body.
func (d *daemon) raw(method, path, body string) (int, []byte) {
	d.t.Helper()
	c := proctest.UnixClient(filepath.Join(d.runtime, "api.sock"), 0, true)
	req, _ := http.NewRequest(method, "http://announcementd"+path, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// api sends a request on the API socket and decodes the answer: a 2xx into out (unless out is nil), anything else
// as the wire.Error every error of the API is (not one fails the test).
func (d *daemon) api(method, path, body string, out any) (int, *wire.Error) {
	d.t.Helper()
	status, b := d.raw(method, path, body)
	if status/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				d.t.Fatalf("%s %s: %d %s: %v", method, path, status, b, err)
			}
		}
		return status, nil
	}
	e := &wire.Error{Status: status}
	if err := json.Unmarshal(b, e); err != nil || e.Code == "" || e.Message == "" {
		d.t.Fatalf("%s %s: %d %q is not a JSON error (%v)", method, path, status, b, err)
	}
	return status, e
}

// apiCase is a raw API request that must fail with status and an error message containing want.
type apiCase struct {
	method, path, body string
	status             int
	want               string
}

// expectErrors sends each case and checks its status and JSON error message.
func (d *daemon) expectErrors(cases []apiCase) {
	d.t.Helper()
	for _, c := range cases {
		status, e := d.api(c.method, c.path, c.body, nil)
		var msg string
		if e != nil {
			msg = e.Message
		}
		if status != c.status || !strings.Contains(msg, c.want) {
			d.t.Errorf("%s %s %.50s: %d %q; want %d with %q", c.method, c.path, c.body, status, msg, c.status, c.want)
		}
	}
}

// boardSnapshot reads the board with the Go reader.
func (d *daemon) boardSnapshot() *board.Snapshot {
	d.t.Helper()
	b, err := reader.Open(d.shm)
	if err != nil {
		d.t.Fatal(err)
	}
	defer b.Close()
	s, err := b.Snapshot()
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

// readerDumps reads the board with the C and Python dump tools and the CLI.
func (d *daemon) readerDumps() map[string]board.Dump {
	d.t.Helper()
	tools := map[string][]string{
		"c":      {"../clients/c/notice_dump", d.shm},
		"python": {"python3", "../clients/python/notice.py", d.shm},
		"ctl":    {filepath.Join(binDir, "announcementctl"), "dump", "--json", "--shm", d.shm},
	}
	out := map[string]board.Dump{}
	for name, argv := range tools {
		b, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			d.t.Fatalf("%s dump: %v\n%s", name, err, b)
		}
		var dump board.Dump
		if err := json.Unmarshal(b, &dump); err != nil {
			d.t.Fatalf("%s dump: %v\n%s", name, err, b)
		}
		out[name] = dump
	}
	return out
}
