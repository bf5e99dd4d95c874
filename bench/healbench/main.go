// Command healbench measures how long readers go without the whole announcement set after the region file is
// damaged under a running daemon: from the damage to a reader that opens the path holding the whole set at a
// higher version. `make bench` runs it.
//
// It runs two real daemons (bin/announcementd, copied to a temp dir) side by side, each with its own region in
// /dev/shm and its own state and runtime dirs: one with the region watch (the default: inotify sees a file
// operation on the region and the worker repairs it at once, worker/watch.go) and one with --region-watch=false,
// the periodic check every 250 ms alone (the baseline, in the same run). Damages of each kind alternate between
// the two while a Go reader polls each path every 100 µs:
//
//   - rm, rename over (a file renamed over the path), truncate (to 0), grow (to 8 MiB): file operations, which the
//     watch sees;
//   - overwrite with write(2) (the current slot's records): the file's IN_MODIFY, which the watch sees too;
//   - overwrite through a mapping (the same bytes, stored through a shared mapping): no file event reports it, so
//     the periodic check finds it in both daemons.
//
// Beside each figure, the repair's own cost: the worker's Heal (check, repair, republish) as its log line says
// ("took"). After a pause long enough for the periodic check's phase to be random (0–250 ms) the next damage
// follows. Then a storm of events of other files in /dev/shm (created, renamed, removed) measures what the watch
// costs the worker when it has nothing to do: the workers' CPU over the storm, watch against periodic, and the
// repairs it caused (none is right).
//
// -md and -raw write the report into docs/BENCHMARKS.md (its "heal" section) and the samples in benchstat's format. Everything it starts is stopped and everything it creates removed.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
)

var (
	daemonBin  = flag.String("daemon", "bin/announcementd", "the announcementd binary to run (copied to a temp dir first)")
	runs       = flag.Int("runs", 60, "damages of each kind to the daemon without the watch (each waits for the periodic check)")
	watchRuns  = flag.Int("watch-runs", 300, "damages of each kind the watch sees to the daemon with the watch (a multiple of -runs)")
	records    = flag.Int("records", 50, "announcements in the set")
	stormFiles = flag.Int("storm", 20000, "files of the event storm in /dev/shm (created, renamed, removed: 4 events each)")
	mdPath     = flag.String("md", "", "also write the report as the \"heal\" section of this markdown file (docs/BENCHMARKS.md)")
	rawPath    = flag.String("raw", "", "also write the samples in benchstat's format to this file (docs/bench/heal.txt)")
	only       = flag.String("kinds", "", "measure only these damage kinds, comma-separated (rm, rename, truncate, grow, write, mmap); default all")
	logDir     = flag.String("logs", "", "keep the daemons' logs in this directory (periodic.log, watch.log)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "healbench:", err)
		os.Exit(1)
	}
}

// A damage kind: what it does to the file at path, and whether a file event reports it.
type kind struct {
	name, key string
	event     bool
	damage    func(path string) error
}

var kinds = []kind{
	{"rm", "rm", true, os.Remove},
	{"rename over", "rename", true, func(p string) error {
		if err := os.WriteFile(p+".junk", []byte("junk"), 0o644); err != nil {
			return err
		}
		return os.Rename(p+".junk", p)
	}},
	{"truncate to 0", "truncate", true, func(p string) error { return os.Truncate(p, 0) }},
	{"grow to 8 MiB", "grow", true, func(p string) error { return os.Truncate(p, 8<<20) }},
	{"overwrite inside, write(2)", "write", true, func(p string) error { return overwrite(p, false) }},
	{"overwrite inside, through a mapping", "mmap", false, func(p string) error { return overwrite(p, true) }},
}

// mode is one daemon: with the watch or without.
type mode struct {
	name, key string
	d         *daemon
	took      map[string][]time.Duration // damage → readers hold the set again, by kind key
	samples   []string                   // -logs: each damage, when and how long
	heal      map[string][]time.Duration // the repair's own cost from the log, by kind key
}

func run() error {
	dir, err := os.MkdirTemp("", "healbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "announcementd")
	if b, err := os.ReadFile(*daemonBin); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	} else if err := os.WriteFile(bin, b, 0o755); err != nil {
		return err
	}
	if *runs <= 0 || *watchRuns < *runs || *watchRuns%*runs != 0 {
		return fmt.Errorf("-watch-runs %d must be a multiple of -runs %d", *watchRuns, *runs)
	}
	began := time.Now()
	load0 := benchfmt.LoadAverage()
	periodic := &mode{name: "periodic check only (`--region-watch=false`)", key: "periodic"}
	watch := &mode{name: "watch (the default)", key: "watch"}
	for _, m := range []*mode{periodic, watch} {
		args := []string{}
		if m == periodic {
			args = append(args, "--region-watch=false")
		}
		d, err := startDaemon(bin, filepath.Join(dir, m.key), fmt.Sprintf("/dev/shm/healbench_%d_%s", os.Getpid(), m.key), args...)
		if d != nil {
			defer d.stop()
		}
		if err != nil {
			return err
		}
		m.d = d
		m.took, m.heal = map[string][]time.Duration{}, map[string][]time.Duration{}
		d.foundBy = map[string]map[string]int{}
	}

	if *only != "" {
		want := strings.Split(*only, ",")
		kinds = slices.DeleteFunc(kinds, func(k kind) bool { return !slices.Contains(want, k.key) })
		if len(kinds) == 0 {
			return fmt.Errorf("-kinds %q: none known", *only)
		}
	}
	host0, _ := procfs.ReadHost()
	self0, wall0 := procfs.SelfCPU(), time.Now()
	for _, k := range kinds {
		per := *watchRuns / *runs
		if !k.event {
			per = 1 // the watch does not see it: both wait for the periodic check
		}
		// A damage that waits for a periodic check falls at a random point of its cycle: each daemon's ticker has
		// its own phase, so the pause before it is random (a constant one would measure the phase between them).
		cycle := func() { time.Sleep(rand.N(250 * time.Millisecond)) }
		for i := range *runs * per {
			if k.event {
				time.Sleep(rand.N(2 * time.Millisecond))
			} else {
				cycle()
			}
			if err := watch.measure(k); err != nil {
				return err
			}
			if i%per != per-1 {
				continue
			}
			cycle()
			if err := periodic.measure(k); err != nil {
				return err
			}
		}
	}
	host1, _ := procfs.ReadHost()
	hostBusy = host1.BusySince(host0)
	selfBusy = float64(procfs.SelfCPU()-self0) / float64(time.Since(wall0))
	for _, m := range []*mode{periodic, watch} {
		m.healCosts()
	}
	st, err := storm(periodic.d, watch.d)
	if err != nil {
		return err
	}
	if *logDir != "" {
		for _, m := range []*mode{periodic, watch} {
			if err := os.WriteFile(filepath.Join(*logDir, m.key+".log"), []byte(m.d.logs.String()), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(*logDir, m.key+".samples"), []byte(strings.Join(m.samples, "\n")+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	return report(periodic, watch, st, began, load0)
}

// hostBusy is how many of the host's CPUs were busy, on average, while the damages ran (everything: this command,
// the daemons, and whatever else ran).
var hostBusy, selfBusy float64

// measure damages the region once and waits until a reader holds the whole set at a higher version.
func (m *mode) measure(k kind) error {
	before, err := snapshot(m.d.shm)
	if err != nil {
		return fmt.Errorf("%s, before %s: %w", m.key, k.name, err)
	}
	m.d.marks = append(m.d.marks, m.d.logs.Len())
	m.d.expect = append(m.d.expect, k.key)
	start := time.Now()
	if err := k.damage(m.d.shm); err != nil {
		return fmt.Errorf("%s: %w", k.name, err)
	}
	for {
		if s, err := snapshot(m.d.shm); err == nil && s.Version > before.Version && len(s.Records) == *records {
			m.took[k.key] = append(m.took[k.key], time.Since(start))
			m.samples = append(m.samples, fmt.Sprintf("%s %.6f %d", k.key, float64(start.UnixNano())/1e9, time.Since(start).Microseconds()))
			// The repair's log line may come after the reader saw the repair: wait for it (at most a second), so
			// that it is counted with this damage, not the next.
			mark := m.d.marks[len(m.d.marks)-1]
			for wait := time.Now(); time.Since(wait) < time.Second; time.Sleep(200 * time.Microsecond) {
				if l := m.d.logs.From(mark); strings.Contains(l, `"repaired the region"`) || strings.Contains(l, "faulted under a write") {
					break
				}
			}
			return nil
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("%s, %s: not repaired within 10 s\n%s", m.key, k.name, m.d.logs.String())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// healCosts reads what the daemon logged for each damage (its log from the damage to the next one): the repair,
// its own cost and what found it. A size damage the heartbeat's write hits first is repaired by the writer's fault
// recovery (its own log line, no cost logged).
func (m *mode) healCosts() {
	logs := m.d.logs.String()
	for i, k := range m.d.expect {
		end := len(logs)
		if i+1 < len(m.d.marks) {
			end = m.d.marks[i+1]
		}
		var heal time.Duration = -1
		by, n := "nothing logged", 0
		for _, line := range strings.Split(logs[m.d.marks[i]:end], "\n") {
			var l struct {
				Msg     string  `json:"msg"`
				Took    float64 `json:"took"`
				FoundBy string  `json:"found_by"`
			}
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			switch {
			case l.Msg == "repaired the region":
				n++
				if n == 1 {
					heal, by = time.Duration(l.Took*1e9), l.FoundBy
				}
			case strings.HasPrefix(l.Msg, "the region faulted under a write"):
				n++
				if n == 1 {
					by = "a write's fault"
				}
			}
		}
		m.heal[k] = append(m.heal[k], heal)
		if m.d.foundBy[k] == nil {
			m.d.foundBy[k] = map[string]int{}
		}
		m.d.foundBy[k][by]++
		if n > 1 {
			m.d.extra += n - 1
		}
	}
}

type stormResult struct {
	events           int
	wall             time.Duration
	cpuPeriodic      time.Duration
	cpuWatch         time.Duration
	repairsPeriodic  uint64
	repairsWatch     uint64
	logLinesWatch    int
	logLinesPeriodic int
}

// storm creates, renames and removes files in /dev/shm and measures the workers' CPU over it.
func storm(periodic, watch *daemon) (stormResult, error) {
	r := stormResult{events: 4 * *stormFiles}
	var cpu0 [2]time.Duration
	var rep0 [2]uint64
	var lines0 [2]int
	for i, d := range []*daemon{periodic, watch} {
		s, err := d.status()
		if err != nil {
			return r, err
		}
		cpu0[i], rep0[i], lines0[i] = cpuOf(s.Worker.PID), s.repairs(), strings.Count(d.logs.String(), "\n")
	}
	start := time.Now()
	prefix := fmt.Sprintf("/dev/shm/healbench_storm_%d_", os.Getpid())
	for i := range *stormFiles {
		p := prefix + strconv.Itoa(i)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			return r, err
		}
		if err := os.Rename(p, p+".moved"); err != nil {
			return r, err
		}
		if err := os.Remove(p + ".moved"); err != nil {
			return r, err
		}
	}
	r.wall = time.Since(start)
	time.Sleep(300 * time.Millisecond) // the watch's queue drained; and one periodic check in each
	for i, d := range []*daemon{periodic, watch} {
		s, err := d.status()
		if err != nil {
			return r, err
		}
		cpu, rep, lines := cpuOf(s.Worker.PID)-cpu0[i], s.repairs()-rep0[i], strings.Count(d.logs.String(), "\n")-lines0[i]
		if i == 0 {
			r.cpuPeriodic, r.repairsPeriodic, r.logLinesPeriodic = cpu, rep, lines
		} else {
			r.cpuWatch, r.repairsWatch, r.logLinesWatch = cpu, rep, lines
		}
	}
	return r, nil
}

func report(periodic, watch *mode, st stormResult, began time.Time, load0 string) error {
	var md, raw strings.Builder
	cmdline := "go run ./bench/healbench -daemon " + *daemonBin
	if *mdPath != "" {
		cmdline += " -md " + *mdPath
	}
	if *rawPath != "" {
		cmdline += " -raw " + *rawPath
	}
	fmt.Fprintf(&md, "## Damage to the board → readers hold the set again\n\n%s. Reproduce with `%s`; this run: %s, %s. Load average before %s, after %s; "+
		"the host's CPUs busy while the damages ran: %.2f of %d, of which this command (its reader polls every 100 µs) %.2f, the rest the daemons and any other work.\n\n",
		benchfmt.Machine(), cmdline, began.UTC().Format("2006-01-02 15:04 UTC"), time.Since(began).Round(time.Second), load0, benchfmt.LoadAverage(), hostBusy, runtime.NumCPU(), selfBusy)
	fmt.Fprintf(&md, "Two daemons side by side in one run, damages alternating between them (%d records, 4 MiB board, each daemon's own region in /dev/shm): "+
		"one with the region watch (inotify: the board's file for IN_MODIFY, IN_ATTRIB, IN_MOVE_SELF, IN_DELETE_SELF, and its directory for IN_MOVED_TO of its name; worker/watch.go), "+
		"the baseline with `--region-watch=false`, the periodic check every 250 ms alone. A damage's time runs from the damage to a reader (polling the path every 100 µs: "+
		"open, map, verified snapshot) holding the whole set at a higher version. \"Repair\" is the worker's own cost (Heal: check, repair, republish, then the lock of a remapped file's pages; its log line's `took`). "+
		"Between damages a pause puts the next one at a random point of the periodic check's cycle. p99 is the nearest rank: of %d samples (watch) it is the %dth, of %d (periodic) the largest.\n\n",
		*records, *watchRuns, (*watchRuns*99+99)/100, *runs)
	md.WriteString("| damage | periodic only: p50 / p99 / max | watch: p50 / p99 / max | p99, periodic / watch | watch p99 ≤ 10 ms | repair itself, p50 / p99 (watch) | found by (watch) |\n|---|---|---|---|---|---|---|\n")
	raw.WriteString(benchfmt.RawHeader("bench/healbench", cmdline, began, ""))
	for _, k := range kinds {
		p, w := periodic.took[k.key], watch.took[k.key]
		slices.Sort(p)
		slices.Sort(w)
		var h []time.Duration
		for _, x := range watch.heal[k.key] {
			if x >= 0 {
				h = append(h, x)
			}
		}
		slices.Sort(h)
		target := "yes"
		if pct(w, 99) > 10*time.Millisecond {
			target = "**no**"
		}
		if !k.event {
			target = "— (no file event: the periodic check)"
		}
		var by []string
		for f, n := range watch.d.foundBy[k.key] {
			by = append(by, fmt.Sprintf("%s %d", f, n))
		}
		slices.Sort(by)
		fmt.Fprintf(&md, "| %s | %s / %s / %s | %s / %s / %s | %s | %s | %s / %s | %s |\n", k.name,
			ms(pct(p, 50)), ms(pct(p, 99)), ms(p[len(p)-1]), ms(pct(w, 50)), ms(pct(w, 99)), ms(w[len(w)-1]),
			benchfmt.Ratio(float64(pct(p, 99)), float64(pct(w, 99))), target, us(pct(h, 50)), us(pct(h, 99)), strings.Join(by, ", "))
		for _, m := range []*mode{periodic, watch} {
			for i, d := range m.took[k.key] {
				if h := m.heal[k.key][i]; h >= 0 {
					fmt.Fprintf(&raw, "BenchmarkDamageToSet/%s/%s 1 %d ns/op %d repair-ns\n", k.key, m.key, d.Nanoseconds(), h.Nanoseconds())
				} else {
					fmt.Fprintf(&raw, "BenchmarkDamageToSet/%s/%s 1 %d ns/op\n", k.key, m.key, d.Nanoseconds())
				}
			}
		}
	}
	fmt.Fprintf(&md, "\nRepairs beyond one per damage (a heal more than needed): watch %d, periodic %d. In the periodic-only daemon a truncation is sometimes repaired first by the writer's fault recovery (the heartbeat's store faults), before the check.\n",
		watch.d.extra, periodic.d.extra)
	perK := func(d time.Duration) string {
		return fmt.Sprintf("%.1f ms (%.3f ms per 1,000 events)", float64(d)/1e6, float64(d)/1e6/float64(st.events)*1000)
	}
	fmt.Fprintf(&md, "\nThe storm: %d files created, renamed and removed in /dev/shm (%d events in the directory, %s, %.0f events/s; the watch is given the renames' IN_MOVED_TO, a quarter of them), while both daemons ran. "+
		"Worker CPU over it and 300 ms after (schedstat): watch %s, periodic %s; the watch's own cost is the difference, %s. "+
		"Repairs during the storm: watch %d, periodic %d (0 is right: other names are dropped in the read loop); log lines: watch %d, periodic %d.\n",
		*stormFiles, st.events, st.wall.Round(time.Millisecond), float64(st.events)/st.wall.Seconds(),
		perK(st.cpuWatch), perK(st.cpuPeriodic), perK(st.cpuWatch-st.cpuPeriodic), st.repairsWatch, st.repairsPeriodic, st.logLinesWatch, st.logLinesPeriodic)
	fmt.Fprintf(&raw, "# host CPUs busy during the damages: %.2f of %d\n", hostBusy, runtime.NumCPU())
	fmt.Fprintf(&raw, "BenchmarkEventStorm/watch 1 %d worker-cpu-ns %d events %d repairs\n", st.cpuWatch.Nanoseconds(), st.events, st.repairsWatch)
	fmt.Fprintf(&raw, "BenchmarkEventStorm/periodic 1 %d worker-cpu-ns %d events %d repairs\n", st.cpuPeriodic.Nanoseconds(), st.events, st.repairsPeriodic)
	md.WriteString("\nWhat bounds each: without the watch, the wait for the next periodic check (on average half of its 250 ms); with it, " +
		"the wake-up of the worker's watch goroutine and the repair (a recreation lays out, maps and locks a new 4 MiB file; a size repair " +
		"restores and republishes in place), then the reader's next poll. Bytes overwritten through a mapping raise no event: the periodic check finds them in both.\n")
	fmt.Print(md.String())
	if err := benchfmt.WriteRaw(*rawPath, raw.String()); err != nil {
		return err
	}
	if *mdPath != "" {
		section := md.String()
		if l := benchfmt.Link(*mdPath, *rawPath); l != "" {
			section += "\nRaw samples: " + l + ".\n"
		}
		if err := benchfmt.WriteSection(*mdPath, "heal", section); err != nil {
			return err
		}
	}
	return nil
}

// daemon is one running announcementd.
type daemon struct {
	cmd     *exec.Cmd
	shm     string
	runtime string
	logs    *proctest.Buffer
	hc      *http.Client
	expect  []string                  // the damage kinds, in order: each should have one repair
	marks   []int                     // the log's length just before each damage
	foundBy map[string]map[string]int // kind → what found it → damages
	extra   int                       // repairs beyond one per damage
}

func startDaemon(bin, dir, shm string, args ...string) (*daemon, error) {
	os.Remove(shm)
	d := &daemon{shm: shm, runtime: filepath.Join(dir, "run"), logs: &proctest.Buffer{}}
	d.cmd = exec.Command(bin, append([]string{"--shm", shm, "--state-dir", filepath.Join(dir, "state"), "--runtime-dir", d.runtime, "--log-format", "json"}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(d.runtime, "announcementd.pid")); err == nil && string(b) == strconv.Itoa(d.cmd.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("the daemon did not start:\n%s", d.logs.String())
		}
	}
	d.hc = proctest.UnixClient(filepath.Join(d.runtime, "api.sock"), 0, true)
	for id := 1; id <= *records; id++ {
		body := fmt.Sprintf(`{"content":"announcement %d of the healbench set"}`, id)
		req, _ := http.NewRequest("PUT", fmt.Sprintf("http://a/v1/announcements/%d", id), strings.NewReader(body))
		resp, err := d.hc.Do(req)
		if err != nil {
			return d, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return d, fmt.Errorf("publish %d: %s", id, resp.Status)
		}
	}
	return d, nil
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	os.Remove(d.shm)
}

type status struct {
	Worker struct {
		PID int `json:"pid"`
	} `json:"worker"`
	Guard struct {
		Repairs map[string]uint64 `json:"repairs"`
	} `json:"guard"`
}

func (s status) repairs() uint64 {
	var n uint64
	for _, v := range s.Guard.Repairs {
		n += v
	}
	return n
}

func (d *daemon) status() (status, error) {
	var s status
	resp, err := d.hc.Get("http://a/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("status: %w", err)
	}
	if s.Worker.PID == 0 {
		return s, fmt.Errorf("status names no worker")
	}
	return s, nil
}

// cpuOf is the CPU time of a process's threads so far (schedstat: ns on a CPU), 0 when it is gone.
func cpuOf(pid int) time.Duration {
	c, _ := procfs.ReadCPU(pid)
	return c.Sched
}

func snapshot(path string) (*board.Snapshot, error) {
	b, err := reader.Open(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.Snapshot()
}

// overwrite puts garbage over records of the current slot, with write(2) or through a shared mapping.
func overwrite(path string, mapped bool) error {
	s, err := snapshot(path)
	if err != nil {
		return err
	}
	off := int64(s.Header.SlotOffset(s.Version&1) + board.SlotHeaderSize + 40)
	garbage := []byte("garbage")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if !mapped {
		_, err = f.WriteAt(garbage, off)
		return err
	}
	page := off &^ int64(os.Getpagesize()-1)
	m, err := syscall.Mmap(int(f.Fd()), page, os.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(m[off-page:], garbage)
	return syscall.Munmap(m)
}

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
