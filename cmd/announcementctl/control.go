package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/announcementd/announcementd/wire"
)

// status merges the worker's status (the API) with the supervisor's (the control socket): the "supervisor" object
// is the supervisor's own when the control socket answers, and health and health_reasons are then the service's
// (the supervisor's reasons prefixed "supervisor.").
func status(ctx context.Context, c *call) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print the status as JSON: the worker's, with the supervisor's own as \"supervisor\"")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return err
	}
	g, out := c.g, c.stdout
	cl, err := newClient(g)
	if err != nil {
		return err
	}
	var st wire.ServiceStatus
	if err := cl.do(ctx, "GET", "/v1/status", nil, &st.WorkerStatus); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if g.addr == "" {
		var sup wire.SupervisorStatus
		if err := newControlClient(g).do(ctx, "GET", "/v1/status", nil, &sup); err == nil {
			st.Supervisor = &sup
			// health is the service's: the worker's and the supervisor's own (a failed reload degrades it).
			st.Health = max(st.Health, sup.Health.Health)
			for _, r := range sup.Health.Reasons {
				st.HealthReasons = append(st.HealthReasons, "supervisor."+r)
			}
		}
	}
	if *asJSON {
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	sup := st.Supervisor
	if sup == nil { // the worker's view of it
		sup = &wire.SupervisorStatus{PID: st.WorkerStatus.Supervisor.PID, Build: st.WorkerStatus.Supervisor.Build}
	}
	health := st.Health.String()
	if len(st.HealthReasons) > 0 {
		health += " (" + strings.Join(st.HealthReasons, "; ") + ")"
	}
	fmt.Fprintf(out, "health:        %s\nregion:        %s, version %d, %d of %d announcements\nworker:        pid %d, generation %d, started %s, build %s\nsupervisor:    pid %d, build %s\n",
		health, st.Region.Path, st.Region.Version, st.Announcements, st.Region.Capacity,
		st.Worker.PID, st.Worker.Generation, st.Worker.StartedAt.Format(time.RFC3339), st.Worker.Build,
		sup.PID, sup.Build)
	if sup.Restarts > 0 {
		fmt.Fprintf(out, "restarts:      %d\n", sup.Restarts)
	}
	if r := sup.LastReload; r != nil {
		fmt.Fprintf(out, "last reload:   %s\n", describe(r))
	}
	return nil
}

// describe is a reload's outcome in one line.
func describe(r *wire.ReloadResult) string {
	line := fmt.Sprintf("%s, generation %d → %d, %s", r.Outcome, r.From, r.To, r.Duration.Round(time.Millisecond))
	if r.Reason != "" {
		line += ": " + r.Reason
	}
	return line
}

// reload asks the supervisor for a new generation. With --wait it returns the real outcome: nil only when the new
// generation serves. A reload that upgrades the supervisor itself is followed to the new supervisor.
func reload(ctx context.Context, c *call) error {
	fs := c.flags()
	wait := fs.Bool("wait", false, "wait for the outcome; exit non-zero unless the new generation serves")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --wait, give up after this long")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return err
	}
	g, out := c.g, c.stdout
	if g.addr != "" {
		return usageError{"reload goes through the local control socket (--runtime-dir), not --addr"}
	}
	cc := newControlClient(g)
	if !*wait {
		if err := cc.do(ctx, "POST", "/v1/reload", nil, nil); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		fmt.Fprintln(out, "reload requested")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var before wire.SupervisorStatus
	if err := cc.do(ctx, "GET", "/v1/status", nil, &before); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var r wire.ReloadResult
	if err := cc.do(ctx, "POST", "/v1/reload?wait=1", nil, &r); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if r.Outcome == wire.OutcomeUpgraded {
		fmt.Fprintf(out, "supervisor upgraded (pid %d handed over); waiting for generation %d\n", before.PID, r.To)
		return followUpgrade(ctx, cc, before.PID, r.To, out)
	}
	if !r.OK {
		return fmt.Errorf("reload failed: %s", describe(&r))
	}
	fmt.Fprintf(out, "reloaded: %s\n", describe(&r))
	return nil
}

// followUpgrade waits until the supervisor that replaced oldPID serves generation gen or says it failed.
func followUpgrade(ctx context.Context, c *client, oldPID int, gen uint64, out io.Writer) error {
	for {
		var s wire.SupervisorStatus
		err := c.do(ctx, "GET", "/v1/status", nil, &s)
		if err == nil && s.PID != oldPID {
			if r := s.LastReload; r != nil && r.Kind == wire.KindUpgrade && r.To >= gen {
				if !r.OK {
					return fmt.Errorf("reload failed: the new supervisor (pid %d): %s", s.PID, describe(r))
				}
				fmt.Fprintf(out, "reloaded: supervisor pid %d (%s), %s\n", s.PID, s.Build, describe(r))
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
