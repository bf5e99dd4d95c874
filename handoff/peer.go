package handoff

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Who is on the other end.
//
// SO_PEERCRED cannot answer that on a socketpair: socket(7) says it reports "the credentials that were in effect at
// the time of the call to connect(2) or socketpair(2)", and socketpair(2) records its caller as the peer of both ends.
// The supervisor, which creates the pair, would read its own pid back, never its child's (measured on Linux 6.18).
//
// SCM_CREDENTIALS can: with SO_PASSCRED set on either end, the kernel stamps every message with the pid, uid and gid
// of the process that sent it, and the receiver gets them as a control message. A process cannot claim another pid
// or uid without CAP_SYS_ADMIN or CAP_SETUID. So every frame this package reads carries the kernel's word on its
// sender, and CheckPeer compares the caller's expectation with the credentials of the peer's Hello.

// cred is what the kernel says about the process that sent a frame (SCM_CREDENTIALS).
type cred struct {
	pid, uid, gid int
}

func (c cred) String() string { return fmt.Sprintf("pid %d uid %d", c.pid, c.uid) }

// setPassCred turns on SO_PASSCRED, so that the kernel attaches SCM_CREDENTIALS to every message in both
// directions: it stamps a message when the sending or the receiving socket has the option.
func setPassCred(fd int) error {
	return os.NewSyscallError("setsockopt SO_PASSCRED", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1))
}

// checkStream makes sure fd is a Unix stream socket and turns on SO_PASSCRED.
func checkStream(rc syscall.RawConn) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		var typ int
		if typ, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
			err = os.NewSyscallError("getsockopt SO_TYPE", err)
			return
		}
		if typ != unix.SOCK_STREAM {
			err = fmt.Errorf("socket type %d, want SOCK_STREAM (%d)", typ, unix.SOCK_STREAM)
			return
		}
		err = setPassCred(int(fd))
	}); cerr != nil {
		return cerr
	}
	return err
}

// CheckPeer verifies that the peer that said hello is the process with this pid and uid, as the kernel saw it
// (SCM_CREDENTIALS on the peer's Hello). Call it after Handshake and before anything else: until it has passed, Send,
// Recv, SendFiles and RecvFiles refuse to run, so no fd leaves or enters this process. A mismatch is final; close the
// Conn.
//
// The supervisor passes its child's pid (cmd.Process.Pid) and the uid the worker runs as; the worker passes
// os.Getppid() and os.Getuid(). The uid is the sender's real uid.
func (c *Conn) CheckPeer(pid, uid int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateGreeted:
	case stateVerified:
		if c.peerCred.pid == pid && c.peerCred.uid == uid {
			return nil
		}
	default:
		return fmt.Errorf("handoff: check peer: %w", c.stateErrLocked())
	}
	if c.peerCred.pid != pid || c.peerCred.uid != uid {
		c.state = stateFailed
		return fmt.Errorf("handoff: check peer: %w: the kernel says the %s that said hello is %v, want pid %d uid %d",
			ErrPeer, c.peer.Role, c.peerCred, pid, uid)
	}
	c.state = stateVerified
	return nil
}
