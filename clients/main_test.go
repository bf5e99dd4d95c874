// Package clients_test checks the C and Python readers against the Go writer with real processes: every golden
// region decodes identically in every reader, garbage never crashes the C reader under ASan/UBSan, and readers in
// three languages never accept a torn snapshot from a writer publishing flat out in another process.
package clients_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/stress"
)

// ctl is announcementctl, built for the tests.
var ctl string

func TestMain(m *testing.M) {
	proctest.Main(m, proctest.Roles{
		"stress-writer": func(args []string) int { return stress.WriterMain(args[0]) },
		"stress-reader": func(args []string) int { return stress.ReaderMain(args[0], args[1]) },
		"waiter":        func(args []string) int { return goWaiter(args[0]) },
		"follow-writer": func(args []string) int { return followWriterMain(args[0]) },
		"follower":      goFollowerMain,
	}, proctest.Setup(build))
}

// build builds the C reader (with and without ASan) and announcementctl, for the tests.
func build() (func(), error) {
	if out, err := exec.Command("make", "-s", "-C", "c", "all", "asan").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the C reader: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "clients-test")
	if err != nil {
		return nil, err
	}
	ctl = filepath.Join(dir, "announcementctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "../cmd/announcementctl").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("building announcementctl: %v\n%s", err, out)
	}
	return func() { os.RemoveAll(dir) }, nil
}

// need skips nothing: a missing tool is a broken machine (.ci/run installs them), so the test fails.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is needed for this test: %v", tool, err)
	}
	return p
}

// dumpTool is one reader's dump command line; the region path is appended.
type dumpTool struct {
	name string
	argv []string
}

func dumpTools(t *testing.T) []dumpTool {
	py := need(t, "python3")
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	return []dumpTool{
		{"announcementctl", []string{ctl, "dump", "--json", "--shm"}},
		{"c", []string{abs("c/notice_dump")}},
		{"python", []string{py, abs("python/notice.py")}},
		{"ctypes", []string{py, abs("c/test_ctypes.py"), abs("c/libnotice.so")}},
	}
}

// runDump runs a dump tool on path (with env added to the test's environment) and returns its exit code, its
// parsed JSON output and its stderr. Output that is not JSON fails the test.
func runDump(t *testing.T, tool dumpTool, path string, env ...string) (int, map[string]any, string) {
	t.Helper()
	cmd := exec.Command(tool.argv[0], append(tool.argv[1:], path)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", tool.name, err)
	}
	v, jerr := decodeJSON(stdout.Bytes())
	if jerr != nil {
		t.Fatalf("%s %s: exit %d, output is not JSON (%v):\n%s\nstderr: %s", tool.name, path, code, jerr, stdout.String(), stderr.String())
	}
	return code, v, stderr.String()
}

// decodeJSON decodes an object keeping numbers exact (json.Number), so 64-bit values compare exactly.
func decodeJSON(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	err := dec.Decode(&v)
	return v, err
}
