package plan_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/plan"
	"github.com/lifeline-dr/lifeline/spec"
)

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func load(t *testing.T, example string, replace ...string) *lifeline.Topology {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", example+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := spec.Parse(example+".yaml", []byte(strings.NewReplacer(replace...).Replace(string(b))))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func f(v float64) *float64 { return &v }

// writeHistory writes a data directory's game-day history.
func writeHistory(t *testing.T, entries ...gameday.HistoryEntry) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, gameday.HistoryFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func outcome(t *testing.T, p plan.WorkloadPlan, strategy string, risk lifeline.Risk) plan.Outcome {
	t.Helper()
	r, ok := p.Row(strategy)
	if !ok {
		t.Fatalf("no row %s", strategy)
	}
	o, ok := r.Outcome(risk)
	if !ok {
		t.Fatalf("row %s has no %s", strategy, risk)
	}
	return o
}

// TestForWorkload_MeasuredFromHistory: with a history file, the figures of
// the risks game days rehearsed are the newest runs' own, marked measured
// with the run's id and date; the others stay estimated.
func TestForWorkload_MeasuredFromHistory(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 3, d, 10, 0, 0, 0, time.UTC) }
	dir := writeHistory(t,
		gameday.HistoryEntry{ID: "old", Scenario: "region-loss", Strategy: "warm-standby", Workload: "orders", Faults: []string{"kill-region"},
			Started: day(1), Passed: true, RPOSeconds: 3, RTOSeconds: f(30)},
		gameday.HistoryEntry{ID: "ws-region", Scenario: "region-loss", Strategy: "warm-standby", Workload: "orders", Faults: []string{"kill-region"},
			Started: day(2), Passed: true, RPOSeconds: 0.42, RTOSeconds: f(7.3)},
		gameday.HistoryEntry{ID: "pl-zone", Scenario: "zone-loss", Strategy: "pilot-light", Workload: "orders", Faults: []string{"kill-zone"},
			Started: day(3), Passed: true, RPOSeconds: 0, RTOSeconds: f(4.4)},
		// Two faults in one run: neither figure is one risk's.
		gameday.HistoryEntry{ID: "mixed", Scenario: "faults", Strategy: "warm-standby", Workload: "orders", Faults: []string{"kill-zone", "kill-region"},
			Started: day(4), RPOSeconds: 9, RTOSeconds: f(99)},
		// Never recovered: no RTO to take.
		gameday.HistoryEntry{ID: "stuck", Scenario: "region-loss", Strategy: "active-active", Workload: "orders", Faults: []string{"kill-region"},
			Started: day(5), RPOSeconds: 1},
		// Another workload's.
		gameday.HistoryEntry{ID: "ledger", Scenario: "region-loss", Strategy: "pilot-light", Workload: "ledger", Faults: []string{"kill-region"},
			Started: day(6), RPOSeconds: 5, RTOSeconds: f(50)},
		// Written before the history kept faults, its report gone: the
		// example scenario's name tells.
		gameday.HistoryEntry{ID: "pl-region", Scenario: "region-loss", Strategy: "pilot-light", Started: day(7), Passed: true,
			RPOSeconds: 0.05, RTOSeconds: f(12.5), Report: "/nonexistent/report.html"},
		gameday.HistoryEntry{ID: "delete", Scenario: "accidental-delete", Strategy: "warm-standby", Workload: "orders", Faults: []string{"delete"},
			Started: day(8), Passed: true, RPOSeconds: 0, RTOSeconds: f(0.1)},
	)
	history, err := plan.LoadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	top := load(t, "warm-standby")
	p := plan.ForWorkload(top, &top.Workloads[0], plan.Facts{History: history})

	for _, c := range []struct {
		strategy string
		risk     lifeline.Risk
		rpo, rto float64
		run      string
		date     time.Time
	}{
		{"warm-standby", lifeline.RiskRegion, 0.42, 7.3, "ws-region", day(2)},
		{"pilot-light", lifeline.RiskRegion, 0.05, 12.5, "pl-region", day(7)},
		{"pilot-light", lifeline.RiskZone, 0, 4.4, "pl-zone", day(3)},
		// A zone's loss fails over the same way under every strategy.
		{"warm-standby", lifeline.RiskZone, 0, 4.4, "pl-zone", day(3)},
		{plan.MultiZone, lifeline.RiskZone, 0, 4.4, "pl-zone", day(3)},
	} {
		o := outcome(t, p, c.strategy, c.risk)
		for _, fig := range []struct {
			name string
			got  plan.Figure
			want float64
		}{{"rpo", o.RPO, c.rpo}, {"rto", o.RTO, c.rto}} {
			if fig.got.Source != plan.Measured || fig.got.Seconds != fig.want || fig.got.Run != c.run || !fig.got.Date.Equal(c.date) {
				t.Errorf("%s %s %s = %+v, want %v measured by %s on %s", c.strategy, c.risk, fig.name, fig.got, fig.want, c.run, c.date)
			}
		}
	}
	if o := outcome(t, p, "warm-standby", lifeline.RiskZone); !strings.Contains(o.RTO.Note, "run under pilot-light") {
		t.Errorf("a measure taken under another strategy says so: %q", o.RTO.Note)
	}
	// The delete's run measured its RPO; the time deleted rows are
	// missing is not what its RTO measured.
	if o := outcome(t, p, "warm-standby", lifeline.RiskOperator); o.RPO.Source != plan.Measured || o.RTO.Source != plan.Estimated {
		t.Errorf("operator error = %+v / %+v, want a measured RPO and an estimated RTO", o.RPO, o.RTO)
	}
	for _, c := range []struct {
		strategy string
		risk     lifeline.Risk
	}{
		{"active-active", lifeline.RiskRegion}, // its only run never recovered
		{"backup-restore", lifeline.RiskRegion},
		{plan.MultiZone, lifeline.RiskRegion},
		{"warm-standby", lifeline.RiskCorruption},
	} {
		if o := outcome(t, p, c.strategy, c.risk); o.RPO.Source != plan.Estimated || o.RTO.Source != plan.Estimated {
			t.Errorf("%s %s = %+v / %+v, want estimated", c.strategy, c.risk, o.RPO, o.RTO)
		}
	}
}

// TestForWorkload_Estimated: without history every figure is estimated
// and says from what.
func TestForWorkload_Estimated(t *testing.T) {
	for _, ex := range []string{"backup-restore", "pilot-light", "warm-standby", "active-active"} {
		top := load(t, ex)
		p := plan.ForWorkload(top, &top.Workloads[0], plan.Facts{})
		if len(p.Rows) != 5 || p.Rows[0].Strategy != plan.MultiZone {
			t.Fatalf("%s: rows %+v, want multi-zone and the four strategies", ex, p.Rows)
		}
		for _, r := range p.Rows {
			if len(r.Outcomes) != 4 {
				t.Errorf("%s %s: %d risks, want the 4 defaults", ex, r.Strategy, len(r.Outcomes))
			}
			for _, o := range r.Outcomes {
				for _, fig := range []plan.Figure{o.RPO, o.RTO} {
					if fig.Source != plan.Estimated || fig.Note == "" || fig.Run != "" {
						t.Errorf("%s %s %s: %+v, want an estimate with its note", ex, r.Strategy, o.Risk, fig)
					}
				}
			}
			if r.Current != (r.Strategy == ex) {
				t.Errorf("%s: row %s current = %v", ex, r.Strategy, r.Current)
			}
		}
		if p.Recommended == "" || p.Reason == "" || strings.Contains(p.Reason, ".") && strings.Count(p.Reason, ". ") > 0 {
			t.Errorf("%s: recommendation %q: %q, want one sentence", ex, p.Recommended, p.Reason)
		}
	}
}

// TestForWorkload_Arithmetic: the expected yearly loss is likelihood ×
// (downtime cost × RTO + data-loss cost × RPO), summed over the risks;
// the total adds the standing cost.
func TestForWorkload_Arithmetic(t *testing.T) {
	top := load(t, "warm-standby", "    routing:", `    impact: {downtime-per-hour: 3600, data-loss-per-minute: 60, data-gb: 20,
      risks: [{risk: region-loss, per-year: 0.5, lasts: 2h}],
      prices: {instance-month: 10, database-month: 100, storage-gb-month: 1}}
    routing:`)
	p := plan.ForWorkload(top, &top.Workloads[0], plan.Facts{})
	mz, _ := p.Row(plan.MultiZone)
	o := outcome(t, p, plan.MultiZone, lifeline.RiskRegion)
	if o.RTO.Seconds != 7200 || o.YearlyLoss != 0.5*7200 || mz.ExpectedLoss != 3600 || mz.Standing.Yearly != 0 || mz.Total != 3600 {
		t.Errorf("multi-zone: %+v, outcome %+v; want 2h waited out, a loss of 3600 a year, nothing standing", mz, o)
	}
	ws, _ := p.Row("warm-standby")
	o = outcome(t, p, "warm-standby", lifeline.RiskRegion)
	if want := 0.5 * (3600*o.RTO.Seconds/3600 + 60*o.RPO.Seconds/60); math.Abs(o.YearlyLoss-want) > 0.01 {
		t.Errorf("warm-standby region loss %v, want %v", o.YearlyLoss, want)
	}
	// eu-central: 2 zones, so 2 databases and 1 service instance; storage:
	// a 20 GB volume each and the backups' copy (8 kept, half size).
	want := plan.Standing{Instances: 1, Databases: 2, StorageGB: 2*20 + 8*20/2}
	want.Yearly = 12 * (1*10 + 2*100 + want.StorageGB*1)
	if ws.Standing != want {
		t.Errorf("warm-standby standing %+v, want %+v", ws.Standing, want)
	}
	if aa, _ := p.Row("active-active"); aa.Standing.Instances != 2 {
		t.Errorf("active-active runs the active count in the standby region: %+v", aa.Standing)
	}
	if br, _ := p.Row("backup-restore"); br.Standing.Databases != 0 || br.Standing.Instances != 0 {
		t.Errorf("backup-restore keeps only backups: %+v", br.Standing)
	}
}

func TestForWorkload_Recommend(t *testing.T) {
	for _, c := range []struct {
		name       string
		objectives string
		want       string
		reason     string
	}{
		{"loose objectives: the cheapest that meets them", "{rpo: 5m, rto: 1h}", "backup-restore", "lowest yearly cost"},
		{"seconds of data: a streaming standby", "{rpo: 1s, rto: 1m}", "pilot-light", "misses region-loss rpo"},
		{"a fast failover: every region serving", "{rpo: 1s, rto: 8s}", "active-active", "lowest yearly cost"},
		{"out of reach", "{rpo: 1s, rto: 2s}", "backup-restore", "no strategy meets rpo 1s and rto 2s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := load(t, "warm-standby", "{rpo: 1s, rto: 30s}", c.objectives)
			p := plan.ForWorkload(top, &top.Workloads[0], plan.Facts{})
			if p.Recommended != c.want || !strings.Contains(p.Reason, c.reason) {
				t.Errorf("recommended %s: %s; want %s, a reason with %q", p.Recommended, p.Reason, c.want, c.reason)
			}
		})
	}
}

// TestForWorkload_RestoreDrill: backup-restore's failover is estimated
// with the last restore drill's restore time.
func TestForWorkload_RestoreDrill(t *testing.T) {
	top := load(t, "backup-restore")
	v := &lifeline.VerifyRecord{At: now, Passed: true, RestoreSeconds: 42}
	with := outcome(t, plan.ForWorkload(top, &top.Workloads[0], plan.Facts{Verify: v}), "backup-restore", lifeline.RiskRegion)
	without := outcome(t, plan.ForWorkload(top, &top.Workloads[0], plan.Facts{}), "backup-restore", lifeline.RiskRegion)
	if with.RTO.Source != plan.Estimated || !strings.Contains(with.RTO.Note, "restore drill of 2026-03-10") || math.Abs(with.RTO.Seconds-without.RTO.Seconds-(42-40)) > 0.01 {
		t.Errorf("with the drill %+v, without %+v: want the drill's 42s instead of 10 GB at 250 MB/s (40s)", with.RTO, without.RTO)
	}
}
