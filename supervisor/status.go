package supervisor

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/announcementd/announcementd/healthcheck"
)

// Status is the supervisor's part of `announcementctl status`.
type Status struct {
	PID       int       `json:"pid"`
	Build     string    `json:"build"`
	Binary    string    `json:"binary"`
	StartedAt time.Time `json:"started_at"`
	// State is where the supervisor is in its life (state.go): starting, serving, reloading, ...
	State State `json:"state"`
	// Generations are the live workers: the serving one first, then one in standby during a reload.
	Generations []GenerationStatus `json:"generations"`
	Restarts    int                `json:"restarts"` // workers restarted after a crash, since this supervisor started
	// CrashesInARow is the current crash streak, which RestartLimit bounds: crashes of serving workers and failed
	// restarts since the last reload that reached serving (or since a generation served 30 s).
	CrashesInARow int           `json:"crashes_in_a_row"`
	LastReload    *ReloadResult `json:"last_reload,omitempty"`
	// Health is the supervisor's own (healthcheck): "worker" fails while no generation serves, "reload" is
	// degraded while the last reload's failure stands.
	Health healthcheck.Report `json:"health"`
}

// GenerationStatus describes one live worker.
type GenerationStatus struct {
	Generation uint64    `json:"generation"`
	PID        int       `json:"pid"`
	Build      string    `json:"build"`
	State      string    `json:"state"` // "serving" or "standby"
	StartedAt  time.Time `json:"started_at"`
	// Report is what the worker said when it started serving (its health then); absent in standby.
	Report json.RawMessage `json:"report,omitempty"`
}

// Outcomes of a reload.
const (
	OutcomeServing    = "serving"     // the new generation serves
	OutcomeRolledBack = "rolled back" // the new generation failed after it started; the old one serves again
	OutcomeFailed     = "failed"      // the new generation never started; the old one kept serving (or is restarting)
	OutcomeUpgraded   = "upgraded"    // a new supervisor took over; its first generation starts once this one exits
)

// ReloadResult is how a reload ended.
type ReloadResult struct {
	Kind       string        `json:"kind"` // "reload" or "upgrade"
	OK         bool          `json:"ok"`
	Outcome    string        `json:"outcome"`
	Reason     string        `json:"reason,omitempty"` // why it failed
	From       uint64        `json:"from_generation"`
	To         uint64        `json:"to_generation"`
	Build      string        `json:"build,omitempty"` // the new generation's
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Duration   time.Duration `json:"duration_ns"`
}

func (r ReloadResult) finish(outcome, reason string) ReloadResult {
	r.Outcome, r.Reason = outcome, reason
	r.OK = outcome == OutcomeServing || outcome == OutcomeUpgraded
	r.FinishedAt = time.Now().UTC()
	r.Duration = r.FinishedAt.Sub(r.StartedAt)
	return r
}

// Status returns the supervisor's state; safe to call from any goroutine.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	v.Generations = append([]GenerationStatus(nil), v.Generations...)
	v.Health = s.health.Report(0)
	return v
}

// record keeps r as the last reload's result and returns it.
func (s *Supervisor) record(r ReloadResult) ReloadResult {
	s.mu.Lock()
	s.view.LastReload = &r
	s.mu.Unlock()
	s.publish()
	return r
}

// publish refreshes the generations and the health in the view from the loop's state.
func (s *Supervisor) publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.Generations = s.view.Generations[:0:0]
	s.view.State, s.view.CrashesInARow = s.state, s.crashes
	worker := healthcheck.Check{Name: "worker", Critical: true}
	if g := s.current; g != nil {
		s.view.Generations = append(s.view.Generations, g.status("serving"))
	} else {
		worker.State, worker.Reason = healthcheck.Failed, "no worker serves yet"
		if s.crashes > 0 {
			worker.Reason = fmt.Sprintf("no worker serves: restarting after %d crashes in a row", s.crashes)
		}
	}
	s.health.Set(worker)
	reload := healthcheck.Check{Name: "reload"}
	if r := s.view.LastReload; r != nil && !r.OK {
		reload.State, reload.Reason = healthcheck.Degraded, fmt.Sprintf("the last reload %s: %s", r.Outcome, r.Reason)
	}
	s.health.Set(reload)
}

// publishCandidate adds a generation in standby to the view.
func (s *Supervisor) publishCandidate(g *generation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.Generations = append(s.view.Generations, g.status("standby"))
}

func (g *generation) status(state string) GenerationStatus {
	return GenerationStatus{Generation: g.n, PID: g.proc.Pid(), Build: g.build, State: state, StartedAt: g.started.UTC(), Report: g.report}
}
