package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The plots, drawn from this run's data beside the raw file (-raw) with gonum.org/v1/plot: pure Go (no cgo, no
// external tool), maintained in the gonum project, and its SVG backend writes plain text files that diff and that
// GitHub renders. A plot without the data of each of its curves is an error, never an empty picture.
const (
	latencyPlot = "scale-latency.svg"
	cpuPlot     = "scale-cpu.svg"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
}

// plotWorkload is the workload the plots show: the first searched one (HTTP was measured there), else the first.
func (rep *report) plotWorkload() (workload, bool) {
	if len(rep.http) > 0 {
		return rep.http[0].w, true
	}
	if ws := rep.workloads(); len(ws) > 0 {
		return ws[0], true
	}
	return workload{}, false
}

// plotLink is the path of a plot as the markdown file links it.
func plotLink(name string) string {
	return benchfmt.Rel(*mdPath, filepath.Join(filepath.Dir(*rawPath), name))
}

// plotsMarkdown links the plots (drawn only with -raw).
func (rep *report) plotsMarkdown(b *strings.Builder) {
	w, ok := rep.plotWorkload()
	if *rawPath == "" || !ok {
		return
	}
	fmt.Fprintf(b, "\n### Plots\n\n")
	fmt.Fprintf(b, "Drawn by this command from this run's data (gonum.org/v1/plot), at %v.\n\n", w)
	fmt.Fprintf(b, "Publish → observe latency, the distribution over every (client, publish) pair: the futex waiters, the "+
		"board's %s pollers (shared and own copies), and the HTTP pollers at their most within the target. The "+
		"pollers' latencies are counted in %v bins (each curve steps at a bin's upper edge), the waiters' exactly.\n\n", dur(*interval), sim.Bin)
	fmt.Fprintf(b, "![publish → observe latency, CDF](%s)\n\n", plotLink(latencyPlot))
	fmt.Fprintf(b, "Clients against CPU: the server's (the daemon's, the HTTP server's) and the run's whole CPU, server and "+
		"clients (the readers' getrusage; they share the machine, and the host's busy cores would count other work too), "+
		"for every trial of the searches and the full-count runs, on log scales; trials past the target are included "+
		"(the tables say which met it).\n\n")
	fmt.Fprintf(b, "![clients against CPU, board vs HTTP](%s)\n", plotLink(cpuPlot))
}

// drawPlots draws both plots beside the raw file.
func (rep *report) drawPlots() error {
	dir := filepath.Dir(*rawPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w, ok := rep.plotWorkload()
	if !ok {
		return errors.New("plots: no workload measured")
	}
	if err := rep.latencyPlot(w, filepath.Join(dir, latencyPlot)); err != nil {
		return fmt.Errorf("plot %s: %w", latencyPlot, err)
	}
	if err := rep.cpuPlot(w, filepath.Join(dir, cpuPlot)); err != nil {
		return fmt.Errorf("plot %s: %w", cpuPlot, err)
	}
	return nil
}

// save writes p as SVG with its legend below the plot area (inside, it would hide curves).
func save(p *plot.Plot, w, h vg.Length, path string) (err error) {
	c := vgsvg.New(w, h)
	dc := draw.New(c)
	leg := p.Legend
	p.Legend = plot.NewLegend()
	pad := vg.Points(6)
	leg.Padding = vg.Points(3)
	r := leg.Rectangle(dc)
	lh := r.Max.Y - r.Min.Y + 2*pad
	if lh > h/2 {
		return fmt.Errorf("the legend (%v high) would take more than half the picture", lh)
	}
	p.Draw(draw.Crop(dc, 0, 0, lh, 0))
	leg.Top, leg.Left, leg.Padding = true, true, vg.Points(3)
	leg.Draw(draw.Crop(dc, 4*pad, 0, pad, -(h - lh + pad)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = c.WriteTo(f)
	return err
}

// cdfLine is a step line through the points of a CDF (x in ms).
func cdfLine(p *plot.Plot, i int, name string, at []time.Duration, frac []float64) error {
	if len(at) == 0 {
		return fmt.Errorf("%s: no data", name)
	}
	pts := make(plotter.XYs, 0, len(at)+1)
	pts = append(pts, plotter.XY{X: max(at[0].Seconds()*1e3, 1e-3), Y: 0})
	for k := range at {
		if at[k] <= 0 {
			return fmt.Errorf("%s: a latency of %v cannot be drawn on a log scale", name, at[k])
		}
		pts = append(pts, plotter.XY{X: at[k].Seconds() * 1e3, Y: frac[k]})
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	l.StepStyle = plotter.PreStep
	l.Color = palette[i%len(palette)]
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func (rep *report) latencyPlot(w workload, path string) error {
	sh, own := rep.find(w, "shared"), rep.find(w, "own")
	if sh == nil || own == nil {
		return fmt.Errorf("no board run at %v", w)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Publish → observe, %v (CDF)", w)
	p.X.Label.Text = "latency, ms (log scale)"
	p.Y.Label.Text = "fraction of (client, publish) pairs"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, ticks125{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25, Label: "0.25"},
		{Value: 0.5, Label: "0.5"}, {Value: 0.75, Label: "0.75"}, {Value: 1, Label: "1"}})
	p.Add(plotter.NewGrid())

	xs, missing := sh.futexSamples(), sh.futexMissing()
	at, frac := make([]time.Duration, len(xs)), make([]float64, len(xs))
	for k, x := range xs {
		at[k], frac[k] = time.Duration(x), float64(k+1)/float64(uint64(len(xs))+missing)
	}
	f50, _ := sh.futexQ(0.5)
	if err := cdfLine(p, 0, fmt.Sprintf("futex waiter (%d processes, %d pairs), p50 %s", *waiters, len(xs), usOK(f50, true)), at, frac); err != nil {
		return err
	}
	for i, r := range []*result{sh, own} {
		m, missing := r.lat()
		at, frac := m.CDF(missing)
		p50, ok := r.quantile(0.5)
		name := fmt.Sprintf("board, %s poller, %s copies (%s clients), p50 %s", dur(*interval), r.mode, benchfmt.Count(r.clients), msOK(p50, ok))
		if err := cdfLine(p, i+1, name, at, frac); err != nil {
			return err
		}
	}
	var hs *search
	for _, s := range rep.http {
		if s.w == w && s.best >= 0 {
			hs = s
		}
	}
	if hs == nil {
		return fmt.Errorf("no HTTP trial met the target at %v (the plots need the HTTP search, -search)", w)
	}
	t := hs.trials[hs.best]
	m, missing := t.lat()
	at, frac = m.CDF(missing)
	p50, ok := t.quantile(0.5)
	if err := cdfLine(p, 3, fmt.Sprintf("HTTP, %s poller (%s clients, its most within the target), p50 %s", dur(*interval), benchfmt.Count(t.clients), msOK(p50, ok)), at, frac); err != nil {
		return err
	}
	// The target, a vertical line.
	tl, err := plotter.NewLine(plotter.XYs{{X: float64(*target) / 1e6, Y: 0}, {X: float64(*target) / 1e6, Y: 1}})
	if err != nil {
		return err
	}
	tl.Color, tl.Dashes = color.Gray{Y: 0x80}, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(tl)
	p.Legend.Add(fmt.Sprintf("the target: p99 ≤ %s", dur(*target)), tl)
	p.X.Max *= 1.15 // room for the last tick's label
	return save(p, 9*vg.Inch, 6*vg.Inch, path)
}

// series is one curve of the CPU plot: (clients, % of one core) points.
type series struct {
	name   string
	pts    plotter.XYs
	dashed bool
}

func (s *series) add(clients int, cores float64) {
	s.pts = append(s.pts, plotter.XY{X: float64(clients), Y: 100 * cores})
}

func (rep *report) cpuPlot(w workload, path string) error {
	z, sh, own := rep.find(w, "none"), rep.find(w, "shared"), rep.find(w, "own")
	if z == nil || sh == nil || own == nil {
		return fmt.Errorf("no board runs at %v", w)
	}
	// whole is the run's own CPU, server and clients (the host's busy cores would count other work too).
	whole := func(t *result) float64 {
		c, _ := t.serverCores()
		return c + t.readerCores("")
	}
	hd := &series{name: "HTTP: the server's CPU"}
	hh := &series{name: "HTTP: server + clients", dashed: true}
	for _, s := range rep.http {
		if s.w == w {
			for _, t := range s.trials {
				c, _ := t.serverCores()
				hd.add(t.clients, c)
				hh.add(t.clients, whole(t))
			}
		}
	}
	bd := &series{name: "board, own copies: the daemon's CPU"}
	bh := &series{name: "board, own copies: daemon + readers", dashed: true}
	trials := []*result{own}
	if s := rep.ownSearch(w); s != nil {
		trials = append(trials, s.trials...)
	}
	for _, t := range trials {
		c, _ := t.serverCores()
		bd.add(t.clients, c)
		bh.add(t.clients, whole(t))
	}
	sd := &series{name: "board, shared copies: the daemon's CPU"}
	shBusy := &series{name: "board, shared copies: daemon + readers", dashed: true}
	c, _ := sh.serverCores()
	sd.add(sh.clients, c)
	shBusy.add(sh.clients, whole(sh))
	if len(hd.pts) == 0 {
		return fmt.Errorf("no HTTP trial at %v", w)
	}

	p := plot.New()
	p.Title.Text = fmt.Sprintf("Clients against CPU, %v, %s polls", w, dur(*interval))
	p.X.Label.Text = "clients (log scale)"
	p.Y.Label.Text = "% of one core (log scale)"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, ticks125{}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, ticks125{}
	p.Add(plotter.NewGrid())
	for i, s := range []*series{hd, hh, bd, bh, sd, shBusy} {
		slices.SortFunc(s.pts, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		for _, pt := range s.pts {
			if pt.X <= 0 || pt.Y <= 0 {
				return fmt.Errorf("%s: a point (%g clients, %g%%) cannot be drawn on log scales", s.name, pt.X, pt.Y)
			}
		}
		l, sc, err := plotter.NewLinePoints(s.pts)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		col := palette[[]int{1, 1, 0, 0, 2, 2}[i]]
		l.Color, sc.Color = col, col
		l.Width = vg.Points(1.5)
		sc.Shape = draw.CircleGlyph{}
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			sc.Shape = draw.BoxGlyph{}
		}
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
	}
	// The daemon with no client, a level the board's points are read against.
	zc, _ := z.serverCores()
	if zc <= 0 {
		return errors.New("the daemon's CPU with 0 clients is 0")
	}
	minX, maxX := 1e18, 0.0
	for _, s := range []*series{hd, bd, sd} {
		for _, pt := range s.pts {
			minX, maxX = min(minX, pt.X), max(maxX, pt.X)
		}
	}
	zl, err := plotter.NewLine(plotter.XYs{{X: minX, Y: 100 * zc}, {X: maxX, Y: 100 * zc}})
	if err != nil {
		return err
	}
	zl.Color, zl.Dashes = palette[4], []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(zl)
	p.Legend.Add(fmt.Sprintf("board: the daemon's CPU with 0 clients (%s)", pct(zc)), zl)
	p.X.Max *= 1.5 // room for the last tick's label
	return save(p, 9*vg.Inch, 6.5*vg.Inch, path)
}

// ticks125 marks a log axis at 1, 2 and 5 times the powers of ten (labelled) and at the other integers times them
// (unlabelled): plot.LogTicks labels only the powers of ten, too few on an axis that spans one or two decades.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	if lo <= 0 || hi <= 0 || hi < lo {
		return nil
	}
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for m := 1; m <= 9; m++ {
			v := float64(m) * p
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = tickLabel(v)
			}
			out = append(out, t)
		}
	}
	labelled := 0
	for _, t := range out {
		if t.Label != "" {
			labelled++
		}
	}
	if labelled < 2 { // a narrow axis: label every tick
		for i := range out {
			out[i].Label = tickLabel(out[i].Value)
		}
	}
	return out
}

// tickLabel prints a tick's value: integers with thousands separators, fractions as they are.
func tickLabel(v float64) string {
	if v >= 1 && v == math.Trunc(v) {
		return benchfmt.Count(int(v))
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
