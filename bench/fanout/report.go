package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/announcementd/announcementd/internal/benchfmt"
)

// report is everything one run of the command measured.
type report struct {
	started               time.Time
	elapsed               time.Duration
	loadBefore, loadAfter string
	idle                  *phase // no reader blocked
	phases                []*phase
	set                   int
}

const (
	modeBare  = 0
	modeBoard = 1
)

// problems lists the figures that could not be measured: each makes the command fail.
func (rep *report) problems() []string {
	var out []string
	if len(rep.idle.publish[modeBoard]) == 0 || len(rep.idle.wake) == 0 || pct(rep.idle.publish[modeBoard], 50) <= 0 || pct(rep.idle.wake, 50) <= 0 {
		out = append(out, "no reader: the writer's Publish or the bare FUTEX_WAKE was not timed")
	}
	for _, ph := range rep.phases {
		name := fmt.Sprintf("%d %s readers", ph.readers, ph.lang)
		for m, mode := range []string{"bare", "board"} {
			if len(ph.last[m]) != ph.rounds/2 || len(ph.median[m]) != ph.rounds/2 || len(ph.publish[m]) != ph.rounds/2 {
				out = append(out, fmt.Sprintf("%s, %s: %d of %d publishes measured", name, mode, len(ph.last[m]), ph.rounds/2))
				continue
			}
			if pct(ph.last[m], 50) <= 0 || pct(ph.publish[m], 50) <= 0 {
				out = append(out, fmt.Sprintf("%s, %s: a latency or a publish read as 0", name, mode))
			}
			// A reader that was not asleep when the publish came did not measure a wake-up.
			if limit := int(float64(ph.readers*ph.rounds/2) * *awakeF); ph.notSlept[m] > limit {
				out = append(out, fmt.Sprintf("%s, %s: %d reader-publishes saw the change without having slept on the futex (more than %g%%): lengthen -gap-min",
					name, mode, ph.notSlept[m], *awakeF*100))
			}
		}
		if len(ph.wake) == 0 || pct(ph.wake, 50) <= 0 {
			out = append(out, name+": the bare FUTEX_WAKE was not timed")
		}
	}
	return out
}

func (rep *report) command() string {
	return "go run ./bench/fanout " + strings.Join(os.Args[1:], " ")
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Futex fan-out: readers blocked on the board, one publish\n\n")
	p("%s. Reproduce with `%s` (from the repository's root; `gcc` builds the readers); this run: %s, %.0f s. Load "+
		"average (this command's processes included) before %s, after %s; the host's busy cores during each reader "+
		"count are in the tables (this command's readers and writer included, the rest of the machine too).%s\n\n",
		benchfmt.Machine(), rep.command(), rep.started.UTC().Format("2006-01-02 15:04 UTC"), rep.elapsed.Seconds(),
		rep.loadBefore, rep.loadAfter, benchfmt.RawNote(*mdPath, *rawPath))
	p("**How it is measured.** Each reader is an OS thread blocked on the board's futex, the threads spread over "+
		"several processes: **C** readers are pthreads (`bench/fanout/waiters/waiters.c`, built with gcc against "+
		"`clients/c/notice.h`) that block as `notice_wait` does (FORMAT.md §6) and, woken, take a verified snapshot "+
		"with `notice_snapshot_reuse`; **Go** readers are goroutines locked to an OS thread each (this command, "+
		"re-executed) that block in `Reader.Wait` (Board.Wait, the next snapshot's memory made ready first) and take a verified snapshot with `Reader.Snapshot` (every check of "+
		"FORMAT.md §5 in both). The board holds %d announcements (%d bytes of slot); a reader stamps CLOCK_MONOTONIC "+
		"when it holds the snapshot. The writer is `board/writer` in the bench process, on a locked OS thread; the publish is stamped just "+
		"before its slot write (the writer's `Options.Now` call), which precedes the version store and the "+
		"FUTEX_WAKE. Each publish changes one announcement. **Baseline, same run, same threads:** every other "+
		"publish is a bare one, the kernel's limit: the bench stores a counter into a futex word in a shared mapping "+
		"(a /dev/shm file, no board) and calls FUTEX_WAKE; each thread waits on that word in that round and stamps "+
		"when it sees the change (no snapshot). Before each publish every reader has entered the round, and the "+
		"bench pauses %v to %v (random, the same sequence for both) so that all are asleep; readers that saw the "+
		"change without having slept are counted (at most 1%% is accepted, -max-awake). Latency is per publish: until the last "+
		"reader holds the snapshot, and until the median reader does; p50 / p99 / max are over the publishes.\n\n",
		rep.set, rep.set*320+64, *gapMinF, *gapMaxF)

	p("### Publish → the last reader holds the verified snapshot\n\n")
	p("| readers (processes × threads) | publishes (board + bare) | board: last reader p50 / p99 / max | bare futex wake: last waiter p50 / p99 / max | board / bare, p50 · p99 | board: median reader p50 / p99 | bare: median waiter p50 / p99 | board, last reader p50 per reader | host busy cores |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, ph := range rep.fanout() {
		p("| %s %s (%d × %s) | %d + %d | %s | %s | %s · %s | %s / %s | %s / %s | %s | %.2f |\n",
			benchfmt.Count(ph.readers), langName(ph.lang), ph.procs, benchfmt.Count(ph.readers/ph.procs), ph.rounds/2, ph.rounds/2,
			tri(ph.last[modeBoard]), tri(ph.last[modeBare]),
			benchfmt.Ratio(pct(ph.last[modeBoard], 50), pct(ph.last[modeBare], 50)), benchfmt.Ratio(pct(ph.last[modeBoard], 99), pct(ph.last[modeBare], 99)),
			us(pct(ph.median[modeBoard], 50)), us(pct(ph.median[modeBoard], 99)),
			us(pct(ph.median[modeBare], 50)), us(pct(ph.median[modeBare], 99)),
			us(pct(ph.last[modeBoard], 50)/float64(ph.readers)), ph.busyCores)
	}
	if aw := rep.awake(); len(aw) > 0 {
		p("\n### One reader whose CPU has not gone idle\n\n")
		p("The same, one reader, with pauses of %v to %v before each publish: too short for the reader's vCPU to "+
			"have gone idle, so the wake-up is the kernel's alone, not the hypervisor's too (the kernel's own wake of a "+
			"bare waiter is the baseline, as above). Between the two tables is what an idle vCPU of this VM adds.\n\n",
			aw[0].gapMin, aw[0].gapMax)
		p("| reader | publishes (board + bare) | board: p50 / p99 / max | bare futex wake: p50 / p99 / max | board / bare, p50 · p99 | the same reader after an idle pause: board p50 / p99 | bare |\n")
		p("|---|---|---|---|---|---|---|\n")
		for _, ph := range aw {
			idle, bare := "-", "-"
			if q := rep.find(ph.lang, 1); q != nil {
				idle = us(pct(q.last[modeBoard], 50)) + " / " + us(pct(q.last[modeBoard], 99))
				bare = us(pct(q.last[modeBare], 50)) + " / " + us(pct(q.last[modeBare], 99))
			}
			p("| 1 %s | %d + %d | %s | %s | %s · %s | %s | %s |\n", langName(ph.lang), ph.rounds/2, ph.rounds/2,
				tri(ph.last[modeBoard]), tri(ph.last[modeBare]),
				benchfmt.Ratio(pct(ph.last[modeBoard], 50), pct(ph.last[modeBare], 50)), benchfmt.Ratio(pct(ph.last[modeBoard], 99), pct(ph.last[modeBare], 99)),
				idle, bare)
		}
	}
	p("\n### The writer's cost of the wake\n\n")
	p("`Publish` is the whole call (sort, encode, CRCs, the slot write, the version store, the FUTEX_WAKE); its "+
		"baseline is the same publish with no reader blocked, in the same run (%d publishes). The bare FUTEX_WAKE "+
		"is the syscall alone, timed around it, beside the same syscall with no waiter.\n\n", len(rep.idle.publish[modeBoard]))
	p("| readers | `Publish` p50 / p99 | `Publish`, no reader blocked, p50 / p99 | ratio p50 · p99 | bare FUTEX_WAKE p50 / p99 | FUTEX_WAKE, no waiter, p50 / p99 | ratio p50 | waiters the bare wake woke (fewest / most) |\n")
	p("|---|---|---|---|---|---|---|---|\n")
	for _, ph := range rep.fanout() {
		lo, hi := slices.Min(ph.woken), slices.Max(ph.woken)
		p("| %s %s | %s / %s | %s / %s | %s · %s | %s / %s | %s / %s | %s | %s / %s |\n",
			benchfmt.Count(ph.readers), langName(ph.lang), us(pct(ph.publish[modeBoard], 50)), us(pct(ph.publish[modeBoard], 99)),
			us(pct(rep.idle.publish[modeBoard], 50)), us(pct(rep.idle.publish[modeBoard], 99)),
			benchfmt.Ratio(pct(ph.publish[modeBoard], 50), pct(rep.idle.publish[modeBoard], 50)),
			benchfmt.Ratio(pct(ph.publish[modeBoard], 99), pct(rep.idle.publish[modeBoard], 99)),
			us(pct(ph.wake, 50)), us(pct(ph.wake, 99)), us(pct(rep.idle.wake, 50)), us(pct(rep.idle.wake, 99)),
			benchfmt.Ratio(pct(ph.wake, 50), pct(rep.idle.wake, 50)), benchfmt.Count(lo), benchfmt.Count(hi))
	}
	p("\nReaders that saw a publish without having slept (board / bare, of readers × publishes): ")
	for i, ph := range rep.phases {
		if i > 0 {
			p("; ")
		}
		awake := ""
		if ph.awake {
			awake = ", CPU awake"
		}
		p("%s %s readers%s %d / %d of %s", benchfmt.Count(ph.readers), langName(ph.lang), awake, ph.notSlept[modeBoard], ph.notSlept[modeBare], benchfmt.Count(ph.readers*ph.rounds/2))
	}
	worst := func(n int) string { return ordinal(n - int(0.99*float64(n-1))) }
	p(". p99 over 100 publishes is the %s-worst one, over 1,000 the %s-worst.\n\n", worst(100), worst(1000))
	rep.bounds(p)
	return b.String()
}

// fanout is the phases with pauses long enough for the readers' CPUs to go idle; awake, the others.
func (rep *report) fanout() []*phase {
	return slices.DeleteFunc(slices.Clone(rep.phases), func(ph *phase) bool { return ph.awake })
}

func (rep *report) awake() []*phase {
	return slices.DeleteFunc(slices.Clone(rep.phases), func(ph *phase) bool { return !ph.awake })
}

// find is the fan-out phase of n readers in lang, or nil.
func (rep *report) find(lang string, n int) *phase {
	for _, ph := range rep.fanout() {
		if ph.lang == lang && ph.readers == n {
			return ph
		}
	}
	return nil
}

// bounds says, from this run's figures, what each latency is made of.
func (rep *report) bounds(p func(string, ...any)) {
	find := rep.find
	p("**What bounds it (this run's figures).** ")
	c1, g1 := find("c", 1), find("go", 1)
	if c1 != nil && g1 != nil {
		p("One reader: the kernel's wake of one C thread blocked on a bare word takes p50 %s, p99 %s (an idle vCPU of "+
			"this VM must be woken: the publishes come after pauses). A Go thread in the same place takes p50 %s, p99 %s "+
			"(the runtime's return from a long syscall: its P was retaken and sysmon is woken). The board adds p50 %s in C "+
			"and %s in Go over the bare wake: the writer's work before its FUTEX_WAKE (a `Publish` with no reader blocked "+
			"takes p50 %s here, cold after the pause) and the reader's verified snapshot. ",
			us(pct(c1.last[modeBare], 50)), us(pct(c1.last[modeBare], 99)), us(pct(g1.last[modeBare], 50)), us(pct(g1.last[modeBare], 99)),
			us(pct(c1.last[modeBoard], 50)-pct(c1.last[modeBare], 50)), us(pct(g1.last[modeBoard], 50)-pct(g1.last[modeBare], 50)),
			us(pct(rep.idle.publish[modeBoard], 50)))
	}
	for _, ph := range rep.awake() {
		p("With its CPU awake (pauses of %v to %v) one %s reader holds the snapshot at p50 %s, p99 %s, the bare wake "+
			"taking p50 %s, p99 %s: what the idle vCPU's wake-up adds above is the hypervisor's. ", ph.gapMin, ph.gapMax,
			langName(ph.lang), us(pct(ph.last[modeBoard], 50)), us(pct(ph.last[modeBoard], 99)),
			us(pct(ph.last[modeBare], 50)), us(pct(ph.last[modeBare], 99)))
	}
	fan := rep.fanout()
	last := fan[len(fan)-1]
	for _, ph := range fan {
		if ph.lang == "c" && ph.readers > last.readers/2 {
			last = ph
		}
	}
	if last.readers > 1 {
		p("%s readers: the kernel wakes them one after another from one FUTEX_WAKE, %s a waiter (the bare syscall "+
			"takes p50 %s for %s waiters, against %s with none), and the woken threads share %d CPUs, so the last reader "+
			"is served about N × (wake + its snapshot) after the publish: p50 %s a reader with the board, %s bare. The "+
			"writer blocks in that FUTEX_WAKE for the whole fan-out (its `Publish` p50 %s, against %s with no reader).",
			benchfmt.Count(last.readers), us(pct(last.wake, 50)/float64(last.readers)), us(pct(last.wake, 50)), benchfmt.Count(last.readers),
			us(pct(rep.idle.wake, 50)), runtime.NumCPU(),
			us(pct(last.last[modeBoard], 50)/float64(last.readers)), us(pct(last.last[modeBare], 50)/float64(last.readers)),
			us(pct(last.publish[modeBoard], 50)), us(pct(rep.idle.publish[modeBoard], 50)))
	}
	p("\n\n")
}

// raw is the results, one benchstat line per mode and reader count.
func (rep *report) raw() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	b.WriteString(benchfmt.RawHeader("bench/fanout", rep.command(), rep.started, "load average before "+rep.loadBefore+", after "+rep.loadAfter))
	p("BenchmarkFanout/board/readers=0 %d %.0f publish-p50-ns %.0f publish-p99-ns\n",
		len(rep.idle.publish[modeBoard]), pct(rep.idle.publish[modeBoard], 50), pct(rep.idle.publish[modeBoard], 99))
	p("BenchmarkFanout/bare/readers=0 %d %.0f wake-p50-ns %.0f wake-p99-ns\n",
		len(rep.idle.wake), pct(rep.idle.wake, 50), pct(rep.idle.wake, 99))
	for _, ph := range rep.phases {
		for m, mode := range []string{"bare", "board"} {
			pauses := ""
			if ph.awake {
				pauses = "/cpu=awake"
			}
			p("BenchmarkFanout/%s%s/lang=%s/readers=%d/procs=%d %d %.0f last-p50-ns %.0f last-p99-ns %.0f last-max-ns %.0f median-p50-ns %.0f median-p99-ns %.0f publish-p50-ns %.0f publish-p99-ns",
				mode, pauses, ph.lang, ph.readers, ph.procs, len(ph.last[m]), pct(ph.last[m], 50), pct(ph.last[m], 99), pct(ph.last[m], 100),
				pct(ph.median[m], 50), pct(ph.median[m], 99), pct(ph.publish[m], 50), pct(ph.publish[m], 99))
			if m == modeBare {
				p(" %.0f wake-p50-ns %.0f wake-p99-ns %d woken-min", pct(ph.wake, 50), pct(ph.wake, 99), slices.Min(ph.woken))
			}
			p(" %d not-slept %.2f host-busy-cores\n", ph.notSlept[m], ph.busyCores)
		}
	}
	return b.String()
}

// pct is the p-th percentile (nearest rank below), p in [0, 100]; 0 for no samples.
func pct(xs []float64, p float64) float64 {
	return benchfmt.Percentile(slices.Sorted(slices.Values(xs)), p)
}

// tri is "p50 / p99 / max" of xs (ns) in µs.
func tri(xs []float64) string {
	return fmt.Sprintf("%s / %s / %s", us(pct(xs, 50)), us(pct(xs, 99)), us(pct(xs, 100)))
}

func us(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 10e3:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	}
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return strconv.Itoa(n) + "th"
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: need positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func langName(l string) string {
	if l == "go" {
		return "Go"
	}
	return "C"
}
