package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/handoff"
	"github.com/announcementd/announcementd/systemd"
)

// The supervisor's listening sockets come from, in this order:
//
//  1. the supervisor it replaces (self-upgrade): tableflip hands them over;
//  2. the service manager (systemd.Inherit): its fd store (ours, kept there by an earlier main process of the
//     service: FDNAME api, control, metrics) or a .socket unit (socket activation), matched by the address the
//     socket is bound to;
//  3. opened here.
//
// Each is then registered with tableflip, so that a self-upgrade hands it on. tableflip removes the path of a Unix
// listener it holds when the process stops without an upgrade; so an activated socket, whose path is the .socket
// unit's, is registered as a plain file instead (activatedName), which tableflip never unlinks; and a supervisor
// whose sockets the fd store keeps does not stop tableflip at all (supervise): a restart takes the sockets back, and
// their paths must still lead to them.

// activatedName is the tableflip name of a socket-activated listener.
func activatedName(network, addr string) string { return "activated " + network + " " + addr }

// listener returns the socket for network and addr (see above); storeName is its fd store name; open makes it
// when nobody passed it.
func listener(log *zap.Logger, upg *tableflip.Upgrader, in inherited, storeName, network, addr string,
	open func() (net.Listener, error)) (net.Listener, error) {
	if l, err := upg.Fds.Listener(network, addr); l != nil || err != nil {
		return l, err
	}
	if f, err := upg.Fds.File(activatedName(network, addr)); f != nil || err != nil {
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return net.FileListener(f)
	}
	f, activated := in.takeListener(storeName, network, addr)
	if f == nil {
		return open()
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("the service manager's socket for %s:%s: %w", network, addr, err)
	}
	if activated {
		log.Info("socket activation: serving on the service manager's socket", zap.String("address", network+":"+addr))
		err = upg.Fds.AddFile(activatedName(network, addr), f)
	} else {
		log.Info("took the socket back from the service manager's fd store", zap.String("address", network+":"+addr))
		err = upg.Fds.AddListener(network, addr, l.(tableflip.Listener))
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// inherited wraps what the service manager passed, for listener.
type inherited struct{ *systemd.Inherited }

// takeListener finds, among the fd store's entries under name and the activated sockets, a listening socket bound
// to network and addr, and removes it from in.
func (in inherited) takeListener(name, network, addr string) (f *os.File, activated bool) {
	if in.Inherited == nil {
		return nil, false
	}
	if i := matching(in.ByName[name], network, addr); i >= 0 {
		f = in.ByName[name][i]
		in.ByName[name] = append(in.ByName[name][:i], in.ByName[name][i+1:]...)
		return f, false
	}
	if i := matching(in.Activated, network, addr); i >= 0 {
		f = in.Activated[i]
		in.Activated = append(in.Activated[:i], in.Activated[i+1:]...)
		return f, true
	}
	return nil, false
}

// matching is the index of the socket in fs that listens on network and addr, or -1.
func matching(fs []*os.File, network, addr string) int {
	for i, f := range fs {
		if n, a, err := boundAddress(f); err == nil && n == network && sameAddress(network, a, addr) {
			return i
		}
	}
	return -1
}

// boundAddress is the address a listening socket is bound to, as --listen writes it: ("unix", path) or
// ("tcp", host:port).
func boundAddress(f *os.File) (network, addr string, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", "", err
	}
	var sa unix.Sockaddr
	var listening int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if listening, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); serr != nil {
			return
		}
		sa, serr = unix.Getsockname(int(fd))
	})
	if err = errors.Join(err, serr); err != nil {
		return "", "", err
	}
	if listening != 1 {
		return "", "", errors.New("not a listening socket")
	}
	switch a := sa.(type) {
	case *unix.SockaddrUnix:
		return "unix", a.Name, nil
	case *unix.SockaddrInet4:
		return "tcp", (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String(), nil
	case *unix.SockaddrInet6:
		return "tcp", (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String(), nil
	}
	return "", "", fmt.Errorf("socket of family %T", sa)
}

// sameAddress compares a bound address with one from the command line (tcp: resolved, so that "localhost:80" and
// ":80" match what the kernel reports).
func sameAddress(network, bound, asked string) bool {
	if network != "tcp" {
		return bound == asked
	}
	if bound == asked {
		return true
	}
	b, err1 := net.ResolveTCPAddr("tcp", bound)
	a, err2 := net.ResolveTCPAddr("tcp", asked)
	if err1 != nil || err2 != nil || a.Port != b.Port {
		return false
	}
	return a.IP == nil && b.IP.IsUnspecified() || a.IP.Equal(b.IP)
}

// adoptRegion takes the region's fd back from the service manager's fd store, kept there by an earlier main process
// of this service: it is the file that process wrote, with its version, even when the path was damaged since (the
// worker's checks repair the path). The same rules as for a file found at the path (SECURITY.md): a regular file
// of this process's user that nobody else may write. Its lock is the same open file description's, which that
// process held (the service manager stopped every process of the service before this start).
func adoptRegion(log *zap.Logger, f *os.File) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("the fd store's region: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("the fd store's region is not a regular file (mode %o)", st.Mode)
	case st.Uid != uint32(os.Geteuid()):
		return nil, fmt.Errorf("the fd store's region belongs to uid %d, not this process's %d", st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return nil, fmt.Errorf("the fd store's region is writable by group or others (mode %o)", st.Mode&0o777)
	}
	if err := lockRegion(f); err != nil {
		return nil, fmt.Errorf("the fd store's region: %w", err)
	}
	log.Info("took the region back from the service manager's fd store", zap.Uint64("inode", st.Ino), zap.Uint64("links", uint64(st.Nlink)))
	return f, nil
}

// keepFiles puts the files every generation gets, and the control socket, into the service manager's fd store,
// and reports whether the store holds them all.
func keepFiles(log *zap.Logger, store *systemd.FDStore, files []handoff.NamedFile, control syscall.Conn) bool {
	byName := map[string][]syscall.Conn{systemd.NameControl: {control}}
	for _, f := range files {
		name := systemd.NameAPI
		switch {
		case f.Name == fileRegion:
			name = systemd.NameRegion
		case f.Name == fileMetrics:
			name = systemd.NameMetrics
		case !strings.HasPrefix(f.Name, fileAPI):
			continue
		}
		byName[name] = append(byName[name], f.File)
	}
	all := store.Active()
	for _, name := range []string{systemd.NameRegion, systemd.NameAPI, systemd.NameMetrics, systemd.NameControl} {
		if err := store.Keep(name, byName[name]...); err != nil {
			all = false
			log.Warn("could not keep fds in the service manager's fd store: a restart of the service will open them anew", zap.String("name", name), zap.Error(err))
		}
	}
	return all
}

// keepRegion puts a region a worker recreated into the fd store in place of the old one (supervisor's OnFiles).
func keepRegion(log *zap.Logger, store *systemd.FDStore, files []handoff.NamedFile) {
	for _, f := range files {
		if f.Name == fileRegion {
			if err := store.Keep(systemd.NameRegion, f.File); err != nil {
				log.Warn("could not keep the recreated region in the service manager's fd store", zap.Error(err))
			}
		}
	}
}
