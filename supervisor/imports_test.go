package supervisor

import (
	"os/exec"
	"strings"
	"testing"
)

// The supervisor stays thin: it knows processes, fds and signals, never announcements. Nothing it links may be
// the worker, the board, the store or the announcement model; the handoff protocol and the shared definition of
// health are all it needs.
func TestSupervisorDoesNotImportAnnouncementLogic(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	const module = "github.com/announcementd/announcementd/"
	for _, dep := range strings.Fields(string(out)) {
		pkg, ours := strings.CutPrefix(dep, module)
		if !ours {
			continue
		}
		switch pkg {
		case "supervisor", "handoff", "healthcheck", "internal/procfs":
		default:
			t.Errorf("the supervisor links %s; it may link only handoff, healthcheck and internal/procfs of this module", dep)
		}
	}
}
