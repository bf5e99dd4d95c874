package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
)

func TestTicks125(t *testing.T) {
	var labels []string
	for _, tk := range (ticks125{}).Ticks(1.3, 60) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "2 5 10 20 50" {
		t.Errorf("labels over [1.3, 60] = %q, want \"2 5 10 20 50\"", got)
	}
	labels = nil
	for _, tk := range (ticks125{}).Ticks(2500, 4500) { // no 1, 2 or 5 inside: every tick labelled
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, " "); got != "3,000 4,000" {
		t.Errorf("labels over [2500, 4500] = %q, want \"3,000 4,000\"", got)
	}
}

func TestFutexQ(t *testing.T) {
	r := &result{waits: []sim.Report{{Samples: []int64{3, 1}}, {Samples: []int64{2}, Missing: 1}}}
	if d, ok := r.futexQ(0.5); !ok || d != 2 {
		t.Errorf("p50 = %v %v, want 2ns", d, ok)
	}
	if _, ok := r.futexQ(1); ok { // the last is the publish never seen
		t.Error("the max is among the unobserved pairs, yet reported")
	}
}

func TestSavePlot(t *testing.T) {
	p := plot.New()
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, ticks125{}
	if err := cdfLine(p, 0, "none", nil, nil); err == nil {
		t.Error("a curve without data drew")
	}
	if err := cdfLine(p, 0, "zero", []time.Duration{0}, []float64{1}); err == nil {
		t.Error("a latency of 0 drew on a log scale")
	}
	if err := cdfLine(p, 0, "the curve", []time.Duration{time.Millisecond, 3 * time.Millisecond}, []float64{0.5, 1}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.svg")
	if err := save(p, 4*vg.Inch, 3*vg.Inch, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "<?xml") || !strings.Contains(string(b), "the curve") {
		t.Errorf("the SVG has no legend entry: %.200s", b)
	}
}
