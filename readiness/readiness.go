package readiness

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
)

// Check names.
const (
	CheckRegion   = "region"
	CheckRouting  = "routing"
	CheckStandby  = "standby"
	CheckLag      = "lag"
	CheckVersion  = "version"
	CheckSettings = "settings"
	CheckBackups  = "backups"
	CheckDrill    = "drill"
	CheckServices = "services"
	CheckPorts    = "ports"
	CheckWitness  = "witness"
)

// Input is what one standby region's readiness is judged on.
type Input struct {
	T      *lifeline.Topology
	W      *lifeline.Workload
	State  lifeline.WorkloadState
	Region string // the standby region judged
	// Reports are the agents' reports by node.
	Reports map[string]lifeline.NodeStatus
	// Controls are the workload's routing controls by region (absent: on).
	Controls map[string]lifeline.ControlRecord
	// Copy is the region's copy of the active region's repository and
	// Verify the last restore drill; nil when there is none.
	Copy   *lifeline.CopyRecord
	Verify *lifeline.VerifyRecord
	// WitnessResults counts the witness's live health results.
	WitnessResults int
	// Host is what was found on the hosts; nil where that cannot be
	// checked from here (a distributed topology).
	Host *Host
	Now  time.Time
}

// Host is what was found on the hosts a failover would use.
type Host struct {
	// Commands maps each service's command to why it was not found (nil: found).
	Commands map[string]error
	// Ports maps each address a failover would listen on to why it is
	// not free (nil: free).
	Ports map[string]error
}

// Evaluate judges one standby region. It is pure.
func Evaluate(in Input) lifeline.Readiness {
	r := lifeline.Readiness{Workload: in.W.Name, Region: in.Region, Evaluated: in.Now.UTC()}
	add := func(name string, ok bool, format string, args ...any) {
		r.Checks = append(r.Checks, lifeline.ReadinessCheck{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	if in.State.IsFenced(in.Region) {
		add(CheckRegion, false, "%s is fenced since a region failover left it; lifeline failback lifts the fence", in.Region)
	} else {
		add(CheckRegion, true, "not fenced")
	}
	if c, ok := in.Controls[in.Region]; ok && !c.On {
		detail := fmt.Sprintf("%s is switched off in routing by %s at %s", in.Region, c.Actor, c.Changed.UTC().Format(time.RFC3339))
		if c.Reason != "" {
			detail += " (" + c.Reason + ")"
		}
		add(CheckRouting, false, "%s; lifeline routing set %s=on", detail, in.Region)
	} else {
		add(CheckRouting, true, "switched on")
	}
	if in.W.Strategy.StandbyDatabase() {
		streaming(in, add)
	} else {
		backups(in, add)
	}
	host(in, add)
	if in.W.Failover == lifeline.FailoverAuto {
		if in.WitnessResults > 0 {
			add(CheckWitness, true, "the witness reports %d health results", in.WitnessResults)
		} else {
			add(CheckWitness, false, "no health result from the witness: the quorum that approves an automatic failover cannot form")
		}
	}
	r.Ready = len(r.Failing()) == 0
	return r
}

type adder func(name string, ok bool, format string, args ...any)

// fresh reports whether a report is recent enough to go by: reports are
// refreshed every check interval and vanish with their agent's session.
func fresh(in Input, st lifeline.NodeStatus) bool {
	return in.Now.Sub(st.Reported) <= 2*in.T.Control.LeaseTTL
}

// streaming checks the standbys of a streaming strategy's region.
func streaming(in Input, add adder) {
	primary, hasPrimary := in.Reports[in.State.Primary]
	primaryGone := !hasPrimary || !fresh(in, primary) || primary.Role != lifeline.RolePrimary
	lags := map[string]lifeline.ReplicaStatus{}
	for _, rs := range primary.Replicas {
		lags[rs.Name] = rs
	}
	var best *lifeline.NodeStatus
	bestLag := -1.0
	var why []string
	for _, id := range in.T.DatabaseNodesIn(in.State) {
		if id.Region != in.Region {
			continue
		}
		st, ok := in.Reports[id.String()]
		switch {
		case !ok || !fresh(in, st):
			why = append(why, id.String()+" does not report")
			continue
		case !st.Running || !st.InRecovery:
			why = append(why, fmt.Sprintf("%s is not a running standby (%s)", id, orNone(st.Error)))
			continue
		case !primaryGone && !st.Streaming:
			why = append(why, id.String()+" does not stream from the primary")
			continue
		}
		lag := 0.0
		if !primaryGone {
			lag = lags[id.Slug()].ReplayLag
		}
		if best == nil || lag < bestLag {
			s := st
			best, bestLag = &s, lag
		}
	}
	if best == nil {
		if len(why) == 0 {
			why = append(why, fmt.Sprintf("%s holds no database of %s", in.Region, in.W.Name))
		}
		add(CheckStandby, false, "%s", strings.Join(why, "; "))
		add(CheckLag, false, "no standby to measure")
	} else {
		if primaryGone {
			add(CheckStandby, true, "%s runs in recovery; the primary is gone", best.Node)
			add(CheckLag, true, "the primary is gone: the failover's evidence measures the loss (lifeline alarms)")
		} else {
			add(CheckStandby, true, "%s streams from %s", best.Node, in.State.Primary)
			rpo := in.W.Objectives.RPO.Seconds()
			add(CheckLag, bestLag <= rpo, "%s replays %.3fs behind the primary (rpo %s)", best.Node, bestLag, in.W.Objectives.RPO)
		}
	}
	if best == nil || !hasPrimary {
		add(CheckVersion, true, "not compared: %s", map[bool]string{true: "no standby", false: "no report from the primary"}[best == nil])
		add(CheckSettings, true, "not compared: %s", map[bool]string{true: "no standby", false: "no report from the primary"}[best == nil])
		return
	}
	pv, sv := primary.ServerVersion, best.ServerVersion
	switch {
	case pv == 0 || sv == 0:
		add(CheckVersion, true, "not reported by %s", map[bool]string{true: in.State.Primary, false: best.Node}[pv == 0])
	case pv/10000 != sv/10000:
		add(CheckVersion, false, "%s runs PostgreSQL %d, the primary %d: a promotion would change the major version", best.Node, sv/10000, pv/10000)
	default:
		add(CheckVersion, true, "PostgreSQL %d on both", sv/10000)
	}
	if diffs := settingsDiff(primary.Settings, best.Settings); len(diffs) > 0 {
		add(CheckSettings, false, "%s: %s", best.Node, strings.Join(diffs, "; "))
	} else {
		add(CheckSettings, true, "as the primary's (%s)", strings.Join(lifeline.PromotionSettings, ", "))
	}
}

// atLeast are the settings a hot standby needs at least as high as its
// primary's; the others must be equal.
var atLeast = []string{"max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions", "max_locks_per_transaction"}

func settingsDiff(primary, standby map[string]string) []string {
	var out []string
	for _, name := range lifeline.PromotionSettings {
		p, pok := primary[name]
		s, sok := standby[name]
		if !pok || !sok {
			continue // not reported: an older agent
		}
		if slices.Contains(atLeast, name) {
			pn, perr := strconv.Atoi(p)
			sn, serr := strconv.Atoi(s)
			if perr == nil && serr == nil && sn < pn {
				out = append(out, fmt.Sprintf("%s %s < the primary's %s", name, s, p))
			}
			continue
		}
		if p != s {
			out = append(out, fmt.Sprintf("%s %s, the primary's %s", name, s, p))
		}
	}
	return out
}

// freshness is how old a backup-restore region's newest base backup may
// be: the full interval and a tenth more, for the backup itself to run.
func freshness(w *lifeline.Workload) time.Duration { return w.Backups.Full + w.Backups.Full/10 }

// backups checks what a backup-restore region restores from.
func backups(in Input, add adder) {
	c := in.Copy
	switch {
	case c == nil:
		add(CheckBackups, false, "%s has no copy of the backups yet", in.Region)
	case c.Backup == "":
		add(CheckBackups, false, "%s's copy of the repository holds no base backup (newest WAL %s)", in.Region, orNone(c.NewestWAL))
	default:
		at, err := time.Parse("20060102T150405Z", c.Backup)
		lag := c.LagSeconds(in.Now)
		switch {
		case err != nil:
			add(CheckBackups, false, "newest backup %q: not a backup id", c.Backup)
		case in.Now.Sub(at) > freshness(in.W):
			add(CheckBackups, false, "the newest base backup in %s, %s, is %s old (backups.full %s)", in.Region, c.Backup, in.Now.Sub(at).Round(time.Minute), in.W.Backups.Full)
		case c.Error != "":
			add(CheckBackups, false, "the copy to %s fails: %s", in.Region, c.Error)
		case lag > in.W.Objectives.RPO.Seconds():
			add(CheckBackups, false, "the WAL copy in %s is %.0fs behind (rpo %s)", in.Region, lag, in.W.Objectives.RPO)
		default:
			add(CheckBackups, true, "base backup %s, WAL copy %.0fs behind", c.Backup, lag)
		}
	}
	switch v := in.Verify; {
	case v == nil:
		// Transient: the controller drills every new backup, the first
		// one included.
		add(CheckDrill, true, "no restore drill yet: the first follows the first backup (or: lifeline backup verify)")
	case !v.Passed:
		add(CheckDrill, false, "the last restore drill failed at %s: %s", v.At.UTC().Format(time.RFC3339), v.Failure)
	default:
		add(CheckDrill, true, "the last restore drill passed at %s (%s restored in %.1fs)", v.At.UTC().Format(time.RFC3339), v.Backup, v.RestoreSeconds)
	}
}

// host checks what a failover would start on the region's hosts.
func host(in Input, add adder) {
	if in.Host == nil {
		add(CheckServices, true, "not checkable from here (distributed topology)")
		add(CheckPorts, true, "not checkable from here (distributed topology)")
		return
	}
	var missing []string
	for _, s := range in.W.Services {
		if len(s.Command) == 0 {
			continue
		}
		if err := in.Host.Commands[s.Command[0]]; err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", s.Name, err))
		}
	}
	if len(missing) > 0 {
		add(CheckServices, false, "%s", strings.Join(missing, "; "))
	} else {
		add(CheckServices, true, "every service's command is found")
	}
	var taken []string
	for _, addr := range FailoverAddresses(in.T, in.W, in.State, in.Region) {
		if err := in.Host.Ports[addr]; err != nil {
			taken = append(taken, fmt.Sprintf("%s: %v", addr, err))
		}
	}
	if len(taken) > 0 {
		add(CheckPorts, false, "taken: %s", strings.Join(taken, "; "))
	} else {
		add(CheckPorts, true, "free")
	}
}

// FailoverAddresses are the addresses a failover to region would start to
// listen on: the service instances it adds there, and for a region that
// holds no database yet (backup-restore), its databases.
func FailoverAddresses(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string) []string {
	running := map[string]bool{}
	for _, inst := range compute.Plan(t, w, st.Active) {
		running[inst.Addr] = true
	}
	var out []string
	for _, inst := range compute.Plan(t, w, region) {
		if inst.Node.Region == region && !running[inst.Addr] {
			out = append(out, inst.Addr)
		}
	}
	if !st.HasDatabase(region) {
		if r, err := t.Region(region); err == nil {
			for _, z := range r.Zones {
				out = append(out, net.JoinHostPort(z.Address, strconv.Itoa(w.Database.Port)))
			}
		}
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
