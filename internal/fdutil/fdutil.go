// Package fdutil duplicates open files without (*os.File).Fd, which puts a socket's shared open file description
// in blocking mode (docs/HANDOFF.md §4).
package fdutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// Dup returns a close-on-exec duplicate of f named name. Closing either leaves the other open; both share one open
// file description (offset, flags, locks).
func Dup(f *os.File, name string) (*os.File, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, os.NewSyscallError("dup "+f.Name(), dupErr)
	}
	return os.NewFile(uintptr(fd), name), nil
}
