package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the worker's Prometheus series. Registry exposes them for --metrics.
type metrics struct {
	publishes  *prometheus.CounterVec
	latency    prometheus.Histogram
	held       prometheus.Gauge
	version    prometheus.Gauge
	capacity   prometheus.Gauge
	used       prometheus.Gauge
	lateness   prometheus.Histogram
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
		registered: prometheus.NewRegistry(),
	}
	m.registered.MustRegister(m.publishes, m.latency, m.held, m.version, m.capacity, m.used, m.lateness)
	for _, r := range []string{"ok", "invalid", "full", "error"} {
		m.publishes.WithLabelValues(r)
	}
	return m
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
