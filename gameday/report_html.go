package gameday

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Colours of the charts.
var (
	colOK      = color.RGBA{R: 0x2e, G: 0x8b, B: 0x57, A: 0xff}
	colErr     = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colP50     = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colP99     = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colInject  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colHeal    = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colAction  = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	colOutage  = color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0x22}
	colRunbook = color.NRGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0x22}
	regionCols = []color.Color{colP50, colP99, colOK, colAction, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}}
)

type series struct {
	name string
	col  color.Color
	xys  plotter.XYs
}

// chartSVG draws one time chart with the report's faults, actions and
// phases marked, as an inline SVG element.
func (r *Report) chartSVG(title, ylabel string, ss []series) (template.HTML, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the load started"
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	ymax := 1.0
	for _, s := range ss {
		for _, xy := range s.xys {
			if xy.Y > ymax {
				ymax = xy.Y
			}
		}
	}
	ymax *= 1.25
	p.Y.Min, p.Y.Max = 0, ymax
	p.X.Min = 0
	if n := len(r.Figures.Timeline); n > 0 {
		p.X.Max = float64(n)
	}
	// Shaded spans first, under the lines: the outage and runbook steps.
	for _, ph := range r.Figures.Phases {
		col := colRunbook
		switch {
		case ph.Runbook:
		case ph.Name == "outage":
			col = colOutage
		default:
			continue
		}
		x0, x1 := r.offset(ph.Start), r.offset(ph.End)
		if x1 <= x0 {
			x1 = x0 + 0.05
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return "", err
		}
		poly.Color = col
		poly.LineStyle.Width = 0
		p.Add(poly)
	}
	for _, s := range ss {
		if len(s.xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xys)
		if err != nil {
			return "", err
		}
		l.LineStyle.Color = s.col
		l.LineStyle.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	var labels plotter.XYLabels
	for i, e := range r.Raw.Events {
		x := r.offset(e.Start)
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
		if err != nil {
			return "", err
		}
		l.LineStyle.Width = vg.Points(1)
		l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		switch e.Kind {
		case StepInject:
			l.LineStyle.Color = colInject
		case StepHeal:
			l.LineStyle.Color = colHeal
		default:
			l.LineStyle.Color = colAction
		}
		p.Add(l)
		name := e.Name
		if e.Kind == StepHeal {
			name = "heal " + name
		}
		// Stagger the labels so that close events stay readable.
		labels.XYs = append(labels.XYs, plotter.XY{X: x, Y: ymax * (0.96 - 0.07*float64(i%3))})
		labels.Labels = append(labels.Labels, " "+name)
	}
	if len(labels.XYs) > 0 {
		lb, err := plotter.NewLabels(labels)
		if err != nil {
			return "", err
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(8)
		}
		p.Add(lb)
	}
	c := vgsvg.New(10*vg.Inch, 3.2*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", err
	}
	svg := buf.String()
	// Inline in HTML: no XML prologue or comment before the element.
	if i := strings.Index(svg, "<svg"); i > 0 {
		svg = svg[i:]
	}
	return template.HTML(svg), nil // #nosec: drawn by gonum/plot, text escaped by it
}

// charts are the report's three time charts.
func (r *Report) charts() ([]htmlChart, error) {
	var ok, errs, p50, p99 plotter.XYs
	for _, b := range r.Figures.Timeline {
		x := float64(b.Second) + 0.5
		ok = append(ok, plotter.XY{X: x, Y: float64(b.OK)})
		errs = append(errs, plotter.XY{X: x, Y: float64(b.Errors + b.Unknown)})
		if b.Completed > 0 {
			p50 = append(p50, plotter.XY{X: x, Y: b.P50})
			p99 = append(p99, plotter.XY{X: x, Y: b.P99})
		}
	}
	// Acknowledged writes per second, by the region that served them.
	n := len(r.Figures.Timeline)
	byRegion := map[string][]float64{}
	for _, a := range r.Raw.Attempts {
		if a.Op != OpWrite || a.Outcome != OK {
			continue
		}
		s := int(r.offset(a.End))
		if s < 0 || s >= n {
			continue
		}
		reg := a.Region
		if reg == "" {
			reg = "unknown"
		}
		if byRegion[reg] == nil {
			byRegion[reg] = make([]float64, n)
		}
		byRegion[reg][s]++
	}
	var regions []string
	for reg := range byRegion {
		regions = append(regions, reg)
	}
	sort.Strings(regions)
	var served []series
	for i, reg := range regions {
		var xys plotter.XYs
		for s, v := range byRegion[reg] {
			xys = append(xys, plotter.XY{X: float64(s) + 0.5, Y: v})
		}
		served = append(served, series{reg, regionCols[i%len(regionCols)], xys})
	}
	specs := []struct {
		title, ylabel string
		ss            []series
	}{
		{"Throughput and errors", "requests per second", []series{{"ok", colOK, ok}, {"errors and unknown", colErr, errs}}},
		{"Latency", "milliseconds", []series{{"p50", colP50, p50}, {"p99", colP99, p99}}},
		{"Acknowledged writes by the region that served them", "writes per second", served},
	}
	var out []htmlChart
	for _, s := range specs {
		svg, err := r.chartSVG(s.title, s.ylabel, s.ss)
		if err != nil {
			return nil, fmt.Errorf("chart %q: %w", s.title, err)
		}
		out = append(out, htmlChart{Title: s.title, SVG: svg})
	}
	return out, nil
}

type htmlChart struct {
	Title string
	SVG   template.HTML
}

// HTML renders the self-contained report.html: no script, no external
// asset, the charts inline.
func (r *Report) HTML() ([]byte, error) {
	charts, err := r.charts()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = htmlTemplate.Execute(&buf, map[string]any{"R": r, "Charts": charts, "Rows": r.figureRows(), "Errors": r.TopErrors(5)})
	return buf.Bytes(), err
}

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"offset": func(r *Report, t any) string {
		switch v := t.(type) {
		case Event:
			return fmt.Sprintf("+%.2fs", r.offset(v.Start))
		case Phase:
			return fmt.Sprintf("+%.2fs – +%.2fs", r.offset(v.Start), r.offset(v.End))
		case Runbook:
			return fmt.Sprintf("+%.2fs", r.offset(v.Started))
		}
		return ""
	},
	"took": func(e Event) string { return fmt.Sprintf("%.2fs", e.End.Sub(e.Start).Seconds()) },
	"ms":   func(v float64) string { return fmt.Sprintf("%.1f ms", v) },
	"secs": func(v float64) string { return fmt.Sprintf("%.2fs", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Game day {{.R.Scenario}}: {{.R.Result}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1 .PASSED{color:#2e8b57}h1 .FAILED{color:#d62728}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#2e8b57}.fail{color:#d62728;font-weight:bold}
figure{margin:1em 0}figure svg{width:100%;height:auto}figcaption{font-size:.9em;color:#555}
code{background:#f4f4f4;padding:0 .2em}
</style></head><body>
<h1>Game day {{.R.Scenario}}{{if .R.Strategy}} ({{.R.Strategy}}){{end}}: <span class="{{.R.Result}}">{{.R.Result}}</span></h1>
<p>Run <code>{{.R.ID}}</code>, workload {{.R.Workload}} ({{.R.Topology.Strategy}}), scenario <code>{{.R.File}}</code>, started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}.</p>
{{with .R.Description}}<p>{{.}}</p>{{end}}
{{with .R.Aborted}}<p class="fail">Aborted: {{.}}</p>{{end}}
{{with .R.Plan.Hypothesis}}<h2>Hypothesis</h2><p>{{.}}</p>{{end}}
{{with .R.Plan.Participants}}<table><tr><th>participant</th><th>role</th></tr>{{range .}}<tr><td>{{.Name}}</td><td>{{.Role}}</td></tr>{{end}}</table>{{end}}
<h2>Expectations</h2>
<table><tr><th>expectation</th><th>measured</th><th>result</th></tr>
{{range .R.Verdicts}}<tr><td><code>{{.Expectation}}</code></td><td>{{.Got}}</td><td>{{if .Passed}}<span class="pass">pass</span>{{else}}<span class="fail">FAIL</span>{{end}}</td></tr>{{end}}
</table>
<h2>Measured</h2>
<table>{{range .Rows}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>Over time</h2>
<p>Dashed lines: faults (red), heals (green), actions (purple). Shaded: the outage (red) and the runbook's steps (purple).</p>
{{range .Charts}}<figure class="chart">{{.SVG}}<figcaption>{{.Title}}</figcaption></figure>
{{end}}
{{with .R.Raw.Events}}<h2>Timeline</h2>
<table><tr><th>at</th><th>planned</th><th>step</th><th>detail</th><th>took</th><th>result</th></tr>
{{range .}}<tr><td>{{offset $.R .}}</td><td>+{{.Planned}}</td><td>{{.Kind}} {{.Name}}</td><td>{{.Detail}}</td><td>{{took .}}</td><td>{{if .Error}}<span class="fail">{{.Error}}</span>{{else}}ok{{end}}</td></tr>{{end}}
</table>{{end}}
<h2>Phases</h2>
<table><tr><th>phase</th><th>span</th><th>requests</th><th>ok</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th></tr>
{{range .R.Figures.Phases}}<tr><td>{{.Name}}</td><td>{{offset $.R .}}</td><td>{{.Count}}</td><td>{{.OK}}</td><td>{{.Errors}}</td><td>{{ms .P50MS}}</td><td>{{ms .P90MS}}</td><td>{{ms .P99MS}}</td></tr>{{end}}
</table>
{{with .Errors}}<h2>Most frequent errors</h2>
<table><tr><th>attempts</th><th>first at</th><th>error</th></tr>{{range .}}<tr><td>{{.N}}</td><td>+{{secs .First}}</td><td>{{.Message}}</td></tr>{{end}}</table>{{end}}
{{range .R.Raw.Runbooks}}<h3>Runbook {{.Kind}} <code>{{.ID}}</code>: {{.State}} in {{secs .Seconds}}, from {{offset $.R .}}</h3>
<table><tr><th>step</th><th>state</th><th>took</th><th>note</th></tr>{{range .Steps}}<tr><td>{{.Name}}</td><td>{{.State}}</td><td>{{secs .Seconds}}</td><td>{{.Note}}{{.Error}}</td></tr>{{end}}</table>
{{end}}
{{with .R.Problems}}<h2>Problems</h2><ul>{{range .}}<li class="fail">{{.}}</li>{{end}}</ul>{{end}}
<p>Every figure is computed from the raw events in report.json (<code>raw</code>).</p>
</body></html>
`))
