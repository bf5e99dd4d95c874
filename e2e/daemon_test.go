// Package e2e_test runs the built announcementd and announcementctl as real processes against a real store and a
// real board in /dev/shm, and reads the board with the Go, C and Python readers.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/wire"
)

var binDir string

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" { // this binary re-executed as a helper process (reload_test.go)
		os.Exit(runHelper(name))
	}
	dir, err := os.MkdirTemp("", "e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/announcementd", "../cmd/announcementctl")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	if out, err := exec.Command("make", "-s", "-C", "../clients/c", "all").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the C reader: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running announcementd with its own region, state and runtime dirs.
type daemon struct {
	t          *testing.T
	shm, state string
	runtime    string
	cmd        *exec.Cmd
	logs       *syncBuffer
	extra      []string
	bin        string // the announcementd it runs
}

// syncBuffer is a bytes.Buffer that the daemon's output and the test may use at the same time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	return newDaemonFrom(t, filepath.Join(binDir, "announcementd"), extra...)
}

// newDaemonFrom starts the announcementd at bin (the supervisor starts its workers from the same path).
func newDaemonFrom(t *testing.T, bin string, extra ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, bin: bin, state: filepath.Join(dir, "state"), runtime: filepath.Join(dir, "run"), extra: extra,
		shm: filepath.Join("/dev/shm", fmt.Sprintf("notice_e2e_%d_%d", os.Getpid(), time.Now().UnixNano()))}
	t.Cleanup(func() {
		d.stop(syscall.SIGKILL)
		os.Remove(d.shm)
	})
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	args := append([]string{"--shm", d.shm, "--shm-size", "64KiB", "--state-dir", d.state, "--runtime-dir", d.runtime}, d.extra...)
	if strings.Contains(strings.Join(d.extra, " "), "--listen") { // explicit listeners replace the default socket
		args = append(args, "--listen", "unix:"+filepath.Join(d.runtime, "api.sock"))
	}
	d.cmd = exec.Command(d.bin, args...)
	d.logs = &syncBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	// Its own process group, which stop(SIGKILL) kills whole, as systemd kills a service's cgroup.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	// The pid file appears once the first worker generation serves.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pid, err := os.ReadFile(filepath.Join(d.runtime, "announcementd.pid")); err == nil && string(pid) == strconv.Itoa(d.cmd.Process.Pid) {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not start:\n%s", d.logs)
		}
	}
}

// stop signals the daemon: SIGKILL goes to the whole process group (the supervisor and its worker, as a crash of
// the service), any other signal to the supervisor, which stops its worker itself.
func (d *daemon) stop(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	if sig == syscall.SIGKILL {
		syscall.Kill(-d.cmd.Process.Pid, sig)
	} else {
		d.cmd.Process.Signal(sig)
	}
	d.cmd.Wait()
	d.cmd = nil
}

// ctl runs announcementctl against the daemon and returns its exit code, stdout and stderr.
func (d *daemon) ctl(args ...string) (int, string, string) {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "announcementctl"), append([]string{"--runtime-dir", d.runtime}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return code, out.String(), errb.String()
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
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(d.runtime, "api.sock"))
	}}}
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
