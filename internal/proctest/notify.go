package proctest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Notification is one sd_notify datagram a daemon sent (sd_notify(3)).
type Notification struct {
	At     time.Time
	PID    int      // the sender, from its credentials (SO_PASSCRED)
	Fields []string // its lines in order: "READY=1", "STATUS=serving: ...", "MAINPID=42"...
	Fds    int      // how many fds came with it (FDSTORE=1, BARRIER=1); the harness closes them
}

// Has reports whether the datagram has the line kv ("READY=1").
func (n Notification) Has(kv string) bool { return slices.Contains(n.Fields, kv) }

// Value returns the value of the field key ("STATUS") and whether the datagram has it.
func (n Notification) Value(key string) (string, bool) {
	for _, f := range n.Fields {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (n Notification) String() string {
	return fmt.Sprintf("pid %d: %s", n.PID, strings.Join(n.Fields, " "))
}

// notifySocket is the service manager's end of sd_notify for one daemon: a unixgram socket in a short temp dir
// (sun_path holds 108 bytes), the datagrams received, and the goroutine that receives them (ended by close).
type notifySocket struct {
	dir, path string
	conn      *net.UnixConn
	done      chan struct{} // closed when the receiving goroutine has returned

	mu      sync.Mutex
	msgs    []Notification
	changed chan struct{} // closed (and replaced) at every datagram
}

// listenNotify makes the socket; a daemon running as cred must be able to send to it.
func listenNotify(cred *syscall.Credential) (*notifySocket, error) {
	dir, err := os.MkdirTemp("", "ptn")
	if err != nil {
		return nil, err
	}
	n := &notifySocket{dir: dir, path: filepath.Join(dir, "notify"), done: make(chan struct{}), changed: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err == nil {
		err = setPassCred(n.conn)
	}
	if err == nil && cred != nil {
		for _, p := range []string{dir, n.path} {
			if err = os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				break
			}
		}
	}
	if err != nil {
		if n.conn != nil {
			n.conn.Close()
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("proctest: the notify socket: %w", err)
	}
	go n.receive()
	return n, nil
}

func setPassCred(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// receive records every datagram until the socket is closed. The fds that come with one (FDSTORE=1, BARRIER=1)
// are closed at once: closing the barrier's is what lets the daemon's sd_notify_barrier return.
func (n *notifySocket) receive() {
	defer close(n.done)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*253))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed (net.ErrClosed); any other error would repeat: a wait for READY=1 then times out
		}
		m := Notification{At: time.Now(), Fields: strings.FieldsFunc(string(buf[:nb]), func(r rune) bool { return r == '\n' })}
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil {
			for _, c := range cmsgs {
				if fds, err := unix.ParseUnixRights(&c); err == nil {
					for _, fd := range fds {
						unix.Close(fd)
					}
					m.Fds += len(fds)
				}
				if cred, err := unix.ParseUnixCredentials(&c); err == nil {
					m.PID = int(cred.Pid)
				}
			}
		}
		n.mu.Lock()
		n.msgs = append(n.msgs, m)
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
}

// snapshot returns the datagrams so far and a channel closed at the next one (nil, never closed, when there is no
// socket).
func (n *notifySocket) snapshot() ([]Notification, <-chan struct{}) {
	if n == nil {
		return nil, nil // no socket (NoNotify): nothing comes
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs), n.changed
}

// close stops the receiving goroutine and removes the socket.
func (n *notifySocket) close() {
	if n == nil {
		return
	}
	n.conn.Close()
	<-n.done
	os.RemoveAll(n.dir)
}
