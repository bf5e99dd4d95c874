package systemd

import (
	"testing"

	"github.com/announcementd/announcementd/internal/proctest"
)

// TestMain checks, after a passing run, that no goroutine is left (proctest.Main).
func TestMain(m *testing.M) { proctest.Main(m, nil) }
