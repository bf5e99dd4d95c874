// The import rules of the module, as a table (in the manner of go/build's deps_test.go): for every package, the
// packages of this module and the modules outside the standard library that its non-test files may import. A
// package missing from the table, a row for a package that no longer exists, and an import the table does not
// allow all fail the test; so does `go list` failing (the rules are never skipped).
package announcementd_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/announcementd/announcementd"

// rule is what one package may import: mod lists packages of this module (paths relative to it), ext the import
// path prefixes of modules outside the standard library.
type rule struct {
	mod []string
	ext []string
}

var (
	xsys       = []string{"golang.org/x/sys/unix"}
	zap        = []string{"go.uber.org/zap"}
	prometheus = []string{"github.com/prometheus/client_golang/"}
)

func join(lists ...[]string) []string { return slices.Concat(lists...) }

// deps is the table. Read a row as "PACKAGE may import ...". The layers, bottom up:
//
//	file safety:         internal/securefs, internal/fdutil (the writer and the daemon open files through them)
//	the build's name:    internal/buildinfo (both binaries' --version)
//	the format:          board, board/internal/shm, board/reader, board/writer, board/golden
//	the model and store: announcement, store
//	shared definitions:  healthcheck, handoff, wire (the JSON of both HTTP APIs)
//	the roles:           worker (the announcements), supervisor (fds, processes, signals), systemd (the adapter)
//	the commands:        cmd/announcementd, cmd/announcementctl, bench/*
//
// The thin-supervisor rule is the supervisor's row: handoff, healthcheck, internal/procfs and wire of this module,
// and zap; never the board, the store, the worker, the announcement model or systemd. The CLI's row keeps it free of
// the daemon's dependencies.
var deps = map[string]rule{
	// The format and its readers and writer: the standard library and x/sys only.
	"board":              {},
	"board/internal/shm": {ext: xsys},
	"board/reader":       {mod: []string{"board", "board/internal/shm"}, ext: xsys},
	"board/writer":       {mod: []string{"board", "board/internal/shm", "internal/fdutil", "internal/rounds", "internal/securefs"}, ext: xsys},
	"board/golden":       {mod: []string{"board", "board/writer"}},
	"board/boardtest":    {mod: []string{"board"}},

	"announcement": {mod: []string{"board"}},
	"store":        {mod: []string{"announcement", "board"}, ext: []string{"go.etcd.io/bbolt"}},

	"healthcheck": {},
	"handoff":     {ext: xsys},
	"wire":        {mod: []string{"healthcheck"}},

	"worker": {
		mod: []string{"announcement", "board", "board/writer", "healthcheck", "internal/rounds", "store", "wire"},
		ext: join(xsys, zap, prometheus), // x/sys: the drain asks a connection's socket for unread bytes (SIOCINQ)
	},
	"supervisor": {mod: []string{"handoff", "healthcheck", "internal/procfs", "wire"}, ext: zap},
	"systemd":    {mod: []string{"supervisor"}, ext: join(xsys, zap, []string{"github.com/coreos/go-systemd/v22/"})},

	"cmd/announcementd": {
		mod: []string{"board", "board/writer", "handoff", "healthcheck", "internal/buildinfo", "internal/fdutil", "internal/securefs", "store", "supervisor", "systemd", "wire", "worker"},
		ext: join(xsys, zap, prometheus, []string{"github.com/cloudflare/tableflip", "github.com/dustin/go-humanize"}),
	},
	"cmd/announcementctl": {mod: []string{"board", "board/reader", "healthcheck", "internal/buildinfo", "wire"}, ext: xsys},

	"internal/benchfmt":  {ext: xsys},
	"internal/buildinfo": {}, // the standard library only: both binaries name their build with it
	"internal/fdutil":    {ext: xsys},
	"internal/procfs":    {},
	// The harness of the tests that run processes (and of bench/reloadbench): helper roles, the daemon, the waits.
	"internal/proctest":  {mod: []string{"internal/procfs"}, ext: join(xsys, []string{"go.uber.org/goleak"})},
	"internal/sandbox":   {mod: []string{"internal/proctest"}, ext: xsys},
	"internal/rounds":    {}, // rounds that concurrent callers share (the worker's apply groups, the writer's publishes)
	"internal/securefs":  {ext: xsys},
	"internal/sdsandbox": {},
	"internal/stress":    {mod: []string{"board", "board/reader", "board/writer"}},

	"bench/boardbench":  {mod: []string{"board", "board/reader", "board/writer", "internal/benchfmt", "internal/stress"}, ext: xsys},
	"bench/fanout":      {mod: []string{"board", "board/reader", "board/writer", "internal/benchfmt", "internal/procfs"}, ext: xsys},
	"bench/profile":     {mod: []string{"internal/benchfmt", "internal/procfs", "internal/proctest", "wire"}},
	"bench/guardbench":  {mod: []string{"board", "board/writer", "internal/benchfmt", "store", "worker"}, ext: xsys},
	"bench/healbench":   {mod: []string{"board", "board/reader", "internal/benchfmt", "internal/procfs", "internal/proctest"}},
	"bench/reloadbench": {mod: []string{"internal/benchfmt", "internal/proctest", "wire"}},
	"bench/workerbench": {mod: []string{"announcement", "board", "board/reader", "board/writer", "internal/benchfmt", "internal/procfs", "store", "worker"}},

	// The scale report: the command, its Go client programs (its C and Python readers are not Go packages) and
	// what they share.
	"bench/scale": {mod: []string{"bench/scale/internal/sim", "internal/benchfmt", "internal/procfs", "internal/proctest", "wire"},
		ext: []string{"gonum.org/v1/plot/"}}, // its plots
	"bench/scale/httppoll":     {mod: []string{"bench/scale/internal/sim"}},
	"bench/scale/internal/sim": {ext: xsys},
	"bench/scale/shmreader":    {mod: []string{"bench/scale/internal/sim", "board", "board/reader"}},

	// Packages of tests only (and the module root, which holds this file).
	"":            {},
	"clients":     {},
	"e2e":         {},
	"e2e/systemd": {},
	"storm":       {},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
	DepOnly    bool
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr) // never a skip: the rules must be checked
	}
	seen := map[string]bool{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		seen[name] = true
		r, ok := deps[name]
		if !ok {
			t.Errorf("package %s has no row in deps_test.go: add one saying what it may import", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !allowed(r, imp) {
				t.Errorf("%s imports %s, which its row in deps_test.go does not allow", p.ImportPath, imp)
			}
		}
	}
	for name := range deps {
		if !seen[name] {
			t.Errorf("deps_test.go has a row for %q, which is not a package of the module: remove it", name)
		}
	}
}

func allowed(r rule, imp string) bool {
	if rel, ours := strings.CutPrefix(imp, module+"/"); ours {
		return slices.Contains(r.mod, rel)
	}
	first, _, _ := strings.Cut(imp, "/")
	if !strings.Contains(first, ".") { // the standard library
		return true
	}
	for _, prefix := range r.ext {
		if imp == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(imp, prefix) ||
			strings.HasPrefix(imp, prefix+"/") {
			return true
		}
	}
	return false
}

// TestModTidy: go.mod and go.sum are what `go mod tidy` makes of the code (a direct import marked indirect, or a
// requirement nothing uses, fails here).
func TestModTidy(t *testing.T) {
	out, err := exec.Command("go", "mod", "tidy", "-diff").CombinedOutput()
	if err != nil {
		t.Fatalf("go mod tidy -diff: %v: go.mod or go.sum is not tidy:\n%s", err, out)
	}
}
