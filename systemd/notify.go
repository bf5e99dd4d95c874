package systemd

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/announcementd/announcementd/supervisor"
)

// barrierTimeout bounds the wait for systemd to read the messages before a BARRIER=1.
const barrierTimeout = 5 * time.Second

// Notifier sends the service manager the supervisor's state. Observe is meant for supervisor.Config.OnTransition.
type Notifier struct {
	log     *zap.Logger
	send    func(state string) (bool, error) // daemon.SdNotify, without unsetting the environment
	barrier func(timeout time.Duration) error

	mu    sync.Mutex
	last  string // the last STATUS= line, for Status
	ready bool   // READY=1 was sent: the service started
}

// NewNotifier returns a notifier that sends to $NOTIFY_SOCKET, when it is set, and logs what it could not send.
func NewNotifier(log *zap.Logger) *Notifier {
	return &Notifier{log: log,
		send:    func(state string) (bool, error) { return daemon.SdNotify(false, state) },
		barrier: func(timeout time.Duration) error { return barrier(os.Getenv("NOTIFY_SOCKET"), timeout) },
	}
}

// Observe tells the service manager about one transition of the supervisor (see the package doc).
func (n *Notifier) Observe(tr supervisor.Transition) {
	status := "STATUS=" + statusLine(tr)
	var msg []string
	mainPID := false
	switch {
	case tr.From == supervisor.StateUpgrading && tr.To == supervisor.StateStopped:
		return // handed over: the new supervisor is the main process and says what the service does
	case tr.From == supervisor.StateStarting && tr.To == supervisor.StateServing && tr.Reason == "upgrade",
		tr.From == supervisor.StateUpgrading && tr.To == supervisor.StateServing:
		// This process is the service's main process now (a take-over), or again (an upgrade rolled back after the
		// new supervisor had said it was). Its pid file is written already (tableflip's Ready, or the rollback).
		mainPID = true
		msg = []string{fmt.Sprintf("MAINPID=%d", os.Getpid()), daemon.SdNotifyReady, status}
	case tr.To == supervisor.StateServing && !n.isReady():
		// The first time a generation serves: starting → serving, or restarting → serving when the first
		// generation crashed on its way.
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
	n.ready = n.ready || slices.Contains(msg, daemon.SdNotifyReady)
	n.mu.Unlock()
	sent, err := n.send(strings.Join(msg, "\n"))
	if err != nil {
		n.log.Warn("could not tell the service manager", zap.String("message", strings.Join(msg, " ")), zap.Error(err))
		return
	}
	if sent && mainPID {
		// The old main process exits once this transition is over: systemd must have read MAINPID= by then, or it
		// would take the old one's exit for the service's.
		if err := n.barrier(barrierTimeout); err != nil {
			n.log.Warn("the service manager did not confirm the new main pid", zap.Error(err))
		}
	}
}

func (n *Notifier) isReady() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
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
var managerVars = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "FDSTORE"}

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
