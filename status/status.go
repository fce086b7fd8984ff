// Package status assembles what `lifeline status` shows: every node of
// every workload with its role, health, WAL position and replication lag,
// from the reports agents keep in the control store.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/store"
)

// Report is the JSON shape of `lifeline status --json`. Fields are added
// over time; none is renamed.
type Report struct {
	Name string `json:"name"`
	// Controller is the node whose agent leads the controller ("" while
	// none does, e.g. during an election).
	Controller string     `json:"controller"`
	Workloads  []Workload `json:"workloads"`
	// API lists the base URL of every agent's HTTP API (and dashboard).
	API []string `json:"api,omitempty"`
}

// Workload is one workload's state.
type Workload struct {
	Name     string `json:"name"`
	Strategy string `json:"strategy"`
	// Active, Primary, Epoch, Phase and the runbook in progress come from
	// the workload's stored state (empty before it is bootstrapped).
	Active      string             `json:"active"`
	Primary     string             `json:"primary"`
	Epoch       int64              `json:"epoch"`
	Phase       lifeline.Phase     `json:"phase"`
	Runbook     string             `json:"runbook,omitempty"`
	RunbookKind string             `json:"runbook_kind,omitempty"`
	Approval    *lifeline.Approval `json:"approval,omitempty"`
	Fenced      []string           `json:"fenced,omitempty"`
	Databases   []string           `json:"databases,omitempty"`
	Failover    string             `json:"failover"`
	RPOSeconds  float64            `json:"rpo_seconds"`
	RTOSeconds  float64            `json:"rto_seconds"`
	// Entry points: DNS, the global HTTP entry point, the writer endpoint
	// (always the current primary) and the reader endpoint.
	DNS    string `json:"dns"`
	HTTP   string `json:"http"`
	Writer string `json:"writer"`
	Reader string `json:"reader"`
	// LeaseHolder is the node holding the primary lease ("" while none does).
	LeaseHolder  string                   `json:"lease_holder"`
	LastFailover *lifeline.FailoverRecord `json:"last_failover,omitempty"`
	Backups      Backups                  `json:"backups"`
	// Instances are the service instances per region: how many the
	// placement wants there now and how many pass their health checks.
	Instances []RegionInstances `json:"instances"`
	Nodes     []Node            `json:"nodes"`
	// Readiness says, per standby region, whether it can take over now
	// (READY) or which checks fail, as the controller leader last judged.
	Readiness []lifeline.Readiness `json:"readiness,omitempty"`
}

// RegionInstances counts a region's service instances.
type RegionInstances struct {
	Region  string `json:"region"`
	Want    int    `json:"want"`
	Healthy int    `json:"healthy"`
}

// Backups is the state of a workload's backups.
type Backups struct {
	Last   *lifeline.BackupRecord `json:"last,omitempty"`
	Verify *lifeline.VerifyRecord `json:"verify,omitempty"`
	Copies []Copy                 `json:"copies,omitempty"`
}

// Copy is one region's copy of the active region's repository.
type Copy struct {
	lifeline.CopyRecord
	LagSeconds float64 `json:"lag_seconds"`
}

// Facts is what the control store holds about a workload.
type Facts struct {
	State     lifeline.WorkloadState
	HasState  bool
	Lease     *lifeline.LeaseRecord
	Reports   map[string]lifeline.NodeStatus // by node
	Failovers []lifeline.FailoverRecord
	Backup    map[string]json.RawMessage // "last", "verify", "copy-<region>"
	Health    []store.HealthResult
	Readiness []lifeline.Readiness
	Now       time.Time
}

// Node is one node's database as its agent last reported it.
type Node struct {
	Region      string  `json:"region"`
	Zone        string  `json:"zone"`
	Role        string  `json:"role"`
	Healthy     bool    `json:"healthy"`
	Address     string  `json:"address"`
	Port        int     `json:"port"`
	AgentPID    int     `json:"agent_pid"`
	PostgresPID int     `json:"postgres_pid"`
	Timeline    int64   `json:"timeline"`
	LSN         string  `json:"lsn"`
	LagBytes    int64   `json:"lag_bytes"`
	LagSeconds  float64 `json:"lag_seconds"`
	WithinRPO   bool    `json:"within_rpo"`
	Reported    string  `json:"reported,omitempty"`
	Error       string  `json:"error,omitempty"`
	// ArchiveError is why WAL archiving could not be set up on the node.
	ArchiveError string `json:"archive_error,omitempty"`
}

// Collect reads the state of every workload of t.
func Collect(ctx context.Context, s *store.Store, t *lifeline.Topology) (*Report, error) {
	rep := &Report{Name: t.Name, API: APIEndpoints(t)}
	leader, err := ControllerLeader(ctx, s)
	if err != nil {
		return nil, err
	}
	rep.Controller = leader
	for i := range t.Workloads {
		w := &t.Workloads[i]
		f, err := Read(ctx, s, w.Name)
		if err != nil {
			return nil, err
		}
		rep.Workloads = append(rep.Workloads, Build(t, w, f))
	}
	return rep, nil
}

// ControllerLeader names the controller leader: the candidate whose
// election key is the oldest (how etcd's concurrency.Election orders them).
func ControllerLeader(ctx context.Context, s *store.Store) (string, error) {
	resp, err := s.Client().Get(ctx, s.Keys().Election("controller")+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("read the controller leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Read gathers a workload's facts from the store.
func Read(ctx context.Context, s *store.Store, workload string) (Facts, error) {
	var f Facts
	var err error
	if f.State, _, f.HasState, err = s.State(ctx, workload); err != nil {
		return f, err
	}
	var l lifeline.LeaseRecord
	_, found, err := s.Get(ctx, s.Keys().Lease(workload), &l)
	if err != nil {
		return f, err
	}
	if found {
		f.Lease = &l
	}
	reports, err := s.Statuses(ctx, workload)
	if err != nil {
		return f, err
	}
	f.Reports = map[string]lifeline.NodeStatus{}
	for _, r := range reports {
		f.Reports[r.Node] = r
	}
	fos, err := store.List[lifeline.FailoverRecord](ctx, s, s.Keys().FailoverPrefix(workload))
	if err != nil {
		return f, err
	}
	for _, fo := range fos {
		f.Failovers = append(f.Failovers, fo)
	}
	sort.Slice(f.Failovers, func(i, j int) bool { return f.Failovers[i].Started.Before(f.Failovers[j].Started) })
	if f.Backup, err = store.List[json.RawMessage](ctx, s, s.Keys().BackupStatePrefix(workload)); err != nil {
		return f, err
	}
	health, err := store.List[store.HealthResult](ctx, s, s.Keys().HealthPrefix())
	if err != nil {
		return f, err
	}
	for _, h := range health {
		f.Health = append(f.Health, h)
	}
	if f.Readiness, err = s.Readiness(ctx, workload); err != nil {
		return f, err
	}
	f.Now = time.Now()
	return f, nil
}

// Build is the pure part of Collect: the workload's state from its facts.
func Build(t *lifeline.Topology, w *lifeline.Workload, f Facts) Workload {
	st, reports := f.State, f.Reports
	out := Workload{
		Name: w.Name, Strategy: string(w.Strategy), Active: st.Active, Primary: st.Primary, Epoch: st.Epoch,
		Phase: st.Phase, Runbook: st.Runbook, RunbookKind: st.RunbookKind, Approval: st.Approval,
		Fenced: st.Fenced, Databases: st.Databases, Failover: string(w.Failover),
		RPOSeconds: w.Objectives.RPO.Seconds(), RTOSeconds: w.Objectives.RTO.Seconds(),
	}
	ep := router.EndpointsOf(t, w)
	out.DNS, out.HTTP, out.Writer, out.Reader = ep.DNS, ep.HTTP, ep.Writer, ep.Reader
	if f.Lease != nil {
		out.LeaseHolder = f.Lease.Node
	}
	if n := len(f.Failovers); n > 0 {
		out.LastFailover = &f.Failovers[n-1]
	}
	names := make([]string, 0, len(f.Backup))
	for name := range f.Backup {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := f.Backup[name]
		switch {
		case name == "last":
			var r lifeline.BackupRecord
			if json.Unmarshal(raw, &r) == nil {
				out.Backups.Last = &r
			}
		case name == "verify":
			var r lifeline.VerifyRecord
			if json.Unmarshal(raw, &r) == nil {
				out.Backups.Verify = &r
			}
		case strings.HasPrefix(name, "copy-"):
			var r lifeline.CopyRecord
			if json.Unmarshal(raw, &r) == nil {
				out.Backups.Copies = append(out.Backups.Copies, Copy{CopyRecord: r, LagSeconds: math.Round(r.LagSeconds(f.Now)*10) / 10})
			}
		}
	}
	if f.HasState {
		out.Instances = instances(t, w, st, f.Health)
	}
	for _, r := range f.Readiness {
		if r.Region != st.Active {
			out.Readiness = append(out.Readiness, r)
		}
	}
	primary, _ := st.PrimaryNode()
	pst := reports[st.Primary]
	primaryLSN, _ := lifeline.ParseLSN(pst.LSN)
	replicas := map[string]lifeline.ReplicaStatus{}
	for _, r := range pst.Replicas {
		replicas[r.Name] = r
	}
	for _, id := range t.DatabaseNodesIn(st) {
		n := Node{Region: id.Region, Zone: id.Zone, Address: t.Address(id), Port: w.Database.Port}
		n.Role = string(t.RoleIn(w, st, id))
		st, ok := reports[id.String()]
		if !ok {
			n.Error = "no report from the agent (node down?)"
			out.Nodes = append(out.Nodes, n)
			continue
		}
		n.Healthy, n.AgentPID, n.PostgresPID = st.Healthy, st.AgentPID, st.PostgresPID
		n.Timeline, n.LSN, n.Error, n.ArchiveError = st.Timeline, st.LSN, st.Error, st.ArchiveError
		n.Reported = st.Reported.Format(time.RFC3339)
		if id != primary {
			n.LagBytes, n.LagSeconds = lag(primaryLSN, st, replicas[id.Slug()])
		}
		n.WithinRPO = n.Healthy && (id == primary || n.LagSeconds <= w.Objectives.RPO.Seconds())
		out.Nodes = append(out.Nodes, n)
	}
	return out
}

// instances counts each region's service instances, and those a majority
// of the vantage points that report on them see up.
func instances(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, health []store.HealthResult) []RegionInstances {
	votes := map[string][2]int{} // target → up, reports
	for _, h := range health {
		v := votes[h.Target]
		if h.Up {
			v[0]++
		}
		v[1]++
		votes[h.Target] = v
	}
	out := make([]RegionInstances, 0, len(t.Regions))
	for _, r := range t.RegionNames() {
		ri := RegionInstances{Region: r}
		for _, inst := range compute.Plan(t, w, st.Active) {
			if inst.Node.Region != r {
				continue
			}
			ri.Want++
			if v := votes[inst.Name()]; v[1] > 0 && 2*v[0] > v[1] {
				ri.Healthy++
			}
		}
		out = append(out, ri)
	}
	return out
}

// lag prefers the primary's own view (pg_stat_replication), which is the
// standby's distance from what the primary has acknowledged; it falls back
// to comparing the two reports when the standby is not connected.
func lag(primary lifeline.LSN, st lifeline.NodeStatus, r lifeline.ReplicaStatus) (int64, float64) {
	if r.Connected {
		return r.LagBytes, math.Round(r.ReplayLag*1000) / 1000
	}
	l, err := lifeline.ParseLSN(st.LSN)
	if err != nil || primary == 0 {
		return 0, 0
	}
	return primary.Sub(l), 0
}

// WriteTable prints the report for a terminal.
func (r *Report) WriteTable(out io.Writer) error {
	fmt.Fprintf(out, "controller leader: %s\n\n", orDash(r.Controller))
	for i, w := range r.Workloads {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "workload %s: %s, active %s, primary %s (epoch %d), rpo %s, rto %s, phase %s\n",
			w.Name, w.Strategy, orDash(w.Active), orDash(w.Primary), w.Epoch,
			time.Duration(w.RPOSeconds*float64(time.Second)), time.Duration(w.RTOSeconds*float64(time.Second)), orDash(string(w.Phase)))
		if w.Runbook != "" {
			fmt.Fprintf(out, "runbook in progress: %s (%s)", w.Runbook, w.RunbookKind)
			if w.Phase == lifeline.PhaseWaitingApproval {
				fmt.Fprintf(out, ": WAITING FOR APPROVAL (lifeline approve %s)", w.Runbook)
			}
			fmt.Fprintln(out)
		}
		if len(w.Fenced) > 0 {
			fmt.Fprintf(out, "fenced regions: %s\n", strings.Join(w.Fenced, ", "))
		}
		fmt.Fprintf(out, "writer %s, reader %s, http %s, dns %s; primary lease held by %s\n", w.Writer, w.Reader, w.HTTP, w.DNS, orDash(w.LeaseHolder))
		if f := w.LastFailover; f != nil {
			fmt.Fprintf(out, "last failover: %s -> %s at %s, %.1fs from lease loss to verified (%s)\n",
				f.From, f.To, f.Started.Local().Format("2006-01-02 15:04:05"), f.Seconds, f.Kind)
		}
		writeBackups(out, w.Backups)
		writeReadiness(out, w.Readiness)
		if len(w.Instances) > 0 {
			var parts []string
			for _, ri := range w.Instances {
				parts = append(parts, fmt.Sprintf("%s %d/%d healthy", ri.Region, ri.Healthy, ri.Want))
			}
			fmt.Fprintf(out, "services: %s\n", strings.Join(parts, ", "))
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLE\tHEALTHY\tADDRESS\tTL\tLSN\tLAG\tLAG(s)\tIN RPO\tPIDS (agent/pg)\tNOTE")
		nodes := append([]Node(nil), w.Nodes...)
		sort.SliceStable(nodes, func(a, b int) bool { return rank(nodes[a].Role) < rank(nodes[b].Role) })
		for _, n := range nodes {
			lagB, lagS := "-", "-"
			if n.Role != string(lifeline.RolePrimary) && n.LSN != "" {
				lagB, lagS = bytes(n.LagBytes), fmt.Sprintf("%.3f", n.LagSeconds)
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s:%d\t%d\t%s\t%s\t%s\t%s\t%d/%d\t%s\n",
				n.Region, n.Zone, n.Role, yesNo(n.Healthy), n.Address, n.Port, n.Timeline, orDash(n.LSN),
				lagB, lagS, yesNo(n.WithinRPO), n.AgentPID, n.PostgresPID, note(n))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeReadiness says, per standby region, READY or NOT READY with the
// checks that fail.
func writeReadiness(out io.Writer, rs []lifeline.Readiness) {
	for _, r := range rs {
		if r.Ready {
			fmt.Fprintf(out, "standby %s: READY (since %s)\n", r.Region, r.Since.Local().Format("15:04:05"))
			continue
		}
		fmt.Fprintf(out, "standby %s: NOT READY (since %s)\n", r.Region, r.Since.Local().Format("15:04:05"))
		for _, c := range r.Failing() {
			fmt.Fprintf(out, "  %s: %s\n", c.Name, c.Detail)
		}
	}
}

func writeBackups(out io.Writer, b Backups) {
	switch l := b.Last; {
	case l == nil:
		fmt.Fprintln(out, "last backup: none yet")
	case l.Error != "":
		fmt.Fprintf(out, "last backup: FAILED at %s: %s\n", l.At.Local().Format("2006-01-02 15:04:05"), l.Error)
	default:
		fmt.Fprintf(out, "last backup: %s from %s into %s, %s in %.1fs\n", l.ID, l.Node, l.Region, bytes(l.Bytes), l.Seconds)
	}
	if v := b.Verify; v != nil {
		verdict := "passed"
		if !v.Passed {
			verdict = "FAILED: " + v.Failure
		}
		fmt.Fprintf(out, "last verify: %s at %s (backup %s, restored and checked in %.1fs; RTO %.0fs)\n",
			verdict, v.At.Local().Format("2006-01-02 15:04:05"), v.Backup, v.TotalSeconds, v.RTOSeconds)
	}
	for _, c := range b.Copies {
		note := ""
		if c.Error != "" {
			note = " (" + c.Error + ")"
		}
		fmt.Fprintf(out, "backup copy %s -> %s: lag %.1fs, newest WAL %s%s\n", c.From, c.Region, c.LagSeconds, orDash(c.NewestWAL), note)
	}
}

func rank(role string) int {
	switch lifeline.Role(role) {
	case lifeline.RolePrimary:
		return 0
	case lifeline.RoleSyncStandby:
		return 1
	}
	return 2
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// note is a node's error, and its archive's when that is another.
func note(n Node) string {
	if n.ArchiveError != "" && !strings.Contains(n.Error, n.ArchiveError) {
		return strings.TrimPrefix(n.Error+"; WAL archiving is off: "+n.ArchiveError, "; ")
	}
	return n.Error
}
