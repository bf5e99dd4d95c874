package proctest

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/announcementd/announcementd/internal/procfs"
)

// FD is one open fd of a process and what it points at (readlink of /proc/PID/fd/N: a path, "socket:[inode]",
// "pipe:[inode]", "anon_inode:[eventpoll]"...).
type FD struct {
	Num    int
	Target string
}

func (f FD) String() string { return fmt.Sprintf("%d -> %s", f.Num, f.Target) }

// Fds lists the fds pid holds, by number (from /proc/PID/fd). An fd closed while it reads is left out.
func Fds(pid int) ([]FD, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fds := make([]FD, 0, len(entries))
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile (the fd of ReadDir itself, when pid is this process)
		}
		fds = append(fds, FD{n, target})
	}
	slices.SortFunc(fds, func(a, b FD) int { return a.Num - b.Num })
	return fds, nil
}

// Children lists the running (not exited) child processes of pid, by pid.
func Children(pid int) []int {
	var kids []int
	for _, s := range procfs.Children(pid) {
		if s.Running() {
			kids = append(kids, s.PID)
		}
	}
	slices.Sort(kids)
	return kids
}

// Running reports whether pid exists and has not exited (a zombie has).
func Running(pid int) bool {
	s, err := procfs.ReadStat(pid)
	return err == nil && s.Running()
}

// Group lists the running processes of process group pgid.
func Group(pgid int) []int {
	var pids []int
	for _, s := range procfs.All() {
		if s.PGRP == pgid && s.Running() {
			pids = append(pids, s.PID)
		}
	}
	slices.Sort(pids)
	return pids
}
