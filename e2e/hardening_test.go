package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/wire"
)

// The hardening issue's daemon tests: nobody can steer the daemon's writes through its paths, a damaged board never
// stops a start, a truncation never kills a worker, and a failed start leaves nothing behind. Tests that need a
// second user run as root and make a real one (useradd), removed after.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes a second user, or gives the daemon files of another user (CI runs as root)")
	}
}

// localUser is a real second user, made for the test and removed after.
type localUser struct {
	name     string
	uid, gid uint32
}

func newUser(t *testing.T) localUser {
	t.Helper()
	proctest.Slow(t, slowE2E)
	needRoot(t)
	name := fmt.Sprintf("anne2e%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return localUser{name, uint32(uid), uint32(gid)}
}

// as runs argv as the user and returns its combined output and error.
func (u localUser) as(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sharedDir is a directory under /tmp that another user can reach (t.TempDir's are root's, mode 0700).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-shared")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func sameFile(t *testing.T, path, want string, wantSize int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want || int64(len(b)) != wantSize {
		t.Fatalf("%s was written: %d bytes %.40q, want %q", path, len(b), b, want)
	}
}

// A symlink at the region path is never followed: the daemon (root) puts its board there in place of the link,
// and the file the link pointed to is untouched.
func TestDaemonNeverFollowsASymlinkAtTheRegionPath(t *testing.T) {
	needRoot(t)
	victim := filepath.Join(t.TempDir(), "precious")
	os.WriteFile(victim, nil, 0o644) // empty, as in the report: it became a 4 MiB board
	shm := shmPath("symlink")
	if err := os.Symlink(victim, shm); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shm) }) // the link itself, when the daemon never replaced it (a failed start)
	d := newDaemonAt(t, shm, filepath.Join(binDir, "announcementd"))
	d.mustCtl("publish", "--id", "1", "not through the link")
	sameFile(t, victim, "", 0)
	st, err := os.Lstat(shm)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the region path: %v, %v", st.Mode(), err)
	}
	if s := d.boardSnapshot(); len(s.Records) != 1 || s.Records[0].Content != "not through the link" {
		t.Fatalf("the board holds %+v", s.Records)
	}
	if !strings.Contains(d.logs.String(), "is a symlink") {
		t.Fatalf("the log does not say what it replaced:\n%s", d.logs)
	}
}

// A file another user made at the region path before the daemon started is not adopted: the daemon (root) puts a
// board of its own there, and that user can neither write nor truncate it; their own file is left as it was.
func TestDaemonDoesNotAdoptAnotherUsersFile(t *testing.T) {
	u := newUser(t)
	shm := shmPath("foreign")
	if out, err := u.as("sh", "-c", "umask 0; printf forged > "+shm); err != nil {
		t.Fatalf("the other user's file: %v %s", err, out)
	}
	t.Cleanup(func() { os.Remove(shm) })
	theirs, err := os.Open(shm) // the same inode, to check it afterwards
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	d := newDaemonAt(t, shm, filepath.Join(binDir, "announcementd"))
	d.mustCtl("publish", "--id", "1", "genuine")
	if b, _ := io.ReadAll(theirs); string(b) != "forged" {
		t.Fatalf("the other user's file was written: %q", b)
	}
	st, _ := os.Stat(shm)
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || st.Mode().Perm() != 0o644 {
		t.Fatalf("the board is uid %d mode %v", sys.Uid, st.Mode())
	}
	if out, err := u.as("sh", "-c", "printf x >> "+shm); err == nil {
		t.Fatalf("the other user could write the board: %s", out)
	}
	if out, err := u.as("truncate", "-s", "0", shm); err == nil {
		t.Fatalf("the other user could truncate the board: %s", out)
	}
	if s := d.boardSnapshot(); len(s.Records) != 1 || s.Records[0].Content != "genuine" {
		t.Fatalf("the board holds %+v", s.Records)
	}
	if !strings.Contains(d.logs.String(), "belongs to uid "+strconv.Itoa(int(u.uid))) {
		t.Fatalf("the log does not name the owner:\n%s", d.logs)
	}
}

// A daemon that is not root cannot replace another user's file in the sticky /dev/shm: it refuses to start, with
// one line naming the owner, and writes nothing. On a path that is free it runs, and the board is its own.
func TestNonRootDaemonRefusesAnotherUsersBoard(t *testing.T) {
	u := newUser(t)
	os.Chmod(binDir, 0o755)
	home := sharedDir(t)
	for _, sub := range []string{"state", "run"} {
		os.Mkdir(filepath.Join(home, sub), 0o700)
		os.Chown(filepath.Join(home, sub), int(u.uid), int(u.gid))
	}
	shm := shmPath("root")
	os.WriteFile(shm, []byte("root's"), 0o644)
	t.Cleanup(func() { os.Remove(shm) })
	cred := &syscall.Credential{Uid: u.uid, Gid: u.gid}
	args := []string{"--shm", shm, "--shm-size", "64KiB", "--state-dir", filepath.Join(home, "state"), "--runtime-dir", filepath.Join(home, "run")}
	code, out := runToExit(t, cred, args...)
	if code == 0 || !strings.Contains(out, "belongs to uid 0 (root)") || !strings.Contains(out, "may not replace it") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	sameFile(t, shm, "root's", 6)
	if ents, _ := os.ReadDir(filepath.Join(home, "run")); len(ents) != 0 {
		t.Fatalf("the refused start left %v in the runtime dir", ents)
	}

	free := shmPath("mine")
	t.Cleanup(func() { os.Remove(free) })
	d := proctest.StartDaemon(t, proctest.DaemonConfig{Binary: filepath.Join(binDir, "announcementd"), Shm: free,
		StateDir: filepath.Join(home, "state"), RuntimeDir: filepath.Join(home, "run"), Args: []string{"--shm-size", "64KiB"}, Cred: cred})
	if code, out, errs := d.Ctl(time.Minute, "publish", "--id", "1", "mine"); code != 0 {
		t.Fatalf("publish to the non-root daemon: exit %d %s%s\n%s", code, out, errs, d.Log())
	}
	st, err := os.Stat(free)
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != u.uid {
		t.Fatalf("the non-root daemon's board: %v", err)
	}
}

// The state and runtime dirs and the store file follow the same rules: a directory others may write to, another
// user's directory or a symlinked store is refused with a line that says so, and the start leaves nothing behind.
func TestStateAndRuntimeMustBeTheDaemonsOwn(t *testing.T) {
	needRoot(t)
	cases := []struct {
		name    string
		prepare func(t *testing.T, state, run string)
		want    string
	}{
		{"a runtime dir anyone may write to", func(t *testing.T, _, run string) {
			os.Mkdir(run, 0o777)
			os.Chmod(run, 0o777)
		}, "runtime dir: directory"},
		{"a state dir of another user", func(t *testing.T, state, _ string) {
			os.Mkdir(state, 0o700)
			os.Chown(state, 54321, 54321)
		}, "belongs to uid 54321"},
		{"a symlinked store", func(t *testing.T, state, _ string) {
			os.Mkdir(state, 0o700)
			victim := filepath.Join(t.TempDir(), "victim")
			os.WriteFile(victim, []byte("victim"), 0o600)
			os.Symlink(victim, filepath.Join(state, "announcements.db"))
		}, "is a symlink"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			state, run := filepath.Join(dir, "state"), filepath.Join(dir, "run")
			c.prepare(t, state, run)
			shm := shmPath("dirs")
			t.Cleanup(func() { os.Remove(shm) })
			code, out := runToExit(t, nil, "--shm", shm, "--shm-size", "64KiB", "--state-dir", state, "--runtime-dir", run)
			if code == 0 || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want a line with %q:\n%s", code, c.want, out)
			}
			leftNothing(t, shm, run)
		})
	}
}

// leftNothing checks that a failed start left no board, no socket and no pid file.
func leftNothing(t *testing.T, shm, run string) {
	t.Helper()
	if _, err := os.Lstat(shm); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed start left %s (%v)", shm, err)
	}
	ents, _ := os.ReadDir(run)
	for _, e := range ents {
		t.Errorf("a failed start left %s in the runtime dir", e.Name())
	}
	matches, _ := filepath.Glob(shm + "*")
	matches2, _ := filepath.Glob(filepath.Join(filepath.Dir(shm), "."+filepath.Base(shm)+"*"))
	for _, m := range append(matches, matches2...) {
		t.Errorf("a failed start left %s", m)
	}
}

// A start that fails, in the supervisor or in its first worker, leaves no file at the region path (readers would
// report it truncated), no socket and no pid file. Today's daemon left an empty board.
func TestAFailedStartLeavesNothingBehind(t *testing.T) {
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	cases := []struct {
		name    string
		args    func(state string) []string
		prepare func(t *testing.T, state string)
	}{
		{"the metrics address is taken", func(string) []string { return []string{"--metrics", busy.Addr().String()} }, nil},
		{"the state dir is a file", nil, func(t *testing.T, state string) { os.WriteFile(state, nil, 0o600) }},
		{"the store is not a store", nil, func(t *testing.T, state string) {
			os.Mkdir(state, 0o700)
			os.WriteFile(filepath.Join(state, "announcements.db"), bytes.Repeat([]byte("not bbolt "), 1000), 0o600)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			state, run := filepath.Join(dir, "state"), filepath.Join(dir, "run")
			if c.prepare != nil {
				c.prepare(t, state)
			}
			shm := shmPath("failed")
			t.Cleanup(func() { os.Remove(shm) })
			args := []string{"--shm", shm, "--shm-size", "64KiB", "--state-dir", state, "--runtime-dir", run, "--restart-limit", "1"}
			if c.args != nil {
				args = append(args, c.args(state)...)
			}
			code, out := runToExit(t, nil, args...)
			if code == 0 {
				t.Fatalf("the start succeeded:\n%s", out)
			}
			leftNothing(t, shm, run)
		})
	}
}

// Whatever damage a board suffered while no daemon ran (a supervisor killed right after it), the next start
// repairs it and serves the stored set above every version readers saw. Today a grown file made every later
// start exit 1.
func TestDamagedBoardNeverStopsAStart(t *testing.T) {
	damages := map[string]func(path string) error{
		"grown by a page": func(p string) error { st, _ := os.Stat(p); return os.Truncate(p, st.Size()+4096) },
		"shrunk":          func(p string) error { return os.Truncate(p, 4096) },
		"truncated to 0":  func(p string) error { return os.Truncate(p, 0) },
		"bad magic":       func(p string) error { return overwrite(p, board.OffMagic, "NOTBOARD") },
		"zeros":           func(p string) error { st, _ := os.Stat(p); return overwrite(p, 0, string(make([]byte, st.Size()))) },
		"slot left mid-publish": func(p string) error {
			b, err := reader.Open(p)
			if err != nil {
				return err
			}
			h, v := b.Header(), b.Version()
			b.Close()
			return overwrite(p, int64(h.SlotOffset(v+1)), "\x07\x00\x00\x00\x00\x00\x00\x00half a record")
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			d := newDaemon(t)
			d.mustCtl("publish", "--id", "1", "one")
			d.mustCtl("publish", "--id", "2", "two")
			before := d.boardSnapshot().Version
			d.stop(syscall.SIGKILL) // supervisor and worker
			if err := damage(d.shm); err != nil {
				t.Fatal(err)
			}
			d.start()
			want := []board.Record{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}}
			if s := waitHealed(t, d.shm, before, want); s == nil {
				t.Fatalf("after %s and a restart the board does not hold the set above %d:\n%s", name, before, d.logs)
			}
			d.mustCtl("publish", "--id", "3", "three")
			if code, out, _ := d.ctl("health"); code != 0 {
				t.Fatalf("health: %d %s", code, out)
			}
		})
	}
}

// A board of another size than --shm-size moves to a new file of the asked size; a follower of the old one
// follows, and the version goes on.
func TestOtherSizeMovesToANewBoard(t *testing.T) {
	d := newDaemon(t)
	d.mustCtl("publish", "--id", "1", "one")
	before := d.boardSnapshot().Version
	f, err := reader.NewFollower(d.shm, reader.FollowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.stop(syscall.SIGTERM)
	d.extra = []string{"--shm-size", "128KiB"} // after the default 64KiB: the last flag wins
	d.start()
	if s := waitHealed(t, d.shm, before, []board.Record{{ID: 1, Content: "one"}}); s == nil || s.Header.RegionSize != 128<<10 {
		t.Fatalf("after a restart with --shm-size 128KiB: %+v\n%s", s, d.logs)
	}
	s, err := f.Snapshot()
	if err != nil || s.Version <= before || s.Header.RegionSize != 128<<10 {
		t.Fatalf("the follower: %+v, %v", s, err)
	}
	d.mustCtl("reload", "--wait") // the next generation writes the new file, which the supervisor now hands on
	d.mustCtl("publish", "--id", "2", "two")
	if got := d.boardSnapshot(); len(got.Records) != 2 {
		t.Fatalf("after a reload: %+v", got.Records)
	}
}

// TestTruncationsUnderRequestsNeverCrashTheWorker: 1,000 truncations of the board, each followed at once by
// status, health and metrics requests, and not one worker crash. Every read of the mapping is fault-safe; the old
// HeartbeatAge was not, and 11 of 30 tries killed the worker with SIGBUS.
func TestTruncationsUnderRequestsNeverCrashTheWorker(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	d := newDaemon(t, "--metrics", addr)
	d.mustCtl("publish", "--id", "1", "one")
	pid := func() int {
		var st wire.WorkerStatus
		d.api("GET", "/v1/status", "", &st)
		return st.Worker.PID
	}
	first := pid()
	client := &http.Client{Timeout: 10 * time.Second}
	failed := 0
	for i := range 1000 {
		if err := os.Truncate(d.shm, int64(i%3)*2048); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/v1/status", "/healthz", "/readyz", "/healthz?check=1"} {
			if status, _ := d.raw("GET", path, ""); status == 0 {
				failed++
			}
		}
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if now := pid(); now != first || failed != 0 {
		t.Fatalf("worker pid %v, was %v; %d requests failed\n%s", now, first, failed, d.logs)
	}
	var st wire.ServiceStatus
	out := d.mustCtl("status", "--json")
	if err := jsonUnmarshal(out, &st); err != nil || st.Supervisor.Restarts != 0 {
		t.Fatalf("status: %v, restarts %d", err, st.Supervisor.Restarts)
	}
	want := []board.Record{{ID: 1, Content: "one"}}
	if s := waitHealed(t, d.shm, 0, want); s == nil {
		t.Fatal("the board does not hold the set after the truncations")
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
