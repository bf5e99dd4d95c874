package clients_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/stress"
)

// TestTornReadStress runs one writer process publishing flat out and two reader processes each in Go, C and
// Python for STRESS_SECONDS (default 10): no reader may accept a torn snapshot or see the version go back, and each
// must validate many snapshots.
func TestTornReadStress(t *testing.T) {
	proctest.Slow(t, "the torn-read stress test, 10 s of six readers in three languages")
	seconds := "10"
	if s := os.Getenv("STRESS_SECONDS"); s != "" {
		seconds = s
	}
	path := filepath.Join("/dev/shm", fmt.Sprintf("notice_stress_%d_%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() { os.Remove(path) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	wcmd := proctest.CommandContext(ctx, t, "stress-writer", path)
	stdin, _ := wcmd.StdinPipe()
	var wout strings.Builder
	wcmd.Stdout, wcmd.Stderr = &wout, &wout
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer wcmd.Process.Kill()
	wdone := make(chan error, 1)
	go func() { wdone <- wcmd.Wait() }()
	for b, err := reader.Open(path); ; b, err = reader.Open(path) {
		if err == nil {
			v := b.Version()
			b.Close()
			if v > 0 {
				break
			}
		}
		select {
		case err := <-wdone: // wout is complete once Wait has returned
			t.Fatalf("writer exited before publishing: %v\n%s", err, wout.String())
		case <-ctx.Done():
			t.Fatal("writer never published")
		case <-time.After(10 * time.Millisecond):
		}
	}

	py := need(t, "python3")
	readers := []*exec.Cmd{
		proctest.CommandContext(ctx, t, "stress-reader", seconds, path), proctest.CommandContext(ctx, t, "stress-reader", seconds, path),
		exec.CommandContext(ctx, "c/notice_stress", seconds, path), exec.CommandContext(ctx, "c/notice_stress", seconds, path),
		exec.CommandContext(ctx, py, "python/notice_stress.py", seconds, path), exec.CommandContext(ctx, py, "python/notice_stress.py", seconds, path),
	}
	results := make([]stress.Result, len(readers))
	var wg sync.WaitGroup
	errs := make(chan error, len(readers))
	for i, cmd := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					stderr = ee.Stderr
				}
				errs <- fmt.Errorf("%v: %v\n%s%s", cmd.Args, err, out, stderr)
				return
			}
			if err := json.Unmarshal(out, &results[i]); err != nil {
				errs <- fmt.Errorf("%v: output %q: %v", cmd.Args, out, err)
			}
		}()
	}
	wg.Wait()
	stdin.Close()
	werr := <-wdone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if werr != nil {
		t.Fatalf("writer: %v\n%s", werr, wout.String())
	}
	t.Logf("writer: %s", strings.TrimSpace(wout.String()))
	for _, r := range results {
		t.Logf("%-6s pid %-7d validated %9d snapshots, %5.3f attempts each, versions %d..%d, errors %v",
			r.Lang, r.PID, r.Validated, r.AttemptsPerSnapshot(), r.FirstVersion, r.LastVersion, r.Errors)
		if r.TornAccepted != 0 || r.Snapshots != r.Validated {
			t.Errorf("%s reader %d accepted %d torn snapshots", r.Lang, r.PID, r.Snapshots-r.Validated)
		}
		if r.VersionDecreases != 0 {
			t.Errorf("%s reader %d saw the version decrease %d times", r.Lang, r.PID, r.VersionDecreases)
		}
		for name, n := range r.Errors {
			if name != "busy" && n > 0 {
				t.Errorf("%s reader %d: %d %s errors", r.Lang, r.PID, n, name)
			}
		}
		if r.Validated < 1000 || r.LastVersion <= r.FirstVersion {
			t.Errorf("%s reader %d validated only %d snapshots (versions %d..%d): the test proves nothing",
				r.Lang, r.PID, r.Validated, r.FirstVersion, r.LastVersion)
		}
	}
}
