package fdutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDupSharesTheFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Dup(f, "dup")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f.WriteString("abc") // the offset is shared
	f.Close()
	if n, _ := d.Seek(0, 1); n != 3 || d.Name() != "dup" {
		t.Fatalf("duplicate at offset %d named %q", n, d.Name())
	}
	if flags, _ := unix.FcntlInt(d.Fd(), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Fatal("the duplicate is not close-on-exec")
	}
}

// Duplicating a non-blocking socket leaves it non-blocking: (*os.File).Fd would not.
func TestDupKeepsSocketsNonBlocking(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[1])
	sock := os.NewFile(uintptr(fds[0]), "socket")
	defer sock.Close()
	d, err := Dup(sock, "socket dup")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if fl, _ := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
		t.Fatal("duplicating the socket put it in blocking mode")
	}
}
