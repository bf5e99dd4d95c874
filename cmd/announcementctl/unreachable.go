package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// endpoint is what a client talks to, for messages: who ("announcementd", "announcementd's supervisor") and where
// (a socket's path, or tcp:HOST:PORT).
type endpoint struct {
	what string
	addr string
}

func (e endpoint) tcp() bool { return strings.HasPrefix(e.addr, "tcp:") }

// unreachableError means the daemon could not be reached at all: nothing was asked of it. Its message says what
// to do about it, in one line.
type unreachableError struct {
	where endpoint
	err   error
}

func (e *unreachableError) Unwrap() error { return e.err }

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s at %s: %s", e.where.what, e.where.addr, e.advice())
}

// The hints that end the messages.
const (
	hintRunning = "is it running (systemctl status announcementd)?"
	hintDir     = "set --runtime-dir or $ANNOUNCEMENTD_RUNTIME_DIR if it uses another runtime dir"
)

// advice is the cause, as far as it tells the user something, and what to do about it.
func (e *unreachableError) advice() string {
	var errno syscall.Errno
	if !errors.As(e.err, &errno) {
		return cause(e.err)
	}
	if e.where.tcp() {
		if errno == syscall.ECONNREFUSED {
			return fmt.Sprintf("connection refused: is it running, with --listen %s?", e.where.addr)
		}
		return cause(e.err)
	}
	dir := filepath.Dir(e.where.addr)
	switch errno {
	case syscall.ENOENT:
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("%s does not exist: %s %s", dir, hintRunning, hintDir)
		}
		return fmt.Sprintf("no socket there: %s %s", hintRunning, hintDir)
	case syscall.ECONNREFUSED:
		return fmt.Sprintf("connection refused (the socket is there, nothing listens on it): %s %s", hintRunning, hintDir)
	case syscall.EACCES, syscall.EPERM:
		return "permission denied: " + permissionAdvice(e.where.addr)
	}
	return cause(e.err)
}

// notRunning reports whether the error says that nothing serves at a local socket whose directory is there: the
// service is not running (or runs with another runtime dir).
func (e *unreachableError) notRunning() bool {
	if e.where.tcp() {
		return false
	}
	if errors.Is(e.err, syscall.ECONNREFUSED) {
		return true
	}
	if !errors.Is(e.err, syscall.ENOENT) {
		return false
	}
	_, err := os.Stat(filepath.Dir(e.where.addr))
	return err == nil
}

// permissionAdvice says which group may connect to the socket at path (or reach its directory), and how to join it.
func permissionAdvice(path string) string {
	what := path
	st, err := os.Stat(path)
	if err != nil { // the directory is what keeps us out
		what = filepath.Dir(path)
		st, err = os.Stat(what)
	}
	sys, ok := func() (*syscall.Stat_t, bool) {
		if err != nil {
			return nil, false
		}
		s, ok := st.Sys().(*syscall.Stat_t)
		return s, ok
	}()
	if !ok {
		return "only the daemon's user and group may connect: join its group (usually announcementd), or run as root"
	}
	group := strconv.FormatUint(uint64(sys.Gid), 10)
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	me := "$USER"
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	return fmt.Sprintf("%s is mode %04o, group %s: your user must be in group %s (sudo adduser %s %s, then log in again), or run as root",
		what, st.Mode().Perm(), group, group, me, group)
}

// cause is err without what net/http adds before it: `Post "http://announcementd/v1/stop": ` names a host that
// does not exist.
func cause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
