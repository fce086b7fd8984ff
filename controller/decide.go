package controller

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// Action is what the controller decides to do about a workload.
type Action string

const (
	None Action = ""
	// ZoneFailover promotes a standby of the primary's own region.
	ZoneFailover Action = "zone-failover"
	// RegionFailover starts the region-failover runbook: the primary's
	// region is down and another region can take over. The runbook waits
	// at its approval gate (or for the witness quorum, with failover: auto).
	RegionFailover Action = "region-failover"
)

// The runbook kinds that are not decided by Decide but asked for.
const (
	Switchover = "switchover"
	Failback   = "failback"
)

// Input is everything a decision depends on; Decide is a pure function of it.
type Input struct {
	Topology *lifeline.Topology
	Workload *lifeline.Workload
	State    lifeline.WorkloadState
	HasState bool
	// Lease is the primary lease key's value; nil when the key is gone.
	Lease *lifeline.LeaseRecord
	// LeaseMissing is how long this controller has seen no lease; Grace is
	// how long it must be missing before acting (0 when the controller saw
	// the key expire, LeaseTTL when it only found it absent, e.g. at start).
	LeaseMissing time.Duration
	Grace        time.Duration
	Reports      map[string]lifeline.NodeStatus
	// Health is every vantage point's latest check of every target.
	Health []store.HealthResult
	Now    time.Time
}

// Decision is Decide's answer, with the reason shown to operators.
type Decision struct {
	Action Action
	Reason string
	// From is the region lost and To the region to fail over to
	// (RegionFailover only).
	From, To string
}

// Decide says whether the workload needs a failover, and which.
func Decide(in Input) Decision {
	if !in.HasState || in.State.Primary == "" {
		return Decision{Action: None, Reason: "not bootstrapped yet"}
	}
	st := in.State
	if in.Lease != nil {
		if in.Lease.Node == st.Primary && in.Lease.Epoch == st.Epoch {
			return Decision{Action: None, Reason: "the primary holds its lease"}
		}
		return Decision{Action: None, Reason: fmt.Sprintf("lease held by %s (epoch %d) while %s is primary (epoch %d): waiting for it to expire",
			in.Lease.Node, in.Lease.Epoch, st.Primary, st.Epoch)}
	}
	if st.Busy() {
		return Decision{Action: None, Reason: fmt.Sprintf("runbook %s is running (%s)", st.Runbook, st.Phase)}
	}
	if in.LeaseMissing < in.Grace {
		return Decision{Action: None, Reason: fmt.Sprintf("primary lease missing for %s; waiting %s before acting", in.LeaseMissing.Round(time.Millisecond), in.Grace)}
	}
	primary, ok := st.PrimaryNode()
	if !ok {
		return Decision{Action: None, Reason: fmt.Sprintf("the state names no valid primary (%q)", st.Primary)}
	}
	var alive []lifeline.NodeID
	for _, id := range candidates(in.Topology, in.Workload, st, primary.Region, primary, in.Reports, in.Now) {
		// A standby whose report has not aged out yet, but whose database
		// the witness and another region both fail to reach, died with
		// the primary: a zone failover to it would only delay the
		// region's.
		if !seenDown(in.Topology, in.Workload.Name, id, in.Health) {
			alive = append(alive, id)
		}
	}
	if len(alive) > 0 {
		return Decision{Action: ZoneFailover, Reason: fmt.Sprintf("primary %s lost its lease; %d standby(s) in %s can take over", primary, len(alive), primary.Region)}
	}
	down := RegionDown(in.Topology, in.Workload, st, primary.Region, in.Reports, in.Health, in.Now)
	if !down.Down {
		return Decision{Action: None, Reason: fmt.Sprintf("primary %s lost its lease and no standby of %s can take over; region %s is not declared down: %s",
			primary, primary.Region, primary.Region, down.Reason)}
	}
	to, why := Target(in.Topology, in.Workload, st, primary.Region, in.Reports, in.Now)
	if to == "" {
		return Decision{Action: None, Reason: fmt.Sprintf("region %s is down (%s) and no region can take over: %s", primary.Region, down.Reason, why)}
	}
	return Decision{Action: RegionFailover, From: primary.Region, To: to,
		Reason: fmt.Sprintf("region %s is down (%s); %s can take over: %s", primary.Region, down.Reason, to, why)}
}

// Verdict is whether a region is down, with why.
type Verdict struct {
	Down bool
	// Since is when the region began to look down to every vantage point
	// that must agree (the latest of their streaks).
	Since  time.Time
	Reason string
	// Seen lists each vantage point's view, for the evidence.
	Seen []string
}

// RegionDown applies the rule that declares a region down: every database
// node in it has stopped reporting through the control store (the etcd
// quorum cannot reach it), and fails the checks of both the witness and a
// vantage point of another region, continuously for region-down-after.
// With no witness in the topology the other regions' vantage points must
// agree among themselves (an etcd quorum without the lost region then
// needs three regions). It is pure.
func RegionDown(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string, reports map[string]lifeline.NodeStatus, health []store.HealthResult, now time.Time) Verdict {
	after := t.Control.RegionDownAfter
	var nodes []lifeline.NodeID
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == region {
			nodes = append(nodes, id)
		}
	}
	if len(nodes) == 0 {
		return Verdict{Reason: fmt.Sprintf("region %s holds no database", region)}
	}
	// Results by target, then vantage point.
	results := map[string]map[string]store.HealthResult{}
	for _, h := range health {
		if results[h.Target] == nil {
			results[h.Target] = map[string]store.HealthResult{}
		}
		results[h.Target][h.Vantage] = h
	}
	var since time.Time
	var seen []string
	for _, id := range nodes {
		if r, ok := reports[id.String()]; ok && fresh(t, r, now) {
			return Verdict{Reason: fmt.Sprintf("%s still reports through the control store (%s ago)", id, now.Sub(r.Reported).Round(time.Millisecond))}
		}
		target := DatabaseTarget(w.Name, id)
		byVantage := results[target]
		witnessDown, otherDown := false, false
		var witnessSince, otherSince time.Time
		for vantage, h := range byVantage {
			if h.Up {
				if vantage == lifeline.WitnessSite || vantage != region {
					return Verdict{Reason: fmt.Sprintf("%s reaches %s", vantage, id)}
				}
				continue
			}
			switch {
			case vantage == lifeline.WitnessSite:
				witnessDown, witnessSince = true, h.Since
			case vantage != region:
				if !otherDown || h.Since.Before(otherSince) {
					otherSince = h.Since
				}
				otherDown = true
			}
		}
		switch {
		case t.Witness != nil && !witnessDown:
			return Verdict{Reason: fmt.Sprintf("the witness has no failed check of %s", id)}
		case !otherDown:
			return Verdict{Reason: fmt.Sprintf("no other region has a failed check of %s", id)}
		}
		for _, s := range []time.Time{witnessSince, otherSince} {
			if !s.IsZero() && s.After(since) {
				since = s
			}
		}
		if t.Witness != nil {
			seen = append(seen, fmt.Sprintf("%s: witness sees it down since %s", id, witnessSince.UTC().Format(time.RFC3339Nano)))
		}
		seen = append(seen, fmt.Sprintf("%s: another region sees it down since %s", id, otherSince.UTC().Format(time.RFC3339Nano)))
	}
	if d := now.Sub(since); d < after {
		return Verdict{Since: since, Seen: seen, Reason: fmt.Sprintf("every node fails its checks, for %s of the %s needed", d.Round(time.Millisecond), after)}
	}
	return Verdict{Down: true, Since: since, Seen: seen,
		Reason: fmt.Sprintf("no node reports, and the witness and the other regions have failed every node's checks for %s", now.Sub(since).Round(time.Millisecond))}
}

// seenDown reports whether the latest checks of a node's database by the
// witness (when there is one) and by a vantage point of another region
// both failed.
func seenDown(t *lifeline.Topology, workload string, id lifeline.NodeID, health []store.HealthResult) bool {
	target := DatabaseTarget(workload, id)
	witness, other := t.Witness == nil, false
	for _, h := range health {
		if h.Target != target || h.Up {
			continue
		}
		switch {
		case h.Vantage == lifeline.WitnessSite:
			witness = true
		case h.Vantage != id.Region:
			other = true
		}
	}
	return witness && other
}

// DatabaseTarget names a node's database among the health targets.
func DatabaseTarget(workload string, id lifeline.NodeID) string {
	return workload + "/" + id.String() + "/postgres"
}

// fresh reports whether a node's report is recent enough that its agent
// reaches the control store.
func fresh(t *lifeline.Topology, st lifeline.NodeStatus, now time.Time) bool {
	return st.Node != "" && now.Sub(st.Reported) <= t.Control.LeaseTTL
}

// Target chooses the region to fail over to when region from is lost: for
// the streaming strategies, the region whose most advanced usable standby
// has received the most WAL; for backup-restore the first other region in
// spec order (it restores from its own copy of the repository). It says why,
// or why none can.
func Target(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, from string, reports map[string]lifeline.NodeStatus, now time.Time) (string, string) {
	if !w.Strategy.StandbyDatabase() {
		for _, r := range t.RegionNames() {
			if r != from && !st.IsFenced(r) {
				return r, fmt.Sprintf("%s restores from its own copy of the backups", r)
			}
		}
		return "", "no other region"
	}
	best, bestLSN := "", lifeline.LSN(0)
	var why []string
	for _, r := range t.RegionNames() {
		if r == from {
			continue
		}
		for _, id := range candidates(t, w, st, r, lifeline.NodeID{}, reports, now) {
			lsn := position(reports[id.String()])
			why = append(why, fmt.Sprintf("%s received %s", id, lsn))
			if best == "" || lsn > bestLSN {
				best, bestLSN = r, lsn
			}
		}
	}
	if best == "" {
		return "", "no standby of another region reports running in recovery"
	}
	return best, strings.Join(why, ", ")
}

// usable is a standby whose agent reported recently and whose server runs in recovery.
func usable(t *lifeline.Topology, st lifeline.NodeStatus, now time.Time) bool {
	return fresh(t, st, now) && st.Running && st.InRecovery && !st.Fenced
}

// candidates are the database nodes of region (other than exclude) that
// could be promoted.
func candidates(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string, exclude lifeline.NodeID, reports map[string]lifeline.NodeStatus, now time.Time) []lifeline.NodeID {
	var out []lifeline.NodeID
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == region && id != exclude && usable(t, reports[id.String()], now) {
			out = append(out, id)
		}
	}
	return out
}

// position is the furthest WAL a standby has: received or replayed.
func position(st lifeline.NodeStatus) lifeline.LSN {
	lsn, err := lifeline.ParseLSN(st.ReceiveLSN)
	if err != nil {
		lsn, _ = lifeline.ParseLSN(st.LSN)
	}
	if replay, err := lifeline.ParseLSN(st.LSN); err == nil && replay > lsn {
		lsn = replay
	}
	return lsn
}

var (
	// ErrNoCandidate: no standby of the region can be promoted.
	ErrNoCandidate = errors.New("no standby of the region can be promoted")
	// ErrStillStreaming: a candidate still receives WAL from the old
	// primary, so its position is not final (and the old primary is alive).
	ErrStillStreaming = errors.New("a standby still streams from the old primary")
	// ErrNoQuorum: too few of the synchronous standbys report to be sure
	// that one of them holds every acknowledged commit.
	ErrNoQuorum = errors.New("too few synchronous standbys report to rule out a lost commit")
)

// Pick chooses the standby of region to promote in place of the lost
// primary: among the region's usable standbys, the one that has received
// the most WAL. Positions are final only once no candidate streams any more.
//
// Inside the primary's own region with synchronous replication it applies
// the quorum-commit rule: with "ANY k" over N synchronous standbys a commit
// was acknowledged by k of them, so only reports from at least N−k+1 of
// the N guarantee that one reporting holds every acknowledged commit; with
// fewer it returns ErrNoQuorum and the caller waits. The N are syncSet,
// the standbys the lost primary last reported as synchronous (a standby
// dead long before acknowledged nothing since); nil means every
// synchronous candidate of the region, when that report is unknown.
func Pick(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, from lifeline.NodeID, region string, syncSet []lifeline.NodeID, reports map[string]lifeline.NodeStatus, now time.Time) (lifeline.NodeID, lifeline.LSN, error) {
	cands := candidates(t, w, st, region, from, reports, now)
	if region == from.Region {
		if k := syncCount(w.Database.Sync); k > 0 {
			all := syncSet
			if all == nil {
				all = t.SyncCandidatesIn(w, st, from)
			}
			have := 0
			for _, id := range all {
				if slices.Contains(cands, id) {
					have++
				}
			}
			if need := len(all) - k + 1; have < need {
				var missing []string
				for _, id := range all {
					if !slices.Contains(cands, id) {
						missing = append(missing, id.String())
					}
				}
				return lifeline.NodeID{}, 0, fmt.Errorf("%w: %d of %d report, %d needed (silent: %s)", ErrNoQuorum, have, len(all), need, strings.Join(missing, ", "))
			}
		}
	}
	if len(cands) == 0 {
		return lifeline.NodeID{}, 0, fmt.Errorf("%w (%s)", ErrNoCandidate, region)
	}
	type ranked struct {
		id  lifeline.NodeID
		lsn lifeline.LSN
		at  int
	}
	var rs []ranked
	for i, id := range cands {
		rep := reports[id.String()]
		if rep.Streaming {
			return lifeline.NodeID{}, 0, fmt.Errorf("%w: %s", ErrStillStreaming, id)
		}
		rs = append(rs, ranked{id, position(rep), i})
	}
	sort.SliceStable(rs, func(a, b int) bool {
		if rs[a].lsn != rs[b].lsn {
			return rs[a].lsn > rs[b].lsn
		}
		return rs[a].at < rs[b].at
	})
	return rs[0].id, rs[0].lsn, nil
}

// syncCount is k of "ANY k", 0 without synchronous replication.
func syncCount(rule string) int {
	f := strings.Fields(rule)
	if len(f) != 2 {
		return 0
	}
	k, _ := strconv.Atoi(f[1])
	return k
}

// SyncSet is the standbys a primary's report shows as synchronous (in
// the quorum, or sync), connected: those that may hold commits it
// acknowledged. Nil when the report is not the primary's.
func SyncSet(primary lifeline.NodeStatus) []lifeline.NodeID {
	if primary.Node == "" {
		return nil
	}
	out := []lifeline.NodeID{}
	for _, r := range primary.Replicas {
		if r.Connected && (r.SyncState == "quorum" || r.SyncState == "sync") {
			if id, ok := nodeOfSlug(r.Name); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

// nodeOfSlug reverses NodeID.Slug for the names that round-trip
// ("region_zone" where the region holds no underscore of its own).
func nodeOfSlug(slug string) (lifeline.NodeID, bool) {
	i := strings.LastIndex(slug, "_")
	if i <= 0 || i == len(slug)-1 {
		return lifeline.NodeID{}, false
	}
	return lifeline.NodeID{Region: strings.ReplaceAll(slug[:i], "_", "-"), Zone: slug[i+1:]}, true
}
