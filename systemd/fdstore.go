package systemd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The names the service's fds have in systemd's fd store (FDNAME=, then LISTEN_FDNAMES). A socket-activated
// socket has its unit's FileDescriptorName= (by default the .socket unit's name), which is none of these.
const (
	NameRegion  = "region"  // the board's file
	NameControl = "control" // the supervisor's control socket
	NameAPI     = "api"     // an API listener (one entry per --listen)
	NameMetrics = "metrics" // the metrics listener
)

// FDStore keeps the service's fds in systemd's fd store (FDSTORE=1; the unit needs FileDescriptorStoreMax=), so
// that a main process killed or restarted by systemd gets them back (Inherit): the listening sockets stay open
// all along (clients wait in their backlog instead of being refused) and the board keeps its file. systemd
// empties the store when the unit stops (FileDescriptorStorePreserve=yes, systemd 254+, keeps it).
type FDStore struct {
	socket string
	log    *zap.Logger
}

// NewFDStore returns the fd store of $NOTIFY_SOCKET's service manager when the unit has one: $FDSTORE is its size
// (systemd 254+ sets it from FileDescriptorStoreMax=; announcementd.service sets it for 252). Without either, its
// calls do nothing: a service manager that drops the fds must not make the daemon believe they are kept.
func NewFDStore(log *zap.Logger) *FDStore {
	n, err := strconv.Atoi(os.Getenv("FDSTORE"))
	if err != nil || n <= 0 {
		return &FDStore{log: log}
	}
	return &FDStore{socket: os.Getenv("NOTIFY_SOCKET"), log: log}
}

// Active reports whether a service manager keeps fds for the service (NOTIFY_SOCKET and FDSTORE are set).
func (s *FDStore) Active() bool { return s != nil && s.socket != "" }

// Keep makes files the store's entries under name, in place of any it held under that name. Sockets are polled
// by systemd, which drops one that hangs up; a regular file would always poll ready, so it is kept with
// FDPOLL=0. The files stay the caller's (systemd gets copies).
func (s *FDStore) Keep(name string, files ...syscall.Conn) error {
	if s == nil || s.socket == "" {
		return nil
	}
	if strings.ContainsAny(name, ":\n") || name == "" || len(name) > 255 {
		return fmt.Errorf("fd store name %q: 1..255 characters, no ':' or newline", name)
	}
	if err := sendFDs(s.socket, "FDSTOREREMOVE=1\nFDNAME="+name, nil); err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	fds := make([]int, 0, len(files))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	poll := true
	for _, f := range files {
		fd, regular, err := dupConn(f)
		if err != nil {
			return fmt.Errorf("fd store %s: %w", name, err)
		}
		fds = append(fds, fd)
		poll = poll && !regular
	}
	msg := "FDSTORE=1\nFDNAME=" + name
	if !poll {
		msg += "\nFDPOLL=0"
	}
	if err := sendFDs(s.socket, msg, fds); err != nil {
		return err
	}
	s.log.Debug("kept in the service manager's fd store", zap.String("name", name), zap.Int("fds", len(fds)))
	return nil
}

// dupConn duplicates c's fd (close-on-exec) through its SyscallConn, which leaves a socket's non-blocking mode
// alone ((*os.File).Fd would make it blocking), and says whether it is a regular file.
func dupConn(c syscall.Conn) (fd int, regular bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, false, err
	}
	var derr error
	err = rc.Control(func(raw uintptr) {
		fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 3)
		if derr != nil {
			return
		}
		var st unix.Stat_t
		if derr = unix.Fstat(fd, &st); derr == nil {
			regular = st.Mode&unix.S_IFMT == unix.S_IFREG
		}
	})
	if err = errors.Join(err, derr); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, false, err
	}
	return fd, regular, nil
}

// Inherited are the fds the service manager passed this process at start (LISTEN_FDS, LISTEN_FDNAMES): the fd
// store's entries by their names (NameRegion ...), and socket-activated sockets.
type Inherited struct {
	ByName    map[string][]*os.File
	Activated []*os.File // sockets of .socket units (any name but the fd store's)
}

// Inherit takes the fds systemd passed (go-systemd activation; LISTEN_PID must be this process) and unsets the
// LISTEN_* variables, so that no child sees them. The files are the caller's.
func Inherit() *Inherited {
	in := &Inherited{ByName: map[string][]*os.File{}}
	for _, f := range activation.Files(true) {
		switch name := f.Name(); name {
		case NameRegion, NameControl, NameAPI, NameMetrics:
			in.ByName[name] = append(in.ByName[name], f)
		default:
			in.Activated = append(in.Activated, f)
		}
	}
	return in
}

// Empty reports whether nothing was passed.
func (in *Inherited) Empty() bool { return len(in.ByName) == 0 && len(in.Activated) == 0 }

// Take removes and returns the fds stored under name.
func (in *Inherited) Take(name string) []*os.File {
	fs := in.ByName[name]
	delete(in.ByName, name)
	return fs
}

// TakeActivated removes and returns the socket-activated sockets.
func (in *Inherited) TakeActivated() []*os.File {
	fs := in.Activated
	in.Activated = nil
	return fs
}

// Close closes every fd not taken (again: none).
func (in *Inherited) Close() {
	for _, fs := range in.ByName {
		for _, f := range fs {
			f.Close()
		}
	}
	for _, f := range in.Activated {
		f.Close()
	}
	in.ByName, in.Activated = map[string][]*os.File{}, nil
}
