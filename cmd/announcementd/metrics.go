package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/announcementd/announcementd/internal/buildinfo"
	"github.com/announcementd/announcementd/wire"
)

// The service has one /metrics, served by the worker that serves (the metrics listener is handed from generation to
// generation like the API's). The supervisor's series are there too: supervisorCollector asks the supervisor's
// control socket for its status at each scrape, and a process collector reads the supervisor's /proc (it is the
// worker's parent). So an operator scrapes one address for both processes.

// serviceCollectors are the collectors every worker registers besides its own series: the Go runtime's and both
// processes' (process_* for the worker, announcementd_supervisor_process_* for the supervisor), the build, and the
// supervisor's status.
func serviceCollectors(runtimeDir string) []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{
			Namespace: "announcementd_supervisor",
			PidFn:     func() (int, error) { return os.Getppid(), nil },
		}),
		newSupervisorCollector(runtimeDir + "/control.sock"),
	}
}

// supervisorCollector exposes the supervisor's status as metrics.
type supervisorCollector struct {
	client                                                  *http.Client
	up, reloads, restarts, streak, generation, health, info *prometheus.Desc
}

// outcomeLabel is a reload outcome as a label value (no spaces).
func outcomeLabel(outcome string) string { return strings.ReplaceAll(outcome, " ", "_") }

func newSupervisorCollector(socket string) *supervisorCollector {
	return &supervisorCollector{
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			},
		}},
		up: prometheus.NewDesc("announcementd_supervisor_up",
			"1 when the supervisor answered on its control socket at this scrape; its other series are absent otherwise.", nil, nil),
		reloads: prometheus.NewDesc("announcementd_supervisor_reloads_total",
			"Reloads and self-upgrades the supervisor ran since it started, by outcome (serving, upgraded, rolled_back, failed).",
			[]string{"outcome"}, nil),
		restarts: prometheus.NewDesc("announcementd_supervisor_worker_restarts_total",
			"Workers the supervisor restarted after a crash since it started.", nil, nil),
		streak: prometheus.NewDesc("announcementd_supervisor_crash_streak",
			"Crashes in a row (--restart-limit bounds it; a reload that reaches serving starts it again).", nil, nil),
		generation: prometheus.NewDesc("announcementd_supervisor_generation",
			"The worker generation that serves; 0 while none does.", nil, nil),
		health: prometheus.NewDesc("announcementd_supervisor_health_state",
			"The supervisor's own health: 0 ok, 1 degraded (the last reload failed), 2 failed (no worker serves).", nil, nil),
		info: prometheus.NewDesc("announcementd_build_info",
			"The build of each process of the service: 1, labelled with its role and build.", []string{"role", "build"}, nil),
	}
}

func (c *supervisorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.reloads, c.restarts, c.streak, c.generation, c.health, c.info} {
		ch <- d
	}
}

func (c *supervisorCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, "worker", buildinfo.Read().String())
	st, err := c.status()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, "supervisor", st.Build)
	for _, o := range []string{wire.OutcomeServing, wire.OutcomeUpgraded, wire.OutcomeRolledBack, wire.OutcomeFailed} {
		ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(st.Reloads[o]), outcomeLabel(o))
	}
	ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts))
	ch <- prometheus.MustNewConstMetric(c.streak, prometheus.GaugeValue, float64(st.CrashesInARow))
	var gen uint64
	for _, g := range st.Generations {
		if g.State == wire.GenerationServing {
			gen = g.Generation
		}
	}
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(gen))
	ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, float64(st.Health.Health))
}

func (c *supervisorCollector) status() (wire.SupervisorStatus, error) {
	var st wire.SupervisorStatus
	resp, err := c.client.Get("http://supervisor/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
