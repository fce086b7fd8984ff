package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() {
	register("fence-region", func(e *Env) runbook.Action { return &fenceRegion{base{e, "fence-region"}} })
}

// fenceRegion keeps the lost region from writing before anything is
// promoted elsewhere: the region is marked fenced in the workload's state
// (no node there may take the primary lease until a failback lifts it),
// the old primary's lease must be gone (it fences itself when it cannot
// renew it; with --force, the lease is revoked in etcd), and the region is
// switched off in routing, the region failed over to on.
type fenceRegion struct{ base }

func (s *fenceRegion) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	st, _, err := s.state(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	from := rb.Params["from_region"]
	if !st.IsFenced(from) {
		return false, nil
	}
	if _, _, held, err := s.S.LeaseKey(ctx, rb.Workload); err != nil || held {
		return false, err
	}
	if s.Routing == nil {
		return true, nil
	}
	on, err := s.Routing.RegionOn(ctx, rb.Workload, from)
	return err == nil && !on, err
}

func (s *fenceRegion) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	from, to := rb.Params["from_region"], rb.Params["to_region"]
	if from == "" || to == "" {
		return "", errors.New("fence-region: the runbook names no regions (from_region, to_region)")
	}
	_, err = s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Runbook != rb.ID {
			return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
		}
		if st.IsFenced(from) {
			return store.ErrUnchanged
		}
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
		st.Fenced = append(st.Fenced, from)
		slices.Sort(st.Fenced)
		return nil
	})
	if err != nil {
		return "", err
	}
	var notes []string
	force := rb.Params["force"] == "true" || (rb.Approval != nil && rb.Approval.Force)
	_, err = s.until(ctx, s.T.Control.LeaseTTL+2*s.T.Control.CheckInterval, s.T.Control.CheckInterval/2, func() (bool, string, error) {
		_, _, held, err := s.S.LeaseKey(ctx, w.Name)
		return err == nil && !held, "", nil
	})
	if errors.Is(err, ErrTimeout) {
		l, _, held, lerr := s.S.LeaseKey(ctx, w.Name)
		switch {
		case lerr != nil:
			return "", lerr
		case held && !force:
			return "", fmt.Errorf("%s still holds the primary lease (epoch %d): region %s reaches the control store; approve with --force to revoke it", l.Node, l.Epoch, from)
		case held:
			if _, err := s.S.RevokeLeaseOf(ctx, w.Name, l); err != nil {
				return "", err
			}
			if err := s.S.Audit(ctx, lifeline.AuditEntry{Runbook: rb.ID, Workload: w.Name, Kind: rb.Kind, Step: s.name,
				Result: "forced", Detail: fmt.Sprintf("revoked the primary lease of %s (epoch %d)", l.Node, l.Epoch), Actor: s.Leader}); err != nil {
				return "", err
			}
			notes = append(notes, fmt.Sprintf("revoked %s's lease (forced)", l.Node))
		}
	} else if err != nil {
		return "", err
	}
	if s.Routing != nil {
		if err := s.Routing.SetRegion(ctx, w.Name, to, true, rb.ID, "region failover from "+from); err != nil {
			return "", err
		}
		if err := s.Routing.SetRegion(ctx, w.Name, from, false, rb.ID, "region failover: "+from+" is fenced"); err != nil {
			return "", err
		}
		notes = append(notes, fmt.Sprintf("routing: %s off, %s on", from, to))
	}
	return fmt.Sprintf("%s fenced; %s", from, strings.Join(notes, "; ")), nil
}
