package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: wire links the standard library, healthcheck and nothing else, so that announcementctl can
// import it without the daemon's dependencies (zap, bbolt, prometheus, x/sys, ...). It fails, never skips, when
// go list cannot say.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	const module = "github.com/announcementd/announcementd/"
	allowed := map[string]bool{module + "wire": true, module + "healthcheck": true}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		if !allowed[dep] {
			t.Errorf("wire links %s; it may link only the standard library and healthcheck", dep)
		}
	}
	if len(deps) != len(allowed) {
		t.Errorf("go list -deps found %v; want exactly wire and healthcheck besides the standard library", deps)
	}
}
