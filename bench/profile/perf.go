package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perfRecord runs `perf record -g` on pid for d at freq samples per second, into data. Go keeps frame pointers on
// amd64 and arm64, so perf's default frame-pointer unwinding gives whole Go stacks (and the kernel's under them).
func perfRecord(ctx context.Context, perf string, pid int, d time.Duration, freq int, data string) error {
	cmd := exec.CommandContext(ctx, perf, "record", "-g", "-F", strconv.Itoa(freq), "-p", strconv.Itoa(pid), "-o", data,
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf record: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// perfReport is `perf report` of data: the symbols with at least 0.5% of the samples, self time, with their
// shared object, no call graph.
func perfReport(perf, data string) (string, error) {
	cmd := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "-g", "none",
		"--sort", "dso,symbol", "--percent-limit", "0.5")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("perf report: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// perfFold turns `perf script` of data into folded stacks, one line per distinct stack, root first, frames joined
// by ";", then a space and the count of samples: the input of flamegraph.pl, speedscope and inferno. It returns
// how many samples it read.
func perfFold(perf, data, out string) (int, error) {
	cmd := exec.Command(perf, "script", "-i", data, "-F", "comm,tid,ip,sym")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("perf script: %w", err)
	}
	counts, samples := fold(stdout)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("perf script: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if samples == 0 {
		return 0, fmt.Errorf("perf script printed no sample of %s", data)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, counts[k])
	}
	return samples, os.WriteFile(out, b.Bytes(), 0o644)
}

// fold reads perf script's output: a sample is a header line (command and tid), then one line per frame, leaf
// first ("\t ADDR SYMBOL"), then an empty line.
func fold(r io.Reader) (map[string]int, int) {
	counts := map[string]int{}
	samples := 0
	var frames []string
	flush := func() {
		if len(frames) > 0 {
			slices.Reverse(frames)
			counts[strings.Join(frames, ";")]++
			samples++
		}
		frames = frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			f := strings.Fields(line)
			sym := "[unknown]"
			if len(f) >= 2 {
				sym = strings.Join(f[1:], " ")
				if i := strings.LastIndex(sym, "+0x"); i > 0 {
					sym = sym[:i]
				}
			}
			frames = append(frames, strings.ReplaceAll(sym, ";", ":"))
		default: // a new sample's header: the command is its first word
			flush()
		}
	}
	flush()
	return counts, samples
}

// perfAvailable says why perf cannot profile here, or "" when it can: the binary is there and the kernel lets it
// sample (a software clock when the machine has no hardware counters, as in most VMs).
func perfAvailable(perf string) string {
	path, err := exec.LookPath(perf)
	if err != nil {
		return fmt.Sprintf("%s: not found (apt-get install linux-perf)", perf)
	}
	dir, err := os.MkdirTemp("", "perfcheck")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command(path, "record", "-o", filepath.Join(dir, "perf.data"), "--", "true").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("perf record fails here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return ""
}
