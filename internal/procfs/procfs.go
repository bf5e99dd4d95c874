// Package procfs reads a process's state, parent and process group from /proc/PID/stat: what the supervisor needs
// to check that a peer is its own child, and what tests need to find the processes a daemon left. Linux only.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
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
