package wire

import (
	"encoding/json"
	"time"

	"github.com/announcementd/announcementd/healthcheck"
)

// The health report, the body of /healthz and /readyz (and of a supervisor's "health"), is healthcheck.Report:
// its one definition, with the rules that make it (healthcheck.Combine) and read it (healthcheck.Parse).

// WorkerStatus answers GET /v1/status on the API: the serving worker's state.
type WorkerStatus struct {
	// Supervisor is the supervisor as the worker knows it; announcementctl status puts the supervisor's own
	// status here instead (ServiceStatus).
	Supervisor SupervisorBrief `json:"supervisor"`
	Worker     WorkerInfo      `json:"worker"`
	Region     RegionInfo      `json:"region"`
	// Announcements is how many the worker holds: visible and scheduled alike.
	Announcements int `json:"announcements"`
	// Health is the state's name (as in the health report); HealthReasons and Checks say why.
	Health        healthcheck.State   `json:"health"`
	HealthReasons []string            `json:"health_reasons"` // never null
	Checks        []healthcheck.Check `json:"checks"`         // never null
	Guard         GuardStatus         `json:"guard"`
	// CountersSaved: the store holds every count this status and /metrics show (the service's totals), so a
	// kill -9 now would lose none. Normally true within milliseconds of a count.
	CountersSaved bool `json:"counters_saved"`
}

// SupervisorBrief is the worker's view of its supervisor.
type SupervisorBrief struct {
	PID   int    `json:"pid"`
	Build string `json:"build"`
}

// WorkerInfo is the serving worker process.
type WorkerInfo struct {
	PID        int       `json:"pid"`
	Generation uint64    `json:"generation"`
	Build      string    `json:"build"`
	StartedAt  time.Time `json:"started_at"`
}

// RegionInfo is the board the worker writes.
type RegionInfo struct {
	Path     string `json:"path"`
	Version  uint64 `json:"version"`
	Capacity int    `json:"capacity"` // announcements it holds at most
	Size     uint64 `json:"size"`     // bytes
}

// GuardStatus is the region guard's part of the worker's status (docs/HEALTH.md). Repairs and FaultsRecovered are
// the service's totals, across worker generations, restarts and upgrades; ThisGeneration counts the same since
// this worker started (WorkerInfo.StartedAt).
type GuardStatus struct {
	Locked bool `json:"locked"`
	// LockError says why the region is not locked in memory; absent while it is, or when locking was not asked.
	LockError       string            `json:"lock_error,omitempty"`
	Pages           int               `json:"pages"`
	ResidentPages   int               `json:"resident_pages"`
	Repairs         map[string]uint64 `json:"repairs"` // by kind: residency, fault, size, replaced, overwritten
	FaultsRecovered uint64            `json:"faults_recovered"`
	ThisGeneration  GuardCounts       `json:"this_generation"`
}

// GuardCounts are the guard's counts over some period.
type GuardCounts struct {
	Repairs         map[string]uint64 `json:"repairs"`
	FaultsRecovered uint64            `json:"faults_recovered"`
}

// SupervisorStatus answers GET /v1/status on the control socket: the supervisor's state.
type SupervisorStatus struct {
	PID       int       `json:"pid"`
	Build     string    `json:"build"`
	Binary    string    `json:"binary"`
	StartedAt time.Time `json:"started_at"`
	// State is where the supervisor is in its life (docs/SUPERVISOR.md, "States"): starting, serving,
	// reloading, upgrading, restarting, stopping or stopped.
	State string `json:"state"`
	// Generations are the live workers: the serving one first, then one in standby during a reload.
	Generations []GenerationStatus `json:"generations"`
	Restarts    int                `json:"restarts"` // workers restarted after a crash, since this supervisor started
	// Reloads counts the reloads and self-upgrades this supervisor ran, by outcome (serving, upgraded, rolled back,
	// failed); an outcome that never happened is absent.
	Reloads map[string]uint64 `json:"reloads"`
	// CrashesInARow is the current crash streak, which --restart-limit bounds: crashes of serving workers and failed
	// restarts since the last reload that reached serving (or since a generation served 30 s).
	CrashesInARow int           `json:"crashes_in_a_row"`
	LastReload    *ReloadResult `json:"last_reload,omitempty"`
	// Health is the supervisor's own: "worker" fails while no generation serves, "reload" is degraded while the
	// last reload's failure stands.
	Health healthcheck.Report `json:"health"`
}

// The states of a live generation (GenerationStatus.State).
const (
	GenerationServing = "serving"
	GenerationStandby = "standby"
)

// GenerationStatus describes one live worker.
type GenerationStatus struct {
	Generation uint64    `json:"generation"`
	PID        int       `json:"pid"`
	Build      string    `json:"build"`
	State      string    `json:"state"` // GenerationServing or GenerationStandby
	StartedAt  time.Time `json:"started_at"`
	// Report is what the worker said when it started serving (its health then), passed through as the handoff
	// protocol carries it: any JSON value (docs/HANDOFF.md, Ready). Absent in standby.
	Report json.RawMessage `json:"report,omitempty"`
}

// The kinds of a reload (ReloadResult.Kind).
const (
	KindReload  = "reload"  // a new worker generation from the binary on disk
	KindUpgrade = "upgrade" // a new supervisor too: the binary on disk differs from the running supervisor's
)

// The outcomes of a reload (ReloadResult.Outcome).
const (
	OutcomeServing    = "serving"     // the new generation serves
	OutcomeRolledBack = "rolled back" // the new generation failed after it started; the old one serves again
	OutcomeFailed     = "failed"      // the new generation never started; the old one kept serving (or is restarting)
	OutcomeUpgraded   = "upgraded"    // a new supervisor took over; its first generation starts once this one exits
)

// ReloadResult is how a reload ended: the answer to POST /v1/reload?wait=1 on the control socket, and a
// supervisor's last_reload. OK is true exactly when Outcome is OutcomeServing or OutcomeUpgraded.
type ReloadResult struct {
	Kind       string        `json:"kind"` // KindReload or KindUpgrade
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

// ServiceStatus is what `announcementctl status --json` prints: the worker's status, with the supervisor's own
// status (from the control socket) as its "supervisor" object when there is one. Without it (the control socket
// is local only: not over --addr), the "supervisor" object is the worker's SupervisorBrief; read back, that fills
// PID and Build of Supervisor.
type ServiceStatus struct {
	WorkerStatus
	Supervisor *SupervisorStatus `json:"supervisor"`
}

// MarshalJSON writes the worker's status with Supervisor as its "supervisor" object, or as it is when Supervisor
// is nil.
func (s ServiceStatus) MarshalJSON() ([]byte, error) {
	if s.Supervisor == nil {
		return json.Marshal(s.WorkerStatus)
	}
	type plain ServiceStatus // without this method; its "supervisor" hides the worker's
	return json.Marshal(plain(s))
}
