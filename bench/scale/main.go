// Command scale measures what many polling clients on one host cost the server, with the board (shared memory)
// and with HTTP polling, and prints markdown tables; `make scale` runs it (and `make bench`).
//
// Shared memory: it starts the built daemon, bin/announcementd (a copy of it, on a region of its own in /dev/shm
// and state and runtime dirs in a temp dir; a proctest.Daemon, ready on READY=1), and publishes through the
// daemon's API (PUT /v1/announcements/1) at a stated rate into a set of a stated size. Reader processes in C
// (bench/scale/creader, compiled here with gcc -O2 against clients/c/notice.h), Go (bench/scale/shmreader, with
// board/reader) and Python (bench/scale/pyreader, with clients/python/notice.py) simulate -clients clients between
// them: each process runs a timer wheel of many clients, each with its own phase, polling the version word every
// -interval and, when it changed, taking its own verified snapshot (mode own) or sharing one per process and
// version (mode shared, reported apart). Each client stamps CLOCK_MONOTONIC when it holds the new publish; the
// bench stamps each publish just before it sends it, in a table every client maps (a file in /dev/shm). For every
// workload it measures the daemon's CPU (utime+stime of the supervisor and its worker from /proc/PID/stat, and
// their threads' run time from schedstat) with no client and with -clients clients, the publish → observe latency
// over all (client, publish) pairs, the readers' CPU (getrusage of each reader process) and snapshots per second.
// A real-process point runs -real C processes of one client each, beside one C process simulating as many.
// Beside the clients of every board run (the runs with 0 clients included), -waiters Go processes each block in
// Reader.Wait on the board's futex and take a verified snapshot when woken: the futex waiter's latency, from the
// same runs.
//
// Memory: at the end of each run's publishing it reads the server's processes' memory (VmRSS and its anonymous,
// file and shmem parts from /proc/PID/status; Pss split the same way from /proc/PID/smaps_rollup) and the client
// processes'. A fresh daemon, no client, shows how the supervisor's and the worker's grow with the set (-mem-sets).
//
// Plots: with -raw it draws, beside the raw file, the publish → observe latency distributions (futex waiter,
// 50 ms pollers, HTTP pollers) and the server's and the host's CPU against the clients (board vs HTTP), from this
// run's data, with gonum.org/v1/plot.
//
// HTTP polling: a net/http server holding the set in memory (bench/scale/httppoll: GET /records and /version with
// ETag and 304 Not Modified), polled by the same client model over keep-alive connections, one per client. For the
// -search workloads it searches the largest client count whose p99 latency stays within -target at the same
// interval, and reports the server's CPU there: clients per server core, against the board's. It searches the same
// way how many board clients taking their own copies meet the target on this host.
//
// Every process, file and socket it starts is stopped and removed at the end, also on error or ^C. A figure it
// could not measure makes it exit 1 with the reason (after printing what it has); the tables go to stdout and,
// with -md and -raw, into a section of docs/BENCHMARKS.md and a benchstat-friendly docs/bench/scale.txt.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/internal/benchfmt"
)

var (
	daemonBin = flag.String("daemon", "bin/announcementd", "the announcementd binary to run (copied to a temp dir first)")
	clients   = flag.Int("clients", 250_000, "simulated clients of the board")
	interval  = flag.Duration("interval", 50*time.Millisecond, "each client's poll interval")
	sizes     = flag.String("sets", "20,1000", "set sizes (announcements), comma-separated")
	rates     = flag.String("rates", "1,10", "publish rates (per second), comma-separated")
	duration  = flag.Duration("duration", 5*time.Second, "how long each run publishes")
	tailD     = flag.Duration("tail", time.Second, "after the last publish, the rest of the daemon's CPU window")
	maxWait   = flag.Duration("maxwait", 60*time.Second, "how long clients may take to see the last publish before the run fails")
	cProcs    = flag.Int("c-procs", 8, "C reader processes")
	goProcs   = flag.Int("go-procs", 8, "Go reader processes")
	pyProcs   = flag.Int("py-procs", 2, "Python reader processes")
	pyClients = flag.Int("py-clients", 5000, "of -clients, how many are simulated in Python (every run, searches included, has that share; the rest is split evenly between C and Go)")
	realProcs = flag.Int("real", 2000, "the real-process point: C reader processes of one client each (0: none)")
	target    = flag.Duration("target", 60*time.Millisecond, "the latency target: p99 publish → observe at most this")
	searchWl  = flag.String("search", "20@1,1000@1", "workloads (SET@RATE, comma-separated) for which to search how many clients meet the target: HTTP, and the board with own copies (empty: none; the board's must be among -sets × -rates)")
	httpStart = flag.Int("http-start", 1000, "HTTP clients of the first trial (doubled until one fails, then bisected)")
	httpMax   = flag.Int("http-max", 24000, "most HTTP clients tried (one TCP connection each)")
	httpProcs = flag.Int("http-procs", 2, "HTTP client processes")
	mdPath    = flag.String("md", "", "write the tables into this markdown file, between <!-- scale:begin --> and <!-- scale:end -->")
	rawPath   = flag.String("raw", "", "write the raw results, benchstat-friendly, to this file, and the plots (SVG) beside it")
	waiters   = flag.Int("waiters", 8, "futex waiters (Go processes blocked in Reader.Wait, one each) beside the clients of every board run, 0 runs included")
	memSets   = flag.String("mem-sets", "10,1000,6000", "set sizes (announcements) at which a fresh daemon's memory is read, no client (empty: none)")
)

func main() {
	flag.Parse()
	benchfmt.Main("scale", "every process it started is stopped and its files removed", run)
}

func parseList(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// mix splits n clients over the reader processes: Python's share is -py-clients of -clients (so that every run
// has the same mix), the rest is split evenly between C and Go.
func mix(n int) []spec {
	py := 0
	if *pyProcs > 0 {
		py = min(n, int(float64(n)*float64(*pyClients)/float64(*clients)+0.5))
	}
	c := (n - py) / 2
	g := n - py - c
	var out []spec
	for _, part := range []struct {
		lang  string
		n, ps int
	}{{"c", c, *cProcs}, {"go", g, *goProcs}, {"python", py, *pyProcs}} {
		out = append(out, split(part.lang, part.n, part.ps)...)
	}
	return out
}

// split spreads n clients over procs processes of lang.
func split(lang string, n, procs int) []spec {
	procs = min(procs, n)
	var out []spec
	for i := range procs {
		k := n / procs
		if i < n%procs {
			k++
		}
		out = append(out, spec{lang: lang, clients: k})
	}
	return out
}

func run(ctx context.Context) (err error) {
	setSizes, err := parseList(*sizes)
	if err != nil {
		return fmt.Errorf("-sets: %w", err)
	}
	pubRates, err := parseList(*rates)
	if err != nil {
		return fmt.Errorf("-rates: %w", err)
	}
	var searchWls []workload
	for _, f := range strings.Split(*searchWl, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		s, r, ok := strings.Cut(f, "@")
		n, err1 := strconv.Atoi(s)
		v, err2 := strconv.ParseFloat(r, 64)
		if !ok || err1 != nil || err2 != nil || n < 1 || v <= 0 {
			return fmt.Errorf("-search: %q is not SET@RATE", f)
		}
		searchWls = append(searchWls, workload{n, v})
	}
	memSizes, err := parseList(*memSets)
	if err != nil {
		return fmt.Errorf("-mem-sets: %w", err)
	}
	if *clients < 1 || *cProcs+*goProcs < 1 || *interval <= 0 || *waiters < 0 {
		return errors.New("-clients, -interval and the reader processes must be positive")
	}
	rep := &report{started: time.Now(), loadBefore: benchfmt.LoadAverage(), args: os.Args[1:], memSizes: memSizes}
	b := &bench{clk: sim.NewClock(), t0: time.Now()}
	b.dir, err = os.MkdirTemp("", "scalebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	defer killAll()
	b.logf("building the reader programs (load average %s)", rep.loadBefore)
	if b.tools, err = build(ctx, b.dir); err != nil {
		return err
	}
	b.pubFn = filepath.Join("/dev/shm", fmt.Sprintf("scale_pub_%d_%d", os.Getpid(), time.Now().UnixNano()))
	if b.pub, err = sim.CreatePubTable(b.pubFn); err != nil {
		return err
	}
	defer os.Remove(b.pubFn)
	defer b.pub.Close()

	// Shared memory.
	d, err := startDaemon(ctx, *daemonBin, b.dir)
	if err != nil {
		return err
	}
	defer d.close()
	// Warm up (not measured): the daemon's first publishes and its start's after-effects would land in the first
	// window.
	b.logf("warming the daemon up")
	for range 20 {
		if err := d.publish(ctx, b.next()); err != nil {
			return err
		}
		if err := sleepUntil(ctx, time.Now().Add(100*time.Millisecond)); err != nil {
			return err
		}
	}
	for _, n := range setSizes {
		for _, r := range pubRates {
			w := workload{int(n), r}
			if err := d.setSize(ctx, w.set, b.next()); err != nil {
				return err
			}
			if err := sleepUntil(ctx, time.Now().Add(time.Second)); err != nil { // the daemon settles (not measured)
				return err
			}
			runs := []plan{{mode: "none"}, {mode: "shared", specs: mix(*clients)}, {mode: "own", specs: mix(*clients)}}
			if len(rep.shm) == 0 && *realProcs > 0 { // the real-process point, on the first workload
				runs = append(runs, plan{mode: "own", specs: split("c", *realProcs, *realProcs), real: true},
					plan{mode: "own", specs: split("c", *realProcs, 1), point: true})
			}
			for _, x := range runs {
				res, err := b.measure(ctx, d, w, x.mode, x.specs, "", *duration, *tailD, *maxWait, *interval, d.shm)
				if err != nil {
					return fmt.Errorf("shm, %v, %d clients (%s copies): %w", w, clientsOf(x.specs), x.mode, err)
				}
				res.real = x.real
				b.logf("shm %v: %s", w, res.summary(*interval, *target))
				if x.real || x.point {
					rep.realPoint = append(rep.realPoint, res)
				} else {
					rep.shm = append(rep.shm, res)
				}
			}
			if slices.Contains(searchWls, w) { // how many clients taking their own copies meet the target
				start := 1000
				if m, ok := marginal(rep.find(w, "own"), rep.find(w, "shared"), ""); ok && m > 0 {
					start = int(0.8 * float64(runtime.NumCPU()) * float64(*interval) / float64(time.Microsecond) / m)
				}
				s, err := b.search(ctx, "shm own", w, max(start, 20), *clients, func(n int) (*result, error) {
					return b.measure(ctx, d, w, "own", mix(n), "", *duration, *tailD, 5*time.Second, *interval, d.shm)
				})
				if err != nil {
					return fmt.Errorf("shm, own copies, %v: %w", w, err)
				}
				rep.own = append(rep.own, s)
			}
		}
	}
	d.close()

	// Memory against the set, on a fresh daemon.
	if len(memSizes) > 0 {
		if rep.memGrowth, err = b.memGrowth(ctx, memSizes); err != nil {
			return fmt.Errorf("memory against the set: %w", err)
		}
	}

	// HTTP polling.
	for _, w := range searchWls {
		s, err := b.search(ctx, "http", w, *httpStart, *httpMax, func(n int) (*result, error) { return b.httpTrial(ctx, w, n) })
		if err != nil {
			return fmt.Errorf("HTTP baseline, %v: %w", w, err)
		}
		rep.http = append(rep.http, s)
	}
	rep.loadAfter = benchfmt.LoadAverage()
	rep.elapsed = time.Since(rep.started)
	return rep.write()
}

// plan is one run of a workload: the clients' copy mode and processes.
type plan struct {
	mode  string // none (no client), own, shared
	specs []spec
	real  bool // one process per client
	point bool // the simulated side of the real-process point
}

func clientsOf(specs []spec) int {
	n := 0
	for _, s := range specs {
		n += s.clients
	}
	return n
}

// search is a capacity search for one workload: the largest client count whose run met the target.
type search struct {
	w      workload
	trials []*result
	pass   []bool
	why    []string // why a trial failed
	best   int      // index of the largest passing trial; -1: none
}

// search finds the largest number of clients whose run meets the target (verdict): from start, doubling until a
// trial fails (or halving until one passes), then bisecting until the step is within an eighth. name is for the log.
func (b *bench) search(ctx context.Context, name string, w workload, start, most int, trial func(n int) (*result, error)) (*search, error) {
	s := &search{w: w, best: -1}
	try := func(n int) (bool, error) {
		r, err := trial(n)
		if err != nil {
			return false, fmt.Errorf("%d clients: %w", n, err)
		}
		why := r.verdict(*interval, *target)
		s.trials, s.pass, s.why = append(s.trials, r), append(s.pass, why == ""), append(s.why, why)
		if why == "" && (s.best < 0 || n > s.trials[s.best].clients) {
			s.best = len(s.trials) - 1
		}
		b.logf("%s %v: %s", name, w, r.summary(*interval, *target))
		return why == "", nil
	}
	step := func(n int) int { // a round count
		unit := 10
		for unit*100 < n {
			unit *= 10
		}
		return max(unit, (n+unit/2)/unit*unit)
	}
	lo, hi := 0, 0 // the largest pass, the smallest fail
	n := min(step(start), most)
	for {
		ok, err := try(n)
		if err != nil {
			return nil, err
		}
		if ok {
			lo = n
			if hi != 0 || n >= most {
				break
			}
			n = min(step(2*n), most)
		} else {
			hi = n
			if lo != 0 || n <= 10 {
				break
			}
			n = step(n / 2)
			if n >= hi {
				break
			}
		}
	}
	for lo != 0 && hi != 0 && hi-lo > max(10, lo/8) {
		n := step((lo + hi) / 2)
		if n <= lo || n >= hi {
			break
		}
		ok, err := try(n)
		if err != nil {
			return nil, err
		}
		if ok {
			lo = n
		} else {
			hi = n
		}
	}
	if s.best < 0 {
		return s, fmt.Errorf("no trial met the target (p99 ≤ %v); the smallest: %s", *target, s.why[len(s.why)-1])
	}
	return s, nil
}

func (b *bench) httpTrial(ctx context.Context, w workload, n int) (*result, error) {
	srv, err := startHTTPServer(ctx, b.tools, w.set)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	if err := srv.publish(ctx, b.next()); err != nil { // announcement 1 shows the bench's current publish
		return nil, err
	}
	return b.measure(ctx, srv, w, "own", split("http", n, *httpProcs), srv.addr, *duration, *tailD, 5*time.Second, *interval, "")
}

// memGrowth reads the memory of a fresh daemon just started (empty set) and then at each set size (ascending:
// the Go heap seldom gives memory back, so a set that shrank would show the larger one's). At each size it
// publishes 10 times at 10/s (both slots of the board written, the publish path warm) and waits 2 s before reading.
// When the default region cannot hold the largest set it starts the daemon with a --shm-size that can, and says so.
func (b *bench) memGrowth(ctx context.Context, sets []float64) ([]memPoint, error) {
	sorted := slices.Clone(sets)
	slices.Sort(sorted)
	most := int(sorted[len(sorted)-1])
	dir := filepath.Join(b.dir, "fresh") // a store of its own: fresh means an empty set
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d, err := startDaemon(ctx, *daemonBin, dir)
	if err != nil {
		return nil, err
	}
	if d.st.Region.Capacity < most {
		// FORMAT.md: capacity = ⌊((region_size − 4096) / 2 − 64) / stride⌋; the stride from this region.
		stride := ((d.st.Region.Size-4096)/2 - 64) / uint64(d.st.Region.Capacity)
		size := (4096 + 2*(64+uint64(most)*stride) + 1<<20 - 1) / (1 << 20) << 20
		d.close()
		b.logf("memory: the default region holds %d announcements, fewer than %d: --shm-size %d", d.st.Region.Capacity, most, size)
		if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
			return nil, err
		}
		if d, err = startDaemon(ctx, *daemonBin, dir, "--shm-size", fmt.Sprint(size)); err != nil {
			return nil, err
		}
	}
	defer d.close()
	point := func(set int) (memPoint, error) {
		st, err := d.status(ctx)
		if err != nil {
			return memPoint{}, err
		}
		if st.Worker.PID != d.st.Worker.PID {
			return memPoint{}, fmt.Errorf("the worker changed (pid %d, then %d): the daemon restarted it", d.st.Worker.PID, st.Worker.PID)
		}
		if st.Announcements != set {
			return memPoint{}, fmt.Errorf("the daemon holds %d announcements, want %d", st.Announcements, set)
		}
		m, err := readServerMem(d.roles())
		return memPoint{set: set, capacity: st.Region.Capacity, size: st.Region.Size, locked: st.Guard.Locked, mem: m}, err
	}
	if err := sleepUntil(ctx, time.Now().Add(2*time.Second)); err != nil {
		return nil, err
	}
	var out []memPoint
	p, err := point(0)
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	for _, n := range sorted {
		if err := d.setSize(ctx, int(n), b.next()); err != nil {
			return nil, err
		}
		for range 10 {
			if err := sleepUntil(ctx, time.Now().Add(100*time.Millisecond)); err != nil {
				return nil, err
			}
			if err := d.publish(ctx, b.next()); err != nil {
				return nil, err
			}
		}
		if err := sleepUntil(ctx, time.Now().Add(2*time.Second)); err != nil {
			return nil, err
		}
		p, err := point(int(n))
		if err != nil {
			return nil, err
		}
		b.logf("memory at %d announcements: supervisor %s, worker %s", int(n), mib(p.mem[0].mem.VmRSS), mib(p.mem[1].mem.VmRSS))
		out = append(out, p)
	}
	return out, nil
}
