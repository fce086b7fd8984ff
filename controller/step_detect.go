package controller

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("detect", func(e *Env) runbook.Action { return &detect{base{e, "detect"}} }) }

// detect records the region's loss: the evidence (snapshotted when the
// loss was decided, or now when an operator started the failover), an
// alarm in the control store, and the alarm sent to every webhook.
type detect struct{ base }

func (s *detect) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return rb.Evidence != nil && has(rb, "alarm"), nil
}

func (s *detect) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	if rb.Evidence == nil {
		snap, err := s.S.ReadSnapshot(ctx, w.Name, clientv3.WithSerializable())
		if err != nil {
			return "", err
		}
		ev := BuildEvidence(s.T, w, snap.State, rb.Params["from_region"], lifeline.NodeStatus{}, snap.Reports, Verdict{}, s.Now())
		rb.Evidence = &ev
	}
	ev := rb.Evidence
	a := lifeline.Alarm{
		ID: rb.ID, Workload: w.Name, Kind: "region-down", Severity: "critical", Raised: s.Now().UTC(), Runbook: rb.ID, Evidence: ev,
		Summary: fmt.Sprintf("region %s of %s is down (primary %s); %s", ev.Region, w.Name, ev.Primary, lossSummary(ev)),
	}
	if err := s.S.RaiseAlarm(ctx, a); err != nil {
		return "", fmt.Errorf("raise the alarm: %w", err)
	}
	rb.Params["alarm"] = a.ID
	note := a.Summary
	if s.Notify != nil {
		if err := s.Notify.Notify(ctx, a); err != nil {
			note += "; webhooks: " + err.Error()
		}
	}
	return note, nil
}

func lossSummary(ev *lifeline.Evidence) string {
	best, ok := ev.Best()
	switch {
	case ev.Copy != nil:
		return fmt.Sprintf("the copy of the backups holds WAL up to %s", orNone(ev.Copy.NewestWAL))
	case !ok:
		return "no standby position known"
	case ev.EstimatedLossBytes < 0:
		return fmt.Sprintf("best standby %s received %s; the primary's last position is unknown", best.Node, best.ReceiveLSN)
	}
	return fmt.Sprintf("best standby %s received %s; estimated loss %d bytes, %.1fs", best.Node, best.ReceiveLSN, ev.EstimatedLossBytes, ev.EstimatedLossSeconds)
}
