package controller

import (
	"time"

	"github.com/lifeline-dr/lifeline"
)

// BuildEvidence snapshots what a region failover is decided on: the last
// position each standby outside the lost region reported, the lost
// primary's last report (zero when unknown, e.g. a leader elected after
// the loss), and the loss that implies. It is pure.
func BuildEvidence(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, region string, lastPrimary lifeline.NodeStatus, reports map[string]lifeline.NodeStatus, down Verdict, now time.Time) lifeline.Evidence {
	ev := lifeline.Evidence{Region: region, Primary: st.Primary, DetectedAt: now.UTC(), Seen: down.Seen, EstimatedLossBytes: -1, EstimatedLossSeconds: -1}
	if !down.Since.IsZero() {
		ev.LostAt = down.Since.UTC()
	}
	replicas := map[string]lifeline.ReplicaStatus{}
	if lastPrimary.Node == st.Primary && lastPrimary.Node != "" {
		ev.PrimaryLSN, ev.PrimaryReported = lastPrimary.LSN, lastPrimary.Reported
		for _, r := range lastPrimary.Replicas {
			replicas[r.Name] = r
		}
	}
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == region {
			continue
		}
		r, ok := reports[id.String()]
		if !ok {
			continue
		}
		s := lifeline.Standing{Node: id.String(), ReceiveLSN: r.ReceiveLSN, ReplayLSN: r.LSN, Reported: r.Reported, Streaming: r.Streaming}
		if rep, ok := replicas[id.Slug()]; ok {
			s.LagBytes, s.LagSeconds = rep.LagBytes, rep.ReplayLag
		}
		ev.Standbys = append(ev.Standbys, s)
	}
	if best, ok := ev.Best(); ok && ev.PrimaryLSN != "" {
		p, perr := lifeline.ParseLSN(ev.PrimaryLSN)
		b, berr := lifeline.ParseLSN(best.ReceiveLSN)
		if r, rerr := lifeline.ParseLSN(best.ReplayLSN); rerr == nil && (berr != nil || r > b) {
			b, berr = r, nil
		}
		if perr == nil && berr == nil {
			ev.EstimatedLossBytes = max(p.Sub(b), 0)
			ev.EstimatedLossSeconds = best.LagSeconds
			if ev.EstimatedLossBytes == 0 {
				ev.EstimatedLossSeconds = 0
			}
		}
	}
	return ev
}
