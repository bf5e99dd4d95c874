package storm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
)

// daemon is the service under the storm: the supervisor, started with the same flags again whenever it exits, as
// systemd's Restart=always would (RestartSec=100ms, its default), until stop.
//
// It is not a proctest.Daemon, on purpose: the loop starts the next supervisor without waiting for it to be ready
// (a fault may kill it while it starts); a killed supervisor's worker is left to notice and exit by itself, while
// the next supervisor starts (a proctest.Daemon's cleanup kills its whole process group); every start writes to
// one log file that the checks read across restarts; and without a service manager that keeps fds, the daemon
// must not be given a NOTIFY_SOCKET (it would leave its sockets to an fd store nobody runs), so READY=1 would not
// come anyway.
type daemon struct {
	bin, ctl string
	shm      string
	runtime  string
	state    string
	args     []string
	logPath  string
	logFile  *os.File

	control, api *http.Client

	mu         sync.Mutex
	cur        *exec.Cmd
	killed     bool     // the storm killed the current supervisor (its exit is expected)
	stopping   bool     //
	starts     int      // supervisors started
	unprompted []string // supervisors that exited although nobody asked them to
	loopDone   chan struct{}
}

func newDaemon(bin, ctl, shm, runtime, state, logPath string, extra ...string) (*daemon, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	d := &daemon{bin: bin, ctl: ctl, shm: shm, runtime: runtime, state: state, logPath: logPath, logFile: f,
		loopDone: make(chan struct{})}
	d.args = append([]string{"--shm", shm, "--shm-size", "64KiB", "--state-dir", state, "--runtime-dir", runtime}, extra...)
	d.control = proctest.UnixClient(filepath.Join(runtime, "control.sock"), 2*time.Second, false)
	d.api = proctest.UnixClient(filepath.Join(runtime, "api.sock"), 2*time.Second, false)
	return d, nil
}

// start starts the first supervisor and the loop that restarts it.
func (d *daemon) start() error {
	first := make(chan error, 1)
	go d.loop(first)
	return <-first
}

func (d *daemon) launch() (*exec.Cmd, error) {
	cmd := exec.Command(d.bin, d.args...)
	// An *os.File, so that Wait does not wait for a worker that still holds the supervisor's stderr.
	cmd.Stdout, cmd.Stderr = d.logFile, d.logFile
	// Pdeathsig: if the test process dies (a panic, go test's timeout) before its cleanups, the service dies
	// with it instead of running on. It fires when the thread that started the process exits: loop keeps its
	// thread locked for as long as it runs supervisors.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cur, d.killed = cmd, false
	d.starts++
	d.mu.Unlock()
	return cmd, nil
}

// loop starts the supervisor, reports the first start on first, and starts it again each time it exits, until
// stop.
func (d *daemon) loop(first chan<- error) {
	runtime.LockOSThread() // never unlocked: see launch
	defer close(d.loopDone)
	cmd, err := d.launch()
	first <- err
	if err != nil {
		return
	}
	for {
		err := cmd.Wait()
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return
		}
		if !d.killed {
			now := time.Now()
			d.unprompted = append(d.unprompted, fmt.Sprintf("supervisor pid %d exited by itself (%v) at %s; the log's warnings before:\n    %s",
				cmd.Process.Pid, err, now.Format("15:04:05.000"), strings.Join(d.logExcerpt(now.Add(-3*time.Second), now, 8, "warn", "error", "fatal", "panic"), "\n    ")))
		}
		d.mu.Unlock()
		time.Sleep(100 * time.Millisecond) // on purpose: systemd's RestartSec=100ms
		for {
			var lerr error
			if cmd, lerr = d.launch(); lerr == nil {
				break
			}
			time.Sleep(time.Second) // on purpose: a start that failed is tried again after a pause
		}
	}
}

// supervisorPID is the pid of the current supervisor.
func (d *daemon) supervisorPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return 0
	}
	return d.cur.Process.Pid
}

// servingPID is the pid in the supervisor's pid file, which it writes once its first generation serves: the
// process an operator's `kill -HUP $(cat announcementd.pid)` signals (and systemd's MAINPID). A supervisor
// signalled before it set up its handlers dies of SIGHUP's default action, as any program would; systemd sends
// no reload before READY=1. 0 when there is no pid file (a supervisor not serving yet).
func (d *daemon) servingPID() int {
	b, err := os.ReadFile(filepath.Join(d.runtime, "announcementd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// killSupervisor kills the current supervisor with SIGKILL; the loop starts a new one.
func (d *daemon) killSupervisor() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pid := d.cur.Process.Pid
	if d.killed {
		return pid, errors.New("already killed, not restarted yet")
	}
	d.killed = true
	return pid, syscall.Kill(pid, syscall.SIGKILL)
}

// stop stops the service with SIGTERM (as systemctl stop) and waits for the supervisor, at most 40 s.
func (d *daemon) stop() error {
	d.mu.Lock()
	d.stopping = true
	cmd := d.cur
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.loopDone:
		return nil
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-d.loopDone
		return errors.New("the supervisor did not stop within 40 s of SIGTERM")
	}
}

// proc is one process of the daemon's.
type proc struct {
	pid, ppid int
	state     byte
	worker    bool
}

// procs lists the running processes of this daemon: its binary, with its region path on the command line.
func (d *daemon) procs() []proc {
	var out []proc
	for _, s := range procfs.All() {
		if !s.Running() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.PID))
		if err != nil || exe != d.bin {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !containsArg(args, d.shm) {
			continue
		}
		out = append(out, proc{pid: s.PID, ppid: s.PPID, state: s.State, worker: len(args) > 1 && args[1] == "worker"})
	}
	return out
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// isOurs reports whether pid is one of this daemon's running processes (checked right before signalling it, so
// that a signal never reaches a process the storm did not start).
func (d *daemon) isOurs(pid int) bool {
	for _, p := range d.procs() {
		if p.pid == pid {
			return true
		}
	}
	return false
}

// workers lists the daemon's running workers.
func (d *daemon) workers() []proc {
	var w []proc
	for _, p := range d.procs() {
		if p.worker {
			w = append(w, p)
		}
	}
	return w
}

// supStatus is the part of the control status the storm reads.
type supStatus struct {
	PID         int `json:"pid"`
	Generations []struct {
		Generation uint64 `json:"generation"`
		PID        int    `json:"pid"`
		State      string `json:"state"`
	} `json:"generations"`
	Restarts      int `json:"restarts"`
	CrashesInARow int `json:"crashes_in_a_row"`
	LastReload    *struct {
		OK         bool      `json:"ok"`
		Outcome    string    `json:"outcome"`
		Reason     string    `json:"reason"`
		StartedAt  time.Time `json:"started_at"`
		FinishedAt time.Time `json:"finished_at"`
	} `json:"last_reload"`
}

func (d *daemon) controlStatus() (supStatus, error) {
	var st supStatus
	resp, err := d.control.Get("http://supervisor/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// health asks the worker for a fresh check (`announcementctl health` asks the same).
func (d *daemon) health() (string, error) {
	resp, err := d.api.Get("http://announcementd/healthz?check=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct {
		Health  string   `json:"health"`
		Reasons []string `json:"reasons"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", err
	}
	if h.Health != "ok" {
		return h.Health, fmt.Errorf("%s: %s", h.Health, strings.Join(h.Reasons, "; "))
	}
	return h.Health, nil
}

// list is GET /v1/announcements as id -> content.
func (d *daemon) list() (map[uint64]string, error) {
	resp, err := d.api.Get("http://announcementd/v1/announcements")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list: status %d", resp.StatusCode)
	}
	return decodeList(json.NewDecoder(resp.Body))
}

func decodeList(dec *json.Decoder) (map[uint64]string, error) {
	var l struct {
		Announcements []struct {
			ID      uint64 `json:"id"`
			Content string `json:"content"`
		} `json:"announcements"`
	}
	if err := dec.Decode(&l); err != nil {
		return nil, err
	}
	m := map[uint64]string{}
	for _, a := range l.Announcements {
		m[a.ID] = a.Content
	}
	return m, nil
}

// ctlCommand runs announcementctl against the daemon, killed after timeout; it returns the exit code (-1: it did
// not finish) and its output.
func (d *daemon) ctlCommand(timeout time.Duration, args ...string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctl, append([]string{"--runtime-dir", d.runtime}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, out.String() + fmt.Sprintf("(killed after %v)", timeout)
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	case err != nil:
		return -1, err.Error()
	}
	return 0, out.String()
}

// fdCount is how many fds pid holds.
func fdCount(pid int) int {
	fds, err := proctest.Fds(pid)
	if err != nil {
		return -1
	}
	return len(fds)
}

// logExcerpt returns the daemon's log lines stamped between from and to (zap's "ts", unix seconds), at most max,
// only those of the given levels if any are given; lines that are not zap's (a panic, a runtime error) always.
func (d *daemon) logExcerpt(from, to time.Time, max int, levels ...string) []string {
	f, err := os.Open(d.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	inWindow := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			TS    float64 `json:"ts"`
			Level string  `json:"level"`
		}
		line := sc.Text()
		if json.Unmarshal([]byte(line), &l) != nil {
			if inWindow {
				out = append(out, line) // not zap's: a panic, a runtime error, after a line of the window
			}
			continue
		}
		ts := time.Unix(0, int64(l.TS*1e9))
		inWindow = !ts.Before(from) && !ts.After(to)
		if !inWindow || len(levels) > 0 && !containsArg(levels, l.Level) {
			continue
		}
		out = append(out, line)
	}
	if len(out) > max {
		out = append(out[:max/2:max/2], append([]string{fmt.Sprintf("... %d lines ...", len(out)-max)}, out[len(out)-max/2:]...)...)
	}
	return out
}

// logEvent is a line of the daemon's log that says something went wrong by itself.
type logEvent struct {
	at   time.Time
	line string
}

// crashes scans the daemon's log for workers that exited although the storm did not kill them (the supervisor's
// "worker exited unexpectedly" with another status than "signal: killed") and for Go runtime failures (panics,
// fatal errors: lines that are not zap's).
func (d *daemon) crashes() []logEvent {
	f, err := os.Open(d.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logEvent
	var last time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var l struct {
			TS     float64 `json:"ts"`
			Msg    string  `json:"msg"`
			Status string  `json:"status"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			for _, p := range []string{"panic:", "fatal error:", "unexpected fault address", "SIGBUS", "SIGSEGV"} {
				if strings.HasPrefix(line, p) {
					out = append(out, logEvent{last, line})
				}
			}
			continue
		}
		last = time.Unix(0, int64(l.TS*1e9))
		if l.Msg == "worker exited unexpectedly" && l.Status != "signal: killed" {
			out = append(out, logEvent{last, line})
		}
	}
	return out
}
