package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/announcementd/announcementd/internal/benchfmt"
)

// report is everything one run of the command measured.
type report struct {
	started               time.Time
	elapsed               time.Duration
	loadBefore, loadAfter string
	args                  []string
	shm                   []*result // per workload: no client, shared copies, own copies
	realPoint             []*result // real processes, then the same clients simulated in one process
	own                   []*search // how many clients taking their own copies meet the target
	http                  []*search
	memSizes              []float64  // -mem-sets
	memGrowth             []memPoint // a fresh daemon's memory against the set
}

func (rep *report) find(w workload, mode string) *result {
	for _, r := range rep.shm {
		if r.w == w && r.mode == mode {
			return r
		}
	}
	return nil
}

func (rep *report) workloads() []workload {
	var ws []workload
	for _, r := range rep.shm {
		if r.mode == "none" {
			ws = append(ws, r.w)
		}
	}
	return ws
}

// problems lists the figures that could not be measured: each makes the command fail.
func (rep *report) problems() []string {
	var out []string
	all := append(append([]*result(nil), rep.shm...), rep.realPoint...)
	for _, s := range append(append([]*search(nil), rep.own...), rep.http...) {
		if s.best >= 0 {
			all = append(all, s.trials[s.best])
		}
	}
	for _, r := range all {
		name := fmt.Sprintf("%s, %v, %d clients (%s copies)", r.kind, r.w, r.clients, r.mode)
		if r.serverCPU.Sched <= 0 {
			out = append(out, name+": the server's CPU read as 0 (schedstat): not measured")
		}
		if r.clients == 0 {
			continue
		}
		if n, first := r.errors(); n > 0 {
			out = append(out, fmt.Sprintf("%s: %d reader errors, the first: %s", name, n, first))
		}
		m, missing := r.lat()
		if m.N == 0 {
			out = append(out, name+": no publish observed: no latency measured")
		} else if missing > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d (client, publish) pairs not observed within -maxwait %v: the latency's tail is not measured (raise -maxwait)", name, missing, m.N+missing, *maxWait))
		}
		if r.readerCores("") <= 0 {
			out = append(out, name+": the readers' CPU read as 0: not measured")
		}
		if r.mode == "own" && r.snapsPerSec("") <= 0 {
			out = append(out, name+": no snapshot taken")
		}
	}
	for _, s := range rep.own {
		if s.best < 0 {
			out = append(out, fmt.Sprintf("shm, own copies, %v: no trial met the target", s.w))
		}
	}
	for _, s := range rep.http {
		if s.best < 0 {
			out = append(out, fmt.Sprintf("http, %v: no trial met the target", s.w))
		}
	}
	return append(append(out, rep.futexProblems()...), rep.memProblems()...)
}

// write prints the tables, writes the files when asked, and fails when a figure is missing.
func (rep *report) write() error {
	md := rep.markdown()
	fmt.Print(md)
	probs := rep.problems()
	if len(probs) > 0 {
		return fmt.Errorf("figures not measured (the files are left as they were):\n  %s", strings.Join(probs, "\n  "))
	}
	if *rawPath != "" {
		if err := rep.drawPlots(); err != nil {
			return fmt.Errorf("%w (the markdown and raw files are left as they were)", err)
		}
	}
	if *mdPath != "" {
		if err := benchfmt.WriteSection(*mdPath, "scale", md); err != nil {
			return err
		}
	}
	if err := benchfmt.WriteRaw(*rawPath, rep.raw()); err != nil {
		return err
	}
	return nil
}

// floorRatio is benchfmt.Ratio of a floor a: "≥ N×" with thousands separators from 100× up.
func floorRatio(a, b float64) string {
	if b != 0 && a/b >= 100 {
		return "≥ " + big(a/b) + "×"
	}
	return benchfmt.Ratio(a, b)
}

// dur prints an interval the way the tables do: "50 ms", "5 s".
func dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%g ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%g s", d.Seconds())
}

func pct(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }

func big(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.1f million", x/1e6)
	case x >= 1e4:
		return benchfmt.Count(int(x + 0.5))
	}
	return fmt.Sprintf("%.0f", x)
}

// latCells is p50 | p99 | max of r.
func latCells(r *result) string {
	p50, ok50 := r.quantile(0.5)
	p99, ok99 := r.quantile(0.99)
	m, _ := r.lat()
	return fmt.Sprintf("%s | %s | %s", msOK(p50, ok50), msOK(p99, ok99), ms(time.Duration(m.Max)))
}

func (rep *report) command() string {
	return "go run ./bench/scale " + strings.Join(rep.args, " ")
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	iv, tg := *interval, *target
	p("## Scale: %s clients polling the board, against HTTP polling\n\n", benchfmt.Count(*clients))
	p("%s. Reproduce with `make scale` (it runs `%s`); this run: %s, %.0f s. Load average (it counts this command's own processes "+
		"too) before %s, after %s; how much other work shared the machine is in the \"host\" columns.%s\n\n",
		benchfmt.Machine(), rep.command(), rep.started.UTC().Format("2006-01-02 15:04 UTC"), rep.elapsed.Seconds(), rep.loadBefore, rep.loadAfter,
		benchfmt.RawNote(*mdPath, *rawPath))

	p("**How a client is modelled.** The %s clients are not %s processes: they are simulated by %d reader processes "+
		"(%d in C, %d in Go, %d in Python; the split is in the language table), each running a timer wheel of thousands "+
		"of clients. Every client has a phase of its own (uniformly random in [0, %v)) and polls the board's version word "+
		"every %v: C with `notice_version_inline`, Go with `Board.Version()` (one atomic load each), Python with "+
		"`Board.version()` (one `pread`). A process sleeps until its next client is due (at least 1 ms) and then serves "+
		"every client due by then. When a client sees a new version it takes a verified snapshot: with **own copies** every "+
		"client takes its own (the whole reader algorithm: copy, seq check, slot and record CRCs, UTF-8 check, decoding: "+
		"`notice_snapshot_reuse`, `Reader.Snapshot`, `Board.snapshot()`), the CPU a process of its own would spend (one "+
		"difference: a Go process's clients share one `Reader`, which copies, checks and decodes again only the records "+
		"that changed since its last snapshot, so the first client of a process to see a version pays for the records the "+
		"publish changed and the others for none, where a real client, holding the version before, would pay for them "+
		"too: one record here, the gap between boardbench's \"next version\" and \"unchanged\" snapshots); "+
		"with **shared copies** the first client of a process to see the version takes one and the others use it (one copy "+
		"per process per version: a different, cheaper deployment, reported apart). The copies go into one buffer per "+
		"process, so the simulation is honest about CPU, not about memory (each real client would hold its own). The "+
		"publisher (this command) stamps CLOCK_MONOTONIC just before it sends each publish (PUT /v1/announcements/1 to the "+
		"daemon's API: the content names the publish), in a table every reader maps; a client stamps CLOCK_MONOTONIC when "+
		"it holds a verified snapshot showing that publish; latency is the difference, for every (client, publish) pair "+
		"(a client that skipped a publish counts it from the later one). The real-process point below runs one process per "+
		"client instead.\n\n",
		benchfmt.Count(*clients), benchfmt.Count(*clients), len(mix(*clients)), min(*cProcs, *clients), min(*goProcs, *clients), *pyProcs, dur(iv), dur(iv))

	// Headline.
	p("### Clients per server core\n\n")
	p("The server's CPU is the daemon's (supervisor and worker: utime+stime from /proc/PID/stat, cross-checked with the "+
		"threads' schedstat run time; the figure used is schedstat's, in ns) or the HTTP server's, over the same window "+
		"(the %v of publishing and %v after). HTTP: the most clients whose p99 latency stayed within %v at the same "+
		"%v interval (the search is below). An earlier rough measure put HTTP at about 3,400 clients per server core.\n\n",
		dur(*duration), dur(*tailD), dur(tg), dur(iv))
	p("| workload | HTTP: clients within p99 ≤ %s | HTTP server CPU there | HTTP: clients per server core | board: clients | daemon CPU (shared / own copies) | board: clients per daemon core | board / HTTP |\n", dur(tg))
	p("|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.http {
		sh, own := rep.find(s.w, "shared"), rep.find(s.w, "own")
		if sh == nil || own == nil || s.best < 0 {
			continue
		}
		c1, _ := sh.serverCores()
		c2, _ := own.serverCores()
		boardPerCore := float64(*clients) / max(c1, c2)
		t := s.trials[s.best]
		hc, _ := t.serverCores()
		httpPerCore := float64(t.clients) / hc
		p("| %v | %s | %s | %s | %s | %s / %s | ≥ %s | %s |\n", s.w, benchfmt.Count(t.clients), pct(hc), big(httpPerCore),
			benchfmt.Count(*clients), pct(c1), pct(c2), big(boardPerCore), floorRatio(boardPerCore, httpPerCore))
	}
	p("\nThe board's figure is a floor: the daemon's CPU did not grow with the clients (next table), so the client count "+
		"is bounded by the readers' own CPU, not by the server's. On this one host the readers and the server share the "+
		"same %d cores, so the other comparison is the whole host: how many clients meet the latency target with "+
		"everything counted, server and clients (each searched the same way). It favours HTTP: a board client with own "+
		"copies verifies and decodes every record it copies (seq, CRCs, UTF-8), an HTTP client only reads the body off "+
		"its connection and does not decode the JSON.\n\n", runtime.NumCPU())
	p("| workload | board, shared copies | board, own copies | HTTP | board own / HTTP | CPU per 1,000 clients, server + clients: board shared / board own / HTTP |\n|---|---|---|---|---|---|\n")
	for _, s := range rep.http {
		sh, own := rep.find(s.w, "shared"), rep.find(s.w, "own")
		ownS := rep.ownSearch(s.w)
		if sh == nil || own == nil || s.best < 0 || ownS == nil || ownS.best < 0 {
			continue
		}
		t, o := s.trials[s.best], ownS.trials[ownS.best]
		shared := fmt.Sprintf("≥ %s (p99 %s)", benchfmt.Count(sh.clients), msQ(sh, 0.99))
		if sh.verdict(iv, tg) != "" {
			shared = fmt.Sprintf("< %s (%s)", benchfmt.Count(sh.clients), sh.verdict(iv, tg))
		}
		tot := func(r *result) string {
			c, _ := r.serverCores()
			return fmt.Sprintf("%.3f%%", 100*(c+r.readerCores(""))/(float64(r.clients)/1000))
		}
		p("| %v | %s | %s | %s | %s | %s / %s / %s |\n", s.w, shared, benchfmt.Count(o.clients), benchfmt.Count(t.clients),
			benchfmt.Ratio(float64(o.clients), float64(t.clients)), tot(sh), tot(o), tot(t))
	}

	// Daemon CPU.
	p("\n### The daemon's CPU with 0 and %s clients\n\n", benchfmt.Count(*clients))
	p("%% of one core over the window, schedstat (utime+stime from /proc/PID/stat in brackets, 10 ms ticks); the " +
		"publish request's time at the API (the store's fsync included) beside it. The clients never talk to the daemon. " +
		"At a few percent of a core at most, a few tenths of a point either way is the daemon's own variation (Go's " +
		"GC, the region checks every 250 ms, the heartbeat, the scheduler): ratios below 1× are that (and probably Go's " +
		"scheduler, which spins a little on idle cores after a wake-up, less when readers keep them busy), not a saving.")
	if *waiters > 0 {
		p(" \"0 clients\" is no polling client; the %d futex waiters are in every run, 0 included, so each publish's "+
			"wake-up is in both columns.", *waiters)
	}
	p("\n\n")
	p("| workload | publishes | 0 clients | %s, shared copies | ratio | %s, own copies | ratio | publish request p50 / p99: 0 clients → own copies |\n", benchfmt.Count(*clients), benchfmt.Count(*clients))
	p("|---|---|---|---|---|---|---|---|\n")
	for _, w := range rep.workloads() {
		z, sh, own := rep.find(w, "none"), rep.find(w, "shared"), rep.find(w, "own")
		if z == nil || sh == nil || own == nil {
			continue
		}
		cell := func(r *result) string {
			a, b := r.serverCores()
			return fmt.Sprintf("%s (%s)", pct(a), pct(b))
		}
		zc, _ := z.serverCores()
		sc, _ := sh.serverCores()
		oc, _ := own.serverCores()
		p("| %v | %d, %.2f/s | %s | %s | %s | %s | %s | %s / %s → %s / %s |\n", w, z.publishes, z.pubRate(), cell(z),
			cell(sh), benchfmt.Ratio(sc, zc), cell(own), benchfmt.Ratio(oc, zc),
			ms(quant(z.apiLat, 0.5)), ms(quant(z.apiLat, 0.99)), ms(quant(own.apiLat, 0.5)), ms(quant(own.apiLat, 0.99)))
	}

	// Latency.
	p("\n### Publish → observe latency and the readers' cost, %s clients\n\n", benchfmt.Count(*clients))
	p("Over every (client, publish) pair. Target: p99 ≤ %s (one poll interval plus a little). \"polls\": polls made / "+
		"polls due (below 100%%: the processes fell behind); \"lag\": how late a poll ran against its schedule, p99. "+
		"\"host\": the machine's busy cores during the run (in brackets: cores of work that was not this run's).\n\n", dur(tg))
	p("| workload | copies | p50 | p99 | max | p99 / target | target met | polls | lag p99 | snapshots/s | reader CPU (cores) | per 1,000 clients | host | futex waiters, same run: p50 / p99 |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range rep.workloads() {
		for _, mode := range []string{"shared", "own"} {
			r := rep.find(w, mode)
			if r == nil {
				continue
			}
			p99, ok := r.quantile(0.99)
			ratio := "-"
			if ok {
				ratio = benchfmt.Ratio(float64(p99), float64(tg))
			}
			lag, _ := r.lag().Quantile(0.99, 0)
			busy, others := r.host()
			met := "yes"
			if r.verdict(iv, tg) != "" {
				met = "**no**"
			}
			f50, ok50 := r.futexQ(0.5)
			f99, ok99 := r.futexQ(0.99)
			futex := "-"
			if len(r.waits) > 0 {
				futex = usOK(f50, ok50) + " / " + usOK(f99, ok99)
			}
			p("| %v | %s | %s | %s | %s | %.0f%% | %s | %s | %.3f | %.3f%% | %.2f (%.2f) | %s |\n", w, mode, latCells(r), ratio, met,
				100*r.pollRatio(iv), ms(lag), big(r.snapsPerSec("")), r.readerCores(""), r.perK(""), busy, others, futex)
		}
	}

	p("\nBy language: the readers' CPU per 1,000 clients (%% of one core) with shared and with own copies, what one " +
		"snapshot costs (the readers' CPU with own copies, less their polls at the CPU per poll of the shared run, over " +
		"the snapshots), and each language's own p99 latency:\n\n")
	p("| workload | language | clients | CPU per 1,000 clients: shared / own copies | µs per snapshot | p99: shared / own copies |\n|---|---|---|---|---|---|\n")
	for _, w := range rep.workloads() {
		sh, own := rep.find(w, "shared"), rep.find(w, "own")
		if sh == nil || own == nil {
			continue
		}
		for _, l := range []string{"c", "go", "python"} {
			if own.clientsIn(l) == 0 {
				continue
			}
			m, ok := marginal(own, sh, l)
			snap := "-"
			if ok {
				snap = fmt.Sprintf("%.1f", m)
			}
			p("| %v | %s | %s | %.3f%% / %.3f%% | %s | %s / %s |\n", w, langName[l], benchfmt.Count(own.clientsIn(l)), sh.perK(l),
				own.perK(l), snap, msLang(sh, l, 0.99), msLang(own, l, 0.99))
		}
	}

	// Real processes.
	if len(rep.realPoint) == 2 {
		re, si := rep.realPoint[0], rep.realPoint[1]
		p("\n### Real processes against simulated clients\n\n")
		p("The same %s clients, %v, own copies: one C process per client (each sleeps until its phase, polls, and "+
			"copies when the version changed), then one C process simulating them all.\n\n", benchfmt.Count(re.clients), re.w)
		p("| | processes | p50 | p99 | max | polls | reader CPU per 1,000 clients | reader CPU per snapshot (polls and wake-ups included) |\n|---|---|---|---|---|---|---|---|\n")
		for _, x := range []struct {
			name string
			r    *result
		}{{"real processes", re}, {"simulated", si}} {
			p("| %s | %s | %s | %.0f%% | %.3f%% | %.1f µs |\n", x.name, benchfmt.Count(len(x.r.specs)), latCells(x.r),
				100*x.r.pollRatio(iv), x.r.perK(""), x.r.cpuPerSnap(""))
		}
		rp99, _ := re.quantile(0.99)
		sp99, _ := si.quantile(0.99)
		p("| real / simulated | | | %s | | | %s | %s |\n", benchfmt.Ratio(float64(rp99), float64(sp99)),
			benchfmt.Ratio(re.perK(""), si.perK("")), benchfmt.Ratio(re.cpuPerSnap(""), si.cpuPerSnap("")))
	}

	// The searches.
	for _, s := range rep.own {
		p("\n### The board with own copies: how many clients meet the target, %v\n\n", s.w)
		p("The same reader processes and mix of languages as above, every client taking its own verified snapshot; the " +
			"search starts from the snapshot cost measured at the full count, doubles or halves until a trial misses or " +
			"meets the target, then bisects.\n\n")
		rep.searchTable(&b, s, false)
	}
	for _, s := range rep.http {
		p("\n### HTTP polling: how many clients meet the target, %v\n\n", s.w)
		p("A net/http server holding the set in memory (no store, no fsync; the JSON encoded once per version), answering "+
			"conditional GET /records with 304 Not Modified while the ETag matches. Each client has its own keep-alive TCP "+
			"connection (no shared pool) and sends one conditional GET per poll; a 200 carries the whole set, which it reads "+
			"off the connection without decoding the JSON (so the server has as much of the host as it can). %d client processes, each a timer wheel as the board's readers. The search doubles the "+
			"clients until a trial misses the target, then bisects.\n\n", *httpProcs)
		rep.searchTable(&b, s, true)
	}

	rep.futexMarkdown(&b)
	rep.plotsMarkdown(&b)
	rep.memMarkdown(&b)
	rep.bounds(&b)
	p("\n**Measured elsewhere** in this file: many readers blocked on the futex and woken by one publish (the futex " +
		"fan-out; the few waiters above only give a waiter's latency), a CPU profile of the daemon (`make profile`), and " +
		"the hot paths against their limits (the board and the worker).\n\n")
	return b.String()
}

func (rep *report) ownSearch(w workload) *search {
	for _, s := range rep.own {
		if s.w == w {
			return s
		}
	}
	return nil
}

var langName = map[string]string{"c": "C", "go": "Go", "python": "Python", "http": "HTTP"}

func msLang(r *result, lang string, q float64) string {
	m, missing := r.latOf(lang)
	d, ok := m.Quantile(q, missing)
	return msOK(d, ok)
}

func msQ(r *result, q float64) string {
	d, ok := r.quantile(q)
	return msOK(d, ok)
}

// searchTable writes the trials of a search.
func (rep *report) searchTable(b *strings.Builder, s *search, http bool) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	if http {
		p("| clients | p50 | p99 | max | polls | requests/s | server CPU | server µs/request | clients' CPU (cores) | 200s/s | host | target |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	} else {
		p("| clients | p50 | p99 | max | polls | daemon CPU | readers' CPU (cores) | snapshots/s | host | target |\n|---|---|---|---|---|---|---|---|---|---|\n")
	}
	for i, t := range s.trials {
		sc, _ := t.serverCores()
		verdict := "met"
		if !s.pass[i] {
			verdict = "missed: " + s.why[i]
		}
		if i == s.best {
			verdict = "**met (the most)**"
		}
		busy, others := t.host()
		host := fmt.Sprintf("%.2f (%.2f)", busy, others)
		if http {
			polls := t.pollsPerSec("")
			p("| %s | %s | %.0f%% | %s | %s | %.1f | %.2f | %s | %s | %s |\n", benchfmt.Count(t.clients), latCells(t), 100*t.pollRatio(*interval),
				big(polls), pct(sc), 1e6*sc/max(polls, 1), t.readerCores(""), big(t.snapsPerSec("")), host, verdict)
		} else {
			p("| %s | %s | %.0f%% | %s | %.2f | %s | %s | %s |\n", benchfmt.Count(t.clients), latCells(t), 100*t.pollRatio(*interval),
				pct(sc), t.readerCores(""), big(t.snapsPerSec("")), host, verdict)
		}
	}
}

// bounds writes what bounds each figure, with this run's numbers.
func (rep *report) bounds(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	ws := rep.workloads()
	if len(ws) == 0 {
		return
	}
	p("\n### What bounds each figure\n\n")
	w := ws[0]
	z, sh, own := rep.find(w, "none"), rep.find(w, "shared"), rep.find(w, "own")
	if z != nil && sh != nil && own != nil {
		zc, _ := z.serverCores()
		oc, _ := own.serverCores()
		p("- **The daemon's CPU** is the publishes (the API request, the store's commit and fsync, writing the set into "+
			"the board) and its housekeeping (heartbeat, the region checks): %s of a core with no client at %v, %s with %s "+
			"clients taking their own copies. Readers never call it; they only load a word it writes. With own copies the "+
			"readers keep the host's cores busy, so its requests wait for a CPU (the publish request's p99 in the daemon "+
			"table), while its CPU stays the same.\n", pct(zc), w, pct(oc), benchfmt.Count(own.clients))
		p50, _ := sh.quantile(0.5)
		p99, _ := sh.quantile(0.99)
		lag, _ := sh.lag().Quantile(0.99, 0)
		p("- **Latency with shared copies** is the poll interval: a client sees a publish at its next poll, uniformly "+
			"within %s (p50 %s, p99 %s at %v), plus how late the wheel runs its polls (p99 %s: the 1 ms wake-up "+
			"granularity and the scheduler).\n", dur(*interval), ms(p50), ms(p99), w, ms(lag))
		var parts []string
		for _, l := range []string{"c", "go", "python"} {
			if m, ok := marginal(own, sh, l); ok {
				parts = append(parts, fmt.Sprintf("%s %.1f µs", langName[l], m))
			}
		}
		o99, _ := own.quantile(0.99)
		snap, _ := marginal(own, sh, "")
		capacity := ""
		if s := rep.ownSearch(w); s != nil && s.best >= 0 {
			n := s.trials[s.best].clients
			capacity = fmt.Sprintf(" Within the target: %s clients taking their own copies (the search), whose copies of "+
				"one publish take %s × %.1f µs ≈ %.0f ms of CPU, against the %.0f ms the host's %d cores have in one %s poll "+
				"interval.", benchfmt.Count(n), benchfmt.Count(n), snap, float64(n)*snap/1e3, float64(runtime.NumCPU())*float64(*interval)/1e6,
				runtime.NumCPU(), dur(*interval))
		}
		p("- **Latency with own copies** is the CPU the copies take: each client verifies its own snapshot "+
			"(%s of reader CPU per snapshot at %v, from the language table; the CRCs and decoding dominate), so one publish costs "+
			"%s clients × ~%.1f µs ≈ %.2f CPU-seconds, and the last client has it only once the host's %d cores have "+
			"done them all: p99 %s here. The readers took %s snapshots/s, what the host had to give; the verification's "+
			"throughput (boardbench: about 2 GB/s per core) is what bounds it, and it grows with the set's size.%s\n",
			strings.Join(parts, ", "), w, benchfmt.Count(own.clients), snap, float64(own.clients)*snap/1e6, runtime.NumCPU(), ms(o99),
			big(own.snapsPerSec("")), capacity)
		for _, w2 := range ws[1:] {
			own2, sh2 := rep.find(w2, "own"), rep.find(w2, "shared")
			if w2.set == w.set || own2 == nil || sh2 == nil || w2.rate != w.rate {
				continue
			}
			snap2, _ := marginal(own2, sh2, "")
			p99b, _ := own2.quantile(0.99)
			capacity2 := ""
			if s := rep.ownSearch(w2); s != nil && s.best >= 0 {
				capacity2 = fmt.Sprintf("; within the target, %s clients", benchfmt.Count(s.trials[s.best].clients))
			}
			p("  At %v a snapshot is %s bytes and costs ~%.0f µs: %s own copies of one publish are %.0f CPU-seconds, "+
				"more than %.0f s of the whole host, and the p99 is %s%s. Own copies of a large set at this scale need "+
				"many more cores, or shared copies.\n", w2, benchfmt.Count(64+320*w2.set), snap2, benchfmt.Count(own2.clients),
				float64(own2.clients)*snap2/1e6, float64(own2.clients)*snap2/1e6/float64(runtime.NumCPU()), ms(p99b), capacity2)
		}
		p("- **Reader CPU per 1,000 clients** with shared copies is the polls: 1,000 clients make %s version loads a "+
			"second, a few ns each in C and Go, a system call each in Python (its reader reads with pread); the wheel's "+
			"wake-ups and bookkeeping dominate (the language table).\n", benchfmt.Count(int(1000*float64(time.Second)/float64(*interval))))
	}
	for _, s := range rep.http {
		if s.best < 0 {
			continue
		}
		t := s.trials[s.best]
		sc, _ := t.serverCores()
		var polls float64
		for _, rp := range t.reps {
			polls += float64(rp.Polls) / (float64(rp.WallNS) / 1e9)
		}
		next := "none: the search reached -http-max"
		var nextT *result
		for i, x := range s.trials {
			if !s.pass[i] && x.clients > t.clients && (nextT == nil || x.clients < nextT.clients) {
				busy, _ := x.host()
				nextT, next = x, fmt.Sprintf("%s clients, missed it (%s) with %.2f of the host's %d cores busy", benchfmt.Count(x.clients),
					s.why[i], busy, runtime.NumCPU())
			}
		}
		var body, changed float64
		for _, rp := range t.reps {
			body += float64(rp.BodyBytes)
			changed += float64(rp.Changed)
		}
		perBody := body / max(changed, 1)
		p("- **HTTP at %v** is bounded by what every client costs the server, %.1f µs of server CPU per conditional "+
			"GET (%s requests/s at %s clients took %s of a core: mostly 304s, and after each publish a 200 with the whole "+
			"set), and by the burst after each publish: every client fetches the set within one poll interval, %s bytes "+
			"a body, %.1f MB for %s clients. The server and its clients share the host's %d cores and the requests queue for "+
			"them before they are busy on average: the next trial, %s.\n", s.w, 1e6*sc/max(polls, 1), big(polls),
			benchfmt.Count(t.clients), pct(sc), benchfmt.Count(int(perBody)), perBody*float64(t.clients)/1e6, benchfmt.Count(t.clients), runtime.NumCPU(), next)
	}
}

func quant(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	return xs[min(len(xs)-1, int(q*float64(len(xs)-1)+0.5))]
}

// raw is the results, one benchstat line per figure group.
func (rep *report) raw() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	b.WriteString(benchfmt.RawHeader("bench/scale", rep.command(), rep.started, "load average before "+rep.loadBefore+", after "+rep.loadAfter))
	line := func(name string, r *result) {
		sched, stat := r.serverCores()
		p("%s 1 %.4f server-cpu%% %.4f server-stat-cpu%%", name, 100*sched, 100*stat)
		if r.clients > 0 {
			p50, _ := r.quantile(0.5)
			p99, _ := r.quantile(0.99)
			m, _ := r.lat()
			met := 0
			if r.verdict(*interval, *target) == "" {
				met = 1
			}
			p(" %d p50-ns %d p99-ns %d max-ns %.4f reader-cpu%%/1k-clients %.0f snapshots/s %.4f polls-made/due %d target-met",
				p50.Nanoseconds(), p99.Nanoseconds(), m.Max, r.perK(""), r.snapsPerSec(""), r.pollRatio(*interval), met)
		}
		if len(r.futexSamples()) > 0 {
			f50, _ := r.futexQ(0.5)
			f99, _ := r.futexQ(0.99)
			fm, _ := r.futexQ(1)
			p(" %d futex-p50-ns %d futex-p99-ns %d futex-max-ns", f50.Nanoseconds(), f99.Nanoseconds(), fm.Nanoseconds())
		}
		busy, others := r.host()
		p(" %.3f host-busy-cores %.3f host-other-cores\n", busy, others)
	}
	for _, r := range rep.shm {
		line(fmt.Sprintf("BenchmarkScale/shm/%s/copies=%s/clients=%d", r.w.key(), r.mode, r.clients), r)
	}
	for i, r := range rep.realPoint {
		kind := "real-processes"
		if i == 1 {
			kind = "simulated"
		}
		line(fmt.Sprintf("BenchmarkScale/shm-%s/%s/copies=%s/clients=%d", kind, r.w.key(), r.mode, r.clients), r)
	}
	for _, s := range rep.own {
		for _, t := range s.trials {
			line(fmt.Sprintf("BenchmarkScale/shm-own-search/%s/clients=%d", s.w.key(), t.clients), t)
		}
	}
	for _, s := range rep.http {
		for _, t := range s.trials {
			line(fmt.Sprintf("BenchmarkScale/http/%s/clients=%d", s.w.key(), t.clients), t)
		}
		if s.best < 0 {
			continue
		}
		t := s.trials[s.best]
		hc, _ := t.serverCores()
		sh, own := rep.find(s.w, "shared"), rep.find(s.w, "own")
		if sh == nil || own == nil {
			continue
		}
		c1, _ := sh.serverCores()
		c2, _ := own.serverCores()
		board := float64(*clients) / max(c1, c2)
		httpPC := float64(t.clients) / hc
		p("BenchmarkScale/clients-per-server-core/%s 1 %.0f board-clients/core %.0f http-clients/core %.1f board/http\n", s.w.key(), board, httpPC, board/httpPC)
	}
	rep.memRaw(&b)
	return b.String()
}
