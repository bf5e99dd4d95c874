package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/handoff"
)

// env is the supervisor's seam to the operating system, as tableflip's env is its: how a worker process is
// started. osEnv starts real processes; the tests' in-process workers (fake_test.go) stand in for them, so that the
// state machine runs under t.Parallel with no process at all.
type env struct {
	// start starts `binary args...` with environ and handoffEnd as its fd 3. The caller closes its handoffEnd
	// once start returned.
	start func(binary string, args, environ []string, handoffEnd *os.File) (process, error)
}

// process is a started worker: what the supervisor needs of it.
type process interface {
	// Pid is the pid the kernel stamps on the worker's end of the handoff connection (CheckPeer).
	Pid() int
	// Wait waits for the process to end and says how it ended; it is called once.
	Wait() error
	// Kill ends it at once (SIGKILL).
	Kill() error
}

var osEnv = env{start: startProcess}

// startProcess starts a real worker process.
func startProcess(binary string, args, environ []string, handoffEnd *os.File) (process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr // the worker logs where the supervisor does (the journal)
	cmd.ExtraFiles = []*os.File{handoffEnd}       // fd 3
	cmd.Env = environ
	// If the supervisor dies, the worker is told at once (it also sees end-of-file on fd 3 and stops).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return osProcess{cmd}, nil
}

type osProcess struct{ cmd *exec.Cmd }

func (p osProcess) Pid() int    { return p.cmd.Process.Pid }
func (p osProcess) Wait() error { return p.cmd.Wait() }
func (p osProcess) Kill() error { return p.cmd.Process.Kill() }

// generation is one worker process and the supervisor's end of its handoff connection. The supervisor's loop
// goroutine owns it; only the exit watcher touches it besides (through exited and exitErr).
type generation struct {
	n       uint64
	proc    process
	conn    *handoff.Conn
	build   string // from the worker's Hello
	started time.Time
	serving time.Time       // when it last answered a healthy Ready; zero while not serving
	report  json.RawMessage // the worker's report with that Ready (its health), for status
	// regionVersion is the region version of that Ready.
	regionVersion uint64
	log           *zap.Logger

	exited  chan struct{} // closed once the process has been reaped
	exitErr error         // the process's end; read only after exited is closed

	// Once the peer is checked, one goroutine reads the connection into inbox until it fails or done is closed;
	// files the worker sends (a region it had to recreate) go to onFiles wherever they arrive.
	inbox     chan inbound
	done      chan struct{}
	closeOnce sync.Once
	onFiles   func(handoff.Files)
}

// inbound is one message, or the error that ended the reading.
type inbound struct {
	m   handoff.Message
	err error
}

// spawn starts generation n from the binary on disk and takes it to standby: the handshake, the peer check, the
// fds, and a healthy Standby, all within timeout. On any failure the process is killed and reaped before spawn
// returns, so nothing lingers.
func (s *Supervisor) spawn(ctx context.Context, n uint64) (*generation, error) {
	conn, workerEnd, err := handoff.Pair()
	if err != nil {
		return nil, err
	}
	environ := s.cfg.WorkerEnv
	if environ == nil {
		environ = os.Environ()
	}
	environ = append(slices.Clone(environ), EnvGeneration+"="+strconv.FormatUint(n, 10))
	proc, err := s.env.start(s.cfg.Binary, append([]string{"worker"}, s.cfg.WorkerArgs...), environ, workerEnd)
	workerEnd.Close() // the child has its copy; ours would hide the child's exit
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start %s: %w", s.cfg.Binary, err)
	}
	g := &generation{n: n, proc: proc, conn: conn, started: time.Now(), exited: make(chan struct{}),
		inbox: make(chan inbound), done: make(chan struct{}), onFiles: s.replaceFiles,
		log: s.log.With(zap.Uint64("generation", n), zap.Int("worker_pid", proc.Pid()))}
	go func() {
		g.exitErr = proc.Wait()
		close(g.exited)
	}()
	g.log.Info("worker started", zap.String("binary", s.cfg.Binary))

	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	if err := s.prepare(ctx, g); err != nil {
		// A worker that died says more than the broken connection it left: give its end, if it came.
		select {
		case <-g.exited:
			err = fmt.Errorf("%w (%w)", err, endError(g.exitErr))
		case <-time.After(100 * time.Millisecond):
		}
		g.kill()
		return nil, g.failure("standby", err)
	}
	return g, nil
}

// prepare runs the handshake and hands over the fds, then waits for the worker's Standby.
func (s *Supervisor) prepare(ctx context.Context, g *generation) error {
	peer, err := g.conn.Handshake(ctx, handoff.Hello{Role: handoff.RoleSupervisor, Generation: g.n, Build: s.cfg.Build})
	if err != nil {
		return err
	}
	if err := g.conn.CheckPeer(g.proc.Pid(), os.Getuid()); err != nil {
		return err
	}
	go g.read()
	if peer.Generation != g.n {
		return fmt.Errorf("worker says it is generation %d, want %d", peer.Generation, g.n)
	}
	g.build = peer.Build
	if err := g.conn.SendFiles(ctx, s.files...); err != nil {
		return err
	}
	m, err := g.recv(ctx)
	if err != nil {
		return err
	}
	sb, ok := m.(handoff.Standby)
	if !ok {
		return fmt.Errorf("worker sent %v, want standby", m.Type())
	}
	if !sb.Healthy {
		return fmt.Errorf("worker reports unhealthy: %s", sb.Reason)
	}
	return nil
}

// start makes g the writer and waits for its healthy Ready.
func (g *generation) start(ctx context.Context, timeout time.Duration, reason string, floor uint64) (handoff.Ready, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := g.conn.Send(ctx, handoff.Start{Reason: reason, VersionFloor: floor}); err != nil {
		return handoff.Ready{}, g.failure("start", err)
	}
	m, err := g.recv(ctx)
	if err != nil {
		return handoff.Ready{}, g.failure("start", err)
	}
	r, ok := m.(handoff.Ready)
	switch {
	case !ok:
		return r, g.failure("start", fmt.Errorf("worker sent %v, want ready", m.Type()))
	case !r.Healthy:
		return r, g.failure("start", fmt.Errorf("worker reports unhealthy: %s", r.Reason))
	}
	g.serving, g.report, g.regionVersion = time.Now(), r.Report, r.RegionVersion
	g.log.Info("worker serving", zap.String("reason", reason), zap.Uint64("region_version", r.RegionVersion))
	return r, nil
}

// yield asks g to stop serving and waits, at most grace, for its Yielded.
func (g *generation) yield(ctx context.Context, reason string, grace time.Duration) (handoff.Yielded, error) {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	g.serving = time.Time{}
	if err := g.conn.Send(ctx, handoff.Yield{Reason: reason, Grace: grace}); err != nil {
		return handoff.Yielded{}, g.failure("yield", err)
	}
	m, err := g.recv(ctx)
	if err != nil {
		return handoff.Yielded{}, g.failure("yield", err)
	}
	y, ok := m.(handoff.Yielded)
	if !ok {
		return y, g.failure("yield", fmt.Errorf("worker sent %v, want yielded", m.Type()))
	}
	if y.Reason != "" {
		g.log.Warn("worker yielded with a problem", zap.String("reason", y.Reason))
	}
	return y, nil
}

// read feeds inbox until the connection fails or the generation is closed.
func (g *generation) read() {
	for {
		m, err := g.conn.Recv(context.Background())
		select {
		case g.inbox <- inbound{m, err}:
		case <-g.done:
			if f, ok := m.(handoff.Files); ok {
				f.Close()
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// recv returns the next message other than files (those go to onFiles); when the worker has exited instead, the
// error says how it ended.
func (g *generation) recv(ctx context.Context) (handoff.Message, error) {
	for {
		var in inbound
		select {
		case in = <-g.inbox:
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer in time: %w", ctx.Err())
		}
		if f, ok := in.m.(handoff.Files); ok {
			g.onFiles(f)
			continue
		}
		if errors.Is(in.err, io.EOF) {
			select {
			case <-g.exited:
				return nil, endError(g.exitErr)
			case <-time.After(time.Second):
				return nil, errors.New("worker closed the handoff connection")
			}
		}
		return in.m, in.err
	}
}

// close closes the connection and ends the reader.
func (g *generation) close() {
	g.closeOnce.Do(func() {
		close(g.done)
		g.conn.Close()
	})
}

// failure names the generation and the step in err.
// errWorkerKilled is a generation whose process a signal ended on its way to serving (kill -9, the OOM killer, a
// fault): something outside it, which a new start may not meet. A first start that fails so is a crash
// (restarting). A worker that exits with a status decided to (a panic, a store it cannot open): that ends the start.
var errWorkerKilled = errors.New("the worker was killed")

// endError says how a worker ended, as errWorkerKilled when a signal ended it.
func endError(exitErr error) error {
	var ee *exec.ExitError
	if errors.As(exitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("%w: %s", errWorkerKilled, exitString(exitErr))
		}
	}
	return fmt.Errorf("the worker ended: %s", exitString(exitErr))
}

func (g *generation) failure(step string, err error) error {
	return fmt.Errorf("generation %d (pid %d) %s: %w", g.n, g.proc.Pid(), step, err)
}

// stop closes the connection (a worker that yielded exits on end-of-file) and waits at most grace for the exit,
// then kills.
func (g *generation) stop(grace time.Duration) {
	g.close()
	select {
	case <-g.exited:
	case <-time.After(grace):
		g.log.Warn("worker did not exit in time; killing it", zap.Duration("grace", grace))
		g.kill()
		return
	}
	g.log.Info("worker exited", zap.String("status", exitString(g.exitErr)))
}

// kill ends the process with SIGKILL and waits until it is reaped.
func (g *generation) kill() {
	g.close()
	_ = g.proc.Kill()
	<-g.exited
}

// alive reports whether the process has not exited yet.
func (g *generation) alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
