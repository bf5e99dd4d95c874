package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/announcementd/announcementd/wire"
)

// memOf is a process's memory, in bytes: the resident set from /proc/PID/status (VmRSS = RssAnon + RssFile +
// RssShmem) and the proportional set from /proc/PID/smaps_rollup (Pss, split the same way). The board is a file
// in /dev/shm (tmpfs), so its pages count as shmem, and they are shared: every process that maps them counts them
// whole in its RSS, while Pss divides each page among the processes mapping it, so the Pss of all of them adds up
// to the memory the host really holds. Anonymous memory (the Go heap, stacks) is private to the process.
type memOf struct {
	VmRSS, RssAnon, RssFile, RssShmem int64
	Pss, PssAnon, PssFile, PssShmem   int64
}

// readMem reads the memory of pid. It fails when a field is missing: no figure is left at 0 unread.
func readMem(pid int) (memOf, error) {
	var m memOf
	if err := kbFields(fmt.Sprintf("/proc/%d/status", pid), map[string]*int64{
		"VmRSS": &m.VmRSS, "RssAnon": &m.RssAnon, "RssFile": &m.RssFile, "RssShmem": &m.RssShmem}); err != nil {
		return memOf{}, err
	}
	if err := kbFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid), map[string]*int64{
		"Pss": &m.Pss, "Pss_Anon": &m.PssAnon, "Pss_File": &m.PssFile, "Pss_Shmem": &m.PssShmem}); err != nil {
		return memOf{}, err
	}
	return m, nil
}

// kbFields reads the "Name: N kB" lines of a /proc file into want (as bytes); every name must be there.
func kbFields(path string, want map[string]*int64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		p := want[name]
		if !ok || p == nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("%s: %s: unexpected %q", path, name, rest)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, name, err)
		}
		*p = n * 1024
		found++
	}
	if found != len(want) {
		return fmt.Errorf("%s: %d of the fields %v found", path, found, keys(want))
	}
	return nil
}

func keys(m map[string]*int64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (a memOf) add(b memOf) memOf {
	return memOf{a.VmRSS + b.VmRSS, a.RssAnon + b.RssAnon, a.RssFile + b.RssFile, a.RssShmem + b.RssShmem,
		a.Pss + b.Pss, a.PssAnon + b.PssAnon, a.PssFile + b.PssFile, a.PssShmem + b.PssShmem}
}

// role is a process of the server with its name: supervisor, worker, HTTP server.
type role struct {
	name string
	pid  int
}

// serverMem is the memory of each of the server's processes.
type serverMem []struct {
	role
	mem memOf
}

func readServerMem(roles []role) (serverMem, error) {
	var out serverMem
	for _, r := range roles {
		m, err := readMem(r.pid)
		if err != nil {
			return nil, fmt.Errorf("memory of the %s (pid %d): %w", r.name, r.pid, err)
		}
		out = append(out, struct {
			role
			mem memOf
		}{r, m})
	}
	return out, nil
}

func (s serverMem) of(name string) (memOf, bool) {
	for _, x := range s {
		if x.name == name {
			return x.mem, true
		}
	}
	return memOf{}, false
}

// readerMem is the memory of the client processes of one language in a run: their sum and how many.
type readerMem struct {
	procs, clients int
	sum            memOf
}

// perProc is the mean memory of one process.
func (rm *readerMem) perProc() memOf {
	n, s := int64(max(rm.procs, 1)), rm.sum
	return memOf{s.VmRSS / n, s.RssAnon / n, s.RssFile / n, s.RssShmem / n, s.Pss / n, s.PssAnon / n, s.PssFile / n, s.PssShmem / n}
}

// readFleetMem reads the memory of every client process of f, by language.
func readFleetMem(f *fleet) (map[string]*readerMem, error) {
	out := map[string]*readerMem{}
	for _, c := range f.clients {
		m, err := readMem(c.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("%s client process: %w", c.lang, err)
		}
		rm := out[c.lang]
		if rm == nil {
			rm = &readerMem{}
			out[c.lang] = rm
		}
		rm.procs++
		rm.clients += c.clients
		rm.sum = rm.sum.add(m)
	}
	return out, nil
}

// status is the worker's answer to GET /v1/status.
func (d *daemon) status(ctx context.Context) (*wire.WorkerStatus, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://announcementd/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/status: %s %s", resp.Status, bytes.TrimSpace(b))
	}
	var st wire.WorkerStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	return &st, nil
}

// memPoint is the daemon's memory at one set size, no client: the growth with the set.
type memPoint struct {
	set      int // announcements; 0: just started
	capacity int // the board's capacity (announcements)
	size     uint64
	locked   bool // the region is locked in memory (all its pages resident)
	mem      serverMem
}
