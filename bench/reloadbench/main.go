// Command reloadbench measures what a reload costs the API, against a cold restart of the same daemon, and prints
// markdown tables; `make bench` runs it after the board and worker benchmarks.
//
// It runs the real daemon, bin/announcementd (`make bench` builds it first; -daemon names another), as a process
// with its own region in /dev/shm and its own state and runtime dirs in a temp dir. It uses the built binary rather
// than building its own so that it measures exactly what `make build` ships, without a compile in its run time;
// the binary is copied into the temp dir first, because a reload starts the binary on disk and a `make build`
// running beside the benchmark must not turn a reload into a supervisor upgrade. It is a proctest.Daemon: told that
// the daemon serves by READY=1 on an sd_notify socket of the bench's own, as systemd is. The daemon, seeing
// NOTIFY_SOCKET, takes the bench for a service manager that keeps its fds, and so leaves its sockets' paths when
// it stops: a cold restart's clients are refused rather than finding no socket.
//
// While C clients publish continuously over the API socket (by default half of them keep their connection, as a
// long-lived publisher does, and half open one per request, as curl or announcementctl do), it measures in one run:
//
//   - baseline: publishes/s and latency with no reload;
//   - reload under load: N reloads one after another (POST /v1/reload?wait=1 on the control socket): the
//     supervisor's own duration (request to new generation serving), the wall time of the control request, the
//     phases of each reload read from the daemon's log, the longest pause of the API (the longest gap between two
//     successful publishes), the longest publish, and every failed request;
//   - cold restart: SIGTERM, wait for the exit, start again, M times: how long the API was gone and how many
//     requests failed.
//
// A reload must not fail a request: it exits with status 1 after the tables when one did. Everything it starts is
// stopped and everything it creates is removed at the end, also on error or ^C.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

var (
	daemonBin  = flag.String("daemon", "bin/announcementd", "the announcementd binary to run (copied to a temp dir first)")
	clients    = flag.Int("clients", 8, "concurrent publishing clients")
	reloads    = flag.Int("reloads", 30, "reloads under load")
	restarts   = flag.Int("restarts", 10, "cold restarts under load")
	baselineD  = flag.Duration("baseline", 3*time.Second, "how long the load runs with no reload, for the baseline")
	pause      = flag.Duration("pause", 150*time.Millisecond, "pause between two reloads, and after each restart")
	reqTimeout = flag.Duration("timeout", 10*time.Second, "client-side timeout of each API request")
	retryAfter = flag.Duration("retry", 5*time.Millisecond, "how long a client waits after a failed request before the next")
	conns      = flag.String("conns", "mixed", "keepalive: clients keep their connection between requests; new: a new connection per request; mixed: half each")
)

func main() {
	flag.Parse()
	benchfmt.Main("reloadbench", "the daemon is stopped and its files removed", run)
}

// daemon is the announcementd under test; each start is a new process (a proctest.Daemon) on the same region,
// state and runtime dir.
type daemon struct {
	bin, dir, shm, state, runtime string
	proc                          *proctest.Daemon // the current start; nil when stopped
	first                         *proctest.Buffer // the first start's log, where the reloads are
}

func newDaemon() (*daemon, error) {
	src, err := os.Open(*daemonBin)
	if err != nil {
		return nil, fmt.Errorf("%w (run `make build` first, or `make bench`, which builds it)", err)
	}
	defer src.Close()
	dir, err := os.MkdirTemp("", "reloadbench")
	if err != nil {
		return nil, err
	}
	d := &daemon{bin: filepath.Join(dir, "announcementd"), dir: dir,
		shm:     filepath.Join("/dev/shm", fmt.Sprintf("notice_reloadbench_%d_%d", os.Getpid(), time.Now().UnixNano())),
		state:   filepath.Join(dir, "state"),
		runtime: filepath.Join(dir, "run")}
	dst, err := os.OpenFile(d.bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("copy %s: %w", *daemonBin, err)
	}
	return d, nil
}

func (d *daemon) apiSock() string     { return filepath.Join(d.runtime, "api.sock") }
func (d *daemon) controlSock() string { return filepath.Join(d.runtime, "control.sock") }

// start starts the supervisor (in its own process group, killed if we die) and returns once it says READY=1: its
// first generation serves.
func (d *daemon) start(ctx context.Context) error {
	p, err := proctest.Launch(proctest.DaemonConfig{Binary: d.bin, Shm: d.shm, StateDir: d.state, RuntimeDir: d.runtime,
		ReadyTimeout: 20 * time.Second})
	if err != nil {
		return err
	}
	d.proc = p
	if d.first == nil {
		d.first = p.Log()
	}
	ready := make(chan error, 1)
	go func() { ready <- p.Ready() }()
	select {
	case err := <-ready:
		return err
	case <-ctx.Done():
		p.Kill()
		<-ready
		return ctx.Err()
	}
}

// term stops the daemon with SIGTERM and waits for it and its workers to exit (30 s at most, then it is killed).
func (d *daemon) term() error {
	p := d.proc
	if p == nil {
		return nil
	}
	d.proc = nil
	defer p.Close()
	return p.Stop(30 * time.Second)
}

// close stops the daemon (SIGTERM, then SIGKILL) and removes everything it used.
func (d *daemon) close() {
	if err := d.term(); err != nil {
		fmt.Fprintln(os.Stderr, "reloadbench: stopping the daemon:", err)
	}
	os.Remove(d.shm)
	os.RemoveAll(d.dir)
}

// Outcomes of one request.
const (
	okay = iota
	refused
	missing // the socket file is not there
	reset   // the connection was closed or reset under the request
	timeout
	httpError // an answer other than 200
	otherError
	kinds
)

var kindNames = [kinds]string{"ok", "refused", "socket missing", "reset", "timeout", "HTTP error", "other"}

func classify(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused
	case errors.Is(err, syscall.ENOENT):
		return missing
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return reset
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return timeout
	}
	return otherError
}

// sample is one request: when it started and ended (since the load began) and how it ended.
type sample struct {
	start, end time.Duration
	kind       uint8
	keepAlive  bool   // its client keeps connections open
	msg        string // the failure
}

// load is C clients publishing continuously, each replacing its own 50 announcements.
type load struct {
	base    time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	samples [][]sample // per client; read only after finish
}

// keepAliveClient says whether client c keeps its connection open between requests.
func keepAliveClient(c int) bool {
	switch *conns {
	case "keepalive":
		return true
	case "new":
		return false
	}
	return c%2 == 0
}

func startLoad(sock string, n int) *load {
	l := &load{base: time.Now(), stop: make(chan struct{}), samples: make([][]sample, n)}
	for c := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			ka := keepAliveClient(c)
			hc := proctest.UnixClient(sock, *reqTimeout, ka)
			mine := make([]sample, 0, 1<<16)
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					l.samples[c] = mine
					return
				default:
				}
				t := time.Since(l.base)
				kind, msg := put(hc, 1+c*50+i%50, fmt.Sprintf(`{"content":"client %d update %d"}`, c, i))
				mine = append(mine, sample{start: t, end: time.Since(l.base), kind: uint8(kind), keepAlive: ka, msg: msg})
				if kind != okay {
					time.Sleep(*retryAfter)
				}
			}
		}()
	}
	return l
}

func put(hc *http.Client, id int, body string) (int, string) {
	req, _ := http.NewRequest("PUT", fmt.Sprintf("http://announcementd/v1/announcements/%d", id), strings.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which names the id
		}
		return classify(err), err.Error()
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return classify(err), err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return httpError, fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return okay, ""
}

func (l *load) now() time.Duration { return time.Since(l.base) }

// finish stops the clients and returns every sample, sorted by end.
func (l *load) finish() []sample {
	close(l.stop)
	l.wg.Wait()
	var all []sample
	for _, s := range l.samples {
		all = append(all, s...)
	}
	slices.SortFunc(all, func(a, b sample) int { return int(a.end - b.end) })
	return all
}

// window is a stretch of the run, [from, to] since the load began.
type window struct{ from, to time.Duration }

// stats of the requests that ended in a window.
type stats struct {
	ok      int
	failed  [kinds]int
	nFailed int
	byMode  [2]int          // failed requests of new-connection [0] and keep-alive [1] clients
	lat     []time.Duration // of successful requests, sorted
	perSec  float64
	maxGap  time.Duration // longest time between two successful completions across the window
}

// measure summarizes the samples (sorted by end) that ended in w; okEnds are the ends of the successful ones.
func measure(all []sample, okEnds []time.Duration, w window) stats {
	var s stats
	i := sort.Search(len(all), func(i int) bool { return all[i].end >= w.from })
	for ; i < len(all) && all[i].end <= w.to; i++ {
		if all[i].kind == okay {
			s.ok++
			s.lat = append(s.lat, all[i].end-all[i].start)
		} else {
			s.failed[all[i].kind]++
			s.nFailed++
			s.byMode[b2i(all[i].keepAlive)]++
		}
	}
	slices.Sort(s.lat)
	s.perSec = float64(s.ok) / (w.to - w.from).Seconds()
	s.maxGap = longestGap(okEnds, w)
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// longestGap is the longest time between two successive successful completions whose interval overlaps w: the
// longest the API answered nothing.
func longestGap(ends []time.Duration, w window) time.Duration {
	if len(ends) == 0 {
		return w.to - w.from
	}
	i := sort.Search(len(ends), func(i int) bool { return ends[i] >= w.from })
	if i > 0 {
		i-- // the last completion before the window
	}
	var gap time.Duration
	for j := i + 1; j < len(ends); j++ {
		gap = max(gap, ends[j]-ends[j-1])
		if ends[j] > w.to {
			return gap
		}
	}
	return max(gap, w.to-ends[len(ends)-1]) // nothing completed after the window's end
}

// reloadRun is one reload as the bench saw it.
type reloadRun struct {
	w   window // the control request
	res wire.ReloadResult
	err error
}

// restartRun is one cold restart as the bench saw it.
type restartRun struct {
	sigterm, exited, started, serving time.Duration // since the load began; serving: it said READY=1
	w                                 window        // SIGTERM to the restarted daemon's first successful publish
}

func reload(ctx context.Context, hc *http.Client) (wire.ReloadResult, error) {
	var res wire.ReloadResult
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://control/v1/reload?wait=1", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return res, err
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, err
	}
	if !res.OK || res.Outcome != wire.OutcomeServing {
		return res, fmt.Errorf("reload %s (generation %d → %d): %s", res.Outcome, res.From, res.To, res.Reason)
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func run(ctx context.Context) (err error) {
	if *clients < 1 || *reloads < 1 || *restarts < 1 {
		return errors.New("-clients, -reloads and -restarts must be at least 1")
	}
	if *conns != "mixed" && *conns != "keepalive" && *conns != "new" {
		return fmt.Errorf("-conns %q: want mixed, keepalive or new", *conns)
	}
	d, err := newDaemon()
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.start(ctx); err != nil {
		return err
	}
	l := startLoad(d.apiSock(), *clients)
	var all []sample
	defer func() {
		if all == nil {
			l.finish()
		}
	}()

	// Warm up (connections, the store's pages), then the baseline.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	base := window{from: l.now()}
	if err := sleep(ctx, *baselineD); err != nil {
		return err
	}
	base.to = l.now()

	// Reloads, one after another.
	control := proctest.UnixClient(d.controlSock(), 0, false)
	rl := make([]reloadRun, 0, *reloads)
	phase := window{from: l.now()}
	for range *reloads {
		r := reloadRun{w: window{from: l.now()}}
		r.res, r.err = reload(ctx, control)
		r.w.to = l.now()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rl = append(rl, r)
		if err := sleep(ctx, *pause); err != nil {
			return err
		}
	}
	phase.to = l.now()

	// Cold restarts.
	rs := make([]restartRun, 0, *restarts)
	for range *restarts {
		r := restartRun{sigterm: l.now()}
		if err := d.term(); err != nil {
			return err
		}
		r.exited = l.now()
		r.started = l.now()
		if err := d.start(ctx); err != nil {
			return err
		}
		r.serving = l.now()
		rs = append(rs, r)
		if err := sleep(ctx, *pause+250*time.Millisecond); err != nil {
			return err
		}
	}
	all = l.finish()
	gaps, err := reloadPhases(bytes.NewReader(d.first.Bytes()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "reloadbench: the phases of the reloads are not in the daemon's log:", err)
	}
	for i := range all {
		all[i].msg = strings.ReplaceAll(all[i].msg, d.dir, "$TMP")
	}
	return report(all, base, phase, rl, rs, gaps)
}

// phases is one reload split at the events of the daemon's log.
type phases struct {
	spawn    time.Duration // reload asked → the new generation in standby: fork/exec, Go runtime init, handshake, fds, checks
	drain    time.Duration // standby → the old generation yielded: stop accepting, finish in-flight requests, save, close the store
	takeOver time.Duration // yielded → the new generation serves: open the store, the board, the listeners, Ready
	oldExit  time.Duration // the new generation serves → the old one has exited
}

// reloadPhases reads the supervisor's and the workers' JSON log (they share the output) and splits each reload
// at its events, in generation order.
func reloadPhases(f io.Reader) ([]phases, error) {
	type key struct {
		msg string
		gen uint64
	}
	at := map[key]time.Time{}
	var last uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			TS   float64 `json:"ts"`
			Msg  string  `json:"msg"`
			Role string  `json:"role"`
			Gen  uint64  `json:"generation"`
			From uint64  `json:"from"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		t := time.Unix(0, int64(e.TS*1e9))
		k := key{e.Role + ":" + e.Msg, e.Gen}
		if e.Msg == "reload: starting a new generation" {
			k.gen = e.From + 1
		}
		at[k] = t // the last of each: a worker's last yield is the one of its reload
		last = max(last, e.Gen)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var ps []phases
	for g := uint64(2); g <= last; g++ {
		asked, ok1 := at[key{"supervisor:reload: starting a new generation", g}]
		standby, ok2 := at[key{"worker:worker in standby", g}]
		yielded, ok3 := at[key{"worker:yielded", g - 1}]
		serving, ok4 := at[key{"supervisor:worker serving", g}]
		exited, ok5 := at[key{"supervisor:worker exited", g - 1}]
		if !(ok1 && ok2 && ok3 && ok4 && ok5) {
			continue
		}
		ps = append(ps, phases{spawn: standby.Sub(asked), drain: yielded.Sub(standby), takeOver: serving.Sub(yielded), oldExit: exited.Sub(serving)})
	}
	if len(ps) == 0 {
		return nil, errors.New("no reload found")
	}
	return ps, nil
}

func report(all []sample, base, phase window, rl []reloadRun, rs []restartRun, ph []phases) error {
	var okEnds []time.Duration
	for _, s := range all {
		if s.kind == okay {
			okEnds = append(okEnds, s.end)
		}
	}
	bs := measure(all, okEnds, base)
	ps := measure(all, okEnds, phase)

	var supDur, wall, relGap, relLongest []time.Duration
	var badReloads []string
	for i, r := range rl {
		if r.err != nil {
			badReloads = append(badReloads, fmt.Sprintf("reload %d: %v", i+1, r.err))
			continue
		}
		supDur = append(supDur, r.res.Duration)
		wall = append(wall, r.w.to-r.w.from)
		relGap = append(relGap, measure(all, okEnds, r.w).maxGap)
		relLongest = append(relLongest, maxLatency(all, r.w))
	}
	slices.Sort(supDur)
	slices.Sort(relGap)

	fmt.Printf("| reload under load (%d clients publishing, %d reloads %v apart) | p50 | p99 | max |\n", *clients, len(rl), *pause)
	fmt.Println("|---|---|---|---|")
	row3("reload duration, as the supervisor reports it (request → new generation serving)", supDur)
	row3("reload duration, wall time of POST /v1/reload?wait=1", wall)
	if len(ph) > 0 {
		pick := func(f func(phases) time.Duration) []time.Duration {
			var xs []time.Duration
			for _, p := range ph {
				xs = append(xs, f(p))
			}
			return xs
		}
		row3("· new worker to standby: fork/exec, Go runtime init, handshake, fds (the old one serves)", pick(func(p phases) time.Duration { return p.spawn }))
		row3("· old worker drains and yields: in-flight publishes, floor saved, store closed (API paused)", pick(func(p phases) time.Duration { return p.drain }))
		row3("· new worker takes over: store opened, board, listeners, Ready (API paused)", pick(func(p phases) time.Duration { return p.takeOver }))
		row3("· then the old worker exits (in the wall time, not in the supervisor's duration)", pick(func(p phases) time.Duration { return p.oldExit }))
	}
	row3("API paused per reload (longest gap between two successful publishes)", relGap)
	row3("longest single publish per reload", relLongest)
	fmt.Printf("| failed reloads | %d | | |\n", len(badReloads))

	fmt.Println()
	fmt.Printf("| API under load (%d clients, %s; %v timeout per request) | publishes/s | p50 | p99 | max | longest gap | failed requests (keep-alive / new-connection clients) |\n",
		*clients, connsName(), *reqTimeout)
	fmt.Println("|---|---|---|---|---|---|---|")
	fmt.Printf("| baseline, no reload (%.1f s) | %.0f | %s | %s | %s | %s | %d (%d / %d) |\n", (base.to - base.from).Seconds(), bs.perSec,
		ms(benchfmt.Percentile(bs.lat, 50)), ms(benchfmt.Percentile(bs.lat, 99)), ms(last(bs.lat)), ms(bs.maxGap), bs.nFailed, bs.byMode[1], bs.byMode[0])
	fmt.Printf("| during the reloads (%.1f s) | %.0f | %s | %s | %s | %s | %d (%d / %d) |\n", (phase.to - phase.from).Seconds(), ps.perSec,
		ms(benchfmt.Percentile(ps.lat, 50)), ms(benchfmt.Percentile(ps.lat, 99)), ms(last(ps.lat)), ms(ps.maxGap), ps.nFailed, ps.byMode[1], ps.byMode[0])
	fmt.Printf("| during / baseline | %.2f | %.2f | %.2f | %.2f | %.2f | |\n", ps.perSec/bs.perSec,
		ratio(benchfmt.Percentile(ps.lat, 50), benchfmt.Percentile(bs.lat, 50)), ratio(benchfmt.Percentile(ps.lat, 99), benchfmt.Percentile(bs.lat, 99)), ratio(last(ps.lat), last(bs.lat)), ratio(ps.maxGap, bs.maxGap))

	fmt.Println()
	fmt.Printf("| cold restart under load (clients retry %v after a failure) | SIGTERM → exit | exec → serving (READY=1) | SIGTERM → first publish by the new daemon | API gone (longest gap) | failed requests | refused / socket missing / reset / other |\n", *retryAfter)
	fmt.Println("|---|---|---|---|---|---|---|")
	var coldGap, coldBack []time.Duration
	var coldFailed int
	var restartWindows []window
	for i, r := range rs {
		first, ok := firstSuccessAfter(all, r.exited)
		if !ok {
			return fmt.Errorf("restart %d: no publish succeeded after the daemon came back", i+1)
		}
		w := window{from: r.sigterm, to: first}
		restartWindows = append(restartWindows, w)
		s := measure(all, okEnds, w)
		coldGap = append(coldGap, s.maxGap)
		coldBack = append(coldBack, first-r.sigterm)
		coldFailed += s.nFailed
		other := s.nFailed - s.failed[refused] - s.failed[missing] - s.failed[reset]
		fmt.Printf("| restart %d | %s | %s | %s | %s | %d | %d / %d / %d / %d |\n", i+1, ms(r.exited-r.sigterm), ms(r.serving-r.started),
			ms(first-r.sigterm), ms(s.maxGap), s.nFailed, s.failed[refused], s.failed[missing], s.failed[reset], other)
	}
	slices.Sort(coldGap)
	slices.Sort(coldBack)

	fmt.Println()
	fmt.Println("| reload vs cold restart, same daemon, same load | reload | cold restart | reload / cold |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| API unavailable per event (longest gap between successful publishes), p50 | %s | %s | %.2f |\n",
		ms(benchfmt.Percentile(relGap, 50)), ms(benchfmt.Percentile(coldGap, 50)), ratio(benchfmt.Percentile(relGap, 50), benchfmt.Percentile(coldGap, 50)))
	fmt.Printf("| API unavailable per event, max | %s | %s | %.2f |\n", ms(last(relGap)), ms(last(coldGap)), ratio(last(relGap), last(coldGap)))
	fmt.Printf("| until the new worker serves, p50 (reload: the supervisor's duration; cold: SIGTERM → first publish) | %s | %s | %.2f |\n",
		ms(benchfmt.Percentile(supDur, 50)), ms(benchfmt.Percentile(coldBack, 50)), ratio(benchfmt.Percentile(supDur, 50), benchfmt.Percentile(coldBack, 50)))
	relMean, coldMean := float64(ps.nFailed)/float64(len(rl)), float64(coldFailed)/float64(len(rs))
	fmt.Printf("| failed requests per event (total) | %.2f (%d) | %.2f (%d) | %.3f |\n", relMean, ps.nFailed, coldMean, coldFailed, relMean/coldMean)

	fmt.Println()
	fmt.Println("What bounds a reload: starting a process. The supervisor's duration is the new worker's fork/exec, Go " +
		"runtime init, handshake and fd hand-off (the old worker still serves meanwhile), then the old worker's drain " +
		"(its in-flight publishes, about one group commit, and closing the store) and the new worker's take-over " +
		"(bbolt open, board, listeners); only these last two pause the API, and connections arriving meanwhile wait " +
		"in the listen backlog. A cold restart pays the supervisor's start and the first worker's start on top, and " +
		"removes the sockets in between, so clients are refused or find no socket.")
	if len(ph) > 0 {
		med := func(f func(phases) time.Duration) string {
			var xs []time.Duration
			for _, p := range ph {
				xs = append(xs, f(p))
			}
			slices.Sort(xs)
			return ms(benchfmt.Percentile(xs, 50))
		}
		fmt.Printf("In this run (p50): to standby %s, drain %s, take-over %s; the API paused %s per reload, %s per cold restart.\n",
			med(func(p phases) time.Duration { return p.spawn }), med(func(p phases) time.Duration { return p.drain }),
			med(func(p phases) time.Duration { return p.takeOver }), ms(benchfmt.Percentile(relGap, 50)), ms(benchfmt.Percentile(coldGap, 50)))
	}

	printFailures(all, []namedWindow{{"baseline", []window{base}}, {"reloads", []window{phase}}, {"cold restarts", restartWindows}})
	if bs.nFailed > 0 || ps.nFailed > 0 || len(badReloads) > 0 {
		fmt.Println()
		for _, r := range badReloads {
			fmt.Println(r)
		}
		return fmt.Errorf("%d failed requests during the reloads (%d with keep-alive, %d on new connections), %d in the baseline, %d failed reloads: a reload must not fail a request",
			ps.nFailed, ps.byMode[1], ps.byMode[0], bs.nFailed, len(badReloads))
	}
	return nil
}

type namedWindow struct {
	name string
	ws   []window
}

// printFailures counts the failed requests of each phase by client kind and error.
func printFailures(all []sample, phases []namedWindow) {
	type key struct{ phase, client, err string }
	n := map[key]int{}
	var keys []key
	for _, p := range phases {
		for _, w := range p.ws {
			i := sort.Search(len(all), func(i int) bool { return all[i].end >= w.from })
			for ; i < len(all) && all[i].end <= w.to; i++ {
				if s := all[i]; s.kind != okay {
					k := key{p.name, "new connection", kindNames[s.kind] + ": " + s.msg}
					if s.keepAlive {
						k.client = "keep-alive"
					}
					if n[k] == 0 {
						keys = append(keys, k)
					}
					n[k]++
				}
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("| failed requests | client | error | count |")
	fmt.Println("|---|---|---|---|")
	for _, k := range keys {
		fmt.Printf("| %s | %s | %s | %d |\n", k.phase, k.client, strings.ReplaceAll(k.err, "|", `\|`), n[k])
	}
}

func connsName() string {
	switch *conns {
	case "keepalive":
		return "each keeping its connection"
	case "new":
		return "a new connection per request"
	}
	return "half keeping their connection, half a new one per request"
}

// maxLatency is the longest successful request that overlapped w.
func maxLatency(all []sample, w window) time.Duration {
	var m time.Duration
	i := sort.Search(len(all), func(i int) bool { return all[i].end >= w.from })
	for ; i < len(all) && all[i].end <= w.to+*reqTimeout+time.Second; i++ { // none lasts longer than the timeout
		if s := all[i]; s.kind == okay && s.start <= w.to {
			m = max(m, s.end-s.start)
		}
	}
	return m
}

// firstSuccessAfter is the end of the first successful request that started after t.
func firstSuccessAfter(all []sample, t time.Duration) (time.Duration, bool) {
	i := sort.Search(len(all), func(i int) bool { return all[i].end >= t })
	for ; i < len(all); i++ {
		if all[i].kind == okay && all[i].start >= t {
			return all[i].end, true
		}
	}
	return 0, false
}

func row3(name string, xs []time.Duration) {
	xs = slices.Sorted(slices.Values(xs))
	fmt.Printf("| %s | %s | %s | %s |\n", name, ms(benchfmt.Percentile(xs, 50)), ms(benchfmt.Percentile(xs, 99)), ms(last(xs)))
}

func last(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
