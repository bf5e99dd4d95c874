package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one end of a handoff connection. One goroutine may read (Recv, RecvFiles) while another writes (Send,
// SendFiles); concurrent writers are serialised frame by frame, and so are concurrent readers.
type Conn struct {
	uc      *net.UnixConn
	raw     syscall.RawConn
	version Version // what Handshake announces: ProtocolMajor.ProtocolMinor; tests change it to play other builds

	rmu  sync.Mutex // one reader at a time, for a whole frame; guards rerr and oob
	rerr error      // sticky: the stream is no longer at a frame boundary, or the peer broke the protocol
	oob  []byte     // the control buffer for every recvmsg (controlSpace() bytes)

	wmu  sync.Mutex // one writer at a time, for a whole frame; guards werr
	werr error      // sticky: part of a frame went out

	mu       sync.Mutex // guards the handshake state below; taken after rmu or wmu, never held across I/O
	state    connState
	peer     Hello // the peer's hello, from stateGreeted on
	peerCred cred  // the kernel's credentials on that hello

	closeOnce sync.Once
	closeErr  error
}

type connState int

const (
	stateNew         connState = iota // nothing exchanged yet
	stateHandshaking                  // Handshake is running
	stateGreeted                      // hellos exchanged; CheckPeer next
	stateVerified                     // CheckPeer passed: messages and fds may flow
	stateFailed                       // a handshake or peer check failed: the Conn is only good for Close
)

// New wraps one end of a Unix stream socket, normally the supervisor's end from Pair or the worker's from FileConn.
// It turns on SO_PASSCRED, which CheckPeer depends on. The Conn owns uc from then on.
func New(uc *net.UnixConn) (*Conn, error) {
	raw, err := uc.SyscallConn()
	if err == nil {
		err = checkStream(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("handoff: new conn: %w", err)
	}
	return &Conn{
		uc:      uc,
		raw:     raw,
		version: Version{Major: ProtocolMajor, Minor: ProtocolMinor},
		oob:     make([]byte, controlSpace()),
	}, nil
}

// Pair creates a connected socketpair (AF_UNIX, SOCK_STREAM, close-on-exec) for one worker generation. The
// supervisor keeps the Conn. workerEnd goes into the child's exec.Cmd.ExtraFiles, and the supervisor must close its
// copy of workerEnd once the child has started (or failed to), so that the child's exit reads as EOF here.
func Pair() (supervisor *Conn, workerEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: pair: %w", os.NewSyscallError("socketpair", err))
	}
	supFile := os.NewFile(uintptr(fds[0]), "handoff-supervisor")
	workerEnd = os.NewFile(uintptr(fds[1]), "handoff-worker")
	// net.FileConn works on a close-on-exec, non-blocking duplicate; the original goes.
	nc, err := net.FileConn(supFile)
	supFile.Close()
	if err != nil {
		workerEnd.Close()
		return nil, nil, fmt.Errorf("handoff: pair: %w", err)
	}
	supervisor, err = New(nc.(*net.UnixConn))
	if err == nil {
		err = setPassCred(fds[1]) // both ends, so that no message goes out unstamped
	}
	if err != nil {
		nc.Close()
		workerEnd.Close()
		return nil, nil, fmt.Errorf("handoff: pair: %w", err)
	}
	return supervisor, workerEnd, nil
}

// FileConn turns the end a worker inherited (e.g. os.NewFile(3, "handoff")) into a Conn. It takes f: f is closed,
// and the Conn works on a close-on-exec duplicate, so the handoff socket is not inherited any further.
func FileConn(f *os.File) (*Conn, error) {
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("handoff: file %q is not the worker's end of handoff.Pair: %w", f.Name(), err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("handoff: file %q is a %T, not the worker's end of handoff.Pair", f.Name(), nc)
	}
	c, err := New(uc)
	if err != nil {
		uc.Close()
		return nil, err
	}
	return c, nil
}

// Handshake sends our Hello and reads the peer's; both sides call it first. It fills in local's Protocol and
// Version, and its PID when zero. It fails with ErrVersion when the peer speaks another major version (the error
// says which side to upgrade), and with ErrProtocol when both ends claim the same role. A failed Handshake is final.
// The peer is not yet trusted: call CheckPeer next.
func (c *Conn) Handshake(ctx context.Context, local Hello) (Hello, error) {
	c.mu.Lock()
	if c.state != stateNew {
		err := c.stateErrLocked()
		if c.state >= stateGreeted && c.state != stateFailed {
			err = fmt.Errorf("%w: Handshake called twice", ErrProtocol)
		}
		c.mu.Unlock()
		return Hello{}, fmt.Errorf("handoff: handshake: %w", err)
	}
	c.state = stateHandshaking
	c.mu.Unlock()

	remote, cr, err := c.handshake(ctx, local)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.state = stateFailed
		if cr.pid != 0 {
			return remote, fmt.Errorf("handoff: handshake with pid %d: %w", cr.pid, err)
		}
		return remote, fmt.Errorf("handoff: handshake: %w", err)
	}
	c.state, c.peer, c.peerCred = stateGreeted, remote, cr
	return remote, nil
}

func (c *Conn) handshake(ctx context.Context, local Hello) (Hello, cred, error) {
	local.Protocol, local.Version = ProtocolName, c.version
	if local.PID == 0 {
		local.PID = os.Getpid()
	}
	if err := local.validate(); err != nil {
		return Hello{}, cred{}, fmt.Errorf("our hello: %w", err)
	}
	if err := c.writeFrame(ctx, local, nil); err != nil {
		return Hello{}, cred{}, fmt.Errorf("send hello: %w", err)
	}
	m, cr, err := c.readFrame(ctx)
	if err != nil {
		return Hello{}, cr, fmt.Errorf("recv hello: %w", err)
	}
	remote, ok := m.(Hello)
	if !ok {
		discard(m)
		return Hello{}, cr, fmt.Errorf("%w: the peer's first message is %v, not hello", ErrProtocol, m.Type())
	}
	if remote.Version.Major != local.Version.Major {
		return remote, cr, versionError(local, remote)
	}
	if remote.Role == local.Role {
		return remote, cr, fmt.Errorf("%w: both ends say they are the %s", ErrProtocol, local.Role)
	}
	return remote, cr, nil
}

// versionError says what speaks what, and what to do about it.
func versionError(local, remote Hello) error {
	older, newer := local, remote
	if older.Version.Major > newer.Version.Major {
		older, newer = remote, local
	}
	return fmt.Errorf("%w: the %s (pid %d, build %q) speaks %v and the %s (pid %d, build %q) speaks %v; "+
		"a supervisor and its workers must share the major version: "+
		"run the %s from a build that speaks %d.x (for the supervisor: restart the service on the new binary), "+
		"or roll the %s back to a build that speaks %d.x",
		ErrVersion, local.Role, local.PID, local.Build, local.Version, remote.Role, remote.PID, remote.Build, remote.Version,
		older.Role, newer.Version.Major, newer.Role, older.Version.Major)
}

// Send sends one message. Send(ctx, files) is SendFiles(ctx, files.Named()...); a Hello is sent only by Handshake.
// An error before the first byte left (an invalid or oversized message, a deadline that expired while the socket was
// full) leaves the Conn usable; any later one breaks it.
func (c *Conn) Send(ctx context.Context, m Message) error {
	switch m := m.(type) {
	case nil:
		return fmt.Errorf("handoff: send: %w: nil message", ErrProtocol)
	case Files:
		return c.SendFiles(ctx, m.Named()...)
	case Hello:
		return fmt.Errorf("handoff: send: %w: a hello is sent by Handshake only", ErrProtocol)
	}
	if err := c.requireVerified(); err != nil {
		return c.wrap("send "+m.Type().String(), "to", err)
	}
	return c.wrap("send "+m.Type().String(), "to", c.writeFrame(ctx, m, nil))
}

// SendFiles sends files in one Files frame: the names in the body, the fds attached to the same sendmsg, in the same
// order, so names and fds cannot get out of step. The files are neither closed nor changed; the receiver gets its own
// duplicates. While the frame is being written, a concurrent Close of one of the files waits for it.
func (c *Conn) SendFiles(ctx context.Context, files ...NamedFile) error {
	names := make(fileNames, len(files))
	conns := make([]syscall.Conn, len(files))
	for i, f := range files {
		if f.File == nil {
			return fmt.Errorf("handoff: send files: %w: file %q is nil", ErrProtocol, f.Name)
		}
		names[i], conns[i] = f.Name, f.File
	}
	if err := c.requireVerified(); err != nil {
		return c.wrap("send files", "to", err)
	}
	return c.wrap("send files", "to", c.writeFrame(ctx, names, conns))
}

// Recv reads one message: Files, Ready, Yield, Yielded or Raw. Files belong to the caller. A ctx that ends before the
// first byte of a frame arrived leaves the Conn usable (poll with short deadlines if you like); any other error breaks
// it, and every later Recv returns that error. io.EOF (wrapped) means the peer closed the connection between frames.
func (c *Conn) Recv(ctx context.Context) (Message, error) {
	if err := c.requireVerified(); err != nil {
		return nil, c.wrap("recv", "from", err)
	}
	m, _, err := c.readFrame(ctx)
	if err != nil {
		return nil, c.wrap("recv", "from", err)
	}
	if m.Type() == TypeHello {
		return nil, c.wrap("recv", "from", fmt.Errorf("%w: a second hello", ErrProtocol))
	}
	return m, nil
}

// RecvFiles reads one message, which must be Files.
func (c *Conn) RecvFiles(ctx context.Context) (Files, error) {
	m, err := c.Recv(ctx)
	if err != nil {
		return nil, err
	}
	files, ok := m.(Files)
	if !ok {
		return nil, c.wrap("recv files", "from", fmt.Errorf("%w: expected files, got %v", ErrProtocol, m.Type()))
	}
	return files, nil
}

// Close closes the connection; the peer reads EOF. A blocked Send or Recv returns net.ErrClosed. Close may be called
// more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if err := c.uc.Close(); err != nil {
			c.closeErr = fmt.Errorf("handoff: close: %w", err)
		}
	})
	return c.closeErr
}

// requireVerified enforces the order Handshake, CheckPeer, then everything else.
func (c *Conn) requireVerified() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateVerified {
		return nil
	}
	return c.stateErrLocked()
}

func (c *Conn) stateErrLocked() error {
	switch c.state {
	case stateNew, stateHandshaking:
		return fmt.Errorf("%w: call Handshake, then CheckPeer, first", ErrPeer)
	case stateGreeted:
		return fmt.Errorf("%w: call CheckPeer first", ErrPeer)
	case stateFailed:
		return fmt.Errorf("%w: the handshake or the peer check failed; close this connection", ErrPeer)
	}
	return nil
}

// wrap prefixes err with the package, the step and, once known, the peer's pid.
func (c *Conn) wrap(op, dir string, err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	pid := c.peerCred.pid
	c.mu.Unlock()
	if pid != 0 {
		return fmt.Errorf("handoff: %s %s pid %d: %w", op, dir, pid, err)
	}
	return fmt.Errorf("handoff: %s: %w", op, err)
}

// discard closes the fds of a message nobody will take.
func discard(m Message) {
	if f, ok := m.(Files); ok {
		f.Close()
	}
}

// inbound collects what arrived with the recvmsg calls of one frame.
type inbound struct {
	n       int   // data bytes consumed
	fds     []int // every fd received: ours to close until they are handed over
	cred    *cred // from the first recvmsg that carried credentials
	flags   int   // recvmsg flags, ORed
	ctrlErr error // a control message we could not parse
}

func (in *inbound) add(oob []byte, flags int) {
	fds, cr, err := parseControl(oob)
	in.fds = append(in.fds, fds...)
	if in.cred == nil {
		in.cred = cr
	}
	if in.ctrlErr == nil {
		in.ctrlErr = err
	}
	in.flags |= flags
}

// readFrame reads and decodes one whole frame. On every error path, every fd that arrived with it is closed.
func (c *Conn) readFrame(ctx context.Context) (Message, cred, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return nil, cred{}, fmt.Errorf("connection unusable after an earlier error: %w", c.rerr)
	}
	var in inbound
	m, err := c.readFrameLocked(ctx, &in)
	var cr cred
	if in.cred != nil {
		cr = *in.cred
	}
	if err != nil {
		closeFds(in.fds)
		if in.n > 0 || !isTimeout(err) {
			c.rerr = err
		}
		return nil, cr, err
	}
	return m, cr, nil
}

func (c *Conn) readFrameLocked(ctx context.Context, in *inbound) (Message, error) {
	var frame []byte
	err := bounded(ctx, c.uc.SetReadDeadline, func() error {
		hdr := make([]byte, HeaderSize)
		if err := c.recvFull(hdr, in); err != nil {
			return err
		}
		h, err := parseHeader(hdr)
		if err != nil {
			return err
		}
		frame = append(hdr, make([]byte, h.bodyLen)...)
		return c.recvFull(frame[HeaderSize:], in)
	})
	if err != nil {
		return nil, err
	}
	if in.ctrlErr != nil {
		return nil, in.ctrlErr
	}
	if err := c.checkSender(in.cred); err != nil {
		return nil, err
	}
	m, err := decodeFrame(frame, len(in.fds))
	if err != nil {
		return nil, err
	}
	names, ok := m.(fileNames)
	if !ok {
		return m, nil
	}
	if err := c.requireVerified(); err != nil {
		return nil, fmt.Errorf("fds arrived before the peer was checked: %w", err)
	}
	fds := in.fds
	in.fds = nil // adoptFds owns them now, and closes them on error
	files, err := adoptFds(names, fds)
	if err != nil {
		return nil, err
	}
	return files, nil
}

// checkSender makes sure a frame carries the kernel's credentials and, after the handshake, that they are those of
// the process that said hello.
func (c *Conn) checkSender(cr *cred) error {
	if cr == nil {
		return fmt.Errorf("%w: a frame without SCM_CREDENTIALS (SO_PASSCRED was off on both ends when it was sent)", ErrPeer)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stateGreeted && (cr.pid != c.peerCred.pid || cr.uid != c.peerCred.uid) {
		return fmt.Errorf("%w: a frame from %v on a connection whose peer said hello as %v", ErrPeer, *cr, c.peerCred)
	}
	return nil
}

// recvFull fills p with recvmsg(MSG_CMSG_CLOEXEC), collecting the fds and credentials that come along. It never reads
// past p, so it never touches the next frame or its fds.
func (c *Conn) recvFull(p []byte, in *inbound) error {
	got := 0
	var opErr error
	err := c.raw.Read(func(fd uintptr) bool {
		for got < len(p) {
			n, oobn, flags, _, err := unix.Recvmsg(int(fd), p[got:], c.oob, unix.MSG_CMSG_CLOEXEC)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait for the poller, within the deadline
			case err != nil:
				opErr = os.NewSyscallError("recvmsg", err)
				return true
			}
			in.add(c.oob[:oobn], flags) // first: whatever fds came are now ours to close
			if flags&unix.MSG_CTRUNC != 0 {
				opErr = fmt.Errorf("%w (MSG_CTRUNC): the peer attached more than %d fds or other control data; the %d that arrived were closed",
					ErrTruncated, MaxFiles, len(in.fds))
				return true
			}
			if flags&unix.MSG_TRUNC != 0 {
				opErr = fmt.Errorf("%w (MSG_TRUNC)", ErrTruncated)
				return true
			}
			if n == 0 {
				opErr = io.ErrUnexpectedEOF
				if in.n == 0 {
					opErr = fmt.Errorf("the peer closed the connection: %w", io.EOF)
				}
				return true
			}
			got += n
			in.n += n
		}
		return true
	})
	if err != nil {
		return err
	}
	return opErr
}

// writeFrame encodes m and writes it whole, with the fds of files attached to its first byte.
func (c *Conn) writeFrame(ctx context.Context, m Message, files []syscall.Conn) error {
	frame, err := encodeFrame(m)
	if err != nil {
		return err // nothing left: the Conn stays usable
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return fmt.Errorf("connection unusable after an earlier error: %w", c.werr)
	}
	sent := 0
	err = bounded(ctx, c.uc.SetWriteDeadline, func() error {
		return withRawFds(files, nil, func(fds []int) error {
			var rights []byte
			if len(fds) > 0 {
				rights = unix.UnixRights(fds...)
			}
			return c.sendFull(frame, rights, &sent)
		})
	})
	if err != nil && sent > 0 {
		c.werr = err
	}
	return err
}

// sendFull writes frame with sendmsg, rights attached to the first call: the kernel delivers the fds with the first
// byte of the frame, however the rest is split.
func (c *Conn) sendFull(frame, rights []byte, sent *int) error {
	var opErr error
	err := c.raw.Write(func(fd uintptr) bool {
		for *sent < len(frame) {
			var oob []byte
			if *sent == 0 {
				oob = rights
			}
			n, err := unix.SendmsgN(int(fd), frame[*sent:], oob, nil, unix.MSG_NOSIGNAL)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				opErr = os.NewSyscallError("sendmsg", err)
				return true
			}
			*sent += n
		}
		return true
	})
	if err != nil {
		return err
	}
	return opErr
}

// bounded runs op under ctx: ctx's deadline becomes the socket deadline, and cancelling ctx moves the deadline to the
// past, which wakes op. It returns ctx's error, wrapping op's, when ctx ended op.
func bounded(ctx context.Context, setDeadline func(time.Time) error, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline, _ := ctx.Deadline() // zero: none
	if err := setDeadline(deadline); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		setDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := op()
	if !stop() {
		<-fired // it ran: let it finish before the next op sets its own deadline
	}
	if err != nil && isTimeout(err) {
		cerr := ctx.Err()
		if cerr == nil && !deadline.IsZero() && !time.Now().Before(deadline) {
			cerr = context.DeadlineExceeded // the socket's timer beat ctx's
		}
		if cerr != nil {
			return fmt.Errorf("%w (%w)", cerr, err)
		}
	}
	return err
}

// isTimeout reports a socket deadline or a ctx that ended.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
