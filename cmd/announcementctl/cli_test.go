package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/announcementd/announcementd/wire"
)

func ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// flagNames are the --flags a help text lists, one a line.
var flagLine = regexp.MustCompile(`(?m)^  --([a-z][a-z-]*)`)

// TestHelp: announcementctl -h lists every command in one line, and every command's -h (and help COMMAND) prints
// its usage line, what it does and its flags, on stdout, exit 0.
func TestHelp(t *testing.T) {
	code, top, errs := ctl("-h")
	if code != 0 || errs != "" || !strings.HasPrefix(top, "usage: announcementctl ") {
		t.Fatalf("-h: exit %d\n%s%s", code, top, errs)
	}
	for _, want := range []string{"--runtime-dir DIR", "--addr tcp:HOST:PORT", "--token-file FILE", "--version", "ANNOUNCEMENTD_RUNTIME_DIR"} {
		if !strings.Contains(top, want) {
			t.Errorf("-h does not mention %s:\n%s", want, top)
		}
	}
	for _, c := range commands {
		if !regexp.MustCompile(`(?m)^  ` + c.name + ` +\S`).MatchString(top) {
			t.Errorf("-h has no line for %s:\n%s", c.name, top)
		}
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := ctl(c.name, h)
			first, _, _ := strings.Cut(out, "\n")
			if code != 0 || errs != "" || first != "usage: announcementctl "+join(c.name, c.synopsis) ||
				!strings.Contains(out, "\n\n"+capitalize(c.summary)+".\n") {
				t.Errorf("%s %s: exit %d, stderr %q:\n%s", c.name, h, code, errs, out)
			}
			// Every flag of the synopsis is described, and every flag described is in the synopsis (or global).
			described := map[string]bool{}
			for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
				described[m[1]] = true
			}
			for _, m := range regexp.MustCompile(`--([a-z][a-z-]*)`).FindAllStringSubmatch(c.synopsis, -1) {
				if !described[m[1]] {
					t.Errorf("%s -h does not describe --%s:\n%s", c.name, m[1], out)
				}
			}
			for f := range described {
				if !strings.Contains(c.synopsis, "--"+f+" ") && !strings.Contains(c.synopsis, "--"+f+"]") &&
					f != "runtime-dir" && f != "addr" && f != "token-file" {
					t.Errorf("%s -h describes --%s, which its usage line %q does not show", c.name, f, c.synopsis)
				}
			}
			if _, viaHelp, _ := ctl("help", c.name); viaHelp != out {
				t.Errorf("help %s differs from %s %s:\n%s", c.name, c.name, h, viaHelp)
			}
		}
	}
	if code, _, errs := ctl(); code != exitUsage || !strings.HasPrefix(errs, "usage: ") {
		t.Errorf("no command: exit %d, stderr %q; want 2 and the usage", code, errs)
	}
	if code, _, errs := ctl("help", "nope"); code != exitUsage || !strings.Contains(errs, `unknown command "nope"`) {
		t.Errorf("help nope: exit %d %q", code, errs)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ := ctl(args...)
		if code != 0 || !regexp.MustCompile(`^announcementctl \S+ \(go[^)]+\)\n$`).MatchString(out) {
			t.Errorf("%v: exit %d %q", args, code, out)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		at   string
		json bool
	}{
		{[]string{"hi", "--at", "now"}, []string{"hi"}, "now", false},
		{[]string{"--json", "a", "--at", "now", "b"}, []string{"a", "b"}, "now", true},
		{[]string{"--", "-5 degrees", "--json"}, []string{"-5 degrees", "--json"}, "", false},
		{[]string{"a", "--", "--at"}, []string{"a", "--at"}, "", false},
		{[]string{"--at", "--", "text"}, []string{"text"}, "--", false}, // "--" as a flag's value does not end the flags
		{[]string{"--at", "--", "--", "--json"}, []string{"--json"}, "--", false},
		{[]string{"--at=--", "--json", "x"}, []string{"x"}, "--", true},
		{[]string{"-", "--json"}, []string{"-"}, "", true},
		{nil, nil, "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		at := fs.String("at", "", "")
		asJSON := fs.Bool("json", false, "")
		pos, err := parseInterleaved(fs, c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *at != c.at || *asJSON != c.json {
			t.Errorf("%q: %q at=%q json=%v %v; want %q at=%q json=%v", c.args, pos, *at, *asJSON, err, c.pos, c.at, c.json)
		}
	}
}

// recorder is a fake API on <dir>/api.sock that answers every publish and delete, and remembers the requests.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
}

func serveRecorder(t *testing.T) (string, *recorder) {
	t.Helper()
	dir := shortDir(t)
	rec := &recorder{}
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.Path+" "+string(b))
		rec.mu.Unlock()
		if r.Method == "DELETE" {
			wire.WriteJSON(rw, 200, wire.DeleteResponse{Version: 2})
			return
		}
		wire.WriteJSON(rw, 200, wire.AnnouncementResponse{Version: 1, Announcement: wire.Announcement{Visible: true}})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return dir, rec
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return ""
	}
	return r.reqs[len(r.reqs)-1]
}

// shortDir is a directory for sockets whose paths stay under the 108 bytes of sun_path.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestFlagsAfterArguments: a command's flags and positional arguments mix in any order, the global flags may
// follow the command, and "--" lets a text begin with '-'.
func TestFlagsAfterArguments(t *testing.T) {
	dir, rec := serveRecorder(t)
	for _, c := range []struct {
		args []string
		req  string
	}{
		{[]string{"--runtime-dir", dir, "publish", "hi", "--id", "6"}, `PUT /v1/announcements/6 {"id":0,"content":"hi","priority":0}`},
		{[]string{"publish", "--id", "7", "hi there", "--priority", "3", "--runtime-dir", dir}, `PUT /v1/announcements/7 {"id":0,"content":"hi there","priority":3}`},
		{[]string{"--runtime-dir", dir, "publish", "--id", "8", "--", "-5 °C tonight"}, `PUT /v1/announcements/8 {"id":0,"content":"-5 °C tonight","priority":0}`},
		{[]string{"--runtime-dir", dir, "publish", "--", "--id"}, ""}, // after "--", --id is the text: no id given
		{[]string{"delete", "9", "--runtime-dir=" + dir}, `DELETE /v1/announcements/9 `},
	} {
		before := rec.last()
		code, out, errs := ctl(c.args...)
		if c.req == "" {
			if code != exitUsage || rec.last() != before {
				t.Errorf("%q: exit %d %q %q, want a usage error and no request", c.args, code, out, errs)
			}
			continue
		}
		if code != 0 || rec.last() != c.req {
			t.Errorf("%q: exit %d %q %q, request %q; want %q", c.args, code, out, errs, rec.last(), c.req)
		}
	}
	// dump and watch do not reach the daemon: no global flags after them.
	if code, _, errs := ctl("dump", "--runtime-dir", dir); code != exitUsage || !strings.Contains(errs, "not defined: -runtime-dir") {
		t.Errorf("dump --runtime-dir: exit %d %q", code, errs)
	}
}

// TestUnreachableSaysWhatToDo: the error says where it looked and what to try, in one line.
func TestUnreachableSaysWhatToDo(t *testing.T) {
	empty := shortDir(t)
	refused := shortDir(t)
	// A socket nobody listens on: bound, then its listener closed without removing it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(refused, "api.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, c := range []struct {
		dir  string
		want string
	}{
		{filepath.Join(empty, "missing"), "cannot reach announcementd at " + filepath.Join(empty, "missing", "api.sock") + ": " + filepath.Join(empty, "missing") + " does not exist: is it running"},
		{empty, "cannot reach announcementd at " + filepath.Join(empty, "api.sock") + ": no socket there: is it running"},
		{refused, "connection refused (the socket is there, nothing listens on it): is it running"},
	} {
		code, _, errs := ctl("--runtime-dir", c.dir, "list")
		if code != exitError || !strings.Contains(errs, c.want) || !strings.Contains(errs, "set --runtime-dir or $ANNOUNCEMENTD_RUNTIME_DIR") ||
			strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d %q; want one line with %q", c.dir, code, errs, c.want)
		}
	}
	if code, _, errs := ctl("--runtime-dir", empty, "reload"); code != exitError ||
		!strings.Contains(errs, "cannot reach announcementd's supervisor at "+filepath.Join(empty, "control.sock")+": no socket there") {
		t.Errorf("reload: exit %d %q", code, errs)
	}
	// TCP: a port nothing listens on.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "tcp:" + tl.Addr().String()
	tl.Close()
	token := filepath.Join(empty, "token")
	os.WriteFile(token, []byte("t\n"), 0o600)
	if code, _, errs := ctl("--addr", addr, "--token-file", token, "list"); code != exitError ||
		!strings.Contains(errs, "cannot reach announcementd at "+addr+": connection refused: is it running, with --listen "+addr+"?") {
		t.Errorf("--addr: exit %d %q", code, errs)
	}
}

// TestPermissionAdvice names the group that may connect. (The test runs as anyone: it reads the advice for a
// socket of its own, whose group it knows.)
func TestPermissionAdvice(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0o660)
	got := permissionAdvice(sock)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(sock) + ` is mode 0660, group \S+: your user must be in group \S+ \(sudo adduser \S+ \S+, then log in again\), or run as root$`).MatchString(got) {
		t.Errorf("advice %q", got)
	}
}
