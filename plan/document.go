package plan

import (
	"bytes"
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/gameday"
)

// Document is a topology's continuity plan: per workload, its objectives
// and the business reasons for them, its strategy and the plan's
// recommendation, who approves a region failover, each runbook step by
// step, the contacts, the last game days and the last restore drill.
type Document struct {
	Name      string        `json:"name"`
	Generated time.Time     `json:"generated"`
	Workloads []WorkloadDoc `json:"workloads"`
}

// WorkloadDoc is one workload's part of the continuity plan.
type WorkloadDoc struct {
	Plan     WorkloadPlan       `json:"plan"`
	Active   string             `json:"active_region"`
	Standby  []string           `json:"standby_regions"`
	Approval string             `json:"approval"`
	Reasons  []string           `json:"reasons"`
	Contacts []lifeline.Contact `json:"contacts"`
	Runbooks []RunbookDoc       `json:"runbooks"`
	// GameDays are the workload's newest game days, newest first.
	GameDays  []gameday.HistoryEntry `json:"gamedays"`
	Verify    *lifeline.VerifyRecord `json:"restore_drill,omitempty"`
	Readiness []lifeline.Readiness   `json:"readiness,omitempty"`
}

// RunbookDoc is one runbook kind under the workload's strategy.
type RunbookDoc struct {
	Kind string `json:"kind"`
	// When says what starts it and how.
	When  string    `json:"when"`
	Steps []StepDoc `json:"steps"`
}

// StepDoc is one step of a runbook.
type StepDoc struct {
	N    int    `json:"n"`
	Name string `json:"name"`
	Does string `json:"does"`
}

// gameDaysShown is how many past game days the document lists.
const gameDaysShown = 5

// NewDocument assembles the continuity plan of p's workloads. It is pure.
func NewDocument(t *lifeline.Topology, p *Plan, facts func(w *lifeline.Workload) Facts) (*Document, error) {
	d := &Document{Name: t.Name, Generated: p.Generated}
	for _, wp := range p.Workloads {
		w, err := t.Workload(wp.Workload)
		if err != nil {
			return nil, err
		}
		f := facts(w)
		wd := WorkloadDoc{Plan: wp, Active: w.Active, Contacts: w.Contacts, Verify: f.Verify, Readiness: f.Readiness}
		for _, r := range t.RegionNames() {
			if r != w.Active {
				wd.Standby = append(wd.Standby, r)
			}
		}
		wd.Approval = approval(t, w)
		wd.Reasons = reasons(wp)
		for _, kind := range controller.Kinds {
			steps, _, err := controller.Plan(kind, w.Strategy)
			if err != nil {
				return nil, err
			}
			rd := RunbookDoc{Kind: kind, When: when(t, w, kind, wd.Standby)}
			for i, s := range steps {
				rd.Steps = append(rd.Steps, StepDoc{N: i + 1, Name: s, Does: controller.StepDoc[s]})
			}
			wd.Runbooks = append(wd.Runbooks, rd)
		}
		for _, h := range f.History {
			if h.Workload == "" || h.Workload == w.Name {
				wd.GameDays = append(wd.GameDays, h)
			}
		}
		sort.SliceStable(wd.GameDays, func(i, j int) bool { return wd.GameDays[i].Started.After(wd.GameDays[j].Started) })
		if len(wd.GameDays) > gameDaysShown {
			wd.GameDays = wd.GameDays[:gameDaysShown]
		}
		d.Workloads = append(d.Workloads, wd)
	}
	return d, nil
}

func approvers(w *lifeline.Workload) []string {
	var out []string
	for _, c := range w.Contacts {
		if c.Role == lifeline.ContactRoleApprover {
			out = append(out, fmt.Sprintf("%s (%s)", c.Name, c.Reach))
		}
	}
	return out
}

// approval says who decides a region failover.
func approval(t *lifeline.Topology, w *lifeline.Workload) string {
	who := approvers(w)
	if w.Failover == lifeline.FailoverAuto {
		s := "Automatic: the controller fails the region over when the witness quorum agrees that it is down (failover: auto); no one approves"
		if len(who) > 0 {
			s += "; the approvers, " + strings.Join(who, ", ") + ", are told and may stop it before it fences the region (lifeline reject RUNBOOK)"
		}
		return s + "."
	}
	s := "A human approves every region failover (failover: approve): the controller detects the loss, records the evidence, raises the alarm and waits at the await-approval step until an approver runs `lifeline approve RUNBOOK --reason TEXT`"
	if len(who) == 0 {
		return s + ". The spec names no approver: add contacts with role approver."
	}
	return s + ". Approvers: " + strings.Join(who, ", ") + "."
}

// when says what starts a runbook kind.
func when(t *lifeline.Topology, w *lifeline.Workload, kind string, standby []string) string {
	to := "REGION"
	if len(standby) > 0 {
		to = standby[0]
	}
	switch kind {
	case string(controller.ZoneFailover):
		return "Automatic: the controller runs it when the primary's lease expires (its zone is lost); no one approves."
	case string(controller.RegionFailover):
		s := fmt.Sprintf("When the active region is declared down; or started by an operator: `lifeline failover --workload %s --to %s --reason TEXT` (refused when %s is not ready; `--force` overrides and is audited).", w.Name, to, to)
		if w.Failover == lifeline.FailoverApprove {
			s += " It waits for `lifeline approve RUNBOOK` at its second step."
		}
		return s
	case controller.Switchover:
		return fmt.Sprintf("Planned, no data loss: `lifeline switchover --workload %s --to %s`.", w.Name, to)
	default:
		return fmt.Sprintf("Once the lost region is back: `lifeline failback --workload %s` (the writer returns to %s).", w.Name, w.Active)
	}
}

// reasons are the business reasons for the objectives and the strategy.
func reasons(wp WorkloadPlan) []string {
	im := wp.Impact
	out := []string{
		fmt.Sprintf("An hour without %s costs %s and a minute of lost writes %s (tier %s).", wp.Workload,
			money(im.DowntimePerHour, im.Currency), money(im.DataLossPerMinute, im.Currency), im.Tier),
		fmt.Sprintf("Risks weighed, a year: %s.", riskLine(im)),
	}
	if r, ok := wp.Row(wp.Strategy); ok {
		out = append(out, fmt.Sprintf("Under %s the expected yearly loss is %s, for a standing cost of %s a year in the standby regions.",
			wp.Strategy, money(r.ExpectedLoss, im.Currency), money(r.Standing.Yearly, im.Currency)))
	}
	if mz, ok := wp.Row(MultiZone); ok {
		out = append(out, fmt.Sprintf("With its zones alone (multi-zone) it would expect to lose %s a year.", money(mz.ExpectedLoss, im.Currency)))
	}
	out = append(out, fmt.Sprintf("Recommended: %s: %s.", wp.Recommended, wp.Reason))
	return out
}

// Markdown renders the document.
func (d *Document) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Continuity plan: %s\n\nGenerated by `lifeline plan --document` on %s. Figures marked *measured* come from game days; the others are estimated from the spec's settings.\n",
		d.Name, d.Generated.UTC().Format("2006-01-02 15:04 UTC"))
	for _, wd := range d.Workloads {
		wp := wd.Plan
		fmt.Fprintf(&b, "\n## Workload %s\n\n### Objectives and why\n\n", wp.Workload)
		fmt.Fprintf(&b, "- RPO %s: the writes that may be lost.\n- RTO %s: how long writes may fail.\n", secs(wp.RPOSeconds), secs(wp.RTOSeconds))
		for _, r := range wd.Reasons {
			fmt.Fprintf(&b, "- %s\n", r)
		}
		fmt.Fprintf(&b, "\n### Strategy\n\n%s, active region %s, standby %s.\n\n", wp.Strategy, wd.Active, strings.Join(wd.Standby, ", "))
		b.WriteString("| strategy | zone loss RPO / RTO | region loss RPO / RTO | standing a year | expected loss a year | total | objectives |\n|---|---|---|---|---|---|---|\n")
		for _, r := range wp.Rows {
			name := r.Strategy
			if r.Current {
				name = "**" + name + "** (spec)"
			}
			meets := "met"
			if !r.Meets {
				meets = "missed: " + strings.Join(r.Misses, ", ")
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, pair(r, lifeline.RiskZone), pair(r, lifeline.RiskRegion),
				money(r.Standing.Yearly, wp.Impact.Currency), money(r.ExpectedLoss, wp.Impact.Currency), money(r.Total, wp.Impact.Currency), meets)
		}
		for _, n := range wp.Notes {
			fmt.Fprintf(&b, "\nNote: %s.\n", n)
		}
		fmt.Fprintf(&b, "\n### Who approves a region failover\n\n%s\n", wd.Approval)
		b.WriteString("\n### Contacts\n\n")
		if len(wd.Contacts) == 0 {
			b.WriteString("None in the spec (`contacts: [{name, role, reach}]`).\n")
		} else {
			b.WriteString("| name | role | reach |\n|---|---|---|\n")
			for _, c := range wd.Contacts {
				fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(c.Name), mdCell(c.Role), mdCell(c.Reach))
			}
		}
		b.WriteString("\n### Runbooks\n")
		for _, rb := range wd.Runbooks {
			fmt.Fprintf(&b, "\n#### %s\n\n%s\n\n", rb.Kind, rb.When)
			for _, s := range rb.Steps {
				fmt.Fprintf(&b, "%d. **%s**: %s\n", s.N, s.Name, s.Does)
			}
		}
		b.WriteString("\n### Last game days\n\n")
		if len(wd.GameDays) == 0 {
			b.WriteString("None yet: `lifeline gameday run examples/gamedays/region-loss.yaml --strategy " + wp.Strategy + "`.\n")
		} else {
			b.WriteString("| started | scenario | strategy | result | lost writes | RPO | RTO |\n|---|---|---|---|---|---|---|\n")
			for _, g := range wd.GameDays {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s |\n", g.Started.UTC().Format("2006-01-02 15:04"), g.Scenario, g.Strategy, result(g), g.Lost, secs(g.RPOSeconds), rtoOf(g))
			}
		}
		b.WriteString("\n### Last restore drill\n\n" + drill(wd.Verify) + "\n")
		if len(wd.Readiness) > 0 {
			b.WriteString("\n### Readiness when generated\n\n")
			for _, r := range wd.Readiness {
				fmt.Fprintf(&b, "- %s: %s\n", r.Region, readyWord(r))
			}
		}
	}
	return b.String()
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func result(g gameday.HistoryEntry) string {
	if g.Passed {
		return "passed"
	}
	return "FAILED"
}

func rtoOf(g gameday.HistoryEntry) string {
	if g.RTOSeconds == nil {
		return "not recovered"
	}
	return secs(*g.RTOSeconds)
}

func drill(v *lifeline.VerifyRecord) string {
	if v == nil {
		return "None known (`lifeline backup verify` restores the newest backup in a scratch directory and checks it)."
	}
	s := fmt.Sprintf("%s at %s: backup %s of %s restored in %s (%s with the checks), %d tables, %d rows.",
		map[bool]string{true: "Passed", false: "FAILED"}[v.Passed], v.At.UTC().Format("2006-01-02 15:04 UTC"), v.Backup, v.Region,
		secs(v.RestoreSeconds), secs(v.TotalSeconds), v.Tables, v.Rows)
	if !v.Passed && v.Failure != "" {
		s += " Failure: " + v.Failure + "."
	}
	return s
}

func readyWord(r lifeline.Readiness) string {
	if r.Ready {
		return "READY"
	}
	var f []string
	for _, c := range r.Failing() {
		f = append(f, c.Name+": "+c.Detail)
	}
	return "NOT READY (" + strings.Join(f, "; ") + ")"
}

// HTML renders the document as one self-contained page: no script, no
// external style sheet, font or image.
func (d *Document) HTML() ([]byte, error) {
	var buf bytes.Buffer
	err := pageTmpl.Execute(&buf, d)
	return buf.Bytes(), err
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"secs": secs, "pair": pair, "money": money, "result": result, "rto": rtoOf, "drill": drill, "ready": readyWord,
	"zone":   func() lifeline.Risk { return lifeline.RiskZone },
	"region": func() lifeline.Risk { return lifeline.RiskRegion },
	"date":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"join":   strings.Join,
	"code":   codeSpans,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Continuity plan: {{.Name}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{border-bottom:2px solid #ccc;margin-top:2.5rem}h3{margin-top:1.8rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:14px}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr.current td{background:#eef6ff}code{background:#f3f3f3;padding:0 .2rem}
ol.steps li{margin:.2rem 0}.ok{color:#1a7f37}.bad{color:#b42318;font-weight:600}.note{color:#555}
@media print{body{margin:0}h2{page-break-before:always}}
</style></head><body>
<h1>Continuity plan: {{.Name}}</h1>
<p class="note">Generated by <code>lifeline plan --document</code> on {{date .Generated}}. Figures marked <em>measured</em> come from game days; the others are estimated from the spec's settings.</p>
{{range .Workloads}}{{$p := .Plan}}
<section class="workload" id="workload-{{$p.Workload}}">
<h2>Workload {{$p.Workload}}</h2>
<h3>Objectives and why</h3>
<ul><li>RPO {{secs $p.RPOSeconds}}: the writes that may be lost.</li><li>RTO {{secs $p.RTOSeconds}}: how long writes may fail.</li>
{{range .Reasons}}<li>{{code .}}</li>{{end}}</ul>
<h3>Strategy</h3>
<p>{{$p.Strategy}}, active region {{.Active}}, standby {{join .Standby ", "}}.</p>
<table><thead><tr><th>strategy</th><th>zone loss RPO / RTO</th><th>region loss RPO / RTO</th><th>standing a year</th><th>expected loss a year</th><th>total</th><th>objectives</th></tr></thead><tbody>
{{range $p.Rows}}<tr{{if .Current}} class="current"{{end}}><td>{{.Strategy}}{{if .Current}} (spec){{end}}{{if eq .Strategy $p.Recommended}} (recommended){{end}}</td><td>{{pair . zone}}</td><td>{{pair . region}}</td>
<td>{{money .Standing.Yearly $p.Impact.Currency}}</td><td>{{money .ExpectedLoss $p.Impact.Currency}}</td><td>{{money .Total $p.Impact.Currency}}</td>
<td>{{if .Meets}}<span class="ok">met</span>{{else}}<span class="bad">missed</span>: {{join .Misses ", "}}{{end}}</td></tr>
{{end}}</tbody></table>
{{range $p.Notes}}<p class="note">Note: {{.}}.</p>{{end}}
<h3>Who approves a region failover</h3>
<p>{{code .Approval}}</p>
<h3>Contacts</h3>
{{if .Contacts}}<table><thead><tr><th>name</th><th>role</th><th>reach</th></tr></thead><tbody>
{{range .Contacts}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.Reach}}</td></tr>{{end}}</tbody></table>
{{else}}<p>None in the spec (<code>contacts: [{name, role, reach}]</code>).</p>{{end}}
<h3>Runbooks</h3>
{{range .Runbooks}}<div class="runbook" data-kind="{{.Kind}}"><h4>{{.Kind}}</h4><p>{{code .When}}</p>
<ol class="steps">{{range .Steps}}<li data-step="{{.Name}}"><strong>{{.Name}}</strong>: {{code .Does}}</li>{{end}}</ol></div>
{{end}}
<h3>Last game days</h3>
{{if .GameDays}}<table><thead><tr><th>started</th><th>scenario</th><th>strategy</th><th>result</th><th>lost writes</th><th>RPO</th><th>RTO</th></tr></thead><tbody>
{{range .GameDays}}<tr><td>{{date .Started}}</td><td>{{.Scenario}}</td><td>{{.Strategy}}</td><td>{{result .}}</td><td>{{.Lost}}</td><td>{{secs .RPOSeconds}}</td><td>{{rto .}}</td></tr>{{end}}
</tbody></table>{{else}}<p>None yet: <code>lifeline gameday run examples/gamedays/region-loss.yaml --strategy {{$p.Strategy}}</code>.</p>{{end}}
<h3>Last restore drill</h3>
<p>{{code (drill .Verify)}}</p>
{{if .Readiness}}<h3>Readiness when generated</h3><ul>{{range .Readiness}}<li>{{.Region}}: {{ready .}}</li>{{end}}</ul>{{end}}
</section>
{{end}}
</body></html>
`))

// codeSpans escapes s and turns its `quoted` parts into code elements.
func codeSpans(s string) template.HTML {
	parts := strings.Split(s, "`")
	var b strings.Builder
	for i, p := range parts {
		esc := template.HTMLEscapeString(p)
		if i%2 == 1 && i < len(parts)-1 {
			b.WriteString("<code>" + esc + "</code>")
		} else {
			if i%2 == 1 {
				b.WriteString("`")
			}
			b.WriteString(esc)
		}
	}
	return template.HTML(b.String())
}
