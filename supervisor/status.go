package supervisor

import (
	"fmt"
	"maps"
	"time"

	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/wire"
)

// finish ends r with outcome and reason (OK exactly when the outcome is serving or upgraded: wire.ReloadResult).
func finish(r wire.ReloadResult, outcome, reason string) wire.ReloadResult {
	r.Outcome, r.Reason = outcome, reason
	r.OK = outcome == wire.OutcomeServing || outcome == wire.OutcomeUpgraded
	r.FinishedAt = time.Now().UTC()
	r.Duration = r.FinishedAt.Sub(r.StartedAt)
	return r
}

// Status returns the supervisor's state (the control socket's GET /v1/status); safe to call from any goroutine.
func (s *Supervisor) Status() wire.SupervisorStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	v.Generations = append([]wire.GenerationStatus(nil), v.Generations...)
	v.Reloads = maps.Clone(v.Reloads)
	v.Health = s.health.Report(0)
	return v
}

// record keeps r as the last reload's result and returns it.
func (s *Supervisor) record(r wire.ReloadResult) wire.ReloadResult {
	s.mu.Lock()
	s.view.LastReload = &r
	s.view.Reloads[r.Outcome]++
	s.mu.Unlock()
	s.publish()
	return r
}

// publish refreshes the generations and the health in the view from the loop's state.
func (s *Supervisor) publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.Generations = s.view.Generations[:0:0]
	s.view.State, s.view.CrashesInARow = string(s.state), s.crashes
	worker := healthcheck.Check{Name: "worker", Critical: true}
	if g := s.current; g != nil {
		s.view.Generations = append(s.view.Generations, g.status(wire.GenerationServing))
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
	s.view.Generations = append(s.view.Generations, g.status(wire.GenerationStandby))
}

func (g *generation) status(state string) wire.GenerationStatus {
	return wire.GenerationStatus{Generation: g.n, PID: g.proc.Pid(), Build: g.build, State: state, StartedAt: g.started.UTC(), Report: g.report}
}
