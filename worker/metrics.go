package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus series. Registry exposes them for --metrics.
type metrics struct {
	publishes *prometheus.CounterVec
	latency   prometheus.Histogram
	held      prometheus.Gauge
	version   prometheus.Gauge
	capacity  prometheus.Gauge
	used      prometheus.Gauge
	lateness  prometheus.Histogram

	// The region guard (health.go); health_state and heartbeat_age are read at each scrape (observeHealth).
	resident        prometheus.Gauge
	locked          prometheus.Gauge
	mlockFailures   prometheus.Counter
	repairs         *prometheus.CounterVec
	faultsRecovered prometheus.Counter

	registered *prometheus.Registry
}

func newMetrics() *metrics {
	m := &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "announcementd_publishes_total", Help: "Changes requested through the API, by result (ok, invalid, full, error).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "announcementd_publish_duration_seconds", Help: "From a change's arrival to it being durable and on the board.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		held:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "announcementd_announcements", Help: "Announcements held, visible or scheduled."}),
		version:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "announcementd_region_version", Help: "The board's published version."}),
		capacity: prometheus.NewGauge(prometheus.GaugeOpts{Name: "announcementd_region_capacity", Help: "Announcements the board can show."}),
		used: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "announcementd_region_capacity_used_ratio", Help: "Announcements held / board capacity.",
		}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "announcementd_schedule_lateness_seconds", Help: "How long after its due time a scheduled change reached the board.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18),
		}),
		resident: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "announcementd_region_resident_ratio", Help: "Pages of the region in memory / its pages, at the last check (mincore).",
		}),
		locked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "announcementd_region_locked", Help: "1 when the region is locked in memory (mlock)."}),
		mlockFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "announcementd_mlock_failures_total", Help: "Attempts to lock the region in memory that failed (at map time, then at most one per 10 s while it does not hold).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "announcementd_region_repairs_total", Help: "Problems of the region found and repaired, by kind (residency, fault, size, replaced, overwritten).",
		}, []string{"kind"}),
		faultsRecovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "announcementd_region_faults_recovered_total", Help: "Faults (SIGBUS) on the region's mapping the writer caught, repaired and republished after.",
		}),
		registered: prometheus.NewRegistry(),
	}
	m.registered.MustRegister(m.publishes, m.latency, m.held, m.version, m.capacity, m.used, m.lateness,
		m.resident, m.locked, m.mlockFailures, m.repairs, m.faultsRecovered)
	for _, r := range []string{"ok", "invalid", "full", "error"} {
		m.publishes.WithLabelValues(r)
	}
	for _, k := range repairKinds {
		m.repairs.WithLabelValues(k)
	}
	return m
}

// observeHealth registers the series read from the worker at each scrape.
func (m *metrics) observeHealth(w *Worker) {
	m.registered.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "announcementd_health_state", Help: "Health: 0 ok, 1 degraded, 2 failed (docs/HEALTH.md).",
		}, func() float64 { return float64(w.Health(false).Health) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "announcementd_heartbeat_age_seconds", Help: "Age of the heartbeat readers see in the region (refreshed every second).",
		}, func() float64 {
			age, err := w.cfg.Board.HeartbeatAge()
			if err != nil {
				return -1
			}
			return age.Seconds()
		}))
}

func (m *metrics) observePublish(d time.Duration, err error) {
	m.publishes.WithLabelValues(resultOf(err)).Inc()
	if err == nil {
		m.latency.Observe(d.Seconds())
	}
}

func (m *metrics) observeBoard(version uint64, held, capacity int) {
	m.version.Set(float64(version))
	m.held.Set(float64(held))
	m.capacity.Set(float64(capacity))
	m.used.Set(float64(held) / float64(capacity))
}

// Registry holds the worker's metrics (with the Go and process collectors) for a /metrics handler.
func (w *Worker) Registry() *prometheus.Registry { return w.metrics.registered }
