// Package securefs finds, opens and creates the daemon's own files in directories that other local users may write
// to (/dev/shm and /tmp are world-writable), so that no local user can steer what the daemon writes
// (docs/SECURITY.md).
//
// The rules:
//   - A directory is trusted when it and every directory above it are owned by root or by this process's user and
//     are not writable by group or others, or are sticky (others may add entries there, but not remove or rename
//     ours). Directories are opened one component at a time with O_NOFOLLOW, so what is checked is what is used.
//   - A symlink on the way to a directory is followed only when root or this process's user owns it (what
//     fs.protected_symlinks enforces for sticky directories, here everywhere). A symlink at a file's own name is
//     never followed.
//   - An existing file is ours when it is a regular file owned by this process's user, not writable by group or
//     others, with one link. Only files of ours are opened for writing; anything else at a name (another user's
//     file, a symlink, a FIFO, a hard link) is never opened, only replaced or refused.
//   - A new file is created without a name (O_TMPFILE; O_EXCL under a random hidden name where the file system
//     lacks it) with mode 0600, given its mode with fchmod, and put in place by renaming it over the name, so that
//     it appears only whole, and never where someone else chose.
//
// In a user namespace that does not map root, root's directories show as owned by the overflow uid; there, and
// only for directories, that uid is trusted like root.
package securefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotOurs is matched by the errors that refuse a file or directory because of who owns it or may write it.
var ErrNotOurs = errors.New("not the daemon's own")

// maxSymlinks bounds the symlinks followed on the way to a directory, as the kernel's 40.
const maxSymlinks = 40

// Dir is a trusted directory, open (O_PATH) for the *at calls that work in it.
type Dir struct {
	fd   int
	path string
	st   unix.Stat_t
}

// OpenDir opens the trusted directory at path.
func OpenDir(path string) (*Dir, error) { return walk(path, false, 0) }

// MkdirAll opens the trusted directory at path, creating it and the directories above it that are missing with
// perm (each checked as it is made: a directory someone else made in a sticky parent meanwhile is refused).
func MkdirAll(path string, perm os.FileMode) (*Dir, error) {
	return walk(path, true, uint32(perm.Perm()))
}

// MkdirPrivate is MkdirAll for a directory that must be private besides: owned by this process's user, writable by
// nobody else (a state or runtime directory, where nobody else may add a file).
func MkdirPrivate(path string, perm os.FileMode) (*Dir, error) {
	d, err := MkdirAll(path, perm)
	if err != nil {
		return nil, err
	}
	if err := d.private(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Path is the directory's path as given.
func (d *Dir) Path() string { return d.path }

// Close closes the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

func (d *Dir) private() error {
	if int(d.st.Uid) != os.Geteuid() || d.st.Mode&0o022 != 0 {
		return fmt.Errorf("directory %s: %s (mode %04o): %w; it must be owned by %s and writable by nobody else",
			d.path, ownerOf(d.st.Uid), d.st.Mode&0o7777, ErrNotOurs, ownerOf(uint32(os.Geteuid())))
	}
	return nil
}

// walk resolves path one component at a time from the root, checking each directory, following only trusted
// symlinks, and creating missing components when create is set.
func walk(path string, create bool, perm uint32) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	d := &Dir{fd: fd, path: path}
	fail := func(err error) (*Dir, error) {
		unix.Close(d.fd)
		return nil, err
	}
	if err := d.checkTrusted("/"); err != nil {
		return fail(err)
	}
	pending := components(abs)
	at := "/" // the directory reached so far, for messages
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		if c == "." {
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(d.fd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(d.fd, c, perm); err != nil && !errors.Is(err, unix.EEXIST) {
				return fail(&fs.PathError{Op: "mkdir", Path: filepath.Join(at, c), Err: err})
			}
			err = unix.Fstatat(d.fd, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fail(&fs.PathError{Op: "stat", Path: filepath.Join(at, c), Err: err})
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if links++; links > maxSymlinks {
				return fail(&fs.PathError{Op: "open", Path: path, Err: unix.ELOOP})
			}
			if !trustedOwner(st.Uid, true) {
				return fail(fmt.Errorf("%s is a symlink of %s: %w; not followed", filepath.Join(at, c), ownerOf(st.Uid), ErrNotOurs))
			}
			target, err := readlinkat(d.fd, c)
			if err != nil {
				return fail(&fs.PathError{Op: "readlink", Path: filepath.Join(at, c), Err: err})
			}
			if filepath.IsAbs(target) {
				root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					return fail(err)
				}
				unix.Close(d.fd)
				d.fd, at = root, "/"
			}
			pending = append(components(target), pending...)
			continue
		}
		next, err := unix.Openat(d.fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(&fs.PathError{Op: "open", Path: filepath.Join(at, c), Err: err})
		}
		unix.Close(d.fd)
		d.fd, at = next, filepath.Join(at, c)
		if err := d.checkTrusted(at); err != nil {
			return fail(err)
		}
	}
	return d, nil
}

func components(p string) []string {
	var cs []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			cs = append(cs, c)
		}
	}
	return cs
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// checkTrusted fstats the open directory into d.st and checks it by the package rules.
func (d *Dir) checkTrusted(at string) error {
	if err := unix.Fstat(d.fd, &d.st); err != nil {
		return &fs.PathError{Op: "stat", Path: at, Err: err}
	}
	if d.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return &fs.PathError{Op: "open", Path: at, Err: unix.ENOTDIR}
	}
	if !trustedOwner(d.st.Uid, true) {
		return fmt.Errorf("directory %s belongs to %s: %w (it could change what is in it)", at, ownerOf(d.st.Uid), ErrNotOurs)
	}
	if d.st.Mode&0o022 != 0 && d.st.Mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("directory %s (mode %04o) is writable by others and not sticky: %w (anyone could replace what is in it)",
			at, d.st.Mode&0o7777, ErrNotOurs)
	}
	return nil
}

// trustedOwner: root, this process's user, or (for directories, in a user namespace without root) the overflow uid.
func trustedOwner(uid uint32, dir bool) bool {
	if uid == 0 || int(uid) == os.Geteuid() {
		return true
	}
	return dir && uid == overflowUID() && !rootMapped()
}

// The user namespace, read once: the overflow uid, and whether host root is mapped into it.
var (
	nsOnce     sync.Once
	overflow   uint32
	mappedRoot bool
)

func loadNS() {
	overflow = 65534
	if b, err := os.ReadFile("/proc/sys/kernel/overflowuid"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil {
			overflow = uint32(n)
		}
	}
	mappedRoot = true
	if b, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		mappedRoot = false
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			inside, _ := strconv.ParseUint(f[0], 10, 32)
			outside, _ := strconv.ParseUint(f[1], 10, 32)
			n, _ := strconv.ParseUint(f[2], 10, 32)
			if outside == 0 && n > 0 && inside+n > inside { // host root is mapped to inside
				mappedRoot = true
			}
		}
	}
}

func overflowUID() uint32 { nsOnce.Do(loadNS); return overflow }
func rootMapped() bool    { nsOnce.Do(loadNS); return mappedRoot }

// ownerOf names a uid for messages: "uid 1001 (mallory)".
func ownerOf(uid uint32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil && u.Username != "" {
		s += " (" + u.Username + ")"
	}
	return s
}

// Entry is what is at a name in a directory, as lstat sees it.
type Entry struct {
	Name   string
	Exists bool
	st     unix.Stat_t
}

// Lookup lstats name in d.
func (d *Dir) Lookup(name string) (Entry, error) {
	e := Entry{Name: filepath.Join(d.path, name)}
	err := unix.Fstatat(d.fd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return e, nil
	case err != nil:
		return e, &fs.PathError{Op: "stat", Path: e.Name, Err: err}
	}
	e.Exists = true
	return e, nil
}

// Is reports whether the entry is the open file f.
func (e Entry) Is(f *os.File) bool {
	var st unix.Stat_t
	return e.Exists && f != nil && unix.Fstat(int(f.Fd()), &st) == nil && st.Dev == e.st.Dev && st.Ino == e.st.Ino
}

// UID is the entry's owner.
func (e Entry) UID() uint32 { return e.st.Uid }

// Ours reports why the entry is not a file of ours (nil when it is): a regular file, owned by this process's user,
// writable by nobody else, with one link.
func (e Entry) Ours() error {
	if !e.Exists {
		return &fs.PathError{Op: "open", Path: e.Name, Err: fs.ErrNotExist}
	}
	var why string
	switch {
	case e.st.Mode&unix.S_IFMT == unix.S_IFLNK:
		why = "is a symlink (never followed)"
	case e.st.Mode&unix.S_IFMT != unix.S_IFREG:
		why = "is not a regular file"
	case int(e.st.Uid) != os.Geteuid():
		why = "belongs to " + ownerOf(e.st.Uid)
	case e.st.Mode&0o022 != 0:
		why = fmt.Sprintf("is writable by others (mode %04o)", e.st.Mode&0o7777)
	case e.st.Nlink != 1:
		why = fmt.Sprintf("has %d links (a hard link elsewhere could be written through it)", e.st.Nlink)
	default:
		return nil
	}
	return fmt.Errorf("%s %s: %w", e.Name, why, ErrNotOurs)
}

// Open opens the file of ours at name (Entry.Ours) with flag (os.O_RDONLY or os.O_RDWR; O_NOFOLLOW, O_NOCTTY and
// O_CLOEXEC are added). Anything else at name is not opened: the error matches ErrNotOurs, or fs.ErrNotExist when
// nothing is there.
func (d *Dir) Open(name string, flag int) (*os.File, error) {
	for range 3 {
		f, err := d.open(name, flag)
		if err != errSwapped {
			return f, err
		}
	}
	return nil, fmt.Errorf("%s keeps being replaced while it is opened: %w", filepath.Join(d.path, name), ErrNotOurs)
}

var errSwapped = errors.New("replaced between the check and the open")

func (d *Dir) open(name string, flag int) (*os.File, error) {
	e, err := d.Lookup(name)
	if err != nil {
		return nil, err
	}
	if err := e.Ours(); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd, name, flag|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: e.Name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "stat", Path: e.Name, Err: err}
	}
	if st.Dev != e.st.Dev || st.Ino != e.st.Ino {
		unix.Close(fd)
		return nil, errSwapped
	}
	// O_NONBLOCK kept a FIFO swapped in from blocking the open; a regular file ignores it, but clear it anyway.
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	return os.NewFile(uintptr(fd), e.Name), nil
}

// CheckOurs checks that name in d is absent or a file of ours, for files that a library opens by path (the store).
// d being private (MkdirAll), nobody else can put another file there after the check.
func (d *Dir) CheckOurs(name string) error {
	e, err := d.Lookup(name)
	if err != nil || !e.Exists {
		return err
	}
	return e.Ours()
}

// Create makes a new file in d without a name (O_TMPFILE), mode perm; Install gives it one. Its Name is name's
// path. Nothing is left behind if it is never installed.
func (d *Dir) Create(name string, perm os.FileMode) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		return nil, fmt.Errorf("create %s: the file system of %s cannot make unnamed files (O_TMPFILE); use tmpfs, e.g. /dev/shm: %w", path, d.path, err)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: path, Err: err}
	}
	if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "chmod", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

func tempName(name string) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "." + name + "." + hex.EncodeToString(b[:]), nil
}

// ErrSpent is matched by Install's error when f was linked and could not be renamed into place: a file without a
// name can be linked once only, so it can never be installed; create another.
var ErrSpent = errors.New("the new file can no longer be given a name")

// Install puts f (from Create) at name in d, atomically: it is linked under a random hidden name, then renamed
// over name. When something is at name already, replace decides first: it returns nil to have it replaced, or
// the error Install returns; a rename the directory does not allow (MayReplace) fails with an error naming the
// owner. Nothing is left behind either way. Something that appears at name between the check and the rename is
// checked in turn; if it may not be replaced, f is spent (ErrSpent).
func (d *Dir) Install(f *os.File, name string, replace func(Entry) error) error {
	path := filepath.Join(d.path, name)
	e, err := d.Lookup(name)
	if err != nil {
		return err
	}
	if err := d.mayInstallOver(e, replace); err != nil {
		return err
	}
	tmp, err := tempName(name)
	if err != nil {
		return err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var linkErr error
	if err := raw.Control(func(fd uintptr) {
		var st unix.Stat_t
		if linkErr = unix.Fstat(int(fd), &st); linkErr == nil && st.Nlink > 0 {
			linkErr = fmt.Errorf("%s has a name already: only a file from Create is installed", f.Name())
			return
		}
		linkErr = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(fd)), d.fd, tmp, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(linkErr, unix.ENOENT) { // no /proc (or f was linked before): AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH
			linkErr = unix.Linkat(int(fd), "", d.fd, tmp, unix.AT_EMPTY_PATH)
		}
	}); err != nil {
		return err
	}
	if linkErr != nil {
		return &fs.PathError{Op: "link", Path: path, Err: linkErr}
	}
	spent := func(err error) error {
		unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("%w: %w", ErrSpent, err)
	}
	if e.Exists {
		err = unix.Renameat(d.fd, tmp, d.fd, name)
	} else if err = unix.Renameat2(d.fd, tmp, d.fd, name, unix.RENAME_NOREPLACE); errors.Is(err, unix.EEXIST) {
		// Something appeared meanwhile: the same checks, then replace it.
		if e, err = d.Lookup(name); err == nil {
			if err = d.mayInstallOver(e, replace); err == nil {
				err = unix.Renameat(d.fd, tmp, d.fd, name)
			}
		}
	} else if errors.Is(err, unix.EINVAL) { // no RENAME_NOREPLACE on this file system
		err = unix.Renameat(d.fd, tmp, d.fd, name)
	}
	if err != nil {
		return spent(&fs.PathError{Op: "rename", Path: path, Err: err})
	}
	return nil
}

// mayInstallOver asks replace, then MayReplace, whether what is at e may be replaced.
func (d *Dir) mayInstallOver(e Entry, replace func(Entry) error) error {
	if !e.Exists {
		return nil
	}
	if replace == nil {
		return &fs.PathError{Op: "install", Path: e.Name, Err: fs.ErrExist}
	}
	if err := replace(e); err != nil {
		return err
	}
	return d.MayReplace(e)
}

// MayReplace reports whether this process may rename another file over e, and if not, why: in a sticky directory
// only the owner of the entry or of the directory, or a process with CAP_FOWNER, may.
func (d *Dir) MayReplace(e Entry) error {
	if !e.Exists || d.st.Mode&unix.S_ISVTX == 0 || int(e.st.Uid) == os.Geteuid() || int(d.st.Uid) == os.Geteuid() || hasFowner() {
		return nil
	}
	return fmt.Errorf("%s belongs to %s and %s is sticky: %w, and this process (%s, without CAP_FOWNER) may not replace it; remove it as its owner or as root, or choose another path",
		e.Name, ownerOf(e.st.Uid), d.path, ErrNotOurs, ownerOf(uint32(os.Geteuid())))
}

func hasFowner() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_FOWNER) != 0
}

// Remove removes name from d when it is a file of ours (a socket or pid file of ours too: any type but a
// directory, owned by us).
func (d *Dir) Remove(name string) error {
	e, err := d.Lookup(name)
	if err != nil || !e.Exists {
		return err
	}
	if int(e.st.Uid) != os.Geteuid() || e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%s belongs to %s: %w; not removed", e.Name, ownerOf(e.st.Uid), ErrNotOurs)
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: e.Name, Err: err}
	}
	return nil
}

// ReadTrusted reads a small file that decides something (a token): a regular file, not a symlink, owned by root or
// this process's user and writable by nobody else, in a trusted directory.
func ReadTrusted(path string, limit int64) ([]byte, error) {
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	name := filepath.Base(path)
	e, err := d.Lookup(name)
	if err != nil {
		return nil, err
	}
	switch {
	case !e.Exists:
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	case e.st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%s is not a regular file (symlinks are not followed): %w", path, ErrNotOurs)
	case !trustedOwner(e.st.Uid, false):
		return nil, fmt.Errorf("%s belongs to %s: %w; it must be owned by root or %s", path, ownerOf(e.st.Uid), ErrNotOurs, ownerOf(uint32(os.Geteuid())))
	case e.st.Mode&0o022 != 0:
		return nil, fmt.Errorf("%s is writable by others (mode %04o): %w", path, e.st.Mode&0o7777, ErrNotOurs)
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != e.st.Ino || st.Dev != e.st.Dev {
		return nil, fmt.Errorf("%s changed while it was opened", path)
	}
	buf := make([]byte, limit+1)
	n, err := f.ReadAt(buf, 0)
	if int64(n) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// OpenOrCreate opens the file of ours at path for reading and writing, whatever its contents, or else creates a
// new file without a name (Create) for the caller to fill and Install at path, replacing what is there: another
// user's file, a symlink, anything that is not a file of ours. It never follows a symlink at path and never opens
// another's file. When what is at path may not be replaced (MayReplace), it fails with one line naming the owner.
// replacing, when not nil, says what is at path and will be replaced.
func OpenOrCreate(path string, perm os.FileMode) (f *os.File, replacing error, err error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	e, err := d.Lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if e.Exists {
		notOurs := e.Ours()
		if notOurs == nil {
			f, err = d.Open(name, os.O_RDWR)
			if !errors.Is(err, ErrNotOurs) { // opened, or failed for another reason than a swap under us
				return f, nil, err
			}
			notOurs = err
		}
		if err := d.MayReplace(e); err != nil {
			return nil, nil, err
		}
		replacing = notOurs
	}
	if f, err = d.Create(name, perm); err != nil {
		return nil, nil, err
	}
	return f, replacing, nil
}
