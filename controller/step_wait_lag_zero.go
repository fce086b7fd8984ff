package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

func init() {
	register("wait-lag-zero", func(e *Env) runbook.Action { return &waitLagZero{base{e, "wait-lag-zero"}} })
}

// caughtUp is how far behind the target of a switchover may be when
// writes are stopped: the write pause then holds only the replay of this
// much WAL (a few milliseconds), not a catch-up.
const caughtUp = 1 << 20

// waitLagZero chooses the switchover's target (params target: a node, or a
// region whose most advanced streaming standby is taken) and waits until
// it streams from the primary and is within caughtUp of it, before writes
// stop. A target that does not stream is refused.
type waitLagZero struct{ base }

func (s *waitLagZero) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "caught_up"), nil
}

func (s *waitLagZero) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, st, err := s.current(ctx, rb)
	if err != nil {
		return "", err
	}
	start := s.Now()
	var note string
	_, err = s.until(ctx, waitFor(w, 30*time.Second), s.T.Control.CheckInterval/2, func() (bool, string, error) {
		reports, err := s.reports(ctx, w.Name)
		if err != nil {
			return false, "", err
		}
		to, err := SwitchoverTarget(s.T, w, st, rb.Params["target"], reports, s.Now())
		if err != nil {
			return false, err.Error(), nil
		}
		rb.Params["to"], rb.Params["to_region"] = to.String(), to.Region
		lag, ok := replicaLag(reports[st.Primary], to)
		if !ok {
			return false, fmt.Sprintf("%s is not connected to %s", to, st.Primary), nil
		}
		note = fmt.Sprintf("%s is %d bytes behind %s", to, lag, st.Primary)
		return lag <= caughtUp, note, nil
	})
	if err != nil {
		delete(rb.Params, "to")
		return "", err
	}
	rb.Params["caught_up"] = "true"
	return fmt.Sprintf("%s (after %s)", note, s.Now().Sub(start).Round(time.Millisecond)), nil
}

// replicaLag is how far a standby is behind, as its primary reports it.
func replicaLag(primary lifeline.NodeStatus, id lifeline.NodeID) (int64, bool) {
	for _, r := range primary.Replicas {
		if r.Name == id.Slug() && r.Connected {
			return r.LagBytes, true
		}
	}
	return 0, false
}

// SwitchoverTarget resolves a switchover's target: a node ("REGION/ZONE"),
// or a region, whose most advanced streaming standby is taken. The target
// must be a database node that streams from the primary now.
func SwitchoverTarget(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, target string, reports map[string]lifeline.NodeStatus, now time.Time) (lifeline.NodeID, error) {
	primary, _ := st.PrimaryNode()
	var cands []lifeline.NodeID
	if id, err := lifeline.ParseNodeID(target); err == nil {
		if _, err := t.Zone(id); err != nil {
			return id, err
		}
		cands = []lifeline.NodeID{id}
	} else {
		if _, err := t.Region(target); err != nil {
			return lifeline.NodeID{}, err
		}
		for _, id := range t.DatabaseNodesIn(st) {
			if id.Region == target && id != primary {
				cands = append(cands, id)
			}
		}
		if len(cands) == 0 {
			return lifeline.NodeID{}, fmt.Errorf("region %s holds no standby of %s", target, w.Name)
		}
	}
	var best lifeline.NodeID
	var bestLSN lifeline.LSN
	var why string
	for _, id := range cands {
		r, ok := reports[id.String()]
		switch {
		case id == primary:
			return id, fmt.Errorf("%s is the primary already", id)
		case !st.HasDatabase(id.Region):
			return id, fmt.Errorf("%s holds no database of %s", id, w.Name)
		case !ok || !fresh(t, r, now):
			why = fmt.Sprintf("%s does not report (down?)", id)
		case !r.Running || !r.InRecovery || !r.Streaming:
			why = fmt.Sprintf("%s is not a streaming standby (running %v, in recovery %v, streaming %v)", id, r.Running, r.InRecovery, r.Streaming)
		default:
			if p := position(r); best == (lifeline.NodeID{}) || p > bestLSN {
				best, bestLSN = id, p
			}
		}
	}
	if best == (lifeline.NodeID{}) {
		return lifeline.NodeID{}, fmt.Errorf("no standby of %s streams from the primary: %s", target, why)
	}
	return best, nil
}
