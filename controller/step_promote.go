package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() { register("promote", func(e *Env) runbook.Action { return &promote{base{e, "promote"}} }) }

// promote names the chosen node (params to) primary at the next epoch, in
// a compare-and-swap that requires the state unchanged and the old lease
// gone, then waits for its agent to take the lease and promote its server.
// The active region becomes the new primary's.
type promote struct{ base }

func (s *promote) Pre(ctx context.Context, rb *runbook.Runbook) error {
	reports, err := s.reports(ctx, rb.Workload)
	if err != nil {
		return err
	}
	st, ok := reports[rb.Params["to"]]
	if !ok || s.Now().Sub(st.Reported) > s.T.Control.LeaseTTL || !st.Running {
		return fmt.Errorf("%s is not running any more", rb.Params["to"])
	}
	return nil
}

// Check: the state names the chosen node and its agent reports a primary
// that is out of recovery (or Do saw it so).
//
// Both reads may be served by the nearest member. A member that lags can
// only answer "not yet" where the leader would say "yes" (an epoch's
// primary is written once, and a report of a promoted server stays true):
// Do then finds the state written, or its transaction fails and it reads
// again from the leader.
func (s *promote) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	if has(rb, "promoted") {
		return true, nil
	}
	st, _, err := s.state(ctx, rb.Workload, clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	if !has(rb, "to") || st.Primary != rb.Params["to"] || st.Epoch != newEpoch(rb) {
		return false, nil
	}
	reports, err := s.reports(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	r := reports[st.Primary]
	return r.Running && !r.InRecovery && r.Reported.After(st.Since), nil
}

// Do reads the state from the nearest member first, which saves a round
// trip to the leader on the failover's path; if that member lags, the
// transaction's comparison fails, and the state is read again from the
// leader before giving up.
func (s *promote) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	to, err := lifeline.ParseNodeID(rb.Params["to"])
	if err != nil {
		return "", fmt.Errorf("promote: %w", err)
	}
	epoch := newEpoch(rb)
	// The chosen node's spare lease, read meanwhile: the primary lease is
	// handed over bound to it.
	spareRead := make(chan clientv3.LeaseID, 1)
	go func() {
		reports, err := s.reports(ctx, rb.Workload)
		if err != nil {
			spareRead <- 0
			return
		}
		spareRead <- clientv3.LeaseID(reports[to.String()].SpareLease)
	}()
	spare := sync.OnceValue(func() clientv3.LeaseID { return <-spareRead })
	for attempt := 0; ; attempt++ {
		var opts []clientv3.OpOption
		if attempt == 0 {
			opts = append(opts, clientv3.WithSerializable())
		}
		st, rev, err := s.state(ctx, rb.Workload, opts...)
		if err != nil {
			return "", err
		}
		written := st.Primary == to.String() && st.Epoch == epoch // before a crash: only the wait is left
		if !written && st.Primary == rb.Params["from"] && st.Epoch == epoch-1 {
			next := st
			next.Primary, next.Epoch, next.Active, next.Since = to.String(), epoch, to.Region, s.Now().UTC()
			next.Demote, next.Demoted, next.Restore = "", nil, nil
			c := store.Change{Rev: rev, Next: next, LeaseGone: true, Handoff: spare()}
			if g, ok := runbook.Guard(ctx); ok {
				c.Guard = append(c.Guard, g)
			}
			err = s.S.ChangeState(ctx, rb.Workload, c)
			if errors.Is(err, store.ErrLeaseHandoff) {
				// Its spare lease expired: the node takes the lease itself.
				c.Handoff = 0
				err = s.S.ChangeState(ctx, rb.Workload, c)
			}
			switch {
			case err == nil:
				written = true
			case !errors.Is(err, store.ErrConflict):
				return "", err
			}
		}
		if written {
			break
		}
		if attempt > 0 {
			if st.Primary == rb.Params["from"] {
				return "", errors.New("the state or the primary lease changed (the old primary may be back), or this controller no longer leads")
			}
			return "", fmt.Errorf("the state changed: primary %s (epoch %d)", st.Primary, st.Epoch)
		}
	}
	timeout := waitFor(w, 30*s.T.Control.CheckInterval)
	_, err = s.until(ctx, timeout, s.T.Control.CheckInterval/4, func() (bool, string, error) {
		ok, err := s.Check(ctx, rb)
		return ok && err == nil, "", nil
	})
	if err != nil {
		return "", fmt.Errorf("%s did not report itself primary: %w", to, err)
	}
	// Kept, so that the check after this step does not ask a member that
	// lags behind the one that answered here.
	rb.Params["promoted"] = "true"
	return fmt.Sprintf("%s is primary, epoch %d", to, epoch), nil
}
