package gameday

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the report as report.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	f := r.Figures
	title := r.Scenario
	if r.Strategy != "" {
		title += " (" + r.Strategy + ")"
	}
	w("# Game day %s: %s", title, r.Result())
	w("")
	w("Run `%s`, %s, %s of load on workload %s (%s), scenario `%s`.", r.ID, r.Started.Local().Format("2006-01-02 15:04:05"),
		r.Raw.LoadEnd.Sub(r.Raw.LoadStart).Round(100*time.Millisecond), r.Workload, r.Topology.Strategy, r.File)
	if r.Description != "" {
		w("")
		w("%s", r.Description)
	}
	if r.Aborted != "" {
		w("")
		w("**Aborted:** %s", r.Aborted)
	}
	if r.Plan.Hypothesis != "" {
		w("")
		w("## Hypothesis")
		w("")
		w("%s", r.Plan.Hypothesis)
	}
	if len(r.Plan.Participants) > 0 {
		w("")
		w("| participant | role |")
		w("|---|---|")
		for _, p := range r.Plan.Participants {
			w("| %s | %s |", p.Name, p.Role)
		}
	}
	w("")
	w("## Expectations")
	w("")
	w("| expectation | measured | result |")
	w("|---|---|---|")
	for _, v := range r.Verdicts {
		w("| `%s` | %s | %s |", v.Expectation, v.Got, passWord(v.Passed))
	}
	w("")
	w("## Measured")
	w("")
	w("| figure | value |")
	w("|---|---|")
	for _, row := range r.figureRows() {
		w("| %s | %s |", row[0], row[1])
	}
	if len(r.Raw.Events) > 0 {
		w("")
		w("## Timeline")
		w("")
		w("| at | planned | step | detail | took | result |")
		w("|---|---|---|---|---|---|")
		for _, e := range r.Raw.Events {
			w("| +%.2fs | +%s | %s %s | %s | %.2fs | %s |", r.offset(e.Start), e.Planned, e.Kind, e.Name, mdCell(e.Detail), e.End.Sub(e.Start).Seconds(), resultWord(e.Error))
		}
	}
	w("")
	w("## Phases")
	w("")
	w("| phase | from | to | requests | ok | errors | p50 | p90 | p99 |")
	w("|---|---|---|---|---|---|---|---|---|")
	for _, p := range f.Phases {
		w("| %s | +%.2fs | +%.2fs | %d | %d | %d | %.1f ms | %.1f ms | %.1f ms |", p.Name, r.offset(p.Start), r.offset(p.End), p.Count, p.OK, p.Errors, p.P50MS, p.P90MS, p.P99MS)
	}
	if s := r.servedBy(); len(s) > 0 {
		w("")
		w("## Acknowledged writes by where they were served")
		w("")
		w("| region and instance | writes |")
		w("|---|---|")
		for _, c := range s {
			w("| %s | %d |", c.Where, c.N)
		}
	}
	if errs := r.TopErrors(5); len(errs) > 0 {
		w("")
		w("## Most frequent errors")
		w("")
		w("| attempts | first at | error |")
		w("|---|---|---|")
		for _, e := range errs {
			w("| %d | +%.2fs | %s |", e.N, e.First, mdCell(e.Message))
		}
	}
	if len(r.Raw.Runbooks) > 0 {
		w("")
		w("## Runbooks")
		for _, rb := range r.Raw.Runbooks {
			w("")
			w("%s `%s` %s in %.2fs, started at +%.2fs", rb.Kind, rb.ID, rb.State, rb.Seconds, r.offset(rb.Started))
			w("")
			w("| step | state | took | note |")
			w("|---|---|---|---|")
			for _, s := range rb.Steps {
				w("| %s | %s | %.2fs | %s |", s.Name, s.State, s.Seconds, mdCell(s.Note+s.Error))
			}
		}
	}
	if len(r.Problems) > 0 {
		w("")
		w("## Problems")
		w("")
		for _, p := range r.Problems {
			w("- %s", mdCell(p))
		}
	}
	w("")
	w("Every figure is computed from the raw events in report.json (`raw`).")
	return b.String()
}

// figureRows are the headline figures, shared by report.md and report.html.
func (r *Report) figureRows() [][2]string {
	f := r.Figures
	rto := "not measured: " + f.unmeasured("rto")
	if f.RTOSeconds != nil {
		rto = fmt.Sprintf("%.3fs", *f.RTOSeconds)
	}
	rows := [][2]string{
		{"RPO", rpoText(f)},
		{"RTO", rto},
		{"requests", fmt.Sprintf("%d (%d writes, %d reads); %d ok, %d failed, %d unknown; %d not sent (every worker busy)", f.Attempts, f.Writes, f.Reads, f.OK, f.Errors, f.Unknown, r.Missed)},
		{"availability", fmt.Sprintf("%.2f%%", f.Availability)},
		{"writes lost / recovered / unexpected", fmt.Sprintf("%d / %d / %d", len(f.Lost), len(f.Recovered), len(f.Unexpected))},
	}
	for _, ff := range f.Faults {
		v := "no write succeeded after it"
		if ff.FirstWrite != nil {
			v = fmt.Sprintf("first write %s ended at +%.3fs, %.3fs after the fault, served by %s %s",
				ff.FirstWrite.ID, r.offset(ff.FirstWrite.End), *ff.RTOSeconds, ff.FirstWrite.Region, ff.FirstWrite.Instance)
		}
		rows = append(rows, [2]string{fmt.Sprintf("%s %s at +%.3fs", ff.Name, ff.Detail, r.offset(ff.At)), v})
	}
	if n := len(f.Lost); n > 0 {
		rows = append(rows, [2]string{"lost ids", strings.Join(first(f.Lost, 10), ", ") + more(n, 10)})
	}
	if n := len(f.Unexpected); n > 0 {
		rows = append(rows, [2]string{"unexpected ids", strings.Join(first(f.Unexpected, 10), ", ") + more(n, 10)})
	}
	return rows
}

func first(ids []string, n int) []string {
	if len(ids) > n {
		return ids[:n]
	}
	return ids
}

func more(n, shown int) string {
	if n > shown {
		return fmt.Sprintf(" and %d more", n-shown)
	}
	return ""
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func resultWord(err string) string {
	if err == "" {
		return "ok"
	}
	return "failed: " + mdCell(err)
}

func mdCell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func rpoText(f Figures) string {
	if f.Unread {
		return "not measured: " + f.unmeasured("rpo")
	}
	return fmt.Sprintf("%.3fs (%d acknowledged writes lost)", f.RPOSeconds, len(f.Lost))
}
