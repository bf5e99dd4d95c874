package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
)

// TestPprofOptIn: Go's profiler is off unless the operator asks for it (TestMetrics's daemon, with --metrics alone,
// answers 404 under /debug/pprof/); with --metrics and --pprof, the worker (the process that serves the API and
// publishes, not the supervisor) answers a CPU profile there. docs/PROFILING.md relies on both.
func TestPprofOptIn(t *testing.T) {
	if c, err := parseFlags(nil); err != nil || c.pprof || c.metrics != "" {
		t.Fatalf("defaults: pprof %v, metrics %q, %v; want both off", c.pprof, c.metrics, err)
	}
	if _, err := parseFlags([]string{"--pprof"}); err == nil {
		t.Fatal("--pprof without --metrics was accepted")
	}

	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_pprof_%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(path) })
	dir := t.TempDir()
	hc := &http.Client{Timeout: 20 * time.Second}

	addr := loopbackAddr(t)
	proctest.StartDaemon(t, daemonConfig(t, path, dir, "--metrics", addr, "--pprof"))
	// The process that answers is a worker: its command line is `announcementd worker ...`.
	code, cmdline := pprofGet(t, hc, "http://"+addr+"/debug/pprof/cmdline")
	if code != http.StatusOK || !bytes.Contains(cmdline, []byte("\x00worker\x00")) {
		t.Fatalf("GET /debug/pprof/cmdline: %d %q; want a worker's command line", code, cmdline)
	}
	code, body := pprofGet(t, hc, "http://"+addr+"/debug/pprof/profile?seconds=1")
	if code != http.StatusOK {
		t.Fatalf("GET /debug/pprof/profile: %d %s", code, body)
	}
	// A CPU profile is a gzipped protocol buffer (github.com/google/pprof/proto/profile.proto).
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the profile is not gzip: %v (%d bytes)", err, len(body))
	}
	raw, err := io.ReadAll(zr)
	if err != nil || len(raw) == 0 {
		t.Fatalf("the profile: %d bytes, %v", len(raw), err)
	}
	if !bytes.Contains(raw, []byte("nanoseconds")) {
		t.Errorf("the profile names no CPU time unit (%d bytes)", len(raw))
	}
}

// loopbackAddr is a loopback TCP address nobody listens on now.
func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pprofGet returns the status and body of GET url.
func pprofGet(t *testing.T, hc *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}
