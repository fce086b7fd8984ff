package plan

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/spec"
)

// MultiZone is the row of a workload protected by its active region's
// zones alone: nothing runs or is stored in another region.
const MultiZone = "multi-zone"

// Sources of a figure.
const (
	Measured  = "measured"
	Estimated = "estimated"
)

// Figure is one expected RPO or RTO.
type Figure struct {
	Seconds float64 `json:"seconds"`
	Source  string  `json:"source"` // Measured or Estimated
	// Run and Date name the game day a measured figure comes from.
	Run  string    `json:"run,omitempty"`
	Date time.Time `json:"date,omitzero"`
	// Note says how an estimate was made, or what a measure ran under.
	Note string `json:"note,omitempty"`
}

// Outcome is what one risk costs under one strategy.
type Outcome struct {
	Risk    lifeline.Risk `json:"risk"`
	PerYear float64       `json:"per_year"`
	RPO     Figure        `json:"rpo"`
	RTO     Figure        `json:"rto"`
	// YearlyLoss is PerYear × (downtime cost × RTO + data-loss cost × RPO).
	YearlyLoss float64 `json:"expected_yearly_loss"`
}

// Standing is what a strategy keeps running in the standby regions.
type Standing struct {
	Instances int     `json:"instances"`
	Databases int     `json:"databases"`
	StorageGB float64 `json:"storage_gb"`
	Yearly    float64 `json:"yearly"`
}

// Row is one strategy for one workload.
type Row struct {
	Strategy string `json:"strategy"` // MultiZone or a lifeline.Strategy
	// Current is the strategy the spec runs.
	Current      bool      `json:"current"`
	Outcomes     []Outcome `json:"risks"`
	Standing     Standing  `json:"standing"`
	ExpectedLoss float64   `json:"expected_yearly_loss"`
	Total        float64   `json:"total_yearly"`
	// Meets: the expected RPO and RTO of a zone's and a region's loss are
	// within the objectives; Misses says which are not.
	Meets  bool     `json:"meets_objectives"`
	Misses []string `json:"misses,omitempty"`
}

// Outcome returns the row's outcome of a risk.
func (r Row) Outcome(risk lifeline.Risk) (Outcome, bool) {
	for _, o := range r.Outcomes {
		if o.Risk == risk {
			return o, true
		}
	}
	return Outcome{}, false
}

// WorkloadPlan is the plan of one workload.
type WorkloadPlan struct {
	Workload   string          `json:"workload"`
	Strategy   string          `json:"strategy"`
	Failover   string          `json:"failover"`
	RPOSeconds float64         `json:"rpo_seconds"`
	RTOSeconds float64         `json:"rto_seconds"`
	Impact     lifeline.Impact `json:"impact"`
	Rows       []Row           `json:"strategies"`
	// Recommended is the strategy the plan recommends, Reason why.
	Recommended string `json:"recommended"`
	Reason      string `json:"reason"`
	// Notes are caveats of the whole plan (what estimates leave out).
	Notes []string `json:"notes,omitempty"`
}

// Row returns the plan's row of a strategy.
func (p WorkloadPlan) Row(strategy string) (Row, bool) {
	for _, r := range p.Rows {
		if r.Strategy == strategy {
			return r, true
		}
	}
	return Row{}, false
}

// Plan is `lifeline plan`'s answer.
type Plan struct {
	Name      string         `json:"name"`
	Generated time.Time      `json:"generated"`
	Workloads []WorkloadPlan `json:"workloads"`
}

// Facts are what a plan weighs besides the spec, for one workload.
type Facts struct {
	// History is the data directory's game days, faults resolved.
	History []gameday.HistoryEntry
	// Verify is the workload's last restore drill, nil when unknown.
	Verify *lifeline.VerifyRecord
	// Readiness of each standby region, when a running topology said.
	Readiness []lifeline.Readiness
}

// Build plans every workload of t; facts gives each workload's facts.
func Build(t *lifeline.Topology, facts func(w *lifeline.Workload) Facts, now time.Time) *Plan {
	p := &Plan{Name: t.Name, Generated: now.UTC()}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		p.Workloads = append(p.Workloads, ForWorkload(t, w, facts(w)))
	}
	return p
}

// Rows lists the strategies a plan weighs, cheapest first.
func Rows() []string {
	rows := []string{MultiZone}
	for _, s := range lifeline.Strategies {
		rows = append(rows, string(s))
	}
	return rows
}

// ForWorkload plans one workload. It is pure.
func ForWorkload(t *lifeline.Topology, w *lifeline.Workload, f Facts) WorkloadPlan {
	im := w.Impact
	if im.Tier == "" {
		im = spec.DefaultImpact(spec.DefaultTier)
	}
	p := WorkloadPlan{Workload: w.Name, Strategy: string(w.Strategy), Failover: string(w.Failover),
		RPOSeconds: w.Objectives.RPO.Seconds(), RTOSeconds: w.Objectives.RTO.Seconds(), Impact: im}
	e := newEstimator(t, w, im, f)
	for _, s := range Rows() {
		row := Row{Strategy: s, Current: s == string(w.Strategy)}
		for _, risk := range lifeline.Risks {
			l, ok := im.Likelihood(risk)
			if !ok {
				continue
			}
			o := Outcome{Risk: risk, PerYear: l.PerYear}
			o.RPO, o.RTO = e.outcome(s, risk, l)
			o.YearlyLoss = round2(l.PerYear * (im.DowntimePerHour*o.RTO.Seconds/3600 + im.DataLossPerMinute*o.RPO.Seconds/60))
			row.Outcomes = append(row.Outcomes, o)
			row.ExpectedLoss += o.YearlyLoss
		}
		row.Standing = e.standing(s)
		row.ExpectedLoss = round2(row.ExpectedLoss)
		row.Total = round2(row.ExpectedLoss + row.Standing.Yearly)
		row.Misses = e.misses(s)
		row.Meets = len(row.Misses) == 0
		p.Rows = append(p.Rows, row)
	}
	p.Recommended, p.Reason = recommend(p, w)
	if w.Failover == lifeline.FailoverApprove && im.ApprovalTime <= 0 {
		p.Notes = append(p.Notes, "region failover waits for a human's approval (failover: approve); the estimates do not count that wait: set impact.approval-time to count it")
	}
	return p
}

// estimator holds what the estimates are made from.
type estimator struct {
	t  *lifeline.Topology
	w  *lifeline.Workload
	im lifeline.Impact
	f  Facts
}

func newEstimator(t *lifeline.Topology, w *lifeline.Workload, im lifeline.Impact, f Facts) *estimator {
	return &estimator{t: t, w: w, im: im, f: f}
}

// Assumptions of the estimates, each from a measure of this repository.
const (
	// promoteTime: a promotion takes 0.2-0.5 s once named (docs/decisions.md).
	promoteTime = time.Second
	// serviceStart: a service instance started from nothing until it
	// passes its health check.
	serviceStart = 5 * time.Second
	// restoreRate: bench/backup restores 769 MiB until read-write in 2.7 s.
	restoreRate = 250e6 // bytes a second
	// assumedWANLatency stands in for the cross-region latency of a
	// distributed topology, which the spec does not know.
	assumedWANLatency = 30 * time.Millisecond
	// copyEvery is how often backups and WAL are copied to the other
	// regions (controller.copyEvery).
	copyEvery = 5 * time.Second
	// copyBack: finding a bad statement's moment and copying the rows
	// back from a side instance (the game day's restore action does it).
	copyBack = 10 * time.Minute
)

func est(d time.Duration, note string, args ...any) Figure {
	return Figure{Seconds: round2(d.Seconds()), Source: Estimated, Note: fmt.Sprintf(note, args...)}
}

// outcome is the expected RPO and RTO of a risk under a strategy.
func (e *estimator) outcome(strategy string, risk lifeline.Risk, l lifeline.RiskLikelihood) (rpo, rto Figure) {
	rpo, rto = e.estimate(strategy, risk, l)
	if m, ok := e.measured(strategy, risk); ok {
		mrpo := Figure{Seconds: round2(m.RPOSeconds), Source: Measured, Run: m.ID, Date: m.Started, Note: e.measuredNote(m, strategy)}
		rpo = mrpo
		if m.RTOSeconds != nil && risk != lifeline.RiskOperator {
			// A bad DELETE costs no write: its game day's RTO is not the
			// time the deleted rows are missing.
			mrto := mrpo
			mrto.Seconds = round2(*m.RTOSeconds)
			rto = mrto
		}
	}
	return rpo, rto
}

func (e *estimator) measuredNote(m gameday.HistoryEntry, strategy string) string {
	n := fmt.Sprintf("game day %s (%s)", m.Scenario, m.ID)
	if m.Strategy != "" && m.Strategy != strategy {
		n += ", run under " + m.Strategy
	}
	if !m.Passed {
		n += ", which failed its expectations"
	}
	return n
}

// faultOf is the game-day fault that rehearses a risk.
var faultOf = map[lifeline.Risk]string{
	lifeline.RiskZone:     "kill-zone",
	lifeline.RiskRegion:   "kill-region",
	lifeline.RiskOperator: "delete",
}

// measured finds the newest game day that measured a risk under a strategy.
func (e *estimator) measured(strategy string, risk lifeline.Risk) (gameday.HistoryEntry, bool) {
	fault, ok := faultOf[risk]
	if !ok || (strategy == MultiZone && risk == lifeline.RiskRegion) {
		return gameday.HistoryEntry{}, false
	}
	var same, other *gameday.HistoryEntry
	for i := range e.f.History {
		h := &e.f.History[i]
		if len(h.Faults) != 1 || h.Faults[0] != fault || (h.Workload != "" && h.Workload != e.w.Name) {
			continue
		}
		if risk != lifeline.RiskOperator && h.RTOSeconds == nil {
			continue // it never recovered: no figure
		}
		switch {
		case h.Strategy == strategy || (h.Strategy == "" && strategy == string(e.w.Strategy)):
			if same == nil || h.Started.After(same.Started) {
				same = h
			}
		case risk == lifeline.RiskZone && h.Strategy != "":
			if other == nil || h.Started.After(other.Started) {
				other = h
			}
		}
	}
	if same != nil {
		return *same, true
	}
	if other != nil {
		return *other, true
	}
	return gameday.HistoryEntry{}, false
}

// estimate is a risk's RPO and RTO under a strategy from the settings.
func (e *estimator) estimate(strategy string, risk lifeline.Risk, l lifeline.RiskLikelihood) (rpo, rto Figure) {
	c := e.t.Control
	switch risk {
	case lifeline.RiskZone:
		rto = est(c.LeaseTTL+2*c.CheckInterval+promoteTime, "lease TTL %s + 2 check intervals of %s + promotion", c.LeaseTTL, c.CheckInterval)
		if e.w.Database.Sync != "" {
			return est(0, "a synchronous standby in another zone (sync %s) has every commit", e.w.Database.Sync), rto
		}
		return est(c.CheckInterval, "asynchronous in the region: up to about a check interval"), rto
	case lifeline.RiskRegion:
		return e.regionLoss(strategy, l)
	case lifeline.RiskOperator:
		restore, how := e.restoreTime()
		return est(0, "point-in-time restore into a side instance to just before the statement"),
			est(restore+copyBack, "%s, then about %s to copy the rows back", how, copyBack)
	default: // corruption
		restore, how := e.restoreTime()
		at := agent.ArchiveTimeout(e.w)
		return est(at, "restore to before the corruption; up to archive_timeout (%s) of WAL not archived yet", at),
			est(restore, "%s", how)
	}
}

// regionLoss estimates the loss of the active region under a strategy.
func (e *estimator) regionLoss(strategy string, l lifeline.RiskLikelihood) (rpo, rto Figure) {
	c := e.t.Control
	if strategy == MultiZone {
		return est(0, "nothing outside the region: its data is back when it is"),
			est(l.Lasts, "no other region: the outage is waited out (impact region-loss lasts %s)", secs(l.Lasts.Seconds()))
	}
	detect := c.LeaseTTL + c.RegionDownAfter
	approval := time.Duration(0)
	if e.w.Failover == lifeline.FailoverApprove && e.im.ApprovalTime > 0 {
		approval = e.im.ApprovalTime
	}
	hs := router.HealthSettings{Interval: e.t.Router.Health.Interval, Passes: e.t.Router.Health.Passes}.WithDefaults()
	reroute := time.Duration(hs.Passes) * hs.Interval
	base := fmt.Sprintf("detection (lease TTL %s + region-down-after %s)", c.LeaseTTL, c.RegionDownAfter)
	if approval > 0 {
		base += fmt.Sprintf(" + approval %s", approval)
	}
	lag, lagNote := e.t.Links.CrossRegion.Latency, "cross-region latency"
	if lag == 0 {
		lag, lagNote = assumedWANLatency, "assumed cross-region latency"
	}
	switch lifeline.Strategy(strategy) {
	case lifeline.BackupRestore:
		at := agent.ArchiveTimeout(e.w)
		restore, how := e.restoreTime()
		return est(at+copyEvery, "archive_timeout %s + the copy to the other region every %s", at, copyEvery),
			est(detect+approval+restore+serviceStart+reroute, "%s + %s + service start + reroute (%d health checks every %s)", base, how, hs.Passes, hs.Interval)
	case lifeline.PilotLight:
		return est(lag, "replication lag ≈ %s %s", lagNote, lag),
			est(detect+approval+promoteTime+serviceStart+reroute, "%s + promotion + services started from 0 + reroute", base)
	case lifeline.WarmStandby:
		start, what := time.Duration(0), "services already at full count"
		if e.scalesUp(lifeline.WarmStandby) {
			start, what = serviceStart, "services scaled up"
		}
		return est(lag, "replication lag ≈ %s %s", lagNote, lag),
			est(detect+approval+promoteTime+start+reroute, "%s + promotion + %s + reroute", base, what)
	default: // active-active: every region serves; writes are rerouted
		return est(lag, "replication lag ≈ %s %s", lagNote, lag),
			est(detect+approval+promoteTime, "%s + promotion (every region serves already)", base)
	}
}

// restoreTime is how long a restore of the newest backup takes: the last
// restore drill's when there is one, else the database's size at restoreRate.
func (e *estimator) restoreTime() (time.Duration, string) {
	if v := e.f.Verify; v != nil && v.Passed && v.RestoreSeconds > 0 {
		d := time.Duration(v.RestoreSeconds * float64(time.Second))
		return d, fmt.Sprintf("restore %s as the restore drill of %s took", d.Round(100*time.Millisecond), v.At.UTC().Format("2006-01-02"))
	}
	d := time.Duration(e.im.DataGB * 1e9 / restoreRate * float64(time.Second))
	return d, fmt.Sprintf("restore of %g GB at 250 MB/s (no restore drill yet)", e.im.DataGB)
}

// replicasFor is the service replicas a strategy runs in a standby region.
func (e *estimator) replicasFor(s lifeline.Strategy, svc lifeline.Service) int {
	switch {
	case s == e.w.Strategy:
		return svc.Replicas.Standby
	case s == lifeline.WarmStandby:
		return 1
	case s == lifeline.ActiveActive:
		return svc.Replicas.Active
	}
	return 0
}

// scalesUp reports whether a failover under s must start instances.
func (e *estimator) scalesUp(s lifeline.Strategy) bool {
	for _, svc := range e.w.Services {
		if e.replicasFor(s, svc) < svc.Replicas.Active {
			return true
		}
	}
	return false
}

// standing is what a strategy keeps in the standby regions, a year.
func (e *estimator) standing(strategy string) Standing {
	var st Standing
	if strategy == MultiZone {
		return st
	}
	s := lifeline.Strategy(strategy)
	w := *e.w
	w.Strategy = s
	w.Services = slices.Clone(e.w.Services)
	for i := range w.Services {
		w.Services[i].Replicas.Standby = e.replicasFor(s, w.Services[i])
	}
	for _, inst := range compute.Plan(e.t, &w, e.w.Active) {
		if inst.Node.Region != e.w.Active {
			st.Instances++
		}
	}
	kept := float64(e.w.Backups.RetentionFull)
	if kept == 0 && e.w.Backups.Full > 0 {
		kept = math.Ceil(float64(e.w.Backups.Retention)/float64(e.w.Backups.Full)) + 1
	}
	for _, r := range e.t.Regions {
		if r.Name == e.w.Active {
			continue
		}
		// The copy of the backups (zstd: about half the size) in every
		// standby region, and a volume per standby database.
		st.StorageGB += kept * e.im.DataGB / 2
		if s.StandbyDatabase() {
			st.Databases += len(r.Zones)
			st.StorageGB += float64(len(r.Zones)) * e.im.DataGB
		}
	}
	pr := e.im.Prices
	st.StorageGB = round2(st.StorageGB)
	st.Yearly = round2(12 * (float64(st.Instances)*pr.InstanceMonth + float64(st.Databases)*pr.DatabaseMonth + st.StorageGB*pr.StorageGBMonth))
	return st
}

// misses lists the objectives a strategy's expected zone and region losses miss.
func (e *estimator) misses(strategy string) []string {
	var out []string
	for _, risk := range []lifeline.Risk{lifeline.RiskZone, lifeline.RiskRegion} {
		l, ok := e.im.Likelihood(risk)
		if !ok {
			l = lifeline.RiskLikelihood{Risk: risk, Lasts: spec.DefaultRegionOutage}
		}
		rpo, rto := e.outcome(strategy, risk, l)
		if rpo.Seconds > e.w.Objectives.RPO.Seconds() {
			out = append(out, fmt.Sprintf("%s rpo %s > %s", risk, secs(rpo.Seconds), secs(e.w.Objectives.RPO.Seconds())))
		}
		if rto.Seconds > e.w.Objectives.RTO.Seconds() {
			out = append(out, fmt.Sprintf("%s rto %s > %s", risk, secs(rto.Seconds), secs(e.w.Objectives.RTO.Seconds())))
		}
	}
	return out
}

// recommend picks the cheapest strategy that meets the objectives.
func recommend(p WorkloadPlan, w *lifeline.Workload) (string, string) {
	var best, cheapest *Row
	for i := range p.Rows {
		r := &p.Rows[i]
		if cheapest == nil || r.Total < cheapest.Total {
			cheapest = r
		}
		if r.Meets && (best == nil || r.Total < best.Total) {
			best = r
		}
	}
	cur := p.Impact.Currency
	objectives := fmt.Sprintf("rpo %s and rto %s", secs(w.Objectives.RPO.Seconds()), secs(w.Objectives.RTO.Seconds()))
	if best == nil {
		return cheapest.Strategy, fmt.Sprintf("no strategy meets %s for the loss of a zone and of a region (%s misses %s), so %s, of the lowest yearly cost (%s standing + %s expected loss), is the choice until the objectives are relaxed or the failover made faster",
			objectives, cheapest.Strategy, cheapest.Misses[0], cheapest.Strategy, money(cheapest.Standing.Yearly, cur), money(cheapest.ExpectedLoss, cur))
	}
	reason := fmt.Sprintf("%s has the lowest yearly cost (%s standing + %s expected loss = %s) of the strategies that meet %s for the loss of a zone and of a region",
		best.Strategy, money(best.Standing.Yearly, cur), money(best.ExpectedLoss, cur), money(best.Total, cur), objectives)
	if cheapest != best {
		reason += fmt.Sprintf("; %s would cost %s less a year but misses %s", cheapest.Strategy, money(best.Total-cheapest.Total, cur), cheapest.Misses[0])
	}
	return best.Strategy, reason
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// secs formats seconds as a duration a reader knows (0s, 20ms, 4.5s,
// 10m40s, 8h).
func secs(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	str := d.Round(time.Second).String()
	if strings.HasSuffix(str, "m0s") {
		str = strings.TrimSuffix(str, "0s")
	}
	if strings.HasSuffix(str, "h0m") {
		str = strings.TrimSuffix(str, "0m")
	}
	return str
}

// money formats an amount with thousands separators, without decimals.
func money(v float64, currency string) string {
	n := int64(math.Round(v))
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return sign + s + " " + currency
}
