package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/internal/procfs"
)

// spec is one client process to start: its language and how many clients it simulates.
type spec struct {
	lang    string // c, go, python, http, futex (one Go futex waiter)
	clients int
}

// client is a started client process.
type client struct {
	spec
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// registry holds every process the bench started, so that an error or ^C kills them all.
var registry struct {
	sync.Mutex
	cmds map[*exec.Cmd]bool
}

func register(c *exec.Cmd) {
	registry.Lock()
	defer registry.Unlock()
	if registry.cmds == nil {
		registry.cmds = map[*exec.Cmd]bool{}
	}
	registry.cmds[c] = true
}

// reap kills c (SIGKILL) and waits for it.
func reap(c *exec.Cmd) {
	registry.Lock()
	delete(registry.cmds, c)
	registry.Unlock()
	if c.Process != nil {
		c.Process.Kill()
		c.Wait()
	}
}

// killAll kills and reaps every process still registered.
func killAll() {
	registry.Lock()
	var cs []*exec.Cmd
	for c := range registry.cmds {
		cs = append(cs, c)
	}
	registry.Unlock()
	for _, c := range cs {
		reap(c)
	}
}

// tail keeps the last bytes written to it: the client processes' shared stderr, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-8192:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// tools are the built client programs.
type tools struct {
	dir                          string
	shmreader, httppoll, creader string
	pyreader, pyNotice           string
}

// build compiles the Go client programs and the C reader into dir, and checks the Python reader's files.
func build(ctx context.Context, dir string) (*tools, error) {
	t := &tools{dir: dir, shmreader: filepath.Join(dir, "shmreader"), httppoll: filepath.Join(dir, "httppoll"),
		creader: filepath.Join(dir, "creader"), pyreader: "bench/scale/pyreader/pyreader.py", pyNotice: "clients/python"}
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	steps := [][]string{
		{goBin, "build", "-o", t.shmreader, "./bench/scale/shmreader"},
		{goBin, "build", "-o", t.httppoll, "./bench/scale/httppoll"},
		{"gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Iclients/c", "-o", t.creader, "bench/scale/creader/creader.c"},
		{"python3", "-c", "import sys; sys.path.insert(0, 'clients/python'); import notice"},
	}
	for _, s := range steps {
		out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s: %v\n%s(run from the module's root, as `make scale` does)", strings.Join(s, " "), err, out)
		}
	}
	for _, f := range []string{t.pyreader, filepath.Join(t.pyNotice, "notice.py")} {
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// command is how to start one client process of s.
func (t *tools) command(s spec, mode, boardPath, pubPath, addr string, interval time.Duration, seed int) *exec.Cmd {
	k, sd := strconv.Itoa(s.clients), strconv.Itoa(seed)
	switch s.lang {
	case "c":
		return exec.Command(t.creader, boardPath, pubPath, k, mode, strconv.FormatInt(int64(interval), 10), sd)
	case "go":
		return exec.Command(t.shmreader, "-board", boardPath, "-pub", pubPath, "-clients", k, "-mode", mode,
			"-interval", interval.String(), "-seed", sd)
	case "python":
		return exec.Command("python3", t.pyreader, t.pyNotice, boardPath, pubPath, k, mode,
			strconv.FormatInt(int64(interval), 10), sd)
	case "futex":
		return exec.Command(t.shmreader, "-board", boardPath, "-pub", pubPath, "-mode", "wait", "-seed", sd)
	case "http":
		return exec.Command(t.httppoll, "client", "-addr", addr, "-clients", k, "-pub", pubPath,
			"-interval", interval.String(), "-seed", sd)
	}
	panic("unknown language " + s.lang)
}

// fleet is the client processes of one run.
type fleet struct {
	clients []*client
	stderr  *tail
}

// startFleet starts the processes and waits until each says ready; every one must hold publish seq.
func startFleet(ctx context.Context, t *tools, specs []spec, mode, boardPath, pubPath, addr string, interval time.Duration, seq uint64) (*fleet, error) {
	f := &fleet{stderr: &tail{}}
	if len(specs) == 0 {
		return f, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() { io.Copy(f.stderr, r); r.Close() }()
	defer w.Close()
	for i, s := range specs {
		cmd := t.command(s, mode, boardPath, pubPath, addr, interval, i+1)
		cmd.Stderr = w
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			f.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.close()
			return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
		}
		register(cmd)
		f.clients = append(f.clients, &client{spec: s, cmd: cmd, stdin: stdin, out: bufio.NewReaderSize(stdout, 1<<16)})
	}
	lines, err := f.readLines(ctx, 120*time.Second)
	if err != nil {
		f.close()
		return nil, fmt.Errorf("waiting for the clients to be ready: %w", err)
	}
	for i, l := range lines {
		if l != fmt.Sprintf("ready %d", seq) {
			f.close()
			return nil, fmt.Errorf("%s client process %d said %q, want \"ready %d\"; stderr:\n%s", f.clients[i].lang, f.clients[i].cmd.Process.Pid, l, seq, f.stderr)
		}
	}
	return f, nil
}

// readLines reads one line from every process, at most timeout.
func (f *fleet) readLines(ctx context.Context, timeout time.Duration) ([]string, error) {
	type line struct {
		i   int
		s   string
		err error
	}
	ch := make(chan line, len(f.clients))
	for i, c := range f.clients {
		go func() {
			s, err := c.out.ReadString('\n')
			ch <- line{i, strings.TrimSpace(s), err}
		}()
	}
	out := make([]string, len(f.clients))
	deadline := time.After(timeout)
	for range f.clients {
		select {
		case l := <-ch:
			if l.err != nil {
				c := f.clients[l.i]
				time.Sleep(100 * time.Millisecond) // let its stderr arrive
				return nil, fmt.Errorf("%s client process %d: %v; stderr:\n%s", c.lang, c.cmd.Process.Pid, l.err, f.stderr)
			}
			out[l.i] = l.s
		case <-deadline:
			return nil, fmt.Errorf("no answer from some client processes within %v; stderr:\n%s", timeout, f.stderr)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// send writes a command to every process.
func (f *fleet) send(cmd string) error {
	for _, c := range f.clients {
		if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
			return fmt.Errorf("%s client process %d: %w; stderr:\n%s", c.lang, c.cmd.Process.Pid, err, f.stderr)
		}
	}
	return nil
}

// reports stops the processes after publish last and collects their reports.
func (f *fleet) reports(ctx context.Context, last uint64, maxWait time.Duration) ([]sim.Report, error) {
	if err := f.send(fmt.Sprintf("stop %d %d", last, maxWait.Milliseconds())); err != nil {
		return nil, err
	}
	lines, err := f.readLines(ctx, maxWait+30*time.Second)
	if err != nil {
		return nil, err
	}
	reps := make([]sim.Report, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &reps[i]); err != nil {
			return nil, fmt.Errorf("%s client process %d: report: %v: %.200q", f.clients[i].lang, f.clients[i].cmd.Process.Pid, err, l)
		}
	}
	return reps, nil
}

func (f *fleet) close() {
	for _, c := range f.clients {
		c.stdin.Close()
		reap(c.cmd)
	}
}

// sumCPU is the CPU of every pid.
func sumCPU(pids []int) (procfs.CPU, error) {
	var s procfs.CPU
	for _, p := range pids {
		c, err := procfs.ReadCPU(p)
		if err != nil {
			return procfs.CPU{}, err
		}
		s = s.Add(c)
	}
	return s, nil
}
