package systemd

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// sendFDs sends state to the notify socket with fds attached as SCM_RIGHTS, which go-systemd's SdNotify cannot do
// (go-systemd#442). socket is $NOTIFY_SOCKET: a path, or "@name" in the abstract namespace (x/sys maps the '@').
// The fds are the caller's; the kernel gives systemd copies.
func sendFDs(socket, state string, fds []int) error {
	if socket == "" {
		return nil
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer unix.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: socket}, 0); err != nil {
		return fmt.Errorf("send %q with %d fds to %s: %w", state, len(fds), socket, err)
	}
	return nil
}

// barrier sends BARRIER=1 with the write end of a pipe and waits until systemd closes it, which it does once it has
// processed every message sent before (sd_notify_barrier(3)).
func barrier(socket string, timeout time.Duration) error {
	if socket == "" {
		return nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("barrier pipe: %w", err)
	}
	defer unix.Close(p[0])
	err := sendFDs(socket, "BARRIER=1", []int{p[1]})
	unix.Close(p[1]) // systemd holds the only write end now
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("BARRIER=1: no answer from the service manager in %v", timeout)
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("BARRIER=1: poll: %w", err)
		}
		if n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLIN) != 0 {
			return nil
		}
	}
}
