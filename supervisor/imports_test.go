package supervisor

import (
	"os/exec"
	"strings"
	"testing"
)

// The supervisor stays thin: it knows processes, fds and signals, never announcements. Nothing it links may be
// the worker, the board, the store or the announcement model; the handoff protocol, the shared definition of
// health and the JSON of the control API (wire) are all it needs. go list failing fails the test: the rule is
// never skipped.
func TestSupervisorDoesNotImportAnnouncementLogic(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/announcementd/announcementd/"
	for _, dep := range strings.Fields(string(out)) {
		pkg, ours := strings.CutPrefix(dep, module)
		if !ours {
			continue
		}
		switch pkg {
		case "supervisor", "handoff", "healthcheck", "internal/procfs", "wire":
		default:
			t.Errorf("the supervisor links %s; it may link only handoff, healthcheck, internal/procfs and wire of this module", dep)
		}
	}
}
