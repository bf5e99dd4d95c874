package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus series. Registry exposes them for --metrics. The counters (publishes,
// repairs, faults recovered, mlock failures) are the service's totals, read from the worker's counters at each
// scrape (counters.go); the histograms and gauges are this generation's.
type metrics struct {
	latency  prometheus.Histogram
	held     prometheus.Gauge
	version  prometheus.Gauge
	capacity prometheus.Gauge
	used     prometheus.Gauge
	lateness prometheus.Histogram

	// The region guard (health.go); health_state and heartbeat_age are read at each scrape (observeHealth).
	resident prometheus.Gauge
	locked   prometheus.Gauge

	registered *prometheus.Registry
}

func newMetrics(c *counters) *metrics {
	m := &metrics{
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
		locked:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "announcementd_region_locked", Help: "1 when the region is locked in memory (mlock)."}),
		registered: prometheus.NewRegistry(),
	}
	m.registered.MustRegister(m.latency, m.held, m.version, m.capacity, m.used, m.lateness, m.resident, m.locked,
		newCounterCollector(c))
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

// observePublish records an Apply's latency; its result is counted in the worker's counters.
func (m *metrics) observePublish(d time.Duration, err error) {
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
