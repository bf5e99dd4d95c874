// Package buildinfo names the build of a binary of this module in one line, from what the Go toolchain stamped
// into it (runtime/debug.ReadBuildInfo): `announcementctl 0.0.0-20261203091459-7b88f2dcb65a (go1.26.8)`.
//
// It imports the standard library only, so that every binary (the daemon and the CLI) can use it without pulling
// in anything else; deps_test.go checks it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Info is what the toolchain recorded about a build. Every field may be empty: a binary built without version
// control information (go build -buildvcs=false, go run, a test binary) has no revision, and its module version
// is "(devel)".
type Info struct {
	Module    string    // the main module's version as the go command stamped it: v1.4.0, a pseudo-version, or "(devel)"
	Revision  string    // vcs.revision: the commit, in full
	Time      time.Time // vcs.time: the commit's time
	Modified  bool      // vcs.modified: the work tree had uncommitted changes
	GoVersion string    // the toolchain: go1.26.8
}

// Read returns the running binary's Info.
func Read() Info {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{GoVersion: runtime.Version()}
	}
	return parse(info)
}

func parse(info *debug.BuildInfo) Info {
	i := Info{Module: info.Main.Version, GoVersion: info.GoVersion}
	if i.GoVersion == "" {
		i.GoVersion = runtime.Version()
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time, _ = time.Parse(time.RFC3339, s.Value) // a malformed time is left out
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// Version is the build's version without the leading "v" (as Debian writes versions): the module version the go
// command stamped (1.4.0, 0.0.0-20261203091459-7b88f2dcb65a, with +dirty for a modified work tree); when it
// stamped none but recorded the commit, a version of the same shape made from the commit's time and revision;
// and "devel" when the binary knows neither.
func (i Info) Version() string {
	if i.Module != "" && i.Module != "(devel)" {
		return strings.TrimPrefix(i.Module, "v")
	}
	if i.Revision == "" {
		return "devel"
	}
	v := "0.0.0-" + i.Time.UTC().Format("20060102150405") + "-" + i.Revision[:min(12, len(i.Revision))]
	if i.Time.IsZero() {
		v = "0.0.0-" + i.Revision[:min(12, len(i.Revision))]
	}
	if i.Modified {
		v += "+dirty"
	}
	return v
}

// String is the version and the toolchain: `0.0.0-20261203091459-7b88f2dcb65a (go1.26.8)`.
func (i Info) String() string { return i.Version() + " (" + i.GoVersion + ")" }

// Line is what `NAME --version` prints: the program's name, its version and the toolchain, in one line (without a
// newline): `announcementctl 0.0.0-20261203091459-7b88f2dcb65a (go1.26.8)`.
func Line(name string) string { return name + " " + Read().String() }
