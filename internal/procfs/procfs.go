// Package procfs reads a process's state, parent and process group from /proc/PID/stat: what the supervisor needs
// to check that a peer is its own child, and what tests need to find the processes a daemon left; and its CPU
// time, for the benches. Linux only.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stat is the part of /proc/PID/stat this package reads.
type Stat struct {
	PID, PPID, PGRP int
	State           byte // R, S, D, Z (zombie: exited, not reaped), X (dead), ...
}

// Running reports whether the process has not exited (a zombie has).
func (s Stat) Running() bool { return s.State != 'Z' && s.State != 'X' }

// ReadStat reads pid's stat; the error wraps fs.ErrNotExist when there is no such process.
func ReadStat(pid int) (Stat, error) {
	f, err := statFields(pid, 3)
	if err != nil {
		return Stat{}, err
	}
	if len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: state %q", pid, f[0])
	}
	s := Stat{PID: pid, State: f[0][0]}
	s.PPID, err = strconv.Atoi(f[1])
	if err == nil {
		s.PGRP, err = strconv.Atoi(f[2])
	}
	if err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// statFields returns the fields of /proc/PID/stat after the command name (stat(5)'s fields 3 on: state, ppid,
// pgrp, ...), at least n of them.
func statFields(pid, n int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < n {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	return f, nil
}

// CPU is the CPU time a process has used, all its threads: Stat is utime+stime from /proc/PID/stat (in clock ticks
// of 10 ms: USER_HZ is 100 on Linux, whatever the kernel's HZ), Sched the sum of its threads' run time from
// /proc/PID/task/*/schedstat (ns, more precise; threads that exited are not counted).
type CPU struct{ Stat, Sched time.Duration }

// Sub is c - o.
func (c CPU) Sub(o CPU) CPU { return CPU{c.Stat - o.Stat, c.Sched - o.Sched} }

// Add is c + o.
func (c CPU) Add(o CPU) CPU { return CPU{c.Stat + o.Stat, c.Sched + o.Sched} }

// ReadCPU reads pid's CPU time; the error wraps fs.ErrNotExist when there is no such process.
func ReadCPU(pid int) (CPU, error) {
	f, err := statFields(pid, 13)
	if err != nil {
		return CPU{}, err
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // stat(5) field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err := errors.Join(err1, err2); err != nil {
		return CPU{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	c := CPU{Stat: time.Duration(ut+st) * clockTick}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return CPU{}, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return CPU{}, fmt.Errorf("/proc/%d/task/%s/schedstat: %w", pid, t.Name(), err)
		}
		c.Sched += time.Duration(ns)
	}
	return c, nil
}

// Host is the machine's CPU time since boot over all its CPUs, from /proc/stat's first line: Busy is what was not
// idle or waiting for I/O, Total everything; guest time, which the kernel counts in user time too, is counted once.
type Host struct{ Busy, Total time.Duration }

// BusySince is how many CPUs were busy on average between o and h (0 when no time passed).
func (h Host) BusySince(o Host) float64 {
	if h.Total <= o.Total {
		return 0
	}
	return float64(h.Busy-o.Busy) / float64(h.Total-o.Total) * float64(runtime.NumCPU())
}

// ReadHost reads the machine's CPU time.
func ReadHost() (Host, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Host{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return Host{}, errors.New("/proc/stat: no cpu line")
	}
	var h Host
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal; then guest, guest_nice: in user already
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Host{}, fmt.Errorf("/proc/stat: %w", err)
		}
		d := time.Duration(n) * clockTick
		h.Total += d
		if i != 3 && i != 4 {
			h.Busy += d
		}
	}
	return h, nil
}

// SelfCPU is the CPU time this process has used (getrusage(2), user and system).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTick is the unit of /proc's CPU times: USER_HZ is 100 on Linux, whatever the kernel's HZ.
const clockTick = 10 * time.Millisecond

// All lists every process there is, skipping those that exit while it reads.
func All() []Stat {
	entries, _ := os.ReadDir("/proc")
	var all []Stat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := ReadStat(pid); err == nil {
			all = append(all, s)
		}
	}
	return all
}

// Children lists the processes whose parent is ppid, zombies included, by pid.
func Children(ppid int) []Stat {
	var kids []Stat
	for _, s := range All() {
		if s.PPID == ppid {
			kids = append(kids, s)
		}
	}
	return kids
}
