package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// workload is what the publisher does: a set of N announcements, one of which it replaces R times a second.
type workload struct {
	set  int
	rate float64
}

func (w workload) String() string {
	return fmt.Sprintf("%s announcements, %g publish/s", benchfmt.Count(w.set), w.rate)
}

func (w workload) key() string { return fmt.Sprintf("set=%d/rate=%g", w.set, w.rate) }

// server is what publishes: the daemon (through its API) or the HTTP baseline's server.
type server interface {
	publish(ctx context.Context, seq uint64) error
	pids() []int
	roles() []role // its processes by name, for their memory
}

// bench is the state shared by the runs.
type bench struct {
	tools *tools
	dir   string
	pub   *sim.PubTable
	pubFn string
	clk   *sim.Clock
	seq   uint64 // the last publish sent
	t0    time.Time
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale [%5.1fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

// next returns the next publish number, its send time recorded in the table.
func (b *bench) next() uint64 {
	b.seq++
	if b.seq >= sim.PubSlots {
		panic("more publishes than the table of publish times holds")
	}
	b.pub.Set(b.seq, b.clk.Now())
	return b.seq
}

// daemon is bin/announcementd under test, on a region and dirs of its own.
type daemon struct {
	p    *proctest.Daemon
	shm  string
	sock string
	api  *http.Client
	set  int // announcements it holds
	who  []role
	st   *wire.WorkerStatus // at start
}

// startDaemon starts bin with args (beside the bench's own: its region, dirs and socket).
func startDaemon(ctx context.Context, bin, dir string, args ...string) (*daemon, error) {
	src, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("%w (run `make build` first, or `make scale`, which builds it)", err)
	}
	// A copy: a `make build` beside the bench must not change what it measures.
	copyBin := filepath.Join(dir, "announcementd")
	if err := os.WriteFile(copyBin, src, 0o755); err != nil {
		return nil, err
	}
	d := &daemon{shm: filepath.Join("/dev/shm", fmt.Sprintf("notice_scale_%d_%d", os.Getpid(), time.Now().UnixNano())),
		sock: filepath.Join(dir, "run", "api.sock")}
	d.p, err = proctest.Launch(proctest.DaemonConfig{Binary: copyBin, Shm: d.shm, StateDir: filepath.Join(dir, "state"),
		RuntimeDir: filepath.Join(dir, "run"), ReadyTimeout: 30 * time.Second, Args: args})
	if err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() { ready <- d.p.Ready() }()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		d.close()
		return nil, err
	}
	d.api = proctest.UnixClient(d.sock, 30*time.Second, true)
	if d.st, err = d.status(ctx); err != nil {
		d.close()
		return nil, err
	}
	d.who = []role{{"supervisor", d.st.Supervisor.PID}, {"worker", d.st.Worker.PID}}
	if d.st.Supervisor.PID != d.p.MainPID() {
		d.close()
		return nil, fmt.Errorf("the worker names supervisor pid %d, the daemon's main pid is %d", d.st.Supervisor.PID, d.p.MainPID())
	}
	return d, nil
}

func (d *daemon) pids() []int { return append([]int{d.p.PID()}, d.p.Children()...) }

func (d *daemon) roles() []role { return d.who }

func (d *daemon) close() {
	if d.p == nil {
		return
	}
	if err := d.p.Stop(30 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "scale: stopping the daemon:", err)
	}
	d.p.Close()
	os.Remove(d.shm)
}

func (d *daemon) do(ctx context.Context, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://announcementd"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(ans))
	}
	return nil
}

func (d *daemon) publish(ctx context.Context, seq uint64) error {
	return d.do(ctx, "PUT", "/v1/announcements/1", wire.PutRequest{Content: sim.Filler(fmt.Sprintf("%s%d ", sim.SeqPrefix, seq))})
}

// setSize makes the daemon hold announcements 1..n (announcement 1 showing publish seq): one batch, one version.
func (d *daemon) setSize(ctx context.Context, n int, seq uint64) error {
	var req wire.BatchRequest
	req.Put = append(req.Put, wire.PutRequest{ID: 1, Content: sim.Filler(fmt.Sprintf("%s%d ", sim.SeqPrefix, seq))})
	for id := d.set + 1; id <= n; id++ {
		if id > 1 {
			req.Put = append(req.Put, wire.PutRequest{ID: uint64(id), Content: sim.Filler(fmt.Sprintf("announcement %d ", id))})
		}
	}
	for id := n + 1; id <= d.set; id++ {
		req.Delete = append(req.Delete, uint64(id))
	}
	if err := d.do(ctx, "POST", "/v1/batch", req); err != nil {
		return err
	}
	d.set = n
	return nil
}

// httpServer is the HTTP baseline's server process.
type httpServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	hc    *http.Client
}

func startHTTPServer(ctx context.Context, t *tools, records int) (*httpServer, error) {
	s := &httpServer{cmd: exec.Command(t.httppoll, "server", "-records", fmt.Sprint(records))}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var errb tail
	s.cmd.Stderr = &errb
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	register(s.cmd)
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			s.close()
			return nil, fmt.Errorf("httppoll server said %q: %s", l, errb.String())
		}
		s.addr = addr
	case <-time.After(30 * time.Second):
		s.close()
		return nil, errors.New("httppoll server: not listening after 30 s")
	case <-ctx.Done():
		s.close()
		return nil, ctx.Err()
	}
	s.hc = &http.Client{Timeout: 30 * time.Second}
	return s, nil
}

func (s *httpServer) pids() []int { return []int{s.cmd.Process.Pid} }

func (s *httpServer) roles() []role { return []role{{"HTTP server", s.cmd.Process.Pid}} }

func (s *httpServer) publish(ctx context.Context, seq uint64) error {
	req, err := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("http://%s/publish?seq=%d", s.addr, seq), nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /publish: %s", resp.Status)
	}
	return nil
}

func (s *httpServer) close() {
	s.stdin.Close()
	reap(s.cmd)
}

// result is one measured run.
type result struct {
	kind    string // shm, http
	w       workload
	mode    string // none (no clients), own, shared
	real    bool   // one process per client
	clients int
	specs   []spec

	publishes int
	apiLat    []time.Duration // each publish request, sorted
	sentAt    []time.Time     // when each publish was sent

	serverWin time.Duration // the fixed window: publishing + the tail
	serverCPU procfs.CPU    // over serverWin
	wall      time.Duration // start → the last report
	serverAll procfs.CPU    // over wall
	machine   time.Duration // the host's busy CPU over wall
	self      time.Duration // the bench's own CPU over wall

	reps  []sim.Report
	waits []sim.Report // the futex waiters beside the clients (shm runs, -waiters)

	srvMem    serverMem             // the server's processes at the end of the publishing
	readerMem map[string]*readerMem // the client processes then, by language (and "futex")
}

// measure runs one measurement: the client processes of specs against srv, publishing w for d.
func (b *bench) measure(ctx context.Context, srv server, w workload, mode string, specs []spec, addr string, d, tailD, maxWait, interval time.Duration, boardPath string) (*result, error) {
	r := &result{kind: "shm", w: w, mode: mode, specs: specs}
	if addr != "" {
		r.kind = "http"
	}
	for _, s := range specs {
		r.clients += s.clients
	}
	all := specs
	if r.kind == "shm" && *waiters > 0 {
		all = append(slices.Clone(specs), split("futex", *waiters, *waiters)...)
	}
	fl, err := startFleet(ctx, b.tools, all, mode, boardPath, b.pubFn, addr, interval, b.seq)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	first := b.seq + 1
	if err := fl.send(fmt.Sprintf("start %d", first)); err != nil {
		return nil, err
	}
	t0 := time.Now()
	m0, err1 := procfs.ReadHost()
	s0, err2 := sumCPU(srv.pids())
	self0 := procfs.SelfCPU()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	period := time.Duration(float64(time.Second) / w.rate)
	n := max(1, int(d/period))
	for i := range n {
		if err := sleepUntil(ctx, t0.Add(time.Duration(i)*period)); err != nil {
			return nil, err
		}
		seq := b.next()
		st := time.Now()
		r.sentAt = append(r.sentAt, st)
		if err := srv.publish(ctx, seq); err != nil {
			return nil, fmt.Errorf("publish %d: %w", seq, err)
		}
		r.apiLat = append(r.apiLat, time.Since(st))
	}
	r.publishes = n
	slices.Sort(r.apiLat)
	if err := sleepUntil(ctx, t0.Add(time.Duration(n)*period+tailD)); err != nil {
		return nil, err
	}
	s1, err := sumCPU(srv.pids())
	if err != nil {
		return nil, err
	}
	r.serverWin, r.serverCPU = time.Since(t0), s1.Sub(s0)
	if r.srvMem, err = readServerMem(srv.roles()); err != nil {
		return nil, err
	}
	if r.readerMem, err = readFleetMem(fl); err != nil {
		return nil, err
	}
	if len(fl.clients) > 0 {
		reps, err := fl.reports(ctx, b.seq, maxWait)
		if err != nil {
			return nil, err
		}
		for _, rp := range reps {
			if rp.Lang == "futex" {
				r.waits = append(r.waits, rp)
			} else {
				r.reps = append(r.reps, rp)
			}
		}
	}
	r.wall = time.Since(t0)
	m1, err1 := procfs.ReadHost()
	s2, err2 := sumCPU(srv.pids())
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	r.serverAll, r.machine, r.self = s2.Sub(s0), m1.Busy-m0.Busy, procfs.SelfCPU()-self0
	return r, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
