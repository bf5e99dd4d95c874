package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m, nil) }

func TestDumpMatchesGolden(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"dump", "--json", "--shm", "../../testdata/regions/basic.region"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var d board.Dump
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.Version != 2 || len(d.Records) != 3 {
		t.Fatalf("dump: %v %+v", err, d)
	}
	out.Reset()
	if code := run(context.Background(), []string{"dump", "--shm", "../../testdata/regions/basic.region"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "version 2") || !strings.Contains(out.String(), "Maintenance tonight") {
		t.Fatalf("text dump, exit %d:\n%s", code, out.String())
	}
}

func TestDumpErrorsAndUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dump", "--json", "--shm", "../../testdata/regions/bad_magic.region"}, exitError, `"error": "bad_magic"`},
		{[]string{"dump", "--shm", "/nonexistent/board"}, exitError, "no such file"},
		{[]string{"dump", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"dump", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, out.String(), errb.String())
		}
	}
}

func TestWatchPrintsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Publish([]board.Record{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out proctest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"watch", "--json", "--shm", path}, &out, &out) }()
	waitFor(t, &out, `"version":1`)
	w.Publish([]board.Record{{ID: 2, Content: "TWO"}, {ID: 3, Content: "three"}})
	waitFor(t, &out, `"version":2`)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d: %s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var c change
	json.Unmarshal([]byte(lines[len(lines)-1]), &c)
	if len(c.Added) != 1 || c.Added[0].ID != 3 || len(c.Changed) != 1 || c.Changed[0].Content != "TWO" ||
		len(c.Removed) != 1 || c.Removed[0] != 1 {
		t.Fatalf("change %+v from output:\n%s", c, out.String())
	}
}

// waitFor waits until the watcher's output has s; the failure shows the output.
func waitFor(t *testing.T, out *proctest.Buffer, s string) {
	t.Helper()
	proctest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(out.String(), s) {
			return fmt.Errorf("watch output so far:\n%s", out)
		}
		return nil
	}, fmt.Sprintf("%q in the watch output", s))
}

func TestWatchFollowsSupersededBoard(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notice")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	old, _ := w.Publish([]board.Record{{ID: 1, Content: "old file"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out proctest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"watch", "--json", "--shm", path}, &out, &out) }()
	waitFor(t, &out, `"old file"`)

	// Replace the file at the path, as the region guard does: new file, rename, supersede the old one.
	tmp := filepath.Join(dir, "notice.new")
	w2, err := writer.Open(tmp, writer.Options{Size: 64 << 10, VersionFloor: old})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	v2, _ := w2.Publish([]board.Record{{ID: 1, Content: "new file"}})
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	w.Supersede()
	waitFor(t, &out, `"event":"reopened"`)
	waitFor(t, &out, `"new file"`)
	cancel()
	<-done
	if !strings.Contains(out.String(), fmt.Sprintf(`"version":%d`, v2)) {
		t.Fatalf("version %d not shown:\n%s", v2, out.String())
	}
}
