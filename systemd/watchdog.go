package systemd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Watchdog pings the service manager (WATCHDOG=1) while the supervisor is alive. A unit with WatchdogSec= sets
// WATCHDOG_USEC; a main process that misses it is killed (SIGABRT) and restarted by Restart=.
type Watchdog struct {
	Interval time.Duration // WATCHDOG_USEC: a ping every Interval/2
	log      *zap.Logger
	send     func(string) (bool, error)
}

// NewWatchdog returns the watchdog systemd asks of this process, or nil when it asks none.
//
// WATCHDOG_PID names the process the watchdog is for. After a self-upgrade the new supervisor inherits the old
// one's (it is the old one's child, started with its environment), and then tells systemd MAINPID=<itself>: the
// watchdog is its from then on. go-systemd's SdWatchdogEnabled reads such a WATCHDOG_PID as "not for this process"
// and would turn the watchdog off for good, so this reads the variables itself: the watchdog is this process's
// when WATCHDOG_PID is unset, names it, or names its parent while it was started by a self-upgrade (upgraded).
func NewWatchdog(log *zap.Logger, upgraded bool) (*Watchdog, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", usec)
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("WATCHDOG_PID=%q: not a pid", p)
		}
		if pid != os.Getpid() && !(upgraded && pid == os.Getppid()) {
			log.Info("the watchdog is another process's", zap.Int("watchdog_pid", pid))
			return nil, nil
		}
	}
	return &Watchdog{Interval: time.Duration(n) * time.Microsecond, log: log,
		send: func(s string) (bool, error) { return daemon.SdNotify(false, s) }}, nil
}

// Run pings every Interval/2 while alive returns nil, until ctx is done. When alive fails it stops pinging (and
// logs why, once): the service manager then restarts the service when the interval runs out.
func (w *Watchdog) Run(ctx context.Context, alive func(context.Context) error) {
	if w == nil {
		return
	}
	tick := time.NewTicker(w.Interval / 2)
	defer tick.Stop()
	var failing error
	for {
		actx, cancel := context.WithTimeout(ctx, w.Interval/4)
		err := alive(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			if failing != nil {
				w.log.Info("the supervisor answers again; watchdog pings resume")
				failing = nil
			}
			if _, err := w.send(daemon.SdNotifyWatchdog); err != nil {
				w.log.Warn("watchdog ping failed", zap.Error(err))
			}
		case failing == nil:
			failing = err
			w.log.Error("the supervisor does not answer: no watchdog ping (systemd restarts the service unless it answers in time)",
				zap.Error(err), zap.Duration("watchdog", w.Interval))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
