package clients_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestGoldenAllReaders runs the C, Python and ctypes dump tools on every golden region: a readable region must
// dump exactly as its .json (same keys, same values), a damaged one must fail with the error name the .json gives.
func TestGoldenAllReaders(t *testing.T) {
	regions, _ := filepath.Glob("../testdata/regions/*.region")
	if len(regions) < 10 {
		t.Fatalf("only %d golden regions found", len(regions))
	}
	tools := dumpTools(t)
	for _, region := range regions {
		name := strings.TrimSuffix(filepath.Base(region), ".region")
		raw, err := os.ReadFile(strings.TrimSuffix(region, ".region") + ".json")
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range tools {
			t.Run(name+"/"+tool.name, func(t *testing.T) {
				code, got, stderr := runDump(t, tool, region)
				if wantErr, ok := want["error"]; ok {
					if code != 1 || got["error"] != wantErr {
						t.Fatalf("exit %d, error %v; want exit 1, error %v (%v)\nstderr: %s", code, got["error"], wantErr, got["message"], stderr)
					}
					return
				}
				if code != 0 || !reflect.DeepEqual(got, want) {
					g, _ := json.MarshalIndent(got, "", " ")
					t.Fatalf("exit %d, dump differs from %s.json:\n%s\nstderr: %s", code, name, g, stderr)
				}
			})
		}
	}
}

// TestPythonUnit runs the Python reader's own unit tests.
func TestPythonUnit(t *testing.T) {
	cmd := exec.Command(need(t, "python3"), "-m", "unittest", "discover", "-s", "python", "-p", "test_*.py")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python unittest: %v\n%s", err, out)
	}
	t.Logf("%s", lastLine(out))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
