package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// top is `go tool pprof -top` of the profile: the nodecount functions by flat time, or by cumulative time with cum.
func top(goCmd, profile string, nodecount int, cum bool) (string, error) {
	args := []string{"tool", "pprof", "-symbolize=none", "-top", fmt.Sprintf("-nodecount=%d", nodecount)}
	if cum {
		args = append(args, "-cum")
	}
	cmd := exec.Command(goCmd, append(args, profile)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(cmd.Args[1:], " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// totalSamples reads "Total samples = 24.87s (124.35%)" from pprof's -top header: the CPU time the profile holds,
// and that time as a share of the profile's duration.
var totalSamples = regexp.MustCompile(`Total samples = ([0-9.]+)(ms|s|mins|hrs) \(\s*([0-9.]+)%\)`)

func sampled(topText string) (d time.Duration, pct float64, err error) {
	m := totalSamples.FindStringSubmatch(topText)
	if m == nil {
		return 0, 0, errors.New("the profile holds no samples (pprof printed no \"Total samples\")")
	}
	var v float64
	fmt.Sscan(m[1], &v)
	fmt.Sscan(m[3], &pct)
	unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "mins": time.Minute, "hrs": time.Hour}[m[2]]
	d = time.Duration(v * float64(unit))
	if d <= 0 {
		return 0, 0, fmt.Errorf("the profile holds no CPU time (%q)", m[0])
	}
	return d, pct, nil
}

// flameGraph saves pprof's own flame graph view of the profile as one HTML file. `go tool pprof -http` serves it
// at /ui/flamegraph as a page whose style sheets, script (pprof's stackViewer) and data (the stacks as JSON) are
// all inline, so the saved page works from disk in any browser: hover for a frame's share, click to zoom into a
// frame. Only the menus (other views, source, focus) call back to pprof's server; a note at the top of the page
// says how to get them. The page is checked to load nothing from elsewhere.
func flameGraph(ctx context.Context, goCmd, profile, out string) error {
	addr, err := freeLoopback()
	if err != nil {
		return err
	}
	cmd := exec.Command(goCmd, "tool", "pprof", "-symbolize=none", "-no_browser", "-http="+addr, profile)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// `go tool pprof` runs pprof as a child of its own: both go in a process group of their own, killed together
	// (killing the go command alone would leave pprof serving, holding the output pipe open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go tool pprof -http: %w", err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	hc := &http.Client{Timeout: 30 * time.Second}
	var page []byte
	deadline := time.Now().Add(time.Minute)
	for {
		page, err = fetch(ctx, hc, "http://"+addr+"/ui/flamegraph")
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("go tool pprof -http: the flame graph: %w\n%s", err, logs.String())
	}
	if err := selfContained(page); err != nil {
		return fmt.Errorf("pprof's flame graph page: %w", err)
	}
	note := `<div style="font:13px sans-serif;padding:4px 8px;background:#ffd">Saved by bench/profile from ` +
		`<code>go tool pprof -http</code>. The flame graph works offline: hover a frame for its share, click to zoom. ` +
		`The menus (other views, source, focus) need pprof's server: <code>go tool pprof -http=: ` + profile + `</code>.</div>`
	i := bytes.Index(page, []byte("<body>"))
	if i < 0 {
		return errors.New("pprof's flame graph page has no <body>")
	}
	i += len("<body>")
	page = append(page[:i:i], append([]byte(note), page[i:]...)...)
	return os.WriteFile(out, page, 0o644)
}

func fetch(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// external finds what a page would load from elsewhere: scripts, style sheets, frames, images, fonts or imports by
// URL.
var external = regexp.MustCompile(`(?i)<script[^>]*\ssrc=|<link[^>]*\shref=|<iframe|<img[^>]*\ssrc=|url\(\s*['"]?(https?:)?//|@import`)

// selfContained fails when page loads anything from elsewhere, or does not hold pprof's flame graph.
func selfContained(page []byte) error {
	if m := external.Find(page); m != nil {
		return fmt.Errorf("it loads something from elsewhere: %q", m)
	}
	if !bytes.Contains(page, []byte("stackViewer(")) {
		return errors.New("it has no stackViewer: not pprof's flame graph")
	}
	return nil
}
