package systemd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/supervisor"
	"github.com/announcementd/announcementd/wire"
)

// message is one datagram that arrived on the test's NOTIFY_SOCKET, with the fds it carried (already closed, so
// that a BARRIER=1 is answered; their fstat is kept).
type message struct {
	state string
	fds   []syscall.Stat_t
}

// listen makes a NOTIFY_SOCKET of the test's own and returns what arrives on it.
func listen(t *testing.T) <-chan message {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	got := make(chan message, 64)
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				close(got)
				return
			}
			m := message{state: string(buf[:n])}
			cmsgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for _, cm := range cmsgs {
				fds, _ := syscall.ParseUnixRights(&cm)
				for _, fd := range fds {
					var st syscall.Stat_t
					syscall.Fstat(fd, &st)
					m.fds = append(m.fds, st)
					syscall.Close(fd)
				}
			}
			got <- m
		}
	}()
	return got
}

func next(t *testing.T, got <-chan message) string {
	return nextMessage(t, got).state
}

func nextMessage(t *testing.T, got <-chan message) message {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived on NOTIFY_SOCKET")
		return message{}
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
	// serving → upgrading → stopped (handed over): the new supervisor speaks for the service; this one says
	// nothing, not even a STATUS= that would overwrite the new one's.
	n.Observe(supervisor.Transition{From: supervisor.StateUpgrading, To: supervisor.StateStopped, Reason: "upgraded"})
	n.Observe(supervisor.Transition{From: supervisor.StateServing, To: supervisor.StateStopping})
	if m := next(t, got); !strings.HasPrefix(m, "STOPPING=1") {
		t.Errorf("the old supervisor sent %q after handing over", m)
	}
}

// A supervisor that takes over (self-upgrade), or serves again after a rolled-back upgrade, is the main process:
// MAINPID=<its pid> and READY=1 in one datagram, then a BARRIER=1 that Observe waits for.
func TestNotifierMainPID(t *testing.T) {
	got := listen(t)
	n := NewNotifier(zap.NewNop())
	for _, tr := range []supervisor.Transition{
		{From: supervisor.StateStarting, To: supervisor.StateServing, Reason: "upgrade", Generation: 4},
		{From: supervisor.StateUpgrading, To: supervisor.StateServing, Reason: "rolled back", Generation: 3},
	} {
		n.Observe(tr) // returns only once the barrier's pipe was closed (by the listener)
		m := next(t, got)
		if !strings.HasPrefix(m, fmt.Sprintf("MAINPID=%d\nREADY=1\n", os.Getpid())) {
			t.Errorf("%s → %s sent %q", tr.From, tr.To, m)
		}
		b := nextMessage(t, got)
		if b.state != "BARRIER=1" || len(b.fds) != 1 {
			t.Errorf("then %q with %d fds; want BARRIER=1 with a pipe", b.state, len(b.fds))
		}
	}
	// A first start is not a hand-over.
	n.Observe(supervisor.Transition{From: supervisor.StateStarting, To: supervisor.StateServing, Reason: "first"})
	if m := next(t, got); strings.Contains(m, "MAINPID") {
		t.Errorf("a first start sent %q", m)
	}
}

// Without NOTIFY_SOCKET nothing is sent and nothing fails.
func TestNotifierWithoutSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	NewNotifier(zap.NewNop()).Observe(supervisor.Transition{From: supervisor.StateStarting, To: supervisor.StateServing})
}

func TestWorkerEnv(t *testing.T) {
	in := []string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=1", "WATCHDOG_PID=4", "LISTEN_FDS=2",
		"LISTEN_PID=4", "LISTEN_FDNAMES=a:b", "FDSTORE=16", "NOTIFY_SOCKETX=kept"}
	if got := WorkerEnv(in); !slices.Equal(got, []string{"PATH=/bin", "NOTIFY_SOCKETX=kept"}) {
		t.Fatalf("worker env %q", got)
	}
}

// READY=1 goes with the first transition into serving, whichever it is: after a first generation that was killed
// the service becomes ready on restarting → serving. Later restarts say only STATUS=.
func TestNotifierReadyAfterAFirstCrash(t *testing.T) {
	got := listen(t)
	n := NewNotifier(zap.NewNop())
	n.Observe(supervisor.Transition{From: supervisor.StateStarting, To: supervisor.StateRestarting, Reason: "crash"})
	if m := next(t, got); strings.Contains(m, "READY=1") {
		t.Fatalf("ready before any generation served: %q", m)
	}
	n.Observe(supervisor.Transition{From: supervisor.StateRestarting, To: supervisor.StateServing, Generation: 2})
	if m := next(t, got); !strings.HasPrefix(m, "READY=1\n") {
		t.Fatalf("the first generation to serve sent %q", m)
	}
	n.Observe(supervisor.Transition{From: supervisor.StateServing, To: supervisor.StateRestarting, Reason: "crash"})
	next(t, got)
	n.Observe(supervisor.Transition{From: supervisor.StateRestarting, To: supervisor.StateServing, Generation: 3})
	if m := next(t, got); strings.Contains(m, "READY=1") {
		t.Fatalf("a later restart sent %q", m)
	}
}
