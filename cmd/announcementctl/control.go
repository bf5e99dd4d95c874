package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// supervisorStatus is the part of the supervisor's status (GET /v1/status on the control socket) the CLI reads.
type supervisorStatus struct {
	PID         int    `json:"pid"`
	Build       string `json:"build"`
	Generations []struct {
		Generation uint64    `json:"generation"`
		PID        int       `json:"pid"`
		Build      string    `json:"build"`
		State      string    `json:"state"`
		StartedAt  time.Time `json:"started_at"`
	} `json:"generations"`
	Restarts   int           `json:"restarts"`
	LastReload *reloadResult `json:"last_reload"`
}

// reloadResult is the answer to POST /v1/reload?wait=1.
type reloadResult struct {
	Kind     string        `json:"kind"`
	OK       bool          `json:"ok"`
	Outcome  string        `json:"outcome"`
	Reason   string        `json:"reason"`
	From     uint64        `json:"from_generation"`
	To       uint64        `json:"to_generation"`
	Duration time.Duration `json:"duration_ns"`
}

// status merges the worker's status (the API) with the supervisor's (the control socket): the "supervisor" object
// is the supervisor's own when the control socket answers.
func status(ctx context.Context, g globals, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var merged map[string]json.RawMessage
	if err := c.do(ctx, "GET", "/v1/status", nil, &merged); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var sup json.RawMessage
	if g.addr == "" {
		if err := newControlClient(g).do(ctx, "GET", "/v1/status", nil, &sup); err == nil {
			merged["supervisor"] = sup
		}
	}
	if *asJSON {
		b, err := json.MarshalIndent(merged, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	var s struct {
		Supervisor supervisorStatus `json:"supervisor"`
		Worker     struct {
			PID        int       `json:"pid"`
			Generation uint64    `json:"generation"`
			Build      string    `json:"build"`
			StartedAt  time.Time `json:"started_at"`
		} `json:"worker"`
		Region struct {
			Path     string `json:"path"`
			Version  uint64 `json:"version"`
			Capacity int    `json:"capacity"`
		} `json:"region"`
		Announcements int      `json:"announcements"`
		Health        string   `json:"health"`
		HealthReasons []string `json:"health_reasons"`
	}
	b, _ := json.Marshal(merged)
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if len(s.HealthReasons) > 0 {
		s.Health += " (" + strings.Join(s.HealthReasons, "; ") + ")"
	}
	fmt.Fprintf(out, "health:        %s\nregion:        %s, version %d, %d of %d announcements\nworker:        pid %d, generation %d, started %s, build %s\nsupervisor:    pid %d, build %s\n",
		s.Health, s.Region.Path, s.Region.Version, s.Announcements, s.Region.Capacity,
		s.Worker.PID, s.Worker.Generation, s.Worker.StartedAt.Format(time.RFC3339), s.Worker.Build,
		s.Supervisor.PID, s.Supervisor.Build)
	if s.Supervisor.Restarts > 0 {
		fmt.Fprintf(out, "restarts:      %d\n", s.Supervisor.Restarts)
	}
	if r := s.Supervisor.LastReload; r != nil {
		fmt.Fprintf(out, "last reload:   %s\n", r.describe())
	}
	return nil
}

func (r *reloadResult) describe() string {
	line := fmt.Sprintf("%s, generation %d → %d, %s", r.Outcome, r.From, r.To, r.Duration.Round(time.Millisecond))
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	return line
}

// reload asks the supervisor for a new generation. With --wait it returns the real outcome: nil only when the new
// generation serves. A reload that upgrades the supervisor itself is followed to the new supervisor.
func reload(ctx context.Context, g globals, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	wait := fs.Bool("wait", false, "wait for the outcome; exit non-zero unless the new generation serves")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --wait, give up after this long")
	if err := parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	if g.addr != "" {
		return usageError{"reload goes through the local control socket (--runtime-dir), not --addr"}
	}
	c := newControlClient(g)
	if !*wait {
		if err := c.do(ctx, "POST", "/v1/reload", nil, nil); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		fmt.Fprintln(out, "reload requested")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var before supervisorStatus
	if err := c.do(ctx, "GET", "/v1/status", nil, &before); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var r reloadResult
	if err := c.do(ctx, "POST", "/v1/reload?wait=1", nil, &r); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if r.Outcome == "upgraded" {
		fmt.Fprintf(out, "supervisor upgraded (pid %d handed over); waiting for generation %d\n", before.PID, r.To)
		return followUpgrade(ctx, c, before.PID, r.To, out)
	}
	if !r.OK {
		return fmt.Errorf("reload failed: %s", r.describe())
	}
	fmt.Fprintf(out, "reloaded: %s\n", r.describe())
	return nil
}

// followUpgrade waits until the supervisor that replaced oldPID serves generation gen or says it failed.
func followUpgrade(ctx context.Context, c *client, oldPID int, gen uint64, out io.Writer) error {
	for {
		var s supervisorStatus
		err := c.do(ctx, "GET", "/v1/status", nil, &s)
		if err == nil && s.PID != oldPID {
			if r := s.LastReload; r != nil && r.Kind == "upgrade" && r.To >= gen {
				if !r.OK {
					return fmt.Errorf("reload failed: the new supervisor (pid %d): %s", s.PID, r.describe())
				}
				fmt.Fprintf(out, "reloaded: supervisor pid %d (%s), %s\n", s.PID, s.Build, r.describe())
				return nil
			}
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fmt.Errorf("reload: no outcome from the new supervisor: %w", ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
