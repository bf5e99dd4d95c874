// Command profile takes a CPU profile of announcementd's worker under a publishing load, and renders it for a
// person: `make profile`.
//
// It starts bin/announcementd (a copy) with `--metrics 127.0.0.1:PORT --pprof`, fills the board with a set of
// announcements, and drives the publish path: concurrent clients on the API's Unix socket, each replacing
// announcements with PUT as fast as they are acknowledged (durable: store commit, then the board). Board readers
// cost the daemon nothing (they map the board; the scale test measures that), so publishes are the load. Then, under
// the same load, one after the other:
//
//  1. a window without any profiler: publishes per second and the worker's CPU from /proc, the baseline (taken
//     again after the profilers, so that drift in the load shows);
//  2. the pprof window: GET /debug/pprof/profile?seconds=N from the worker, saved as cpu.pb.gz;
//  3. with -perf, the perf window: `perf record -g` of the worker's pid, as perf-top.txt and perf.folded.
//
// It writes, under -out (docs/bench/profile): cpu.pb.gz (the profile, for `go tool pprof`), flamegraph.html (pprof's
// own flame graph page, self-contained, to open in a browser), top.txt (the 20 heaviest functions, flat and
// cumulative), and with -md a section "profile" of docs/BENCHMARKS.md: each window's publishes per second and worker
// CPU beside the window without a profiler, and the head of the flat list. It fails when a window acknowledged no
// publish, a publish failed, the profile holds no samples or the worker changed during the run: no figure is made up.
// docs/PROFILING.md has the recipe by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/announcementd/announcementd/internal/benchfmt"
)

var (
	daemonBin = flag.String("daemon", "bin/announcementd", "the announcementd binary to profile (copied to a temp dir first)")
	goCmd     = flag.String("go", "go", "the go command (for go tool pprof)")
	duration  = flag.Duration("duration", 20*time.Second, "how long the CPU profile samples (and perf records, with -perf)")
	baseline  = flag.Duration("baseline", 5*time.Second, "the window without a profiler, measured before the profile under the same load")
	warmup    = flag.Duration("warmup", 2*time.Second, "load before the first window")
	clients   = flag.Int("clients", 64, "concurrent publishing clients (each a keep-alive connection to the API socket)")
	set       = flag.Int("set", 1000, "announcements on the board; the load replaces them in turn")
	outDir    = flag.String("out", "docs/bench/profile", "where cpu.pb.gz, flamegraph.html and top.txt (and the perf files) go")
	md        = flag.String("md", "", "write a summary into this markdown file, between <!-- profile:begin --> and <!-- profile:end -->")
	rawPath   = flag.String("raw", "", "also write each window's figures into this file, one benchstat line each (docs/bench/profile.txt)")
	perfOn    = flag.Bool("perf", false, "also record the worker with `perf record -g` (Debian's linux-perf) for -perf-duration, after the pprof window")
	perfBin   = flag.String("perf-bin", "perf", "the perf command")
	perfFreq  = flag.Int("perf-freq", 499, "perf's samples per second per CPU")
	perfFor   = flag.Duration("perf-duration", 10*time.Second, "how long perf records, with -perf")
)

func main() {
	flag.Parse()
	benchfmt.Main("profile", "the daemon is stopped and its files removed", run)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "profile: %s\n", fmt.Sprintf(format, args...))
}

func run(ctx context.Context) error {
	if *clients < 1 || *set < 1 || *duration < time.Second || *baseline <= 0 {
		return errors.New("-clients and -set must be at least 1, -duration at least 1s, -baseline positive")
	}
	if *perfOn {
		if why := perfAvailable(*perfBin); why != "" {
			return fmt.Errorf("-perf: %s", why)
		}
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	profile := filepath.Join(*outDir, "cpu.pb.gz")
	started := time.Now()

	d, err := startDaemon(ctx, *daemonBin, nil)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.fill(ctx, *set); err != nil {
		return err
	}
	pid, err := d.worker(ctx)
	if err != nil {
		return err
	}
	logf("worker pid %d; %d clients publishing over a set of %d announcements", pid, *clients, *set)

	l := startLoad(d, *clients, *set)
	defer l.stop()
	if err := sleep(ctx, *warmup); err != nil {
		return err
	}
	var windows []window
	w, err := measure("no profiler, before", l, pid, func() error { return sleep(ctx, *baseline) })
	if err != nil {
		return err
	}
	windows = append(windows, w)
	logf("%s: %.0f publishes/s, worker %.2f cores", w.name, w.perSecond(), w.cores())

	w, err = measure("pprof", l, pid, func() error { return d.cpuProfile(ctx, *duration, profile) })
	if err != nil {
		return err
	}
	windows = append(windows, w)
	logf("%s: %.0f publishes/s, worker %.2f cores; wrote %s", w.name, w.perSecond(), w.cores(), profile)

	var perfNote string
	if *perfOn {
		data := filepath.Join(d.dir, "perf.data")
		w, err = measure("perf record -g", l, pid, func() error { return perfRecord(ctx, *perfBin, pid, *perfFor, *perfFreq, data) })
		if err != nil {
			return err
		}
		windows = append(windows, w)
		logf("%s: %.0f publishes/s, worker %.2f cores", w.name, w.perSecond(), w.cores())
		// perf reads the symbols from the binary it sampled, the copy in d.dir: before the daemon is closed.
		if perfNote, err = perfOutputs(data); err != nil {
			return err
		}
	}

	// The same window without a profiler again: the load's drift over the run shows between the two.
	w, err = measure("no profiler, after", l, pid, func() error { return sleep(ctx, *baseline) })
	if err != nil {
		return err
	}
	windows = append(windows, w)
	logf("%s: %.0f publishes/s, worker %.2f cores", w.name, w.perSecond(), w.cores())

	l.stop()
	if err := l.err(); err != nil {
		return err
	}
	if after, err := d.worker(ctx); err != nil || after != pid {
		return fmt.Errorf("the worker changed during the run (pid %d, now %d, %v): the profile is not of one process", pid, after, err)
	}
	d.close()

	flat, err := top(*goCmd, profile, 20, false)
	if err != nil {
		return err
	}
	cum, err := top(*goCmd, profile, 20, true)
	if err != nil {
		return err
	}
	sampledCPU, _, err := sampled(flat)
	if err != nil {
		return err
	}
	head := header(windows)
	topFile := filepath.Join(*outDir, "top.txt")
	if err := os.WriteFile(topFile, []byte(head+"\n## by flat time (the function itself)\n\n"+flat+
		"\n## by cumulative time (the function and what it calls)\n\n"+cum), 0o644); err != nil {
		return err
	}
	flame := filepath.Join(*outDir, "flamegraph.html")
	if err := flameGraph(ctx, *goCmd, profile, flame); err != nil {
		return err
	}
	logf("wrote %s and %s", topFile, flame)

	summary := report(windows, sampledCPU, flat, perfNote)
	if l := benchfmt.Link(*md, *rawPath); l != "" {
		summary += "\nRaw figures of the windows: " + l + ".\n"
	}
	fmt.Print(summary)
	if err := benchfmt.WriteRaw(*rawPath, rawWindows(windows, sampledCPU, started)); err != nil {
		return err
	}
	if *md != "" {
		if err := benchfmt.WriteSection(*md, "profile", summary); err != nil {
			return err
		}
	}
	return nil
}

// cpuProfile saves the worker's CPU profile over d to path, from /debug/pprof/profile on the metrics address.
func (d *daemon) cpuProfile(ctx context.Context, dur time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", d.metrics, int(dur.Round(time.Second)/time.Second))
	b, err := fetch(ctx, &http.Client{Timeout: dur + 30*time.Second}, url)
	if err != nil {
		return err
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return fmt.Errorf("GET %s: not a gzipped profile (%d bytes)", url, len(b))
	}
	return os.WriteFile(path, b, 0o644)
}

// perfOutputs writes perf-top.txt and perf.folded under -out from data, and returns a line for the summary.
func perfOutputs(data string) (string, error) {
	rep, err := perfReport(*perfBin, data)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(*outDir, "perf-top.txt"), []byte(rep), 0o644); err != nil {
		return "", err
	}
	n, err := perfFold(*perfBin, data, filepath.Join(*outDir, "perf.folded"))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("perf: %d samples at %d Hz, kernel and Go frames: `perf-top.txt` (self time by symbol), "+
		"`perf.folded` (folded stacks for flamegraph.pl, speedscope or inferno).", n, *perfFreq), nil
}

// rawWindows is each window as a benchstat line (its name in the benchmark's, spaces as dashes), and the CPU the
// profile holds.
func rawWindows(ws []window, sampledCPU time.Duration, started time.Time) string {
	var b strings.Builder
	b.WriteString(benchfmt.RawHeader("bench/profile", "go run ./bench/profile "+strings.Join(os.Args[1:], " "), started,
		fmt.Sprintf("%d clients over a set of %d announcements", *clients, *set)))
	for _, w := range ws {
		name := strings.NewReplacer(" ", "-", ",", "").Replace(w.name)
		fmt.Fprintf(&b, "BenchmarkProfileWindow/%s 1 %.0f publishes/s %.4f worker-cores %.0f worker-cpu-ns/publish\n", name,
			w.perSecond(), w.cores(), float64(w.cpu.Nanoseconds())/float64(w.publishes))
	}
	fmt.Fprintf(&b, "BenchmarkProfileSampled 1 %d sampled-cpu-ns\n", sampledCPU.Nanoseconds())
	return b.String()
}

// header says what top.txt is: the command, the machine, the load and the windows.
func header(ws []window) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# CPU profile of announcementd's worker under a publishing load (bench/profile, %s)\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "# machine: %s\n", benchfmt.Machine())
	fmt.Fprintf(&b, "# load: %d clients, each PUT after PUT on the API's Unix socket, over a set of %d announcements\n", *clients, *set)
	for _, w := range ws {
		fmt.Fprintf(&b, "# window %q: %v, %.0f publishes/s, worker %.2f cores (/proc)\n", w.name, w.wall.Round(time.Millisecond), w.perSecond(), w.cores())
	}
	fmt.Fprintf(&b, "# again: go run ./bench/profile %s\n", strings.Join(os.Args[1:], " "))
	return b.String()
}

// report is the markdown summary: each window beside the one without a profiler, and the head of the flat list.
func report(ws []window, sampledCPU time.Duration, flat, perfNote string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## CPU profile of the worker under publishing load (`make profile`)\n\n")
	fmt.Fprintf(&b, "Machine: %s. Load: %d clients publishing back to back (PUT on the API's Unix socket, each acknowledged "+
		"once durable and on the board), over a set of %d announcements. Command: `go run ./bench/profile %s`.\n\n",
		benchfmt.Machine(), *clients, *set, strings.Join(os.Args[1:], " "))
	b.WriteString("| window | length | publishes/s | worker CPU (cores, /proc) | worker CPU per publish | CPU per publish vs no profiler |\n|---|---|---|---|---|---|\n")
	// The baseline is both windows without a profiler, before and after, taken together.
	before, after := ws[0], ws[len(ws)-1]
	base := window{wall: before.wall + after.wall, cpu: before.cpu + after.cpu, publishes: before.publishes + after.publishes}
	perPublish := func(w window) float64 { return w.cpu.Seconds() / float64(w.publishes) * 1e6 }
	for _, w := range ws {
		fmt.Fprintf(&b, "| %s | %v | %.0f | %.2f | %.0f µs | %s |\n", w.name, w.wall.Round(100*time.Millisecond), w.perSecond(),
			w.cores(), perPublish(w), benchfmt.Ratio(perPublish(w), perPublish(base)))
	}
	b.WriteString("\nThe profilers' cost is read from the worker's CPU per publish: publishes per second follow the store's " +
		"fsync and the machine's other load as much as the worker's CPU, so they vary between windows whenever the worker " +
		"stays below a core.\n")
	pw := ws[1]
	fmt.Fprintf(&b, "\nThe profile holds %.2f s of CPU in its %v, %s of what /proc counted for the worker in the same window "+
		"(%.2f s). Files: `docs/bench/profile/cpu.pb.gz` (`go tool pprof -http=: docs/bench/profile/cpu.pb.gz`), "+
		"`flamegraph.html` (open it in a browser), `top.txt` (20 functions, flat and cumulative).",
		sampledCPU.Seconds(), *duration, benchfmt.Ratio(sampledCPU.Seconds(), pw.cpu.Seconds()), pw.cpu.Seconds())
	if perfNote != "" {
		b.WriteString(" " + perfNote)
	}
	b.WriteString("\n\nThe heaviest functions by flat time:\n\n```\n")
	b.WriteString(headLines(flat, 10))
	b.WriteString("```\n")
	return b.String()
}

// headLines is pprof -top's column header and the n lines below it.
func headLines(topText string, n int) string {
	lines := strings.Split(topText, "\n")
	for i, l := range lines {
		if strings.Contains(l, "flat%") {
			end := min(len(lines), i+1+n)
			return strings.Join(lines[i:end], "\n") + "\n"
		}
	}
	return topText
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
