package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/wire"
)

// A self-upgrade is a reload whose new generation is a whole new supervisor with its first worker. tableflip starts
// the new supervisor with every fd; the two supervisors then talk over a Unix socket at Config.UpgradeSocket (in the
// private runtime directory; both are started with the same flags, so both know the path, and each side checks the
// other's pid with the kernel), with the handoff protocol, the old supervisor in the supervisor's role. The old
// one's Hello carries the new one's first generation number:
//
//	old supervisor                          new supervisor
//	                                 ←      Hello, then Standby (its worker is in standby, or why not)
//	(tableflip: the new one is ready)
//	its worker yields
//	Start{version_floor}             →      starts its worker
//	                                 ←      Ready (healthy: the old one exits; not: the old one resumes its worker)
//
// So a new build whose worker fails after Start is rolled back like any reload: the old supervisor starts its own
// worker again, and the new supervisor leaves without touching the fds (Run returns ErrHandedBack).

// ErrHandedBack is matched by Run's error in a supervisor started by a self-upgrade when the old supervisor kept
// the service (the new worker failed, or the old supervisor gave up on the upgrade). The process must leave the
// inherited fds and sockets alone: they are still in use.
var ErrHandedBack = errors.New("the upgrade was rolled back: the old supervisor carries on")

// Parent is a new supervisor's link to the supervisor it replaces.
type Parent struct {
	conn       *handoff.Conn
	files      handoff.Files
	generation uint64 // this supervisor's first generation, from the old one's Hello
}

// Files are the files the old supervisor hands its workers, as they are now (a region a worker had to recreate is
// the new one). The caller owns them.
func (p *Parent) Files() handoff.Files { return p.files }

// DialParent connects a supervisor started by a self-upgrade (tableflip's HasParent) to the old one, waiting at
// path (Config.UpgradeSocket). Call it first, so that any failure can be reported with Fail.
func DialParent(ctx context.Context, path string) (*Parent, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("reach the old supervisor: %w", err)
	}
	conn, err := handoff.New(nc.(*net.UnixConn))
	if err != nil {
		nc.Close()
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	peer, files, err := handoff.Join(hctx, conn, handoff.Hello{Role: handoff.RoleWorker}, os.Getppid(), os.Getuid())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("old supervisor: %w", err)
	}
	return &Parent{conn: conn, files: files, generation: peer.Generation}, nil
}

// Fail tells the old supervisor why this one cannot take over, and closes the link.
func (p *Parent) Fail(err error) {
	if p == nil || err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.conn.Send(ctx, handoff.Standby{Reason: err.Error()})
	p.conn.Close()
}

// Files travel from the old supervisor to the new one over this link, not with tableflip: a worker may have
// replaced one (a recreated region) since tableflip was told about them.

// takeOver is the new supervisor's side: its first worker g is in standby. It plays a worker to the old
// supervisor (handoff.Serve, once): it becomes ready for tableflip and says Standby, waits for the old worker to
// yield (the old supervisor's Start), starts g and answers how that went.
func (s *Supervisor) takeOver(ctx context.Context, g *generation) error {
	link := &takeOverLink{s: s, g: g}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout+2*s.cfg.ReadyTimeout)
	defer cancel()
	err := handoff.Serve(wctx, s.cfg.Parent.conn, link, handoff.ServeOptions{Timeout: 5 * time.Second, Once: true})
	switch {
	case link.started && err != nil:
		// The old supervisor is gone (it exits once it hears), or it timed out waiting and is resuming its own
		// worker, which will then find the store taken and fail. Neither can be undone from here; serving is
		// the better side.
		s.log.Warn("could not confirm the take-over to the old supervisor", zap.Error(err))
	case link.started:
	case link.err != nil:
		return fmt.Errorf("%w: %w", ErrHandedBack, link.err)
	case err != nil:
		g.kill()
		return fmt.Errorf("%w: waiting for the old supervisor: %w", ErrHandedBack, err)
	default:
		g.kill()
		return fmt.Errorf("%w: the old supervisor closed the link", ErrHandedBack)
	}
	return nil
}

// takeOverLink is the new supervisor as a worker of the old one (handoff.Worker).
type takeOverLink struct {
	s       *Supervisor
	g       *generation
	started bool  // g serves
	err     error // why g could not start
}

func (l *takeOverLink) Prepare(context.Context) error {
	if err := l.s.cfg.Upgrader.Ready(); err != nil {
		return fmt.Errorf("tell the old supervisor we are ready: %w", err)
	}
	l.s.log.Info("new supervisor ready; waiting for the old worker to yield")
	return nil
}

func (l *takeOverLink) Start(ctx context.Context, m handoff.Start) handoff.Ready {
	g := l.g
	res := wire.ReloadResult{Kind: wire.KindUpgrade, StartedAt: time.Now().UTC(), From: g.n - 1, To: g.n, Build: g.build}
	// On failure promote kills our worker before the old supervisor hears of it: the old worker it resumes needs
	// the store.
	if err := l.s.promote(ctx, g, "upgrade", m.VersionFloor, finish(res, wire.OutcomeServing, "")); err != nil {
		l.err = err
		return handoff.Ready{Reason: err.Error()}
	}
	l.started = true
	return handoff.Ready{Healthy: true, RegionVersion: g.regionVersion}
}

func (l *takeOverLink) Yield(context.Context, handoff.Yield) handoff.Yielded {
	return handoff.Yielded{}
}

// upgrade replaces this supervisor with the binary on disk (see the top of this file): serving → upgrading →
// stopped (the new one took over), serving (it failed before the hand-over; or after it, rolled back), or
// restarting (neither serves). stop is Run's ctx: a stop asked for during the upgrade reached this process only,
// and is passed on to the new one.
func (s *Supervisor) upgrade(ctx, stop context.Context, res wire.ReloadResult) wire.ReloadResult {
	s.enter(StateUpgrading, "upgrade", nil)
	res.Kind, res.To = wire.KindUpgrade, s.take() // the new supervisor's first generation: the number is spent either way
	s.log.Info("reload: the binary changed; upgrading the supervisor", zap.String("binary", s.cfg.Binary))
	failed := func(reason string) wire.ReloadResult {
		s.log.Warn("supervisor upgrade failed; this one continues", zap.String("reason", reason))
		res = finish(res, wire.OutcomeFailed, reason)
		s.enter(StateServing, "upgrade failed", &res)
		return res
	}
	if s.cfg.UpgradeSocket == "" {
		return failed("no upgrade socket configured")
	}
	os.Remove(s.cfg.UpgradeSocket) // one a killed supervisor left; the directory is private
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.cfg.UpgradeSocket, Net: "unix"})
	if err != nil {
		return failed("upgrade socket: " + err.Error())
	}
	l.SetUnlinkOnClose(true)
	defer l.Close()

	type linked struct {
		conn    *handoff.Conn
		pid     int
		standby handoff.Standby
		err     error
	}
	linkc := make(chan linked, 1)
	go func() {
		conn, pid, sb, err := s.acceptNewSupervisor(l, res.To)
		linkc <- linked{conn, pid, sb, err}
	}()
	upErr := s.cfg.Upgrader.Upgrade()
	if upErr != nil {
		// tableflip v1.2.3 leaves the child's ends of its two pipes to finalizers; collect them now, so that
		// failed upgrades do not pile up fds (e2e TestBadBinaries counts them and fails without this).
		runtime.GC()
		l.Close() // ends the accept if the new supervisor never came
	}
	lk := <-linkc
	if lk.conn != nil {
		defer lk.conn.Close()
	}
	switch {
	case upErr != nil:
		reason := "new supervisor: " + upErr.Error()
		if lk.err == nil && !lk.standby.Healthy {
			reason += ": " + lk.standby.Reason
		}
		return failed(reason)
	case lk.err != nil || !lk.standby.Healthy:
		// The new supervisor said ready to tableflip (it wrote the pid file) but not to us: it will give up
		// waiting for Start. tableflip will not upgrade this process again.
		s.noUpgrade = errors.New("a self-upgrade was rolled back after tableflip's hand-over")
		s.rewritePIDFile()
		return failed(fmt.Sprint("new supervisor: ", lk.err, lk.standby.Reason))
	}

	old := s.current
	y, err := old.yield(ctx, "upgrade", s.cfg.DrainTimeout)
	if err != nil {
		s.log.Error("the serving generation did not yield; killing it", zap.Error(err))
		old.kill()
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout+5*time.Second)
	defer cancel()
	err = lk.conn.Send(rctx, handoff.Start{Reason: "upgrade", VersionFloor: y.LastVersion})
	var m handoff.Message
	if err == nil {
		m, err = lk.conn.Recv(rctx)
	}
	if err == nil {
		if r, ok := m.(handoff.Ready); !ok {
			err = fmt.Errorf("new supervisor sent %v, want ready", m.Type())
		} else if !r.Healthy {
			err = fmt.Errorf("new supervisor: %s", r.Reason)
		}
	}
	if err != nil {
		// The new build failed after its start: resume our worker. tableflip cannot upgrade this process again.
		s.noUpgrade = errors.New("a self-upgrade was rolled back after tableflip's hand-over")
		lk.conn.Close() // the new supervisor leaves
		s.rewritePIDFile()
		return s.rollback(ctx, old, res, err)
	}
	old.stop(s.cfg.DrainTimeout)
	s.current = nil
	if stop.Err() != nil {
		s.log.Info("stopping: passing the stop on to the new supervisor", zap.Int("pid", lk.pid))
		syscall.Kill(lk.pid, syscall.SIGTERM)
	}
	res = finish(res, wire.OutcomeUpgraded, "")
	s.enter(StateStopped, "upgraded", &res)
	return res
}

// rewritePIDFile puts this process's pid back in the pid file after a self-upgrade did not take over: the new
// supervisor wrote its own when it said ready.
func (s *Supervisor) rewritePIDFile() {
	if err := s.writePIDFile(); err != nil {
		s.log.Error("pid file", zap.Error(err))
	}
}

// acceptNewSupervisor accepts the new supervisor's link on l, checks it is our child, and reads its Standby.
func (s *Supervisor) acceptNewSupervisor(l *net.UnixListener, first uint64) (*handoff.Conn, int, handoff.Standby, error) {
	deadline := time.Now().Add(2*s.cfg.ReadyTimeout + 10*time.Second)
	l.SetDeadline(deadline)
	uc, err := l.AcceptUnix()
	if err != nil {
		return nil, 0, handoff.Standby{}, err
	}
	conn, err := handoff.New(uc)
	if err != nil {
		uc.Close()
		return nil, 0, handoff.Standby{}, err
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	peer, err := conn.Handshake(ctx, handoff.Hello{Role: handoff.RoleSupervisor, Generation: first, Build: s.cfg.Build})
	if err == nil {
		// Only our child may take over: its pid is the one the kernel stamped on its hello.
		if st, serr := procfs.ReadStat(peer.PID); serr != nil || st.PPID != os.Getpid() {
			err = fmt.Errorf("the process that connected (pid %d) is not our child (%+v, %v)", peer.PID, st, serr)
		} else {
			err = conn.CheckPeer(peer.PID, os.Getuid())
		}
	}
	if err == nil {
		// The files as they are now: tableflip carries only what was registered with it at the start.
		err = conn.SendFiles(ctx, s.files...)
	}
	var sb handoff.Standby
	if err == nil {
		var m handoff.Message
		if m, err = conn.Recv(ctx); err == nil {
			var ok bool
			if sb, ok = m.(handoff.Standby); !ok {
				err = fmt.Errorf("new supervisor sent %v, want standby", m.Type())
			}
		}
	}
	if err != nil {
		conn.Close()
		return nil, 0, sb, err
	}
	return conn, peer.PID, sb, nil
}

// writePIDFile puts this process's pid in Config.PIDFile, atomically.
func (s *Supervisor) writePIDFile() error {
	if s.cfg.PIDFile == "" {
		return nil
	}
	tmp := s.cfg.PIDFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.cfg.PIDFile)
}
