package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// daemon is bin/announcementd under the profile: a copy of the binary, a region, state and runtime dir of its own,
// its metrics listener on a loopback port with --pprof, so the worker serves /debug/pprof/ there.
type daemon struct {
	p       *proctest.Daemon
	dir     string // the temp dir holding the copy, state and runtime dir
	bin     string // the copy that runs (perf reads its symbols)
	shm     string
	metrics string // HOST:PORT of --metrics
	api     *http.Client
}

// startDaemon copies bin into a temp dir (a `make build` beside the bench must not change what it profiles),
// starts it with --metrics on a free loopback port and --pprof, and returns once its first generation serves.
func startDaemon(ctx context.Context, bin string, extra []string) (d *daemon, err error) {
	src, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("%w (run `make build` first, or `make profile`, which builds it)", err)
	}
	dir, err := os.MkdirTemp("", "profilebench")
	if err != nil {
		return nil, err
	}
	d = &daemon{dir: dir, bin: filepath.Join(dir, "announcementd"),
		shm: filepath.Join("/dev/shm", fmt.Sprintf("notice_profile_%d_%d", os.Getpid(), time.Now().UnixNano()))}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err := os.WriteFile(d.bin, src, 0o755); err != nil {
		return nil, err
	}
	if d.metrics, err = freeLoopback(); err != nil {
		return nil, err
	}
	args := append([]string{"--metrics", d.metrics, "--pprof"}, extra...)
	d.p, err = proctest.Launch(proctest.DaemonConfig{Binary: d.bin, Shm: d.shm, StateDir: filepath.Join(dir, "state"),
		RuntimeDir: filepath.Join(dir, "run"), Args: args, ReadyTimeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan error, 1)
	go func() { ready <- d.p.Ready() }()
	select {
	case err = <-ready:
	case <-ctx.Done():
		d.p.Kill()
		<-ready
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w\n%s", bin, err, d.p.Log())
	}
	d.api = proctest.UnixClient(filepath.Join(dir, "run", "api.sock"), 30*time.Second, true)
	return d, nil
}

// close stops the daemon (SIGTERM, then SIGKILL after 30 s) and removes everything it used; again, it does nothing.
func (d *daemon) close() {
	if d.p != nil {
		if err := d.p.Stop(30 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "profile: stopping the daemon:", err)
		}
		d.p.Close()
		d.p = nil
	}
	os.Remove(d.shm)
	os.RemoveAll(d.dir)
}

// freeLoopback is a loopback TCP address nobody listens on now.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// do sends method path with body as JSON (none when nil) to the API and decodes a 200 answer into out (when not nil).
func (d *daemon) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://announcementd"+path, r)
	if err != nil {
		return err
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, strings.TrimSpace(string(ans)))
	}
	if out != nil {
		if err := json.Unmarshal(ans, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// fill puts announcements 1..n in batches of 500: the set every publish of the load re-encodes.
func (d *daemon) fill(ctx context.Context, n int) error {
	for first := 1; first <= n; first += 500 {
		var puts []map[string]any
		for id := first; id < first+500 && id <= n; id++ {
			puts = append(puts, map[string]any{"id": id, "content": content(id, 0)})
		}
		if err := d.do(ctx, "POST", "/v1/batch", map[string]any{"put": puts}, nil); err != nil {
			return fmt.Errorf("fill the set: %w", err)
		}
	}
	return nil
}

// worker is the serving worker's pid, from GET /v1/status.
func (d *daemon) worker(ctx context.Context) (int, error) {
	var st wire.WorkerStatus
	if err := d.do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return 0, err
	}
	if st.Worker.PID <= 0 {
		return 0, fmt.Errorf("GET /v1/status: worker pid %d", st.Worker.PID)
	}
	return st.Worker.PID, nil
}

// content is the text of announcement id at its n-th update: about 60 bytes, as a typical announcement.
func content(id, n int) string {
	return fmt.Sprintf("announcement %d, update %d: maintenance window tonight 02:00 UTC", id, n)
}
