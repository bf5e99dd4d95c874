package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/announcementd/announcementd/internal/benchfmt"
)

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// split3 is "anon / file / shmem" of a resident set.
func split3(m memOf) string {
	return fmt.Sprintf("%s / %s / %s", mib(m.RssAnon), mib(m.RssFile), mib(m.RssShmem))
}

// futexSamples is every latency the futex waiters of r measured, sorted.
func (r *result) futexSamples() []int64 {
	var out []int64
	for _, w := range r.waits {
		out = append(out, w.Samples...)
	}
	slices.Sort(out)
	return out
}

// futexMissing is how many (waiter, publish) pairs the futex waiters of r did not observe.
func (r *result) futexMissing() uint64 {
	var n uint64
	for _, w := range r.waits {
		n += w.Missing
	}
	return n
}

// futexQ is the q-quantile of the futex waiters' latency (nearest rank, exact); ok false when there is none or
// some pair went unobserved past it.
func (r *result) futexQ(q float64) (time.Duration, bool) {
	xs := r.futexSamples()
	total := uint64(len(xs)) + r.futexMissing()
	if len(xs) == 0 {
		return 0, false
	}
	rank := max(1, min(total, uint64(q*float64(total)+0.5)))
	if rank > uint64(len(xs)) {
		return 0, false
	}
	return time.Duration(xs[rank-1]), true
}

func usOK(d time.Duration, ok bool) string {
	if !ok {
		return "unobserved"
	}
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return ms(d)
}

// futexCells is "p50 / p99 / max" of r's futex waiters.
func futexCells(r *result) string {
	p50, ok50 := r.futexQ(0.5)
	p99, ok99 := r.futexQ(0.99)
	m, okm := r.futexQ(1)
	return fmt.Sprintf("%s / %s / %s", usOK(p50, ok50), usOK(p99, ok99), usOK(m, okm))
}

// futexProblems lists the futex figures that could not be measured.
func (rep *report) futexProblems() []string {
	if *waiters == 0 {
		return nil
	}
	var out []string
	for _, r := range append(append([]*result(nil), rep.shm...), rep.realPoint...) {
		name := fmt.Sprintf("futex waiters, %v, %d clients (%s copies)", r.w, r.clients, r.mode)
		var errs uint64
		missing := r.futexMissing()
		first := ""
		for _, w := range r.waits {
			errs += w.Errors
			if first == "" && w.Error != "" {
				first = fmt.Sprintf("pid %d: %s", w.PID, w.Error)
			}
		}
		switch {
		case len(r.waits) != *waiters:
			out = append(out, fmt.Sprintf("%s: %d reports of %d waiters", name, len(r.waits), *waiters))
		case errs > 0:
			out = append(out, fmt.Sprintf("%s: %d errors, the first: %s", name, errs, first))
		case len(r.futexSamples()) == 0:
			out = append(out, name+": no publish observed")
		case missing > 0:
			out = append(out, fmt.Sprintf("%s: %d publishes not observed within -maxwait", name, missing))
		}
	}
	return out
}

// memProblems lists the memory figures that could not be measured.
func (rep *report) memProblems() []string {
	var out []string
	for _, r := range rep.shm {
		for _, name := range []string{"supervisor", "worker"} {
			if m, ok := r.srvMem.of(name); !ok || m.VmRSS <= 0 || m.Pss <= 0 {
				out = append(out, fmt.Sprintf("memory of the %s, %v, %s copies: not read", name, r.w, r.mode))
			}
		}
	}
	if n := len(rep.memSizes); n > 0 && len(rep.memGrowth) != n+1 {
		out = append(out, fmt.Sprintf("memory against the set: %d points of %d", len(rep.memGrowth), n+1))
	}
	return out
}

// futexMarkdown writes the futex waiters' table.
func (rep *report) futexMarkdown(b *strings.Builder) {
	if *waiters == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("\n### Futex waiters in the same runs\n\n")
	p("Beside the clients of every board run, %d Go processes (board/reader, `Reader.Wait`) each block on the board's "+
		"futex and take a verified snapshot when woken: latency is from the same stamp (just before the publish request "+
		"is sent, so the API request, the store's commit and fsync and the board write are in it) to the waiter holding "+
		"the snapshot, exact (not binned). The publish request's own time at the API (it returns once the board is "+
		"written) and the pollers' p50 in the same run beside it: a waiter sees a publish about when its request "+
		"returns, so the request (the store's fsync) is most of the waiter's latency.\n\n", *waiters)
	p("| workload | clients (copies) | futex waiter p50 / p99 / max | pairs | publish request p50 / p99 | pollers' p50 | pollers' p50 / waiter's p50 |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rep.shm {
		n := len(r.futexSamples())
		f50, ok := r.futexQ(0.5)
		poll, ratio := "-", "-"
		if r.clients > 0 {
			p50, ok50 := r.quantile(0.5)
			poll = msOK(p50, ok50)
			if ok && ok50 && f50 > 0 {
				ratio = fmt.Sprintf("%.0f×", float64(p50)/float64(f50))
			}
		}
		p("| %v | %s (%s) | %s | %d | %s / %s | %s | %s |\n", r.w, benchfmt.Count(r.clients), r.mode, futexCells(r), n,
			usOK(quant(r.apiLat, 0.5), true), usOK(quant(r.apiLat, 0.99), true), poll, ratio)
	}
}

// memMarkdown writes the memory tables.
func (rep *report) memMarkdown(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("\n### Memory\n\n")
	p("VmRSS from /proc/PID/status, split into anonymous / file / shmem (RssAnon, RssFile, RssShmem); Pss from " +
		"/proc/PID/smaps_rollup, the same split. The board is a file in /dev/shm (tmpfs): its pages are shmem and shared " +
		"by the worker and every reader mapping them, so each process counts them whole in its VmRSS, while Pss divides " +
		"each page among the processes that map it (the Pss of all processes adds up to what the host holds). " +
		"Anonymous memory (Go's heap and stacks) is the process's own; a Go process's is what its heap holds when read " +
		"(the GC runs when it runs, and returns memory to the system only after minutes), so it is not monotonic.\n\n")
	if len(rep.memGrowth) > 0 {
		g := rep.memGrowth
		locked := "not locked in memory"
		if g[0].locked {
			locked = "locked in memory (all its pages resident from the start)"
		}
		p("**Against the set**: a fresh daemon, no client; read 2 s after it started and then after each set size "+
			"(10 publishes at 10/s and 2 s after them), the sizes in ascending order. Its board: %s bytes, capacity %s "+
			"announcements (the daemon's default --shm-size is 4 MiB, 6,547 announcements of the default stride), %s.\n\n",
			benchfmt.Count(int(g[0].size)), benchfmt.Count(g[0].capacity), locked)
		p("| announcements | supervisor VmRSS | supervisor Pss | worker VmRSS | worker: anon / file / shmem | worker Pss | worker Pss: anon / shmem |\n|---|---|---|---|---|---|---|\n")
		for _, pt := range g {
			s, _ := pt.mem.of("supervisor")
			w, _ := pt.mem.of("worker")
			name := benchfmt.Count(pt.set)
			if pt.set == 0 {
				name = "0 (just started)"
			}
			p("| %s | %s | %s | %s | %s | %s | %s / %s |\n", name, mib(s.VmRSS), mib(s.Pss), mib(w.VmRSS), split3(w),
				mib(w.Pss), mib(w.PssAnon), mib(w.PssShmem))
		}
		lockedNote := ""
		if g[0].locked {
			lockedNote = " (locked: all of it resident whatever the set)"
		}
		if len(g) > 2 {
			a, z := g[1], g[len(g)-1]
			wa, _ := a.mem.of("worker")
			wz, _ := z.mem.of("worker")
			if z.set > a.set {
				n := float64(z.set - a.set)
				p("\nFrom %s to %s announcements the worker's anonymous memory grew by %s (%.2f KiB per announcement: "+
					"Go's heap, the model, the store's and the encoder's buffers; a board record is 320 bytes) and its file "+
					"part by %s (%.2f KiB per announcement: the store's file, which bbolt maps, beside the binary); the board "+
					"(shmem): %s then %s%s. The supervisor does not hold the set.\n",
					benchfmt.Count(a.set), benchfmt.Count(z.set), mib(wz.RssAnon-wa.RssAnon), float64(wz.RssAnon-wa.RssAnon)/1024/n,
					mib(wz.RssFile-wa.RssFile), float64(wz.RssFile-wa.RssFile)/1024/n, mib(wa.RssShmem), mib(wz.RssShmem), lockedNote)
			}
		}
	}
	p("\n**During the runs** (the daemon of the runs above, read at the end of each run's publishing, clients still " +
		"running):\n\n")
	p("| workload | clients (copies) | supervisor VmRSS / Pss | worker VmRSS | worker: anon / file / shmem | worker Pss |\n|---|---|---|---|---|---|\n")
	for _, r := range rep.shm {
		s, _ := r.srvMem.of("supervisor")
		w, _ := r.srvMem.of("worker")
		p("| %v | %s (%s) | %s / %s | %s | %s | %s |\n", r.w, benchfmt.Count(r.clients), r.mode, mib(s.VmRSS), mib(s.Pss), mib(w.VmRSS), split3(w), mib(w.Pss))
	}
	for _, s := range rep.http {
		if s.best < 0 {
			continue
		}
		t := s.trials[s.best]
		if m, ok := t.srvMem.of("HTTP server"); ok {
			p("\nThe HTTP baseline's server at %v, %s clients (its most within the target): VmRSS %s (anon %s), Pss %s.\n",
				s.w, benchfmt.Count(t.clients), mib(m.VmRSS), mib(m.RssAnon), mib(m.Pss))
		}
	}
	p("\n**The readers**, per process (the simulated clients share a process's memory; a real client would be a " +
		"process of its own, as in the real-process point):\n\n")
	p("| run | language | processes | clients each | VmRSS per process | anon / file / shmem | Pss per process |\n|---|---|---|---|---|---|---|\n")
	rows := []*result{}
	if ws := rep.workloads(); len(ws) > 0 {
		for _, m := range []string{"shared", "own"} {
			if r := rep.find(ws[0], m); r != nil {
				rows = append(rows, r)
			}
		}
	}
	rows = append(rows, rep.realPoint...)
	for i, r := range rows {
		name := fmt.Sprintf("%v, %s copies", r.w, r.mode)
		if r.real {
			name = "real-process point: one process per client"
		} else if len(rep.realPoint) == 2 && r == rep.realPoint[1] {
			name = "real-process point: the same clients simulated"
		}
		for _, l := range []string{"c", "go", "python", "futex"} {
			rm := r.readerMem[l]
			if rm == nil || rm.procs == 0 || (l == "futex" && i > 0) { // the waiters: once
				continue
			}
			avg := rm.perProc()
			lang := langName[l]
			if l == "futex" {
				lang = "Go futex waiter"
			}
			p("| %s | %s | %s | %s | %s | %s | %s |\n", name, lang, benchfmt.Count(rm.procs), benchfmt.Count(rm.clients/rm.procs),
				mib(avg.VmRSS), split3(avg), mib(avg.Pss))
		}
	}
}

// memRaw writes the memory figures, benchstat-friendly.
func (rep *report) memRaw(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	line := func(name string, m memOf) {
		p("%s 1 %d VmRSS-B %d RssAnon-B %d RssFile-B %d RssShmem-B %d Pss-B %d Pss_Anon-B %d Pss_File-B %d Pss_Shmem-B\n",
			name, m.VmRSS, m.RssAnon, m.RssFile, m.RssShmem, m.Pss, m.PssAnon, m.PssFile, m.PssShmem)
	}
	for _, pt := range rep.memGrowth {
		for _, x := range pt.mem {
			line(fmt.Sprintf("BenchmarkScaleMemory/fresh/set=%d/role=%s", pt.set, x.name), x.mem)
		}
	}
	for _, r := range rep.shm {
		for _, x := range r.srvMem {
			line(fmt.Sprintf("BenchmarkScaleMemory/shm/%s/copies=%s/clients=%d/role=%s", r.w.key(), r.mode, r.clients, x.name), x.mem)
		}
		for _, l := range []string{"c", "go", "python", "futex"} {
			if rm := r.readerMem[l]; rm != nil && rm.procs > 0 {
				line(fmt.Sprintf("BenchmarkScaleMemory/shm/%s/copies=%s/clients=%d/role=reader-%s-per-process", r.w.key(), r.mode, r.clients, l), rm.perProc())
			}
		}
	}
	for i, r := range rep.realPoint {
		kind := "real-processes"
		if i == 1 {
			kind = "simulated"
		}
		if rm := r.readerMem["c"]; rm != nil && rm.procs > 0 {
			line(fmt.Sprintf("BenchmarkScaleMemory/shm-%s/%s/clients=%d/role=reader-c-per-process", kind, r.w.key(), r.clients), rm.perProc())
		}
	}
	for _, s := range rep.http {
		if s.best >= 0 {
			t := s.trials[s.best]
			if m, ok := t.srvMem.of("HTTP server"); ok {
				line(fmt.Sprintf("BenchmarkScaleMemory/http/%s/clients=%d/role=server", s.w.key(), t.clients), m)
			}
		}
	}
}
