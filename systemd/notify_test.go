package systemd

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/supervisor"
	"github.com/announcementd/announcementd/wire"
)

// listen makes a NOTIFY_SOCKET of the test's own and returns what arrives on it.
func listen(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

func next(t *testing.T, got <-chan string) string {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived on NOTIFY_SOCKET")
		return ""
	}
}

// Each transition sends what the package doc says, in one datagram.
func TestNotifierMessages(t *testing.T) {
	got := listen(t)
	n := NewNotifier(zap.NewNop())
	rolled := &wire.ReloadResult{Kind: wire.KindReload, Outcome: wire.OutcomeRolledBack, Reason: "generation 3 start:\nnot ready"}
	cases := []struct {
		tr   supervisor.Transition
		want []string
	}{
		{supervisor.Transition{From: supervisor.StateStarting, To: supervisor.StateServing, Generation: 1, RegionVersion: 7},
			[]string{"READY=1", "STATUS=serving: generation 1, board version 7"}},
		{supervisor.Transition{From: supervisor.StateServing, To: supervisor.StateReloading, Generation: 1},
			[]string{"RELOADING=1", "MONOTONIC_USEC=", "STATUS=reloading"}},
		{supervisor.Transition{From: supervisor.StateReloading, To: supervisor.StateServing, Generation: 1, Reload: rolled},
			[]string{"READY=1", "STATUS=serving: generation 1", "last reload: rolled back (generation 3 start: not ready)"}},
		{supervisor.Transition{From: supervisor.StateServing, To: supervisor.StateUpgrading, Generation: 1},
			[]string{"RELOADING=1", "STATUS=upgrading"}},
		{supervisor.Transition{From: supervisor.StateUpgrading, To: supervisor.StateRestarting, Reason: "rollback failed"},
			[]string{"READY=1", "STATUS=restarting the worker (rollback failed)"}},
		{supervisor.Transition{From: supervisor.StateServing, To: supervisor.StateStopping},
			[]string{"STOPPING=1", "STATUS=stopping"}},
	}
	for _, c := range cases {
		n.Observe(c.tr)
		m := next(t, got)
		for _, w := range c.want {
			if !strings.Contains(m, w) {
				t.Errorf("%s → %s sent %q; want %q in it", c.tr.From, c.tr.To, m, w)
			}
		}
		if strings.Count(m, "STATUS=") != 1 || strings.Contains(strings.SplitN(m, "STATUS=", 2)[1], "\n") {
			t.Errorf("%s → %s: the status is not one line at the end: %q", c.tr.From, c.tr.To, m)
		}
	}
	// serving → upgrading → stopped (handed over): the new supervisor says READY, not this one.
	n.Observe(supervisor.Transition{From: supervisor.StateUpgrading, To: supervisor.StateStopped, Reason: "upgraded"})
	if m := next(t, got); strings.Contains(m, "READY=1") {
		t.Errorf("the old supervisor said READY after handing over: %q", m)
	}
}

// Without NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNotifierWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	NewNotifier(zap.NewNop()).Observe(supervisor.Transition{From: supervisor.StateStarting, To: supervisor.StateServing})
}

func TestWorkerEnv(t *testing.T) {
	in := []string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=1", "WATCHDOG_PID=4", "LISTEN_FDS=2",
		"LISTEN_PID=4", "LISTEN_FDNAMES=a:b", "NOTIFY_SOCKETX=kept"}
	if got := WorkerEnv(in); !slices.Equal(got, []string{"PATH=/bin", "NOTIFY_SOCKETX=kept"}) {
		t.Fatalf("worker env %q", got)
	}
}
