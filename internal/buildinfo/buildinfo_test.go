package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	rev := "7b88f2dcb65a005a5e6df888b7ca46e0aa4b8aed"
	for _, c := range []struct {
		name     string
		module   string
		settings map[string]string
		want     string
	}{
		{"tagged", "v1.4.0", map[string]string{"vcs.revision": rev}, "1.4.0 (go1.26.8)"},
		{"stamped pseudo-version", "v0.0.0-20261203091459-7b88f2dcb65a+dirty", map[string]string{"vcs.revision": rev, "vcs.modified": "true"},
			"0.0.0-20261203091459-7b88f2dcb65a+dirty (go1.26.8)"},
		{"revision only", "(devel)", map[string]string{"vcs.revision": rev, "vcs.time": "2026-12-03T09:14:59Z", "vcs.modified": "false"},
			"0.0.0-20261203091459-7b88f2dcb65a (go1.26.8)"},
		{"modified", "(devel)", map[string]string{"vcs.revision": rev, "vcs.time": "2026-12-03T09:14:59Z", "vcs.modified": "true"},
			"0.0.0-20261203091459-7b88f2dcb65a+dirty (go1.26.8)"},
		{"revision without time", "", map[string]string{"vcs.revision": "abc"}, "0.0.0-abc (go1.26.8)"},
		{"nothing known", "(devel)", nil, "devel (go1.26.8)"},
	} {
		info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: c.module}}
		for k, v := range c.settings {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: k, Value: v})
		}
		if got := parse(info).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestLine(t *testing.T) {
	l := Line("announcementctl")
	if !strings.HasPrefix(l, "announcementctl ") || !strings.HasSuffix(l, ")") || strings.Contains(l, "\n") {
		t.Fatalf("Line = %q", l)
	}
}
