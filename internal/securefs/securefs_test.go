package securefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m, proctest.Roles{"may-replace": mayReplaceRole}) }

// otherUID is a uid that no file of the test's user has; tests that need a file of another user chown to it and
// run only as root.
const otherUID = 54321

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to give files to another uid (CI runs as root)")
	}
}

// sticky returns a new world-writable sticky directory, like /dev/shm.
func sticky(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "securefs-shm") // in /tmp, reachable by another uid
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What is at the path decides: a file of ours is opened; anything else is never opened (so never written) and is
// to be replaced by a new file, which Install puts there; the thing that was there, or that a symlink points to,
// is left as it was.
func TestOpenOrCreate(t *testing.T) {
	cases := []struct {
		name    string
		root    bool
		prepare func(t *testing.T, dir, path string) (victim string)
		ours    bool
		why     string
	}{
		{"nothing", false, func(*testing.T, string, string) string { return "" }, false, ""},
		{"a file of ours", false, func(t *testing.T, _, p string) string { write(t, p, "mine", 0o644); return "" }, true, ""},
		{"a symlink to a file of ours", false, func(t *testing.T, dir, p string) string {
			victim := filepath.Join(dir, "victim")
			write(t, victim, "victim", 0o644)
			os.Symlink(victim, p)
			return victim
		}, false, "is a symlink"},
		{"a dangling symlink", false, func(t *testing.T, dir, p string) string {
			os.Symlink(filepath.Join(dir, "nowhere"), p)
			return ""
		}, false, "is a symlink"},
		{"a file others may write", false, func(t *testing.T, _, p string) string { write(t, p, "shared", 0o666); return p }, false, "writable by others"},
		{"a hard link to a file of ours", false, func(t *testing.T, dir, p string) string {
			victim := filepath.Join(dir, "victim")
			write(t, victim, "victim", 0o644)
			os.Link(victim, p)
			return victim
		}, false, "2 links"},
		{"a FIFO", false, func(t *testing.T, _, p string) string { unix.Mkfifo(p, 0o644); return "" }, false, "not a regular file"},
		{"another user's file", true, func(t *testing.T, _, p string) string {
			write(t, p, "theirs", 0o644)
			os.Chown(p, otherUID, otherUID)
			return p
		}, false, "belongs to uid 54321"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root {
				needRoot(t)
			}
			dir := sticky(t)
			path := filepath.Join(dir, "notice")
			victim := c.prepare(t, dir, path)
			var was string
			if victim != "" {
				was = content(t, victim)
			}
			f, replacing, err := OpenOrCreate(path, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var st unix.Stat_t
			unix.Fstat(int(f.Fd()), &st)
			if c.ours {
				if replacing != nil || st.Nlink != 1 {
					t.Fatalf("a file of ours: replacing %v, %d links", replacing, st.Nlink)
				}
				return
			}
			if st.Nlink != 0 || st.Mode&0o777 != 0o644 || int(st.Uid) != os.Geteuid() {
				t.Fatalf("want a new file of ours without a name, mode 0644: %d links, mode %o, uid %d", st.Nlink, st.Mode&0o777, st.Uid)
			}
			if (c.why == "") != (replacing == nil) || (replacing != nil && !strings.Contains(replacing.Error(), c.why)) {
				t.Fatalf("replacing: %v, want %q", replacing, c.why)
			}
			f.WriteString("new board")
			d, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.Install(f, "notice", func(Entry) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if got := content(t, path); got != "new board" {
				t.Fatalf("the path holds %q", got)
			}
			if victim != "" && victim != path && content(t, victim) != was {
				t.Fatalf("%s was written through", victim)
			}
			if ents, _ := os.ReadDir(dir); len(ents) > 2 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
}

// A non-root process may not replace another user's entry in a sticky directory: it is told so, with the owner.
// The check runs in a copy of the test binary started as another uid.
func TestMayReplaceNamesTheOwner(t *testing.T) {
	needRoot(t)
	dir := sticky(t)
	path := filepath.Join(dir, "notice")
	write(t, path, "root's", 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "securefs.test") // dir is world-readable and searchable
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	write(t, bin, string(b), 0o755)
	cmd := proctest.Command(t, "may-replace", path)
	cmd.Path, cmd.Args[0] = bin, bin
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", otherUID, err, out)
	}
	if !strings.Contains(string(out), "belongs to uid 0 (root)") || !strings.Contains(string(out), "may not replace it") {
		t.Fatalf("as uid %d: %s", otherUID, out)
	}
	if content(t, path) != "root's" {
		t.Fatal("the file was changed")
	}
}

// mayReplaceRole runs in TestMayReplaceNamesTheOwner's child: OpenOrCreate of root's file at args[0], as another
// uid. It must fail, and print why; taking the file fails the helper (exit 1), and so the test.
func mayReplaceRole(args []string) int {
	_, _, err := OpenOrCreate(args[0], 0o644)
	if err == nil {
		fmt.Println("OpenOrCreate took root's file")
		return 1
	}
	fmt.Println(err)
	return 0
}

func TestInstallNeverLeavesATemporaryName(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	write(t, filepath.Join(dir, "notice"), "old", 0o644)
	f, err := d.Create("notice", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	refused := errors.New("no")
	if err := d.Install(f, "notice", func(Entry) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("install refused by the caller: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a refused install left %v", ents)
	}
	if err := d.Install(f, "absent", nil); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 || content(t, filepath.Join(dir, "notice")) != "old" {
		t.Fatalf("the directory holds %v", ents)
	}
	g, _ := d.Create("x", 0o644)
	defer g.Close()
	if err := d.Install(g, "absent", nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("install over an entry with no replace policy: %v", err)
	}
}

func TestDirectoryTrust(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if _, err := OpenDir(open); !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "not sticky") {
		t.Fatalf("a directory anyone may write to: %v", err)
	}
	if _, err := OpenDir(filepath.Join(open, "below")); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("a directory below one anyone may write to: %v", err)
	}
	if _, err := OpenDir(sticky(t)); err != nil {
		t.Fatalf("a sticky directory: %v", err)
	}
	// A symlink of ours on the way is followed.
	real := filepath.Join(base, "real")
	os.Mkdir(real, 0o755)
	os.Symlink(real, filepath.Join(base, "link"))
	d, err := OpenDir(filepath.Join(base, "link"))
	if err != nil {
		t.Fatalf("through a symlink of ours: %v", err)
	}
	var st, want unix.Stat_t
	unix.Fstat(d.fd, &st)
	unix.Stat(real, &want)
	d.Close()
	if st.Ino != want.Ino {
		t.Fatal("the symlink led somewhere else")
	}
	if _, err := MkdirPrivate(filepath.Join(base, "new", "state"), 0o700); err != nil {
		t.Fatalf("a new private directory: %v", err)
	}
	if _, err := MkdirPrivate(sticky(t), 0o700); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("a sticky directory as a private one: %v", err)
	}
}

func TestDirectoryOfAnotherUser(t *testing.T) {
	needRoot(t)
	base := sticky(t)
	theirs := filepath.Join(base, "theirs")
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, otherUID, otherUID)
	if _, err := OpenDir(theirs); !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "uid 54321") {
		t.Fatalf("another user's directory: %v", err)
	}
	if _, err := MkdirPrivate(filepath.Join(theirs, "state"), 0o700); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("mkdir in another user's directory: %v", err)
	}
	// A symlink another user made in a sticky directory is not followed, wherever it points.
	link := filepath.Join(base, "link")
	os.Symlink(t.TempDir(), link)
	os.Lchown(link, otherUID, otherUID)
	if _, err := OpenDir(link); !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("another user's symlink: %v", err)
	}
	if _, err := MkdirPrivate(filepath.Join(link, "state"), 0o700); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("mkdir through another user's symlink: %v", err)
	}
}

func TestReadTrusted(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	write(t, tok, "s3cret\n", 0o600)
	if b, err := ReadTrusted(tok, 64); err != nil || string(b) != "s3cret\n" {
		t.Fatalf("a token of ours: %q, %v", b, err)
	}
	os.Chmod(tok, 0o666)
	if _, err := ReadTrusted(tok, 64); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("a token others may write: %v", err)
	}
	os.Chmod(tok, 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(tok, link)
	if _, err := ReadTrusted(link, 64); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("a symlinked token: %v", err)
	}
	if _, err := ReadTrusted(tok, 3); err == nil {
		t.Fatal("a token over the limit was read")
	}
}
