package supervisor

import (
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/wire"
)

// State is where the supervisor is in its life. docs/SUPERVISOR.md has the diagram; transitions lists every edge,
// and enter, the one transition function, refuses any other.
type State string

const (
	StateStarting   State = "starting"   // bringing the first generation up, or taking over from the old supervisor
	StateServing    State = "serving"    // a generation serves; the loop waits for a reload, a crash or a stop
	StateReloading  State = "reloading"  // a new generation is brought up beside the serving one, or the old one back
	StateUpgrading  State = "upgrading"  // a new supervisor is brought up (self-upgrade)
	StateRestarting State = "restarting" // no generation serves: waiting out the backoff, then starting one
	StateStopping   State = "stopping"   // the serving generation finishes its requests and exits
	StateStopped    State = "stopped"    // Run has returned
)

// transitions are the edges of the state diagram.
var transitions = map[State][]State{
	StateStarting:   {StateServing, StateRestarting, StateStopped},
	StateServing:    {StateReloading, StateUpgrading, StateRestarting, StateStopping},
	StateReloading:  {StateServing, StateRestarting},
	StateUpgrading:  {StateServing, StateRestarting, StateStopped},
	StateRestarting: {StateServing, StateStopped},
	StateStopping:   {StateStopped},
}

// Transition is one change of state, as Config.OnTransition sees it.
type Transition struct {
	From, To State
	At       time.Time
	// Generation is the serving generation after the change (0: none), Reason why it happened: "first",
	// "reload", "rolled back", "crash", "gave up", "upgraded", "stop", ...
	Generation uint64
	Reason     string
	// RegionVersion is the region version the serving generation reported when it started serving.
	RegionVersion uint64
	// Reload is the outcome of the reload or upgrade that ended with this change, if one did.
	Reload *wire.ReloadResult
}

// enter moves the loop to state to, for reason, and tells Status and Config.OnTransition. It is the only place the
// state changes. An edge that is not in transitions is a bug in the loop: it panics.
func (s *Supervisor) enter(to State, reason string, reload *wire.ReloadResult) {
	from := s.state
	if from != "" && !slices.Contains(transitions[from], to) {
		panic(fmt.Sprintf("supervisor: no transition from %s to %s (%s)", from, to, reason))
	}
	s.state = to
	s.mu.Lock()
	s.stepDeadline = time.Now() // serving and restarting wait for events: they answer Alive at once
	if to != StateServing && to != StateRestarting {
		s.stepDeadline = s.stepDeadline.Add(s.stepBound())
	}
	s.mu.Unlock()
	tr := Transition{From: from, To: to, At: time.Now(), Reason: reason, Reload: reload}
	if s.current != nil {
		tr.Generation, tr.RegionVersion = s.current.n, s.current.regionVersion
	}
	if reload != nil {
		s.record(*reload)
	}
	s.publish()
	if from != to {
		s.log.Info("supervisor state", zap.String("from", string(from)), zap.String("to", string(to)), zap.String("reason", reason), zap.Uint64("generation", tr.Generation))
	}
	if s.cfg.OnTransition != nil {
		s.cfg.OnTransition(tr)
	}
}
