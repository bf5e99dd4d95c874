package systemd_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/sdsandbox"
)

// mkdeb is the package's build script (make deb runs it).
var mkdeb = filepath.Join(root, "packaging", "deb", "mkdeb")

// TestDebVersion: the Debian versions mkdeb derives from the builds' Go versions sort as the Go versions do (dpkg
// --compare-versions), so that a package of a later commit or tag is an upgrade.
func TestDebVersion(t *testing.T) {
	for _, c := range []struct{ gov, deb string }{
		{"0.0.0-20261203093252-72577b492e91+dirty", "0.0.0~git20261203093252.72577b4+dirty"},
		{"v1.4.0", "1.4.0"},
		{"1.5.0-rc-1", "1.5.0~rc.1"},
	} {
		if got := debVersion(t, c.gov); got != c.deb {
			t.Errorf("debversion %s: %q, want %q", c.gov, got, c.deb)
		}
	}
	if out, err := exec.Command(mkdeb, "debversion", "devel").CombinedOutput(); err == nil {
		t.Errorf("debversion devel: %q, want an error (a build without a version needs VERSION=)", out)
	}
	// In Go's (semver) order.
	ordered := []string{
		"0.0.0-20261203093252-72577b492e91",
		"0.0.0-20261204000000-0123456789ab",
		"1.4.0",
		"1.4.1-0.20261205000000-abcdefabcdef", // a commit after v1.4.0
		"1.4.1",
		"1.5.0-rc.1",
		"1.5.0-rc.1.0.20261206000000-abcdefabcdef", // a commit after v1.5.0-rc.1
		"1.5.0-rc.2",
		"1.5.0",
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg to compare versions with")
	}
	prev := debVersion(t, ordered[0])
	for _, gov := range ordered[1:] {
		v := debVersion(t, gov)
		if !versionLess(t, prev, v) {
			t.Errorf("%s (from %s) does not sort after %s", v, gov, prev)
		}
		prev = v
	}
}

func debVersion(t *testing.T, gov string) string {
	t.Helper()
	out, err := exec.Command(mkdeb, "debversion", gov).CombinedOutput()
	if err != nil {
		t.Fatalf("mkdeb debversion %s: %v\n%s", gov, err, out)
	}
	return strings.TrimSpace(string(out))
}

// versionLess reports whether Debian version a sorts before b (dpkg --compare-versions).
func versionLess(t *testing.T, a, b string) bool {
	t.Helper()
	err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run()
	if err != nil && proctest.ExitCode(err) != 1 {
		t.Fatalf("dpkg --compare-versions %s lt %s: %v", a, b, err)
	}
	return err == nil
}

// TestDebLifecycle: the package's whole life under the real systemd.
//   - install under a policy-rc.d that forbids starts: enabled, not started; reinstalled without it: enabled and
//     active (postinst started it), the user exists, libnotice.so is in ld.so's cache, python3 imports notice and
//     reads what was published;
//   - an upgrade to a newer package of another build while clients publish: dpkg -i reloads the service (postinst),
//     which upgrades the supervisor itself: no request fails, the unit never leaves active/reloading, MainPID is the
//     new supervisor (the pid file says so, and it runs the new binary), the announcements are kept;
//   - a newer package whose daemon fails: dpkg -i fails (the reload was rolled back), the previous build serves on
//     under the same MainPID, health is degraded; the good package again: installed, healthy;
//   - remove: the service is stopped, every file of the package is gone, the state, the board and the user stay;
//   - purge: the state, the runtime directory, the board and the enablement go; the user stays (Debian's policy).
func TestDebLifecycle(t *testing.T) {
	proctest.Slow(t, "the package's life under systemd, about 20 s")
	sb := sdsandbox.New(t)
	begin := time.Now()
	debs := buildDebs(t)
	t.Logf("built %s, %s and %s in %v", filepath.Base(debs.old), filepath.Base(debs.new), filepath.Base(debs.broken),
		time.Since(begin).Round(time.Millisecond))
	s := &service{t: t, Sandbox: sb}
	s.api = unixClient(sb.Path(runtime+"/api.sock"), 20*time.Second)
	s.control = unixClient(sb.Path(runtime+"/control.sock"), 20*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := sb.Sh("journalctl", "-u", unit, "--no-pager", "-n", "200")
			t.Logf("journal of %s:\n%s", unit, out)
		}
	})
	sb.Push(debs.old, "/root/announcementd-old.deb", 0o644)
	sb.Push(debs.new, "/root/announcementd-new.deb", 0o644)

	// Install where /usr/sbin/policy-rc.d forbids starting services (as in a Docker image): enabled, not started.
	sb.MustSh("sh", "-c", "printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d")
	start := time.Now()
	out := dpkg(t, sb, "-i", "/root/announcementd-old.deb")
	t.Logf("dpkg -i %s (policy-rc.d forbids starts) took %v", debs.oldVersion, time.Since(start).Round(time.Millisecond))
	if got := packageState(sb); got != "installed "+debs.oldVersion {
		t.Fatalf("after dpkg -i: package %q\n%s", got, out)
	}
	if p := s.show("ActiveState", "UnitFileState"); p["ActiveState"] != "inactive" || p["UnitFileState"] != "enabled" {
		t.Fatalf("installed under a policy-rc.d that forbids starts: %v (want enabled, inactive)", p)
	}
	// Without it, a reinstallation of the same package starts the enabled service.
	sb.MustSh("rm", "/usr/sbin/policy-rc.d")
	start = time.Now()
	dpkg(t, sb, "-i", "/root/announcementd-old.deb")
	t.Logf("dpkg -i %s again (a reinstallation; it starts the service) took %v", debs.oldVersion, time.Since(start).Round(time.Millisecond))
	p := s.show("ActiveState", "SubState", "UnitFileState", "FragmentPath", "ExecStart")
	if p["ActiveState"] != "active" || p["SubState"] != "running" || p["UnitFileState"] != "enabled" {
		t.Fatalf("after the installation: %v", p)
	}
	if !strings.HasSuffix(p["FragmentPath"], "/lib/systemd/system/"+unit) || !strings.Contains(p["ExecStart"], "path=/usr/bin/announcementd ") {
		t.Fatalf("the unit is not the package's: %v", p)
	}
	if out := sb.MustSh("getent", "passwd", "announcementd"); !strings.Contains(out, ":/var/lib/announcementd:/usr/sbin/nologin") {
		t.Fatalf("the user: %q", out)
	}
	// (With usrmerge, ldconfig names /usr/lib/TRIPLET by /lib/TRIPLET, its entry in ld.so.conf.d.)
	if out := sb.MustSh("ldconfig", "-p"); !regexp.MustCompile(`libnotice\.so .*=> /(usr/)?lib/[^/]+/libnotice\.so\n`).MatchString(out) {
		t.Fatalf("libnotice.so is not in ld.so's cache (the package's ldconfig trigger): %d lines, none for it", strings.Count(out, "\n"))
	}
	if err := s.publish(s.api, 1, "installed from the package"); err != nil { // no retry: postinst's start returned
		t.Fatal(err)
	}
	if out := sb.MustSh("/usr/bin/announcementctl", "list"); !strings.Contains(out, "installed from the package") {
		t.Fatalf("announcementctl list:\n%s", out)
	}
	if got := sb.MustSh("/usr/bin/python3", "-c", "import notice; b = notice.Board.open('"+shm+"'); "+
		"print([r.content for r in b.snapshot().records])"); !strings.Contains(got, "installed from the package") {
		t.Fatalf("python3's notice module: %q", got)
	}

	// Upgrade to the newer package under load: postinst reloads, and the reload is a self-upgrade.
	oldMain := s.mainPID()
	l := s.startLoad(4)
	l.waitAcked(t, 20)
	states := s.sampleActiveState()
	start = time.Now()
	out = dpkg(t, sb, "-i", "/root/announcementd-new.deb")
	took := time.Since(start)
	l.waitAcked(t, 20) // the new supervisor's generation serves the load
	l.end()
	seen := states.end()
	newMain := s.mainPID()
	reload := reloadDuration(sb)
	t.Logf("upgrade %s -> %s: dpkg -i took %v (the reload in it %v); MainPID %d -> %d; load %s; ActiveState seen %q",
		debs.oldVersion, debs.newVersion, took.Round(time.Millisecond), reload, oldMain, newMain, l, seen)
	if got := packageState(sb); got != "installed "+debs.newVersion {
		t.Fatalf("after the upgrade: package %q\n%s", got, out)
	}
	if l.failed.Load() != 0 {
		t.Fatalf("requests failed during the package upgrade: %s", l)
	}
	for _, st := range seen {
		if st != "active" && st != "reloading" {
			t.Fatalf("the unit left active during the package upgrade: %q", seen)
		}
	}
	if reload == "" {
		t.Fatal("the journal shows no reload of the service during the upgrade")
	}
	if newMain == oldMain || newMain == 0 {
		t.Fatalf("MainPID %d after the upgrade, was %d", newMain, oldMain)
	}
	if pid := strings.TrimSpace(sb.MustSh("cat", runtime+"/announcementd.pid")); pid != strconv.Itoa(newMain) {
		t.Fatalf("the pid file says %s, MainPID is %d", pid, newMain)
	}
	// The new supervisor runs the installed (new) binary, not the one dpkg replaced ("... (deleted)").
	if exe := strings.TrimSpace(sb.MustSh("readlink", fmt.Sprintf("/proc/%d/exe", newMain))); exe != "/usr/bin/announcementd" {
		t.Fatalf("MainPID %d runs %q", newMain, exe)
	}
	if got := strings.Fields(sb.MustSh("sha256sum", "/usr/bin/announcementd"))[0]; got != debs.newSum {
		t.Fatalf("/usr/bin/announcementd is not the new build: sha256 %s, want %s", got, debs.newSum)
	}
	if st := s.show("StatusText")["StatusText"]; !strings.Contains(st, "last upgrade: serving") {
		t.Fatalf("StatusText after the upgrade: %q", st)
	}
	s.expectSet(t, 1)

	// A newer package whose daemon does not start: the reload is rolled back, so postinst fails (dpkg -i exits
	// non-zero: a rolling deploy stops there), the package is half-configured and the previous build serves on.
	sb.Push(debs.broken, "/root/announcementd-broken.deb", 0o644)
	start = time.Now()
	out, err := sb.Sh("dpkg", "-i", "/root/announcementd-broken.deb")
	t.Logf("dpkg -i of a broken build: %v in %v", err, time.Since(start).Round(time.Millisecond))
	if err == nil || !strings.Contains(out, "systemctl reload failed: the previous build serves on") {
		t.Fatalf("dpkg -i of a package whose daemon fails: %v\n%s", err, out)
	}
	if got := packageState(sb); got != "half-configured "+debs.brokenVersion {
		t.Fatalf("after the failed upgrade: package %q", got)
	}
	if p := s.show("ActiveState", "MainPID"); p["ActiveState"] != "active" || p["MainPID"] != strconv.Itoa(newMain) {
		t.Fatalf("after the failed upgrade: %v (MainPID was %d)", p, newMain)
	}
	if err := s.publish(s.api, 2, "after the failed upgrade"); err != nil {
		t.Fatal(err)
	}
	if out, err := sb.Sh("/usr/bin/announcementctl", "health"); proctest.ExitCode(err) != 1 || !strings.Contains(out, "supervisor.reload") {
		t.Fatalf("health after the failed upgrade: %v: %s (want degraded by the reload)", err, out)
	}
	// The good package again: configured, reloaded, healthy.
	dpkg(t, sb, "-i", "/root/announcementd-new.deb")
	if got := packageState(sb); got != "installed "+debs.newVersion {
		t.Fatalf("after going back to the good package: %q", got)
	}
	if out, err := sb.Sh("/usr/bin/announcementctl", "health"); err != nil {
		t.Fatalf("health after going back to the good package: %v: %s", err, out)
	}
	s.expectSet(t, 1, 2)

	// Remove: stopped, the package's files gone, the state, the board and the user kept.
	var files []string // the package's files (not its directories, some shared, such as /usr/bin)
	for _, f := range strings.Fields(sb.MustSh("dpkg-query", "-L", "announcementd")) {
		if _, err := sb.Sh("test", "-d", f); err != nil {
			files = append(files, f)
		}
	}
	const pyc = "/usr/lib/python3/dist-packages/__pycache__/notice.cpython-*.pyc" // python3 -c 'import notice' wrote it
	if len(existing(sb, pyc)) != 1 {
		t.Fatalf("no %s after python3 imported notice as root", pyc)
	}
	procs := s.processes()
	dbBefore := sb.MustSh("stat", "-c", "%s %Y", "/var/lib/announcementd/announcements.db")
	start = time.Now()
	dpkg(t, sb, "-r", "announcementd")
	t.Logf("dpkg -r took %v", time.Since(start).Round(time.Millisecond))
	if got := packageState(sb); got != "config-files "+debs.newVersion {
		t.Fatalf("after dpkg -r: package %q", got)
	}
	if p := s.show("ActiveState", "LoadState"); p["ActiveState"] != "inactive" || p["LoadState"] != "not-found" {
		t.Fatalf("after dpkg -r: %v", p)
	}
	if st := s.Show("announcementd.socket", "ActiveState")["ActiveState"]; st != "inactive" {
		t.Fatalf("after dpkg -r the socket is %s", st)
	}
	for _, pid := range procs {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Fatalf("process %s of the service is left after dpkg -r (of %v)", pid, procs)
		}
	}
	if left := existing(sb, files...); len(left) != 0 {
		t.Fatalf("files of the package left after dpkg -r: %q", left)
	}
	if left := existing(sb, pyc); len(left) != 0 {
		t.Fatalf("python3's byte code of notice is left after dpkg -r: %q", left)
	}
	kept := []string{"/var/lib/announcementd/announcements.db", shm, runtime + "/api.sock", "/etc/systemd/system/multi-user.target.wants/" + unit}
	if got := existing(sb, kept...); len(got) != len(kept) {
		t.Fatalf("dpkg -r must keep %q; there are only %q", kept, got)
	}
	if db := sb.MustSh("stat", "-c", "%s %Y", "/var/lib/announcementd/announcements.db"); db != dbBefore {
		t.Fatalf("the store changed on dpkg -r: %q, was %q", db, dbBefore)
	}
	sb.MustSh("getent", "passwd", "announcementd")

	// Purge: the state, the runtime directory, the board and the enablement go; the user stays.
	start = time.Now()
	dpkg(t, sb, "-P", "announcementd")
	t.Logf("dpkg -P took %v", time.Since(start).Round(time.Millisecond))
	if got := packageState(sb); got != "" && !strings.HasPrefix(got, "not-installed") {
		t.Fatalf("after dpkg -P: package %q", got)
	}
	if left := existing(sb, append(kept, "/var/lib/announcementd", runtime)...); len(left) != 0 {
		t.Fatalf("left after dpkg -P: %q", left)
	}
	if _, err := sb.Sh("getent", "passwd", "announcementd"); err != nil {
		t.Fatalf("the user went with dpkg -P (Debian keeps system users): %v", err)
	}
	t.Logf("the whole life took %v", time.Since(begin).Round(time.Millisecond))
}

// debs are the packages of TestDebLifecycle: the build of make build, a newer one of another binary, and a newer
// still whose daemon does not start.
type debs struct {
	old, new, broken                      string
	oldVersion, newVersion, brokenVersion string
	newSum                                string // the new announcementd's sha256
}

// buildDebs builds the packages with mkdeb (gzip: faster than the default xz, and the same files): the first
// from bin/ (make build), its version derived from the build; the second with a daemon linked with other flags
// (other contents: a reload is a self-upgrade) and a version above the first.
func buildDebs(t *testing.T) debs {
	t.Helper()
	daemon, ctl := binaries(t)
	var d debs
	oldBin, newBin, out := t.TempDir(), t.TempDir(), t.TempDir()
	copyFile(t, daemon, filepath.Join(oldBin, "announcementd"))
	copyFile(t, ctl, filepath.Join(oldBin, "announcementctl"))
	copyFile(t, ctl, filepath.Join(newBin, "announcementctl"))
	// The man pages, as make man writes them, into each build.
	for _, dir := range []string{oldBin, newBin} {
		run(t, root, nil, "make", "-s", "--no-print-directory", "man", "BIN="+dir)
	}
	run(t, root, nil, "go", "build", "-ldflags", "-X main.buildTag=deb2", "-o", filepath.Join(newBin, "announcementd"), "./cmd/announcementd")
	d.newSum = sha256File(t, filepath.Join(newBin, "announcementd"))
	if d.newSum == sha256File(t, daemon) {
		t.Fatal("the second build is the same binary as the first")
	}

	env := []string{"OUTDIR=" + out, "DEB_COMPRESS=gzip", "DEB_COMPRESS_LEVEL=1"}
	d.old = strings.TrimSpace(run(t, root, append(env, "BIN="+oldBin, "VERSION="), mkdeb))
	d.oldVersion = debField(t, d.old, "Version")
	d.newVersion = d.oldVersion + "+2"
	d.new = strings.TrimSpace(run(t, root, append(env, "BIN="+newBin, "VERSION="+d.newVersion), mkdeb))
	if !versionLess(t, d.oldVersion, d.newVersion) {
		t.Fatalf("%s does not sort after %s", d.newVersion, d.oldVersion)
	}
	if got := debField(t, d.new, "Version"); got != d.newVersion {
		t.Fatalf("the second package's version is %q, want %q", got, d.newVersion)
	}
	// A third, newer still, whose daemon exits at once.
	brokenBin := t.TempDir()
	copyFile(t, ctl, filepath.Join(brokenBin, "announcementctl"))
	run(t, root, nil, "cp", "-r", filepath.Join(newBin, "man"), brokenBin)
	if err := os.WriteFile(filepath.Join(brokenBin, "announcementd"), []byte("#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.brokenVersion = d.newVersion + "+broken"
	d.broken = strings.TrimSpace(run(t, root, append(env, "BIN="+brokenBin, "VERSION="+d.brokenVersion), mkdeb))
	// The derived version is the build's.
	line := strings.Fields(run(t, root, nil, daemon, "--version"))
	if want := debVersion(t, line[1]); d.oldVersion != want {
		t.Fatalf("the first package's version is %q; the build %q gives %q", d.oldVersion, line[1], want)
	}
	return d
}

func debField(t *testing.T, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(run(t, root, nil, "dpkg-deb", "-f", deb, field))
}

// run runs name with args in dir (env added to the test's) and returns its standard output.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return string(out)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, _ := in.Stat()
	o, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, in); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// dpkg runs dpkg inside with args, failing the test on an error, and returns its output.
func dpkg(t *testing.T, sb *sdsandbox.Sandbox, args ...string) string {
	t.Helper()
	out, err := sb.Sh(append([]string{"dpkg"}, args...)...)
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// packageState is dpkg's status of the package and its version ("installed 1.4.0", "config-files 1.4.0"), or ""
// when dpkg knows no such package (purged).
func packageState(sb *sdsandbox.Sandbox) string {
	out, err := sb.Sh("dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", "announcementd")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// existing returns the paths inside the sandbox that paths (shell patterns) name: files, directories, sockets, and
// symbolic links even when dangling.
func existing(sb *sdsandbox.Sandbox, paths ...string) []string {
	out, _ := sb.Sh("sh", "-c", `for f in `+strings.Join(paths, " ")+`; do
		if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi
	done`)
	return strings.Fields(out)
}

// reloadDuration is how long systemd's last reload of the service took (from the journal's Reloading and
// Reloaded lines), or "" when the journal shows none.
func reloadDuration(sb *sdsandbox.Sandbox) string {
	out, _ := sb.Sh("journalctl", "-u", unit, "--no-pager", "-o", "short-unix")
	var from, to float64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ts, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, " systemd[1]: Reloading "+unit):
			from = ts
		case strings.Contains(line, " systemd[1]: Reloaded "+unit):
			to = ts
		}
	}
	if from == 0 || to < from {
		return ""
	}
	return (time.Duration((to - from) * float64(time.Second))).Round(time.Millisecond).String()
}
