package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot names: the suffix of a plot's file, bench-<ID>-<name>.svg.
const (
	// LatencyPlot shows p50, p90, p99 and p99.9 per scenario, one panel per HTTP load point.
	LatencyPlot = "latency"
	// ResourcesPlot shows the node agents' CPU per 1000 rps (and per Gbit/s) and peak memory.
	ResourcesPlot = "resources"
	// ThroughputPlot shows the maximum request rate, the connection rate and the bulk throughput,
	// each bar labelled with its ratio to its scenario's baseline.
	ThroughputPlot = "throughput"
)

// PlotFile is an SVG file written by WritePlots.
type PlotFile struct {
	Name  string // LatencyPlot, ResourcesPlot or ThroughputPlot
	Title string // what the plot shows, for an image's alternative text
	Path  string
}

// WritePlots renders the plots of a run as SVG files <dir>/<prefix>-<name>.svg (prefix is
// usually "bench-<ID>") and returns them in the order latency, resources, throughput. A plot
// without data in the run (no HTTP workload, no agents accounted, …) is not written.
func WritePlots(dir, prefix string, r *Run) ([]PlotFile, error) {
	figs, err := Plots(r)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var files []PlotFile
	for _, f := range figs {
		var buf bytes.Buffer
		if err := f.WriteSVG(&buf); err != nil {
			return files, err
		}
		path := filepath.Join(dir, prefix+"-"+f.Name+".svg")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return files, fmt.Errorf("plots: %w", err)
		}
		files = append(files, PlotFile{Name: f.Name, Title: f.Title, Path: path})
	}
	return files, nil
}

// WritePlotLinks renders Markdown image links to plot files, relative to dir (the directory of
// the Markdown file).
func WritePlotLinks(w io.Writer, dir string, files []PlotFile) error {
	if len(files) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\nPlots (medians; the ratios divide by the median of the same workload in the scenario's baseline):\n\n")
	for _, f := range files {
		rel, err := filepath.Rel(dir, f.Path)
		if err != nil {
			rel = f.Path
		}
		fmt.Fprintf(&b, "![%s](%s)\n\n", f.Title, filepath.ToSlash(rel))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("markdown: %w", err)
	}
	return nil
}

// Figure is one rendered plot of a run: a title, a legend of the scenarios and a grid of panels.
type Figure struct {
	Name  string
	Title string
	// Subtitle says what the figures are: the machine, the plan, medians of how many repetitions.
	Subtitle  string
	Scenarios []string // the legend, in the bars' order
	Colors    []color.Color
	// Rows holds the panels row by row; the panels of a row share the figure's width.
	Rows [][]*Panel
}

// Panel is one plot of grouped bars in a figure: a group per category, a bar per scenario.
type Panel struct {
	Plot       *plot.Plot
	categories int
	bars       []*plotter.BarChart
	labels     []*plotter.Labels
}

// add appends a panel to the last row when it holds fewer than perRow panels, else to a new row.
func (f *Figure) add(p *Panel, perRow int) {
	if n := len(f.Rows); n > 0 && len(f.Rows[n-1]) < perRow {
		f.Rows[n-1] = append(f.Rows[n-1], p)
		return
	}
	f.Rows = append(f.Rows, []*Panel{p})
}

// panels returns the number of panels.
func (f *Figure) panels() int {
	n := 0
	for _, row := range f.Rows {
		n += len(row)
	}
	return n
}

// fit sizes the bars to the width of the panel's data area: three quarters of each category's
// slot are bars, side by side around the category's tick.
func (p *Panel) fit(dataWidth vg.Length) {
	if len(p.bars) == 0 {
		return
	}
	slot := dataWidth / vg.Length(max(1, p.categories))
	width := min(0.75*slot/vg.Length(len(p.bars)), 0.9*vg.Inch)
	for i, b := range p.bars {
		b.Width = width
		b.Offset = (vg.Length(i) - vg.Length(len(p.bars)-1)/2) * width
		p.labels[i].Offset.X = b.Offset
	}
}

// Plots returns the figures of a run that have data: latency, resources, throughput.
func Plots(r *Run) ([]*Figure, error) {
	var figs []*Figure
	for _, build := range []func(*Run) (*Figure, error){latencyFigure, resourcesFigure, throughputFigure} {
		f, err := build(r)
		if err != nil {
			return nil, err
		}
		if f != nil && f.panels() > 0 {
			figs = append(figs, f)
		}
	}
	return figs, nil
}

// Sizes of a figure.
const (
	figureWidth = 14 * vg.Inch
	panelHeight = 4.2 * vg.Inch
	headerSize  = 0.95 * vg.Inch
)

// WriteSVG renders the figure as SVG.
func (f *Figure) WriteSVG(w io.Writer) error {
	width, height := figureWidth, headerSize+vg.Length(len(f.Rows))*panelHeight
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	// Header: title, subtitle, then the legend on one line.
	top := dc.Max.Y - 0.12*vg.Inch
	title := textStyle(15, draw.XCenter, draw.YTop)
	dc.FillText(title, vg.Point{X: width / 2, Y: top}, f.Title)
	top -= title.Height(f.Title) + 0.06*vg.Inch
	sub := textStyle(10, draw.XCenter, draw.YTop)
	sub.Color = color.Gray{Y: 0x40}
	dc.FillText(sub, vg.Point{X: width / 2, Y: top}, f.Subtitle)
	top -= sub.Height(f.Subtitle) + 0.1*vg.Inch
	f.drawLegend(dc, top)

	body := draw.Crop(dc, 0, 0, 0, -headerSize)
	for j, row := range f.Rows {
		band := draw.Crop(body, 0, 0, vg.Length(len(f.Rows)-1-j)*panelHeight, -vg.Length(j)*panelHeight)
		tiles := draw.Tiles{Rows: 1, Cols: len(row), PadTop: 0.1 * vg.Inch, PadBottom: 0.2 * vg.Inch,
			PadLeft: 0.15 * vg.Inch, PadRight: 0.25 * vg.Inch, PadX: 0.45 * vg.Inch}
		plots := make([]*plot.Plot, len(row))
		for i, p := range row {
			plots[i] = p.Plot
		}
		canvases := plot.Align([][]*plot.Plot{plots}, tiles, band)[0]
		for i, p := range row {
			p.fit(p.Plot.DataCanvas(canvases[i]).Size().X)
			p.Plot.Draw(canvases[i])
		}
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot %s: %w", f.Name, err)
	}
	return nil
}

// drawLegend draws a colour swatch and the name of every scenario, centred on one line whose
// top is at y.
func (f *Figure) drawLegend(dc draw.Canvas, y vg.Length) {
	sty := textStyle(11, draw.XLeft, draw.YTop)
	const swatch, gap, spacing = 0.16 * vg.Inch, 0.07 * vg.Inch, 0.35 * vg.Inch
	var total vg.Length
	for i, s := range f.Scenarios {
		if i > 0 {
			total += spacing
		}
		total += swatch + gap + sty.Width(s)
	}
	x := (dc.Max.X+dc.Min.X)/2 - total/2
	for i, s := range f.Scenarios {
		h := sty.Height(s)
		box := vg.Rectangle{Min: vg.Point{X: x, Y: y - h/2 - swatch/2}, Max: vg.Point{X: x + swatch, Y: y - h/2 + swatch/2}}
		dc.SetColor(f.Colors[i])
		dc.Fill(box.Path())
		x += swatch + gap
		dc.FillText(sty, vg.Point{X: x, Y: y}, s)
		x += sty.Width(s) + spacing
	}
}

// sans is the font of the plots: Liberation Sans, metric-compatible with Arial and Helvetica, so
// that a viewer without it lays the text out the same way.
func sans(size vg.Length) font.Font {
	return font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
}

func textStyle(size vg.Length, x draw.XAlignment, y draw.YAlignment) draw.TextStyle {
	return draw.TextStyle{Color: color.Black, Font: sans(size), XAlign: x, YAlign: y, Handler: plot.DefaultTextHandler}
}

// scenarioColors: the baselines grey, the others in colours that stay apart in print and for the
// common forms of colour blindness.
var scenarioColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, // brown
}

// baselineColor is the run's baseline's, otherBaselineColor that of a scenario that is its own
// baseline (no-mesh-same-node).
var (
	baselineColor      = color.RGBA{R: 0x9e, G: 0x9e, B: 0x9e, A: 0xff}
	otherBaselineColor = color.RGBA{R: 0x61, G: 0x61, B: 0x61, A: 0xff}
)

// newFigure starts a figure with the run's scenarios, the baseline first.
func newFigure(r *Run, name, title, what string) *Figure {
	f := &Figure{Name: name, Title: fmt.Sprintf("weft-bench %s (%s): %s", r.ID, r.Mode, title)}
	colored := 0
	for _, sc := range orderScenarios(r) {
		f.Scenarios = append(f.Scenarios, sc.Name)
		switch {
		case sc.Name == r.Baseline:
			f.Colors = append(f.Colors, baselineColor)
		case isBaseline(r, sc):
			f.Colors = append(f.Colors, otherBaselineColor)
		default:
			f.Colors = append(f.Colors, scenarioColors[colored%len(scenarioColors)])
			colored++
		}
	}
	reps := "one repetition"
	if r.Plan.Repetitions > 1 {
		reps = fmt.Sprintf("median of %d repetitions", r.Plan.Repetitions)
	}
	cpu := r.Env.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	f.Subtitle = fmt.Sprintf("%s; bars: %s. %d × %s, Linux %s, load average %.2f before the run; git %s",
		what, reps, r.Env.CPUs, cpu, r.Env.Kernel, r.Env.LoadAvg, orUnknown(r.Env.GitRevision))
	return f
}

// series is one scenario's bars in a panel: a value and a label per category.
type series struct {
	values []float64 // NaN: not measured
	labels []string
}

// barPanel is a panel of grouped bars: one group per category, one bar per scenario.
func barPanel(f *Figure, title, yLabel string, categories []string, ss []series) (*Panel, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = sans(13)
	p.Title.Padding = 0.1 * vg.Inch
	p.Y.Label.Text = yLabel
	p.Y.Label.TextStyle.Font = sans(11)
	p.X.Tick.Label.Font = sans(11)
	p.Y.Tick.Label.Font = sans(10)
	p.X.Padding = 0.05 * vg.Inch
	p.Y.Min = 0
	p.NominalX(categories...)
	p.X.Min, p.X.Max = -0.5, float64(len(categories))-0.5
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	grid.Horizontal.Color = color.Gray{Y: 0xdd}
	p.Add(grid)

	panel := &Panel{Plot: p, categories: len(categories)}
	var ymax float64
	for i, s := range ss {
		vals := make(plotter.Values, len(s.values))
		xys := make(plotter.XYs, len(s.values))
		for j, v := range s.values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				v = 0
			}
			vals[j] = v
			xys[j] = plotter.XY{X: float64(j), Y: v}
			ymax = max(ymax, v)
		}
		// Panel.fit sets the bars' width and offset once the panel's size is known.
		bars, err := plotter.NewBarChart(vals, 1)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", f.Name, err)
		}
		bars.Color = f.Colors[i]
		bars.LineStyle.Width = 0
		p.Add(bars)

		labels, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: s.labels})
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", f.Name, err)
		}
		for k := range labels.TextStyle {
			labels.TextStyle[k] = textStyle(9, draw.XCenter, draw.YBottom)
		}
		labels.Offset = vg.Point{Y: 0.03 * vg.Inch}
		p.Add(labels)
		panel.bars, panel.labels = append(panel.bars, bars), append(panel.labels, labels)
	}
	// Room above the tallest bar for its label.
	if ymax > 0 {
		p.Y.Max = ymax * 1.18
	} else {
		p.Y.Max = 1
	}
	return panel, nil
}

// stat returns the median of a metric of a scenario's result, NaN when it was not measured.
func stat(sc *ScenarioResult, workload string, m Metric) float64 {
	res := sc.Result(workload)
	if res == nil {
		return math.NaN()
	}
	st, ok := res.Summary[m]
	if !ok || st.N == 0 {
		return math.NaN()
	}
	return st.Median
}

func ratio(sc *ScenarioResult, workload string, m Metric) (float64, bool) {
	res := sc.Result(workload)
	if res == nil {
		return 0, false
	}
	v, ok := res.Ratios[m]
	return v, ok
}

// valueLabel formats a bar's value, "n/a" when it was not measured.
func valueLabel(v float64, format string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

// latencyFigure: one panel per HTTP workload with latencies, percentiles on the X axis.
func latencyFigure(r *Run) (*Figure, error) {
	f := newFigure(r, LatencyPlot, "latency percentiles per load point",
		"HTTP/1.1 latency in ms from fortio's histograms; labels: value (ratio to the baseline: "+baselinesText(r)+")")
	scs := orderScenarios(r)
	percentiles := []struct {
		m    Metric
		name string
	}{{P50, "p50"}, {P90, "p90"}, {P99, "p99"}, {P999, "p99.9"}}
	for _, wl := range r.Plan.Workloads {
		if !wl.Latency() {
			continue
		}
		var cats []string
		var metrics []Metric
		for _, pc := range percentiles {
			for _, sc := range scs {
				if !math.IsNaN(stat(sc, wl.ID, pc.m)) {
					cats, metrics = append(cats, pc.name), append(metrics, pc.m)
					break
				}
			}
		}
		if len(cats) == 0 {
			continue
		}
		ss := make([]series, len(scs))
		for i, sc := range scs {
			for _, m := range metrics {
				v := stat(sc, wl.ID, m)
				label := valueLabel(v, "%.2f")
				if rt, ok := ratio(sc, wl.ID, m); ok && !isBaseline(r, sc) && !math.IsNaN(v) {
					label += fmt.Sprintf("\n(%.2f×)", rt)
				}
				ss[i].values = append(ss[i].values, v)
				ss[i].labels = append(ss[i].labels, label)
			}
		}
		p, err := barPanel(f, workloadTitle(wl), "latency (ms)", cats, ss)
		if err != nil {
			return nil, err
		}
		f.add(p, 2)
	}
	return f, nil
}

// resourcesFigure: the agents' CPU per 1000 rps (HTTP) and per Gbit/s (bulk), and their peak
// memory, per workload and scenario.
//
// When the run has the Path* metrics (the processes on each scenario's path: agents, agents and
// waypoint, or a peer's pods), it shows those instead, so that Weft and the peers compare.
func resourcesFigure(r *Run) (*Figure, error) {
	path := hasMetric(r, PathVCPU)
	if len(r.Agents) == 0 && !path {
		return nil, nil
	}
	type panelSpec struct {
		title, yLabel, format string
		m                     Metric
		kind                  Kind
		perRow                int
	}
	f := newFigure(r, ResourcesPlot, "node agents' CPU and memory",
		fmt.Sprintf("%d node agents, summed; from the agent pods' cgroups (CPU) and VmHWM (memory)", len(r.Agents)))
	panels := []panelSpec{
		{"agents' CPU per 1000 requests per second", "vCPU per 1000 rps", "%.3f", AgentVCPUPerKRPS, HTTP, 2},
		{"agents' CPU per Gbit/s of bulk TCP", "vCPU per Gbit/s", "%.3f", AgentVCPUPerGbps, Bulk, 2},
		// Every workload: a row of its own.
		{"agents' peak RSS during each workload", "peak RSS (MiB, all agents)", "%.1f", AgentRSS, "", 1},
	}
	if path {
		f = newFigure(r, ResourcesPlot, "CPU and memory of the processes on each path",
			"Weft L4: node agents; Weft L7: agents + waypoint; peers: their own pods; from the pods' cgroups (CPU) and VmHWM (memory)")
		panels = []panelSpec{
			{"CPU per 1000 requests per second, processes on the path", "vCPU per 1000 rps", "%.3f", PathVCPUPerKRPS, "latency", 2},
			{"CPU per Gbit/s of bulk TCP, processes on the path", "vCPU per Gbit/s", "%.3f", PathVCPUPerGbps, Bulk, 2},
			{"peak RSS of the processes on the path during each workload", "peak RSS (MiB)", "%.1f", PathRSS, "", 1},
		}
	}
	scs := orderScenarios(r)
	for _, pn := range panels {
		var cats []string
		ss := make([]series, len(scs))
		for _, wl := range r.Plan.Workloads {
			if pn.kind == "latency" && !wl.Latency() || pn.kind != "" && pn.kind != "latency" && wl.Kind != pn.kind {
				continue
			}
			measured := false
			for _, sc := range scs {
				measured = measured || !math.IsNaN(stat(sc, wl.ID, pn.m))
			}
			if !measured {
				continue
			}
			cats = append(cats, wl.ID)
			for i, sc := range scs {
				v := stat(sc, wl.ID, pn.m)
				ss[i].values = append(ss[i].values, v)
				ss[i].labels = append(ss[i].labels, valueLabel(v, pn.format))
			}
		}
		if len(cats) == 0 {
			continue
		}
		p, err := barPanel(f, pn.title, pn.yLabel, cats, ss)
		if err != nil {
			return nil, err
		}
		f.add(p, pn.perRow)
	}
	return f, nil
}

// throughputFigure: the maximum keep-alive request rate, the connection rate and the bulk
// throughput, each bar labelled with its ratio to its scenario's baseline.
func throughputFigure(r *Run) (*Figure, error) {
	f := newFigure(r, ThroughputPlot, "throughput", "labels: value and ratio to the baseline: "+baselinesText(r))
	scs := orderScenarios(r)
	panels := []struct {
		title, yLabel, format string
		m                     Metric
		scale                 float64
		match                 func(Workload) bool
		category              func(Workload) string
	}{
		{"HTTP/1.1 keep-alive at maximum rate", "requests per second", "%.0f", RPS, 1,
			func(w Workload) bool { return w.Kind == HTTP && w.KeepAlive && w.QPS == 0 },
			func(w Workload) string { return fmt.Sprintf("%d conns, %s", w.Connections, sizeText(w.ResponseBytes)) }},
		{"new connection per request at maximum rate", "connections per second", "%.0f", RPS, 1,
			func(w Workload) bool { return w.Kind == HTTP && !w.KeepAlive && w.QPS == 0 },
			func(w Workload) string { return fmt.Sprintf("%d conns, %s", w.Connections, sizeText(w.ResponseBytes)) }},
		{"bulk TCP", "MB/s (all streams, 1 MB = 10^6 bytes)", "%.0f", Gbps, 1e9 / 8 / 1e6,
			func(w Workload) bool { return w.Kind == Bulk },
			func(w Workload) string {
				if w.Streams == 1 {
					return "1 stream"
				}
				return fmt.Sprintf("%d streams", w.Streams)
			}},
	}
	for _, pn := range panels {
		var cats []string
		ss := make([]series, len(scs))
		for _, wl := range r.Plan.Workloads {
			if !pn.match(wl) {
				continue
			}
			cats = append(cats, pn.category(wl))
			for i, sc := range scs {
				v := stat(sc, wl.ID, pn.m) * pn.scale
				label := valueLabel(v, pn.format)
				if rt, ok := ratio(sc, wl.ID, pn.m); ok && !math.IsNaN(v) {
					label += fmt.Sprintf("\n%.2f×", rt)
				}
				ss[i].values = append(ss[i].values, v)
				ss[i].labels = append(ss[i].labels, label)
			}
		}
		if len(cats) == 0 {
			continue
		}
		p, err := barPanel(f, pn.title, pn.yLabel, cats, ss)
		if err != nil {
			return nil, err
		}
		f.add(p, 3)
	}
	return f, nil
}

// hasMetric reports whether any result of the run has a summary of m.
func hasMetric(r *Run, m Metric) bool {
	for i := range r.Scenarios {
		for _, res := range r.Scenarios[i].Results {
			if st, ok := res.Summary[m]; ok && st.N > 0 {
				return true
			}
		}
	}
	return false
}

// ReadRun reads a run's JSON file (bench-<ID>.json).
func ReadRun(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read run: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read run %s: %w", path, err)
	}
	if len(r.Scenarios) == 0 {
		return nil, fmt.Errorf("read run %s: not a weft-bench result (no scenarios)", path)
	}
	return &r, nil
}
