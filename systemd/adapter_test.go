package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Keep replaces the store's entries of a name: FDSTOREREMOVE=1 first, then FDSTORE=1 with every fd, FDPOLL=0 for a
// regular file; the fds systemd gets are the very files (same device and inode), and a listener stays non-blocking.
func TestFDStoreKeep(t *testing.T) {
	got := listen(t)
	t.Setenv("FDSTORE", "16")
	s := NewFDStore(zap.NewNop())
	dir := t.TempDir()
	region, err := os.Create(filepath.Join(dir, "region"))
	if err != nil {
		t.Fatal(err)
	}
	defer region.Close()
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	if err := s.Keep(NameRegion, region); err != nil {
		t.Fatal(err)
	}
	if m := next(t, got); m != "FDSTOREREMOVE=1\nFDNAME=region" {
		t.Fatalf("first %q", m)
	}
	m := nextMessage(t, got)
	var want syscall.Stat_t
	syscall.Fstat(int(region.Fd()), &want)
	if m.state != "FDSTORE=1\nFDNAME=region\nFDPOLL=0" || len(m.fds) != 1 || m.fds[0].Ino != want.Ino || m.fds[0].Dev != want.Dev {
		t.Fatalf("then %q with %d fds", m.state, len(m.fds))
	}

	if err := s.Keep(NameAPI, l.(*net.UnixListener)); err != nil {
		t.Fatal(err)
	}
	next(t, got)
	if m := nextMessage(t, got); m.state != "FDSTORE=1\nFDNAME=api" || len(m.fds) != 1 || m.fds[0].Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		t.Fatalf("listener: %q with %d fds", m.state, len(m.fds))
	}
	rc, _ := l.(*net.UnixListener).SyscallConn()
	rc.Control(func(fd uintptr) {
		fl, _ := unixFcntl(fd)
		if fl&syscall.O_NONBLOCK == 0 {
			t.Error("the listener became blocking")
		}
	})
	if err := s.Keep("a:b", region); err == nil {
		t.Error("a name with ':' was accepted")
	}
}

func unixFcntl(fd uintptr) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Without NOTIFY_SOCKET, or without FDSTORE (a unit with no fd store), the store does nothing and is not active.
func TestFDStoreInactive(t *testing.T) {
	got := listen(t)
	for _, env := range [][2]string{{"", "16"}, {"set", ""}, {"set", "0"}} {
		if env[0] == "" {
			t.Setenv("NOTIFY_SOCKET", "")
		}
		t.Setenv("FDSTORE", env[1])
		s := NewFDStore(zap.NewNop())
		if err := s.Keep(NameRegion, os.Stdin); err != nil || s.Active() {
			t.Fatalf("NOTIFY_SOCKET %q FDSTORE %q: active %v, %v", env[0], env[1], s.Active(), err)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("an inactive store sent %q", m.state)
	default:
	}
}

// Inherit sorts what systemd passed by name: the fd store's names, and anything else as socket-activated. It
// takes only fds passed to this very process (LISTEN_PID).
func TestInherit(t *testing.T) {
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "1")
	if in := Inherit(); !in.Empty() {
		t.Fatal("fds meant for another process were taken")
	}
	if os.Getenv("LISTEN_FDS") != "" {
		t.Fatal("LISTEN_FDS was not unset")
	}
	// Passing real fds at 3.. needs a new process: the e2e systemd tests do that under a real systemd.
}

func TestWatchdogEnv(t *testing.T) {
	log := zap.NewNop()
	for _, c := range []struct {
		usec, pid string
		upgraded  bool
		want      time.Duration
		err       bool
	}{
		{"", "", false, 0, false},
		{"4000000", "", false, 4 * time.Second, false},
		{"4000000", fmt.Sprint(os.Getpid()), false, 4 * time.Second, false},
		{"4000000", fmt.Sprint(os.Getppid()), false, 0, false},              // another process's
		{"4000000", fmt.Sprint(os.Getppid()), true, 4 * time.Second, false}, // the old supervisor's: ours after MAINPID=
		{"4000000", "1", true, 0, false},
		{"lots", "", false, 0, true},
		{"0", "", false, 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		w, err := NewWatchdog(log, c.upgraded)
		var got time.Duration
		if w != nil {
			got = w.Interval
		}
		if got != c.want || (err != nil) != c.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q upgraded=%v: %v, %v", c.usec, c.pid, c.upgraded, got, err)
		}
	}
}

// Run pings at half the interval while alive says so, stops while it does not, and resumes.
func TestWatchdogRun(t *testing.T) {
	var pings atomic.Int64
	w := &Watchdog{Interval: 20 * time.Millisecond, log: zap.NewNop(), send: func(s string) (bool, error) {
		if s != "WATCHDOG=1" {
			t.Errorf("sent %q", s)
		}
		pings.Add(1)
		return true, nil
	}}
	var hung atomic.Bool
	calls := make(chan struct{}, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(context.Context) error {
			calls <- struct{}{}
			if hung.Load() {
				return errors.New("stuck")
			}
			return nil
		})
	}()
	waitCalls := func(n int) {
		for range n {
			select {
			case <-calls:
			case <-time.After(5 * time.Second):
				t.Fatal("the watchdog stopped asking")
			}
		}
	}
	waitCalls(3)
	if pings.Load() < 2 {
		t.Fatalf("%d pings after 3 checks that said alive", pings.Load())
	}
	hung.Store(true)
	waitCalls(1) // the check that saw it hung may have raced the store: from the next one on, no ping
	before := pings.Load()
	waitCalls(3)
	if p := pings.Load(); p != before {
		t.Fatalf("%d pings while the supervisor did not answer", p-before)
	}
	hung.Store(false)
	waitCalls(2)
	if pings.Load() == before {
		t.Fatal("no ping after the supervisor answered again")
	}
	cancel()
	<-done
	var nilDog *Watchdog
	nilDog.Run(context.Background(), nil) // no watchdog asked: returns at once
}

func TestJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	syscall.Fstat(int(f.Fd()), &st)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !JournalStream(f) {
		t.Error("the stream JOURNAL_STREAM names is not recognised")
	}
	if JournalStream(os.Stdin) {
		t.Error("another file taken for the journal's stream")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if JournalStream(f) {
		t.Error("no JOURNAL_STREAM, yet a journal")
	}
}

// Each line gets its priority; no timestamp or level of its own; fields follow the message.
func TestJournalEncoder(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(NewJournalEncoder(), zapcore.AddSync(&buf), zapcore.DebugLevel)
	log := zap.New(core)
	log.Debug("d")
	log.Info("hello", zap.Int("generation", 3))
	log.Warn("w")
	log.Error("e")
	want := "<7>d\n<6>hello {\"generation\": 3}\n<4>w\n<3>e\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
