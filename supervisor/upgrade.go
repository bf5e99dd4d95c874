package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/internal/procfs"
)

// A self-upgrade is a reload whose new generation is a whole new supervisor with its first worker. tableflip starts
// the new supervisor with every fd; the two supervisors then talk over a private Unix socket (its path in
// EnvUpgradeSocket, in a 0700 directory; each side checks the other's pid with the kernel), with the handoff
// protocol, the old supervisor in the supervisor's role:
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

// EnvUpgradeSocket tells a supervisor started by a self-upgrade where the old supervisor waits for it.
const EnvUpgradeSocket = "ANNOUNCEMENTD_UPGRADE_SOCKET"

// ErrHandedBack is matched by Run's error in a supervisor started by a self-upgrade when the old supervisor kept
// the service (the new worker failed, or the old supervisor gave up on the upgrade). The process must leave the
// inherited fds and sockets alone: they are still in use.
var ErrHandedBack = errors.New("the upgrade was rolled back: the old supervisor carries on")

// Parent is a new supervisor's link to the supervisor it replaces.
type Parent struct {
	conn  *handoff.Conn
	files handoff.Files
}

// Files are the files the old supervisor hands its workers, as they are now (a region a worker had to recreate is
// the new one). The caller owns them.
func (p *Parent) Files() handoff.Files { return p.files }

// DialParent connects a supervisor started by a self-upgrade to the old one; it returns nil, nil when this process
// was not started by one. Call it first, so that any failure can be reported with Fail.
func DialParent(ctx context.Context) (*Parent, error) {
	path := os.Getenv(EnvUpgradeSocket)
	if path == "" {
		return nil, nil
	}
	os.Unsetenv(EnvUpgradeSocket) // not for the workers
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
	gen, _ := strconv.ParseUint(os.Getenv(EnvGeneration), 10, 64)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, files, err := handoff.Join(hctx, conn, handoff.Hello{Role: handoff.RoleWorker, Generation: gen}, os.Getppid(), os.Getuid())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("old supervisor: %w", err)
	}
	return &Parent{conn: conn, files: files}, nil
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
		return fmt.Errorf("%w: waiting for the old supervisor: %w", ErrHandedBack, err)
	default:
		return fmt.Errorf("%w: the old supervisor closed the link", ErrHandedBack)
	}
	s.current = g
	s.record(link.res.finish(OutcomeServing, ""))
	return nil
}

// takeOverLink is the new supervisor as a worker of the old one (handoff.Worker).
type takeOverLink struct {
	s       *Supervisor
	g       *generation
	res     ReloadResult
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
	l.res = ReloadResult{Kind: "upgrade", StartedAt: time.Now().UTC(), From: g.n - 1, To: g.n, Build: g.build}
	r, err := g.start(ctx, l.s.cfg.ReadyTimeout, "upgrade", m.VersionFloor)
	if err != nil {
		// Our worker goes before the old supervisor hears of it: the old worker it resumes needs the store.
		g.kill()
		l.err = err
		return handoff.Ready{Reason: err.Error()}
	}
	l.started = true
	return handoff.Ready{Healthy: true, RegionVersion: r.RegionVersion}
}

func (l *takeOverLink) Yield(context.Context, handoff.Yield) handoff.Yielded {
	return handoff.Yielded{}
}

// upgrade replaces this supervisor with the binary on disk; see the top of this file.
func (s *Supervisor) upgrade(ctx context.Context, res ReloadResult) ReloadResult {
	res.Kind, res.To = "upgrade", s.take() // the new supervisor's first generation: the number is spent either way
	s.log.Info("reload: the binary changed; upgrading the supervisor", zap.String("binary", s.cfg.Binary))
	dir, err := os.MkdirTemp("", "announcementd-upgrade-") // 0700: only this uid reaches the socket
	if err != nil {
		return s.record(res.finish(OutcomeFailed, "upgrade socket: "+err.Error()))
	}
	defer os.RemoveAll(dir)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		return s.record(res.finish(OutcomeFailed, "upgrade socket: "+err.Error()))
	}
	defer l.Close()
	// The new supervisor inherits the environment: where to reach us, and the generation count.
	os.Setenv(EnvUpgradeSocket, l.Addr().String())
	os.Setenv(EnvGeneration, strconv.FormatUint(res.To, 10))
	defer os.Unsetenv(EnvUpgradeSocket)

	type linked struct {
		conn    *handoff.Conn
		pid     int
		standby handoff.Standby
		err     error
	}
	linkc := make(chan linked, 1)
	go func() {
		conn, pid, sb, err := s.acceptNewSupervisor(l)
		linkc <- linked{conn, pid, sb, err}
	}()
	upErr := s.cfg.Upgrader.Upgrade()
	if upErr != nil {
		// tableflip v1.2.3 leaves the child's ends of its two pipes to finalizers; collect them now, so that
		// failed upgrades do not pile up fds.
		runtime.GC()
		l.Close() // ends the accept if the new supervisor never came
	}
	lk := <-linkc
	if lk.conn != nil {
		defer lk.conn.Close()
	}
	if upErr == nil {
		// The new supervisor wrote its pid into the pid file when it said ready. Unless it takes over, the file
		// must name this process again, at once.
		defer func() {
			if last := s.Status().LastReload; last == nil || last.Outcome != OutcomeUpgraded {
				if err := s.writePIDFile(); err != nil {
					s.log.Error("pid file", zap.Error(err))
				}
			}
		}()
	}
	switch {
	case upErr != nil:
		reason := "new supervisor: " + upErr.Error()
		if lk.err == nil && !lk.standby.Healthy {
			reason += ": " + lk.standby.Reason
		}
		s.log.Warn("supervisor upgrade failed; this one continues", zap.String("reason", reason))
		return s.record(res.finish(OutcomeFailed, reason))
	case lk.err != nil || !lk.standby.Healthy:
		// The new supervisor said ready to tableflip but not to us: it will give up waiting for Start.
		s.upgradeSpent = true
		reason := fmt.Sprint("new supervisor: ", lk.err, lk.standby.Reason)
		return s.record(res.finish(OutcomeFailed, reason))
	}

	y, err := s.current.yield(ctx, "upgrade", s.cfg.DrainTimeout)
	if err != nil {
		s.log.Error("the serving generation did not yield; killing it", zap.Error(err))
		s.current.kill()
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
	if err == nil {
		s.current.stop(s.cfg.DrainTimeout)
		s.current = nil
		if s.stopping() {
			// A stop asked for during the upgrade reached this process only; the new one must hear it too.
			s.log.Info("stopping: passing the stop on to the new supervisor", zap.Int("pid", lk.pid))
			syscall.Kill(lk.pid, syscall.SIGTERM)
		}
		return s.record(res.finish(OutcomeUpgraded, ""))
	}
	// The new build failed after its start: resume our worker. tableflip cannot upgrade this process again.
	s.upgradeSpent = true
	lk.conn.Close() // the new supervisor leaves
	return s.record(s.rollback(ctx, s.current, res, err))
}

// acceptNewSupervisor accepts the new supervisor's link on l, checks it is our child, and reads its Standby.
func (s *Supervisor) acceptNewSupervisor(l *net.UnixListener) (*handoff.Conn, int, handoff.Standby, error) {
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
	peer, err := conn.Handshake(ctx, handoff.Hello{Role: handoff.RoleSupervisor, Generation: s.next, Build: s.cfg.Build})
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
