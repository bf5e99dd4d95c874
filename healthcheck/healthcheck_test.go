package healthcheck

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStateNamesAndExitCodes(t *testing.T) {
	for _, c := range []struct {
		s    State
		name string
		code int
	}{{OK, "ok", 0}, {Degraded, "degraded", 1}, {Failed, "failed", 2}} {
		if c.s.String() != c.name || c.s.ExitCode() != c.code {
			t.Errorf("%d: %q exit %d, want %q exit %d", c.s, c.s, c.s.ExitCode(), c.name, c.code)
		}
		if got, err := ParseState(c.name); err != nil || got != c.s {
			t.Errorf("ParseState(%q) = %v, %v", c.name, got, err)
		}
		b, err := json.Marshal(c.s)
		if err != nil || string(b) != `"`+c.name+`"` {
			t.Errorf("marshal %v: %s %v", c.s, b, err)
		}
	}
	if _, err := ParseState("fine"); err == nil {
		t.Error("ParseState accepted an unknown name")
	}
	if _, err := json.Marshal(State(7)); err == nil {
		t.Error("an invalid state marshalled")
	}
}

func TestCombine(t *testing.T) {
	since := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		checks  []Check
		health  State
		ready   bool
		reasons []string
	}{
		{"no checks", nil, OK, true, []string{}},
		{"all ok", []Check{{Name: "b"}, {Name: "a", Reason: "fine, really"}}, OK, true, []string{}},
		{"degraded", []Check{{Name: "b", State: Degraded, Reason: "slow"}, {Name: "a"}}, Degraded, true, []string{"b: slow"}},
		{"degraded critical", []Check{{Name: "p", State: Degraded, Reason: "lagging", Critical: true}}, Degraded, false, []string{"p: lagging"}},
		{"worst wins, worst first", []Check{
			{Name: "a", State: Degraded, Reason: "x"}, {Name: "c", State: Failed, Reason: "y"}, {Name: "b", State: Degraded, Reason: "z"},
		}, Failed, false, []string{"c: y", "a: x", "b: z"}},
		{"reason is mandatory", []Check{{Name: "a", State: Failed, Reason: "  "}}, Failed, false, []string{"a: " + NoReason}},
	}
	for _, c := range cases {
		for i := range c.checks {
			c.checks[i].Since = since
		}
		r := Combine(7, c.checks)
		if r.Health != c.health || r.Ready != c.ready || !slices.Equal(r.Reasons, c.reasons) || r.Version != 7 || len(r.Checks) != len(c.checks) {
			t.Errorf("%s: got %+v, want %v ready=%v %q", c.name, r, c.health, c.ready, c.reasons)
		}
		if !slices.IsSortedFunc(r.Checks, func(a, b Check) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("%s: checks not sorted: %+v", c.name, r.Checks)
		}
		// Every report Combine makes parses back to itself.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Errorf("%s: parse %s: %v", c.name, b, err)
			continue
		}
		b2, _ := json.Marshal(back)
		if string(b) != string(b2) {
			t.Errorf("%s: round trip\n%s\n%s", c.name, b, b2)
		}
	}
}

func TestHTTPStatusAndLine(t *testing.T) {
	ok := Combine(3, []Check{{Name: "a"}})
	deg := Combine(3, []Check{{Name: "a", State: Degraded, Reason: "no mlock"}})
	crit := Combine(3, []Check{{Name: "a", State: Degraded, Reason: "lagging", Critical: true}})
	bad := Combine(3, []Check{{Name: "a", State: Failed, Reason: "stale"}, {Name: "b", State: Degraded, Reason: "no mlock"}})
	for _, c := range []struct {
		r           Report
		live, ready int
		line        string
	}{
		{ok, 200, 200, "ok: version 3"},
		{deg, 200, 200, "degraded: a: no mlock"},
		{crit, 200, 503, "degraded: a: lagging"},
		{bad, 503, 503, "failed: a: stale; b: no mlock"},
	} {
		if c.r.LiveStatus() != c.live || c.r.ReadyStatus() != c.ready || c.r.Line() != c.line {
			t.Errorf("%+v: live %d ready %d %q, want %d %d %q", c.r, c.r.LiveStatus(), c.r.ReadyStatus(), c.r.Line(), c.live, c.ready, c.line)
		}
	}
}

func TestParse(t *testing.T) {
	good := []struct {
		body   string
		health State
		ready  bool
	}{
		{`{"health":"ok","version":4}`, OK, true}, // a daemon from before checks
		{`{"health":"degraded","reasons":["a: x"],"checks":[{"name":"a","state":"degraded","reason":"x","since":"2026-11-25T10:00:00Z"}],"version":4}`, Degraded, true},
		{`{"health":"degraded","ready":false,"reasons":["a: x"],"checks":[{"name":"a","state":"degraded","reason":"x","since":"2026-11-25T10:00:00Z","critical":true}]}`, Degraded, false},
		{`{"health":"failed","reasons":["a: x"],"checks":[{"name":"a","state":"failed","reason":"x","since":"2026-11-25T10:00:00Z"}]}`, Failed, false},
	}
	for _, c := range good {
		r, err := Parse([]byte(c.body))
		if err != nil || r.Health != c.health || r.Ready != c.ready {
			t.Errorf("%s: %+v %v", c.body, r, err)
		}
	}
	bad := []struct{ body, want string }{
		{`not json`, "not a health report"},
		{`{"version":4}`, `no "health"`},
		{`{"health":"fine"}`, "unknown health state"},
		{`{"health":"degraded"}`, "degraded without a reason"},
		{`{"health":"ok","checks":[{"name":"a","state":"failed","reason":"x"}]}`, "worst check is failed"},
		{`{"health":"failed","reasons":["a: "],"checks":[{"name":"a","state":"failed"}]}`, "without a reason"},
		{`{"health":"ok","checks":[{"name":"a","state":"ok"},{"name":"a","state":"ok"}]}`, "appears twice"},
		{`{"health":"ok","checks":[{"state":"ok"}]}`, "without a name"},
		{`{"health":"failed","ready":true,"reasons":["x"]}`, "failed but ready"},
	}
	for _, c := range bad {
		if _, err := Parse([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.body, err, c.want)
		}
	}
}

func TestMonitorKeepsSinceWhileTheStateHolds(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	m := NewMonitor(func() time.Time { return now })
	if _, changed := m.Set(Check{Name: "lock", State: Degraded, Reason: "EPERM"}); changed {
		t.Error("a first Set reported a change")
	}
	t0 := now
	now = now.Add(time.Minute)
	if prev, changed := m.Set(Check{Name: "lock", State: Degraded, Reason: "ENOMEM"}); changed || prev.Reason != "EPERM" {
		t.Errorf("same state: changed %v, prev %+v", changed, prev)
	}
	if c, _ := m.Get("lock"); !c.Since.Equal(t0) || c.Reason != "ENOMEM" {
		t.Errorf("same state: %+v, want since %v", c, t0)
	}
	now = now.Add(time.Minute)
	if prev, changed := m.Set(Check{Name: "lock"}); !changed || prev.State != Degraded {
		t.Errorf("new state: changed %v, prev %+v", changed, prev)
	}
	m.Set(Check{Name: "heartbeat", State: Failed, Reason: "stale"})
	r := m.Report(9)
	if r.Health != Failed || len(r.Checks) != 2 || !r.Checks[1].Since.Equal(now) || r.Checks[1].State != OK {
		t.Errorf("report %+v", r)
	}
}
