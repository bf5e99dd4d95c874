package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NamedFile is one fd to send, under the name the receiver looks it up by.
//
// File is anything with a SyscallConn method: an *os.File, a *net.TCPListener, a *net.UnixListener, a
// *net.UnixConn... Pass listeners as they are; there is no need for (*net.TCPListener).File. This package reads the
// fd through SyscallConn().Control and never calls (*os.File).Fd, which switches the file to blocking mode. Blocking
// mode belongs to the open file description, which the sender and every receiver share, so one Fd call anywhere
// leaves a listener whose Close no longer interrupts Accept.
type NamedFile struct {
	Name string
	File syscall.Conn
}

// Files are fds received by name; the caller owns them and closes those it does not keep (Close closes them all).
// Every one is close-on-exec. Every socket among them is non-blocking, so net.FileListener and net.FileConn turn it
// into a listener or connection whose Close interrupts a pending Accept or Read. Other kinds of fd keep the flags
// they had.
type Files map[string]*os.File

// Type is TypeFiles. Send(ctx, files) is SendFiles(ctx, files.Named()...).
func (Files) Type() Type { return TypeFiles }

func (f Files) validate() error {
	for name, file := range f {
		if file == nil {
			return fmt.Errorf("%w: file %q is nil", ErrProtocol, name)
		}
	}
	return fileNames(f.names()).validate()
}

// names returns the names, sorted.
func (f Files) names() []string {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Named returns the files sorted by name, ready to pass on with SendFiles.
func (f Files) Named() []NamedFile {
	named := make([]NamedFile, 0, len(f))
	for _, name := range f.names() {
		named = append(named, NamedFile{Name: name, File: f[name]})
	}
	return named
}

// Close closes every file and returns the errors joined.
func (f Files) Close() error {
	var errs []error
	for _, file := range f {
		errs = append(errs, file.Close())
	}
	return errors.Join(errs...)
}

// withRawFds calls fn with the raw fds of files, in order. Each fd is read inside its file's
// SyscallConn().Control callback, and fn runs inside all of them, nested, so every file holds a reference on its fd
// until fn returns: a concurrent Close waits for fn instead of letting the number be reused under sendmsg.
func withRawFds(files []syscall.Conn, fds []int, fn func(fds []int) error) error {
	if len(files) == 0 {
		return fn(fds)
	}
	rc, err := files[0].SyscallConn()
	if err != nil {
		return fmt.Errorf("fd %d of %d: %w", len(fds)+1, len(fds)+len(files), err)
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) {
		fnErr = withRawFds(files[1:], append(fds, int(fd)), fn)
	}); err != nil {
		return fmt.Errorf("fd %d of %d: %w", len(fds)+1, len(fds)+len(files), err)
	}
	return fnErr
}

// controlSpace is the size of the control buffer for one recvmsg: SCM_CREDENTIALS, then up to MaxFiles fds
// (the kernel writes the credentials first). More fds than that come as MSG_CTRUNC, never as silently fewer.
func controlSpace() int {
	return unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(MaxFiles*4)
}

// parseControl walks the control messages of one recvmsg. It returns every fd it found, even along with an error,
// so that the caller can close them; it is pure and never closes anything itself.
func parseControl(oob []byte) (fds []int, cr *cred, err error) {
	hdrLen := unix.CmsgLen(0) // the aligned header; the data starts here
	for len(oob) > 0 {
		if len(oob) < hdrLen {
			return fds, cr, fmt.Errorf("%w: %d stray bytes after the control messages", ErrProtocol, len(oob))
		}
		var h unix.Cmsghdr // copied, not cast: oob need not be aligned
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), oob)
		if uint64(h.Len) < uint64(hdrLen) || uint64(h.Len) > uint64(len(oob)) {
			return fds, cr, fmt.Errorf("%w: control message of length %d in %d bytes", ErrProtocol, uint64(h.Len), len(oob))
		}
		data := oob[hdrLen:h.Len]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS:
			for ; len(data) >= 4; data = data[4:] {
				fd := int(int32(binary.NativeEndian.Uint32(data)))
				if fd < 0 {
					return fds, cr, fmt.Errorf("%w: SCM_RIGHTS carries fd %d", ErrProtocol, fd)
				}
				fds = append(fds, fd)
			}
			if len(data) != 0 {
				return fds, cr, fmt.Errorf("%w: SCM_RIGHTS with %d trailing bytes", ErrProtocol, len(data))
			}
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_CREDENTIALS && len(data) >= unix.SizeofUcred && cr == nil:
			cr = &cred{
				pid: int(int32(binary.NativeEndian.Uint32(data[0:]))),
				uid: int(binary.NativeEndian.Uint32(data[4:])),
				gid: int(binary.NativeEndian.Uint32(data[8:])),
			}
		}
		next := unix.CmsgSpace(int(h.Len) - hdrLen)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return fds, cr, nil
}

// closeFds closes raw fds that never became *os.File.
func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// adoptFds turns the fds of a decoded Files frame into Files, making sockets non-blocking. On error every fd is
// closed.
func adoptFds(names fileNames, fds []int) (Files, error) {
	if len(names) != len(fds) { // decodeFrame checked this; keep the invariant local
		closeFds(fds)
		return nil, fmt.Errorf("%w: %d names for %d fds", ErrFileCount, len(names), len(fds))
	}
	for i, fd := range fds {
		if err := makeSocketNonblocking(fd); err != nil {
			closeFds(fds)
			return nil, fmt.Errorf("file %q: %w", names[i], err)
		}
	}
	files := make(Files, len(fds))
	for i, fd := range fds {
		// os.NewFile sees O_NONBLOCK on a socket and registers it with the poller; its Fd method then leaves the
		// mode alone.
		files[names[i]] = os.NewFile(uintptr(fd), names[i])
	}
	return files, nil
}

// makeSocketNonblocking sets O_NONBLOCK on fd if it is a socket. Other kinds are left alone: O_NONBLOCK means
// nothing to a regular file, and on a pipe or terminal shared with other processes it would change their reads.
func makeSocketNonblocking(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	return os.NewSyscallError("fcntl O_NONBLOCK", unix.SetNonblock(fd, true))
}
