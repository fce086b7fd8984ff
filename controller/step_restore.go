package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() { register("restore", func(e *Env) runbook.Action { return &restore{base{e, "restore"}} }) }

// restore is backup-restore's promotion: the first zone of the region
// failed over to (params to_region) is named primary at the next epoch with
// the order to build its database from its own region's repository (the
// copied base backups and WAL; the lost region's repository counts as
// gone), recovering to the newest WAL there. Its agent restores, lets
// recovery end on a new timeline, and serves; the region's other zones
// then seed from it. The compare-and-swap requires the old lease gone.
type restore struct{ base }

func (s *restore) target(rb *runbook.Runbook) (lifeline.NodeID, error) {
	r, err := s.T.Region(rb.Params["to_region"])
	if err != nil {
		return lifeline.NodeID{}, err
	}
	if len(r.Zones) == 0 {
		return lifeline.NodeID{}, fmt.Errorf("region %s has no zone", r.Name)
	}
	return lifeline.NodeID{Region: r.Name, Zone: r.Zones[0].Name}, nil
}

func (s *restore) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	to, err := s.target(rb)
	if err != nil {
		return false, err
	}
	st, _, err := s.state(ctx, rb.Workload, clientv3.WithSerializable())
	if err != nil || st.Primary != to.String() || st.Epoch != newEpoch(rb) {
		return false, err
	}
	reports, err := s.reports(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	r := reports[to.String()]
	return r.Running && !r.InRecovery && r.Healthy && r.Reported.After(st.Since), nil
}

func (s *restore) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	to, err := s.target(rb)
	if err != nil {
		return "", err
	}
	epoch := newEpoch(rb)
	rb.Params["to"] = to.String()
	_, err = s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Primary == to.String() && st.Epoch == epoch {
			return store.ErrUnchanged // named before a crash: only the wait is left
		}
		if st.Primary != rb.Params["from"] || st.Epoch != epoch-1 {
			return fmt.Errorf("the state changed: primary %s (epoch %d)", st.Primary, st.Epoch)
		}
		if !st.HasDatabase(to.Region) {
			st.Databases = append(st.Databases, to.Region)
			slices.Sort(st.Databases)
		}
		st.Primary, st.Epoch, st.Active, st.Since = to.String(), epoch, to.Region, s.Now().UTC()
		st.Restore = &lifeline.RestoreAt{Node: to.String()}
		c.LeaseGone = true
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	start := s.Now()
	note, err := s.until(ctx, max(rejoinWait, w.Objectives.RTO), s.T.Control.CheckInterval/2, func() (bool, string, error) {
		ok, err := s.Check(ctx, rb)
		if err != nil || ok {
			return ok, "", err
		}
		reports, rerr := s.reports(ctx, rb.Workload)
		if rerr != nil {
			return false, "", nil
		}
		r := reports[to.String()]
		return false, fmt.Sprintf("%s: %s", to, orNone(r.Error)), nil
	})
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			return "", fmt.Errorf("%s did not restore and serve: %w", to, err)
		}
		return note, err
	}
	rb.Params["promoted"] = "true"
	return fmt.Sprintf("%s restored from %s's repository and serves as primary (epoch %d) after %s", to, to.Region, epoch, s.Now().Sub(start).Round(time.Millisecond)), nil
}
