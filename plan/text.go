package plan

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/lifeline-dr/lifeline"
)

// WriteTable prints the plan for a terminal.
func (p *Plan) WriteTable(out io.Writer) error {
	for i, wp := range p.Workloads {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := wp.writeTable(out); err != nil {
			return err
		}
	}
	return nil
}

func (wp WorkloadPlan) writeTable(out io.Writer) error {
	im := wp.Impact
	fmt.Fprintf(out, "workload %s: %s, rpo %s, rto %s, failover %s; tier %s: downtime %s/h, lost data %s/min\n",
		wp.Workload, wp.Strategy, secs(wp.RPOSeconds), secs(wp.RTOSeconds), wp.Failover, im.Tier,
		money(im.DowntimePerHour, im.Currency), money(im.DataLossPerMinute, im.Currency))
	fmt.Fprintf(out, "risks considered, a year: %s\n", riskLine(im))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\tZONE LOSS RPO / RTO\tREGION LOSS RPO / RTO\tSTANDING/YEAR\tLOSS/YEAR\tTOTAL/YEAR\t")
	for _, r := range wp.Rows {
		name := r.Strategy
		if r.Current {
			name += " (spec)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", name, pair(r, lifeline.RiskZone), pair(r, lifeline.RiskRegion),
			money(r.Standing.Yearly, im.Currency), money(r.ExpectedLoss, im.Currency), money(r.Total, im.Currency))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r, ok := wp.Row(MultiZone); ok {
		var same []string
		for _, risk := range []lifeline.Risk{lifeline.RiskOperator, lifeline.RiskCorruption} {
			if _, ok := r.Outcome(risk); ok {
				same = append(same, fmt.Sprintf("%s %s", risk, pair(r, risk)))
			}
		}
		if len(same) > 0 {
			fmt.Fprintf(out, "the same under every strategy (replication copies them; backups undo them): %s\n", strings.Join(same, "; "))
		}
	}
	for _, r := range wp.Rows {
		if !r.Meets {
			fmt.Fprintf(out, "%s misses the objectives: %s\n", r.Strategy, strings.Join(r.Misses, ", "))
		}
	}
	fmt.Fprintf(out, "recommended: %s: %s.\n", wp.Recommended, wp.Reason)
	for _, n := range wp.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	return nil
}

func riskLine(im lifeline.Impact) string {
	var parts []string
	for _, r := range im.Risks {
		s := fmt.Sprintf("%s %g", r.Risk, r.PerYear)
		if r.Risk == lifeline.RiskRegion && r.Lasts > 0 {
			s += fmt.Sprintf(" (lasting %s)", secs(r.Lasts.Seconds()))
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// pair is a risk's "RPO / RTO" with where the figures come from.
func pair(r Row, risk lifeline.Risk) string {
	o, ok := r.Outcome(risk)
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%s / %s", figure(o.RPO), figure(o.RTO))
}

func figure(f Figure) string {
	if f.Source == Measured {
		return fmt.Sprintf("%s (measured %s)", secs(f.Seconds), f.Date.UTC().Format("2006-01-02"))
	}
	return secs(f.Seconds) + " est."
}
