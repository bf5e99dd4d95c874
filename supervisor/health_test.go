package supervisor

import (
	"strings"
	"testing"

	"github.com/announcementd/announcementd/healthcheck"
)

// The supervisor's health: failed before a worker serves, ok while one does, degraded while a failed reload's
// outcome stands, ok again after a reload succeeds.
func TestSupervisorHealth(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.sup.Status().Health; r.Health != healthcheck.Failed || !strings.Contains(strings.Join(r.Reasons, ";"), "no worker serves yet") {
		t.Fatalf("before the first worker: %+v", r)
	}
	h.start()
	if r := h.sup.Status().Health; r.Health != healthcheck.OK || !r.Ready {
		t.Fatalf("serving: %+v", r)
	}
	h.setMode(2, modeUnhealthyStandby)
	reload(t, h)
	r := h.sup.Status().Health
	if r.Health != healthcheck.Degraded || !r.Ready || !strings.Contains(strings.Join(r.Reasons, ";"), "the last reload failed") {
		t.Fatalf("after a failed reload: %+v", r)
	}
	if res := reload(t, h); !res.OK {
		t.Fatalf("second reload: %+v", res)
	}
	if r := h.sup.Status().Health; r.Health != healthcheck.OK {
		t.Fatalf("after a good reload: %+v", r)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}
