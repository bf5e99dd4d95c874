// Package systemd adapts announcementd to the service manager: it tells systemd what the supervisor does
// (sd_notify(3): READY=1, RELOADING=1, STOPPING=1, STATUS=) from the supervisor's state transitions. Only
// cmd/announcementd imports it; the supervisor knows nothing of systemd (it calls Config.OnTransition, and this
// package hangs on it).
//
// Without NOTIFY_SOCKET (not started by systemd, or by a unit that is not Type=notify) every call is a no-op.
//
// What is sent, by transition (docs/SUPERVISOR.md has the state diagram):
//
//	starting → serving                     READY=1, STATUS=
//	serving → reloading, serving → upgrading  RELOADING=1 and MONOTONIC_USEC= in one datagram (systemd 253+ needs
//	                                       both; 252 reads RELOADING=1), STATUS=
//	reloading/upgrading → serving, → restarting  READY=1, whatever the outcome: a reload that never sees READY
//	                                       hangs systemctl reload; STATUS= says the outcome and the reason
//	serving → restarting                   STATUS= (the worker crashed; restarting)
//	→ stopping                             STOPPING=1, STATUS=
package systemd

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/announcementd/announcementd/supervisor"
)

// Notifier sends the service manager the supervisor's state. Observe is meant for supervisor.Config.OnTransition.
type Notifier struct {
	log  *zap.Logger
	send func(state string) (bool, error) // daemon.SdNotify, without unsetting the environment

	mu   sync.Mutex
	last string // the last STATUS= line, for Status
}

// NewNotifier returns a notifier that sends to $NOTIFY_SOCKET, when it is set, and logs what it could not send.
func NewNotifier(log *zap.Logger) *Notifier {
	return &Notifier{log: log, send: func(state string) (bool, error) { return daemon.SdNotify(false, state) }}
}

// Observe tells the service manager about one transition of the supervisor (see the package doc).
func (n *Notifier) Observe(tr supervisor.Transition) {
	status := "STATUS=" + statusLine(tr)
	var msg []string
	switch {
	case tr.From == supervisor.StateStarting && tr.To == supervisor.StateServing:
		msg = []string{daemon.SdNotifyReady, status}
	case tr.To == supervisor.StateReloading || tr.To == supervisor.StateUpgrading:
		msg = []string{daemon.SdNotifyReloading, daemon.SdNotifyMonotonicUsec(), status}
	case (tr.From == supervisor.StateReloading || tr.From == supervisor.StateUpgrading) && tr.To != supervisor.StateStopped:
		msg = []string{daemon.SdNotifyReady, status}
	case tr.To == supervisor.StateStopping:
		msg = []string{daemon.SdNotifyStopping, status}
	default:
		msg = []string{status}
	}
	n.mu.Lock()
	n.last = strings.TrimPrefix(status, "STATUS=")
	n.mu.Unlock()
	if _, err := n.send(strings.Join(msg, "\n")); err != nil {
		n.log.Warn("could not tell the service manager", zap.String("message", strings.Join(msg, " ")), zap.Error(err))
	}
}

// Status is the last STATUS= line sent.
func (n *Notifier) Status() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

// statusLine is the human STATUS= line for the state after tr.
func statusLine(tr supervisor.Transition) string {
	var b strings.Builder
	switch tr.To {
	case supervisor.StateServing:
		fmt.Fprintf(&b, "serving: generation %d, board version %d", tr.Generation, tr.RegionVersion)
	case supervisor.StateReloading:
		fmt.Fprintf(&b, "reloading: generation %d serves, a new one is starting", tr.Generation)
	case supervisor.StateUpgrading:
		fmt.Fprintf(&b, "upgrading the supervisor: generation %d serves", tr.Generation)
	case supervisor.StateRestarting:
		b.WriteString("restarting the worker (" + tr.Reason + ")")
	default:
		b.WriteString(string(tr.To))
	}
	if r := tr.Reload; r != nil {
		fmt.Fprintf(&b, "; last %s: %s", r.Kind, r.Outcome)
		if r.Reason != "" {
			fmt.Fprintf(&b, " (%s)", oneLine(r.Reason, 200))
		}
	}
	return b.String()
}

// oneLine keeps s on one line of at most max bytes: STATUS= ends at a newline.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// managerVars are what the service manager gives the main process only: a worker that inherited them could speak
// for the service (NOTIFY_SOCKET), be taken for the watchdog's process, or take the activated sockets.
var managerVars = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}

// WorkerEnv is environ without the service manager's variables: what the supervisor's workers get
// (supervisor.Config.WorkerEnv).
func WorkerEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(managerVars, name) {
			out = append(out, kv)
		}
	}
	return out
}
