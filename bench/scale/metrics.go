package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
)

// byLang is the part of a result's reports of one language ("" = all).
func (r *result) byLang(lang string) []sim.Report {
	var out []sim.Report
	for _, p := range r.reps {
		if lang == "" || p.Lang == lang {
			out = append(out, p)
		}
	}
	return out
}

// lat is the latency over every (client, publish) pair, and how many pairs were never observed.
func (r *result) lat() (*sim.Merged, uint64) { return r.latOf("") }

// latOf is lat for the clients of lang ("" = all).
func (r *result) latOf(lang string) (*sim.Merged, uint64) {
	m := sim.NewMerged()
	var missing uint64
	for _, p := range r.byLang(lang) {
		m.Add(p.Lat, p.LatMax)
		missing += p.Missing
	}
	return m, missing
}

// lag is how late the polls ran against their schedule.
func (r *result) lag() *sim.Merged {
	m := sim.NewMerged()
	for _, p := range r.reps {
		m.Add(p.Lag, p.LagMax)
	}
	return m
}

// quantile of the latency, ok false when it is among the unobserved pairs.
func (r *result) quantile(q float64) (time.Duration, bool) {
	m, missing := r.lat()
	return m.Quantile(q, missing)
}

// readerCores is the CPU the client processes of lang used, in cores (each process: its CPU over its window).
func (r *result) readerCores(lang string) float64 {
	var c float64
	for _, p := range r.byLang(lang) {
		if p.WallNS > 0 {
			c += float64(p.CPUNS) / float64(p.WallNS)
		}
	}
	return c
}

func (r *result) clientsIn(lang string) int {
	n := 0
	for _, p := range r.byLang(lang) {
		n += p.Clients
	}
	return n
}

// perK is the readers' CPU per 1,000 clients, in percent of a core.
func (r *result) perK(lang string) float64 {
	n := r.clientsIn(lang)
	if n == 0 {
		return 0
	}
	return 100 * r.readerCores(lang) / (float64(n) / 1000)
}

// snapsPerSec is the snapshots the clients of lang took per second (HTTP: answers 200, each a full copy).
func (r *result) snapsPerSec(lang string) float64 {
	var s float64
	for _, p := range r.byLang(lang) {
		if p.WallNS > 0 {
			s += float64(p.Snapshots) / (float64(p.WallNS) / 1e9)
		}
	}
	return s
}

// cpuPerSnap is the readers' CPU per snapshot taken, in µs (polls included).
func (r *result) cpuPerSnap(lang string) float64 {
	var cpu, snaps float64
	for _, p := range r.byLang(lang) {
		cpu += float64(p.CPUNS)
		snaps += float64(p.Snapshots)
	}
	if snaps == 0 {
		return 0
	}
	return cpu / snaps / 1e3
}

// pubRate is the publishes sent per second, first to last.
func (r *result) pubRate() float64 {
	if len(r.sentAt) < 2 {
		return 0
	}
	return float64(len(r.sentAt)-1) / r.sentAt[len(r.sentAt)-1].Sub(r.sentAt[0]).Seconds()
}

// marginal is the CPU one snapshot costs the readers of lang, in µs: their CPU with own copies minus what their
// polls cost (the CPU per poll of the same clients with shared copies, where snapshots are rare), over the snapshots.
// Polls are counted rather than assumed, because readers busy copying make fewer of them.
func marginal(own, shared *result, lang string) (float64, bool) {
	pollsShared, pollsOwn := shared.pollsPerSec(lang), own.pollsPerSec(lang)
	snaps := own.snapsPerSec(lang)
	if own.clientsIn(lang) == 0 || pollsShared <= 0 || snaps <= 0 {
		return 0, false
	}
	perPoll := shared.readerCores(lang) / pollsShared
	return 1e6 * max(0, own.readerCores(lang)-pollsOwn*perPoll) / snaps, true
}

// pollsPerSec is the polls the clients of lang made per second.
func (r *result) pollsPerSec(lang string) float64 {
	var s float64
	for _, p := range r.byLang(lang) {
		if p.WallNS > 0 {
			s += float64(p.Polls) / (float64(p.WallNS) / 1e9)
		}
	}
	return s
}

// pollRatio is the polls made over the polls due (clients × window / interval).
func (r *result) pollRatio(interval time.Duration) float64 {
	var made, due float64
	for _, p := range r.reps {
		made += float64(p.Polls)
		due += float64(p.Clients) * float64(p.WallNS) / float64(interval)
	}
	if due == 0 {
		return 0
	}
	return made / due
}

func (r *result) errors() (uint64, string) {
	var n uint64
	first := ""
	for _, p := range r.reps {
		n += p.Errors
		if first == "" && p.Error != "" {
			first = fmt.Sprintf("%s pid %d: %s", p.Lang, p.PID, p.Error)
		}
	}
	return n, first
}

// serverCores is the server's CPU over its fixed window, in cores: from schedstat (ns) and from /proc/PID/stat
// (utime+stime, 10 ms ticks).
func (r *result) serverCores() (sched, stat float64) {
	w := float64(r.serverWin)
	return float64(r.serverCPU.Sched) / w, float64(r.serverCPU.Stat) / w
}

// host is the host's busy CPU over the run and the part of it that was not this run's (other work on the machine),
// in cores.
func (r *result) host() (busy, others float64) {
	w := float64(r.wall)
	var ours float64
	for _, p := range slices.Concat(r.reps, r.waits) {
		ours += float64(p.CPUNS)
	}
	ours += float64(r.serverAll.Sched) + float64(r.self)
	return float64(r.machine) / w, max(0, float64(r.machine)-ours) / w
}

// verdict is "" when the run met the target: p99 within it, every pair observed, no error, the polls made on
// time (at least 95% of those due); else why not.
func (r *result) verdict(interval, target time.Duration) string {
	if n, first := r.errors(); n > 0 {
		return fmt.Sprintf("%d errors (%s)", n, first)
	}
	m, missing := r.lat()
	if missing > 0 {
		return fmt.Sprintf("%d of %d (client, publish) pairs unobserved", missing, m.N+missing)
	}
	p99, _ := m.Quantile(0.99, 0)
	if p99 > target {
		return fmt.Sprintf("p99 %s > %s", ms(p99), ms(target))
	}
	if pr := r.pollRatio(interval); pr < 0.95 {
		return fmt.Sprintf("only %.0f%% of the polls due were made", 100*pr)
	}
	return ""
}

// summary is one line for the progress log.
func (r *result) summary(interval, target time.Duration) string {
	sched, _ := r.serverCores()
	s := fmt.Sprintf("%d clients (%s) in %d processes: server %.2f%% of a core", r.clients, r.mode, len(r.specs), 100*sched)
	if len(r.reps) > 0 {
		p50, ok50 := r.quantile(0.5)
		p99, ok99 := r.quantile(0.99)
		_, missing := r.lat()
		s += fmt.Sprintf(", latency p50 %s p99 %s (unobserved %d), readers %.2f cores, %.0f snapshots/s, polls %.0f%%",
			msOK(p50, ok50), msOK(p99, ok99), missing, r.readerCores(""), r.snapsPerSec(""), 100*r.pollRatio(interval))
		if v := r.verdict(interval, target); v != "" {
			s += "; target missed: " + v
		}
	}
	busy, others := r.host()
	return s + fmt.Sprintf("; host %.2f cores busy, %.2f of them not ours; %.1f s", busy, others, r.wall.Seconds())
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

func msOK(d time.Duration, ok bool) string {
	if !ok {
		return "unobserved"
	}
	return ms(d)
}
