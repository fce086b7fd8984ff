package controller

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Action is what the controller decides to do about a workload.
type Action string

const (
	None Action = ""
	// ZoneFailover promotes a standby of the primary's own region.
	ZoneFailover Action = "zone-failover"
	// RegionFailoverNeeded: the primary's region has no standby left that
	// could take over; a region failover needs approval (or auto mode).
	RegionFailoverNeeded Action = "region-failover-needed"
)

// Input is everything a decision depends on; Decide is a pure function of it.
type Input struct {
	Topology *lifeline.Topology
	Workload *lifeline.Workload
	Primary  lifeline.PrimaryRecord
	// Lease is the primary lease key's value; nil when the key is gone.
	Lease *lifeline.LeaseRecord
	// LeaseMissing is how long this controller has seen no lease; Grace is
	// how long it must be missing before acting (0 when the controller saw
	// the key expire, LeaseTTL when it only found it absent, e.g. at start).
	LeaseMissing time.Duration
	Grace        time.Duration
	Reports      map[string]lifeline.NodeStatus
	// Locked is true while a runbook holds the workload.
	Locked bool
	Now    time.Time
}

// Decision is Decide's answer, with the reason shown to operators.
type Decision struct {
	Action Action
	Reason string
}

// Decide says whether the workload needs a failover.
func Decide(in Input) Decision {
	if in.Primary.Node == "" {
		return Decision{None, "not bootstrapped yet"}
	}
	if in.Lease != nil {
		if in.Lease.Node == in.Primary.Node && in.Lease.Epoch == in.Primary.Epoch {
			return Decision{None, "the primary holds its lease"}
		}
		return Decision{None, fmt.Sprintf("lease held by %s (epoch %d) while %s is primary (epoch %d): waiting for it to expire",
			in.Lease.Node, in.Lease.Epoch, in.Primary.Node, in.Primary.Epoch)}
	}
	if in.Locked {
		return Decision{None, "a runbook is running"}
	}
	if in.LeaseMissing < in.Grace {
		return Decision{None, fmt.Sprintf("primary lease missing for %s; waiting %s before acting", in.LeaseMissing.Round(time.Millisecond), in.Grace)}
	}
	primary, err := lifeline.ParseNodeID(in.Primary.Node)
	if err != nil {
		return Decision{None, err.Error()}
	}
	if c := candidates(in.Topology, in.Workload, primary, in.Reports, in.Now); len(c) > 0 {
		return Decision{ZoneFailover, fmt.Sprintf("primary %s lost its lease; %d standby(s) in %s can take over", primary, len(c), primary.Region)}
	}
	var others []string
	for _, id := range in.Topology.DatabaseNodes(in.Workload) {
		if id.Region != primary.Region && usable(in.Topology, in.Reports[id.String()], in.Now) {
			others = append(others, id.String())
		}
	}
	if len(others) > 0 {
		return Decision{RegionFailoverNeeded, fmt.Sprintf("primary %s lost its lease and region %s has no standby left; %s could take over: a region failover needs approval",
			primary, primary.Region, strings.Join(others, ", "))}
	}
	return Decision{None, fmt.Sprintf("primary %s lost its lease and no standby can take over", primary)}
}

// usable is a standby whose agent reported recently and whose server runs in recovery.
func usable(t *lifeline.Topology, st lifeline.NodeStatus, now time.Time) bool {
	return st.Node != "" && now.Sub(st.Reported) <= t.Control.LeaseTTL && st.Running && st.InRecovery && !st.Fenced
}

// candidates are the standbys of the primary's region that could be promoted.
func candidates(t *lifeline.Topology, w *lifeline.Workload, primary lifeline.NodeID, reports map[string]lifeline.NodeStatus, now time.Time) []lifeline.NodeID {
	var out []lifeline.NodeID
	for _, id := range t.DatabaseNodes(w) {
		if id.Region == primary.Region && id != primary && usable(t, reports[id.String()], now) {
			out = append(out, id)
		}
	}
	return out
}

var (
	// ErrNoCandidate: no standby of the primary's region can be promoted.
	ErrNoCandidate = errors.New("no standby of the primary's region can be promoted")
	// ErrStillStreaming: a candidate still receives WAL from the old
	// primary, so its position is not final (and the old primary is alive).
	ErrStillStreaming = errors.New("a standby still streams from the old primary")
)

// Pick chooses the standby to promote: among the primary's region's usable
// standbys, the one that has received the most WAL. With synchronous
// replication every acknowledged commit is on at least one of them, so the
// most advanced one holds them all. Positions are final only once no
// candidate streams any more.
func Pick(t *lifeline.Topology, w *lifeline.Workload, primary lifeline.NodeID, reports map[string]lifeline.NodeStatus, now time.Time) (lifeline.NodeID, lifeline.LSN, error) {
	cands := candidates(t, w, primary, reports, now)
	if len(cands) == 0 {
		return lifeline.NodeID{}, 0, ErrNoCandidate
	}
	type ranked struct {
		id  lifeline.NodeID
		lsn lifeline.LSN
		at  int
	}
	var rs []ranked
	for i, id := range cands {
		st := reports[id.String()]
		if st.Streaming {
			return lifeline.NodeID{}, 0, fmt.Errorf("%w: %s", ErrStillStreaming, id)
		}
		lsn, err := lifeline.ParseLSN(st.ReceiveLSN)
		if err != nil {
			lsn, _ = lifeline.ParseLSN(st.LSN)
		}
		if replay, err := lifeline.ParseLSN(st.LSN); err == nil && replay > lsn {
			lsn = replay
		}
		rs = append(rs, ranked{id, lsn, i})
	}
	sort.SliceStable(rs, func(a, b int) bool {
		if rs[a].lsn != rs[b].lsn {
			return rs[a].lsn > rs[b].lsn
		}
		return rs[a].at < rs[b].at
	})
	return rs[0].id, rs[0].lsn, nil
}
