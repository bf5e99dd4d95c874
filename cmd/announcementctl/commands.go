package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/announcementd/announcementd/healthcheck"
	"github.com/announcementd/announcementd/wire"
)

// parseTime accepts RFC 3339 ("2026-11-25T10:00:00Z"), "now", and relative forms ("+10m", "+1h30m").
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "+"):
		d, err := time.ParseDuration(s[1:])
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-25T10:00:00Z), now, or +DURATION (+10m)", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-25T10:00:00Z), now, or +DURATION (+10m)", s)
	}
	return t, nil
}

func publish(ctx context.Context, c *call) error {
	fs := c.flags()
	id := fs.Uint64("id", 0, "the announcement's id (required, > 0); an existing one is replaced")
	ttl := fs.Duration("ttl", 0, "how long it lives from when it takes effect (0: it never expires)")
	at := fs.String("at", "", "when it takes effect: RFC 3339, now, or +DURATION (default now)")
	prio := fs.Int("priority", 0, "its priority: larger is more important")
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	args, err := c.parse(fs, 1, "exactly one TEXT argument (quote it)")
	if err != nil {
		return err
	}
	text := args[0]
	if *id == 0 {
		return usageError{"publish: --id must be a positive integer"}
	}
	if !utf8.ValidString(text) { // JSON would quietly replace the bad bytes
		return usageError{"publish: content is not valid UTF-8"}
	}
	if *ttl < 0 {
		return usageError{fmt.Sprintf("publish: --ttl %s is negative", *ttl)}
	}
	if *prio < -1<<31 || *prio > 1<<31-1 {
		return usageError{fmt.Sprintf("publish: --priority %d does not fit in 32 bits", *prio)}
	}
	body := wire.PutRequest{Content: text, Priority: int32(*prio)}
	if *at != "" {
		t, err := parseTime(*at, time.Now())
		if err != nil {
			return usageError{"publish: --at " + err.Error()}
		}
		body.EffectiveAt = &t
	}
	if *ttl > 0 {
		body.TTL = ttl.String()
	}
	cl, err := newClient(c.g)
	if err != nil {
		return err
	}
	out := c.stdout
	var raw json.RawMessage
	if err := cl.do(ctx, "PUT", "/v1/announcements/"+strconv.FormatUint(*id, 10), body, &raw); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if *asJSON {
		_, err := fmt.Fprintf(out, "%s", raw)
		return err
	}
	var res wire.AnnouncementResponse
	if err := json.Unmarshal(raw, &res); err != nil {
		return err
	}
	if res.Announcement.Visible {
		fmt.Fprintf(out, "published %d: version %d\n", *id, res.Version)
	} else {
		fmt.Fprintf(out, "published %d: version %d (scheduled for %s)\n", *id, res.Version, res.Announcement.EffectiveAt.Format(time.RFC3339))
	}
	return nil
}

func deleteCmd(ctx context.Context, c *call) error {
	args, err := c.parse(c.flags(), 1, "one ID")
	if err != nil {
		return err
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 {
		return usageError{fmt.Sprintf("delete: id %q is not a positive integer", args[0])}
	}
	cl, err := newClient(c.g)
	if err != nil {
		return err
	}
	var res wire.DeleteResponse
	if err := cl.do(ctx, "DELETE", "/v1/announcements/"+strconv.FormatUint(id, 10), nil, &res); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	fmt.Fprintf(c.stdout, "deleted %d: version %d\n", id, res.Version)
	return nil
}

func list(ctx context.Context, c *call) error {
	raw, err := getCommand(ctx, c, "/v1/announcements")
	if raw == nil || err != nil {
		return err
	}
	out := c.stdout
	var res wire.ListResponse
	if err := json.Unmarshal(raw, &res); err != nil {
		return err
	}
	fmt.Fprintf(out, "version %d, %d announcements\n", res.Version, len(res.Announcements))
	if len(res.Announcements) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPRIORITY\tVISIBLE\tEFFECTIVE\tEXPIRES\tCONTENT")
	for _, a := range res.Announcements {
		exp := "-"
		if a.ExpiresAt != nil {
			exp = a.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%d\t%v\t%s\t%s\t%q\n", a.ID, a.Priority, a.Visible, a.EffectiveAt.Format(time.RFC3339), exp, a.Content)
	}
	return tw.Flush()
}

// getCommand runs a read-only command: it parses its flags (--json), GETs path and, with --json, prints the
// answer as it came and returns nil; otherwise it returns the answer for the command to print.
func getCommand(ctx context.Context, c *call, path string) (json.RawMessage, error) {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return nil, err
	}
	cl, err := newClient(c.g)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := cl.do(ctx, "GET", path, nil, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", c.cmd.name, err)
	}
	if *asJSON {
		_, err := fmt.Fprintf(c.stdout, "%s", raw)
		return nil, err
	}
	return raw, nil
}

// healthExit carries health's exit code: 0 ok, 1 degraded, 2 failed or unreachable (healthcheck.State.ExitCode).
type healthExit struct {
	code int
	line string
}

func (h healthExit) Error() string { return h.line }

// health asks the daemon for a fresh check (/healthz?check=1) and prints the report in one line. A failed daemon
// answers 503 with its report; anything that is not a report is a failure too. Through the runtime dir (not
// --addr) it is the service's health: the worker's checks and the supervisor's own ("supervisor.worker",
// "supervisor.reload": a reload that failed or was rolled back leaves the service degraded).
func health(ctx context.Context, c *call) error {
	if _, err := c.parse(c.flags(), 0, ""); err != nil {
		return err
	}
	failed := healthcheck.Failed.ExitCode()
	cl, err := newClient(c.g)
	if err != nil {
		return healthExit{failed, "failed: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	status, body, err := cl.send(ctx, "GET", "/healthz?check=1", nil)
	if err != nil {
		return healthExit{failed, "failed: " + err.Error()}
	}
	r, err := healthcheck.Parse(body)
	if err != nil {
		var e wire.Error
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return healthExit{failed, fmt.Sprintf("failed: %d %s", status, e.Message)}
		}
		return healthExit{failed, fmt.Sprintf("failed: GET /healthz answered %d: %v", status, err)}
	}
	if c.g.addr == "" {
		r = withSupervisor(ctx, c.g, r)
	}
	if r.Health == healthcheck.OK {
		fmt.Fprintln(c.stdout, r.Line())
		return nil
	}
	return healthExit{r.Health.ExitCode(), r.Line()}
}

// withSupervisor adds the supervisor's own checks (control socket, /v1/status) to the worker's report r, named
// "supervisor.NAME". A supervisor that does not answer while its worker does is a degraded service: nothing could
// reload or restart it. No control socket at all (a worker served without a supervisor) adds nothing.
func withSupervisor(ctx context.Context, g globals, r healthcheck.Report) healthcheck.Report {
	var sup wire.SupervisorStatus
	checks := slices.Clone(r.Checks)
	err := newControlClient(g).do(ctx, "GET", "/v1/status", nil, &sup)
	switch {
	case errors.Is(err, syscall.ENOENT): // no control socket at all: a worker served alone (tests), nothing to ask
	case err != nil:
		checks = append(checks, healthcheck.Check{Name: "supervisor", State: healthcheck.Degraded,
			Reason: "the control socket does not answer: " + err.Error()})
	default:
		for _, ch := range sup.Health.Checks {
			ch.Name = "supervisor." + ch.Name
			checks = append(checks, ch)
		}
	}
	return healthcheck.Combine(r.Version, checks)
}
