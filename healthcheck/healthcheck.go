// Package healthcheck is the one definition of announcementd's health: the worker computes it, the supervisor
// computes its own with it and reads its workers', and announcementctl reads and combines both. It holds the three
// states with their names and exit codes, the checks a state comes from, how checks combine into a report, how a
// report maps to HTTP status codes, and how a report is parsed back. docs/HEALTH.md says what each of the
// worker's checks means.
//
// Invariants:
//   - States are ordered ok < degraded < failed; a report's state is its worst check's (ok without checks).
//   - Anything but ok has a reason: every check that is not ok has one, and a report lists one reason per check
//     that is not ok, "name: reason", worst first. Combine guarantees both; Parse refuses a report that breaks
//     them.
//   - A check's Since is when it entered its current state: a new reason in the same state keeps it.
//   - Exit codes follow the order: 0 ok, 1 degraded, 2 failed (a caller that cannot reach the daemon uses 2).
//   - Liveness is 200 unless the state is failed; readiness is 200 only when the report is ready: nothing failed
//     and no critical check degraded. Otherwise both are 503 with the same body.
package healthcheck

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// State is a health state.
type State uint8

// The states, best first.
const (
	OK State = iota
	Degraded
	Failed
)

var stateNames = [...]string{OK: "ok", Degraded: "degraded", Failed: "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState returns the state named name ("ok", "degraded", "failed").
func ParseState(name string) (State, error) {
	for s, n := range stateNames {
		if n == name {
			return State(s), nil
		}
	}
	return 0, fmt.Errorf("unknown health state %q (want ok, degraded or failed)", name)
}

// ExitCode is the state's exit code: 0 ok, 1 degraded, 2 failed.
func (s State) ExitCode() int { return int(min(s, Failed)) }

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("invalid health state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	*s = v
	return err
}

// Check is one aspect of health.
type Check struct {
	Name   string `json:"name"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"` // why it is not ok (mandatory then); may explain an ok too
	// Since is when the check entered its current state.
	Since time.Time `json:"since"`
	// Critical: the daemon is not ready while this check is degraded (it is never ready while one has failed).
	Critical bool `json:"critical,omitempty"`
}

// NoReason stands in for the reason of a check that is not ok but gave none.
const NoReason = "no reason given"

// Report is the health of a daemon at one moment: the JSON body of /healthz and /readyz.
type Report struct {
	Health  State    `json:"health"`
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons"`
	Checks  []Check  `json:"checks"`
	Version uint64   `json:"version"` // the board's version
}

// Combine makes the report of checks (sorted by name in the report) for the board at version.
func Combine(version uint64, checks []Check) Report {
	r := Report{Ready: true, Reasons: []string{}, Checks: slices.Clone(checks), Version: version}
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	slices.SortFunc(r.Checks, func(a, b Check) int { return cmp.Compare(a.Name, b.Name) })
	for i := range r.Checks {
		c := &r.Checks[i]
		if c.State != OK && strings.TrimSpace(c.Reason) == "" {
			c.Reason = NoReason
		}
		r.Health = max(r.Health, c.State)
		if c.State == Failed || c.State == Degraded && c.Critical {
			r.Ready = false
		}
	}
	r.Reasons = reasons(r.Checks)
	return r
}

// reasons lists "name: reason" for every check that is not ok, worst first, then by name.
func reasons(checks []Check) []string {
	bad := slices.DeleteFunc(slices.Clone(checks), func(c Check) bool { return c.State == OK })
	slices.SortStableFunc(bad, func(a, b Check) int { return cmp.Compare(b.State, a.State) })
	out := make([]string, len(bad))
	for i, c := range bad {
		out[i] = c.Name + ": " + c.Reason
	}
	return out
}

// LiveStatus is the HTTP status of the report as a liveness answer: 200 unless failed, then 503.
func (r Report) LiveStatus() int {
	if r.Health == Failed {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// ReadyStatus is the HTTP status of the report as a readiness answer: 200 when ready, else 503.
func (r Report) ReadyStatus() int {
	if !r.Ready {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Line is the report in one line: "ok: version 17", or the state and its reasons, "degraded: a: why; b: why".
func (r Report) Line() string {
	if r.Health == OK || len(r.Reasons) == 0 {
		return fmt.Sprintf("%s: version %d", r.Health, r.Version)
	}
	return r.Health.String() + ": " + strings.Join(r.Reasons, "; ")
}

// Parse reads a report (a /healthz or /readyz body) and checks the package's invariants. A body from a daemon
// that predates checks ({"health":"ok","version":V}) is accepted; its readiness is computed.
func Parse(b []byte) (Report, error) {
	var wire struct {
		Health  *State   `json:"health"`
		Ready   *bool    `json:"ready"`
		Reasons []string `json:"reasons"`
		Checks  []Check  `json:"checks"`
		Version uint64   `json:"version"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&wire); err != nil {
		return Report{}, fmt.Errorf("not a health report: %w", err)
	}
	if wire.Health == nil {
		return Report{}, errors.New("not a health report: no \"health\"")
	}
	want := Combine(wire.Version, wire.Checks)
	r := Report{Health: *wire.Health, Ready: want.Ready, Reasons: wire.Reasons, Checks: want.Checks, Version: wire.Version}
	if r.Reasons == nil {
		r.Reasons = []string{}
	}
	if wire.Ready != nil {
		r.Ready = *wire.Ready
	}
	seen := map[string]bool{}
	for _, c := range wire.Checks {
		switch {
		case c.Name == "":
			return r, errors.New("invalid health report: a check without a name")
		case seen[c.Name]:
			return r, fmt.Errorf("invalid health report: check %q appears twice", c.Name)
		case c.State != OK && strings.TrimSpace(c.Reason) == "":
			return r, fmt.Errorf("invalid health report: check %q is %s without a reason", c.Name, c.State)
		}
		seen[c.Name] = true
	}
	switch {
	case len(wire.Checks) > 0 && r.Health != want.Health:
		return r, fmt.Errorf("invalid health report: health %s, but its worst check is %s", r.Health, want.Health)
	case r.Health != OK && len(r.Reasons) == 0:
		return r, fmt.Errorf("invalid health report: %s without a reason", r.Health)
	case r.Ready && r.Health == Failed:
		return r, errors.New("invalid health report: failed but ready")
	}
	return r, nil
}

// Monitor holds the current state of named checks and keeps their Since. It is safe for concurrent use.
type Monitor struct {
	now func() time.Time

	mu     sync.Mutex
	checks map[string]Check
}

// NewMonitor returns a Monitor without checks; now is its clock (nil: time.Now).
func NewMonitor(now func() time.Time) *Monitor {
	if now == nil {
		now = time.Now
	}
	return &Monitor{now: now, checks: map[string]Check{}}
}

// Set records c (its Since is ignored) and returns the check it replaces and whether that check had another state
// (false for a check not seen before). Since is kept when the state is the same, and is now otherwise.
func (m *Monitor) Set(c Check) (prev Check, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, seen := m.checks[c.Name]
	changed = !seen || prev.State != c.State
	c.Since = prev.Since
	if changed {
		c.Since = m.now()
	}
	m.checks[c.Name] = c
	return prev, seen && changed
}

// Get returns the check named name.
func (m *Monitor) Get(name string) (Check, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.checks[name]
	return c, ok
}

// Report combines the checks into a report for the board at version.
func (m *Monitor) Report(version uint64) Report {
	m.mu.Lock()
	checks := make([]Check, 0, len(m.checks))
	for _, c := range m.checks {
		checks = append(checks, c)
	}
	m.mu.Unlock()
	return Combine(version, checks)
}
