package controller

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() {
	register("await-approval", func(e *Env) runbook.Action { return &awaitApproval{base{e, "await-approval"}} })
}

// awaitApproval is the gate of a region failover. With failover: approve
// (the default) the workload waits in phase waiting-approval until an
// approver runs `lifeline approve` (or `reject`); with failover: auto it
// proceeds once the witness and the surviving region agree that the lost
// region is unreachable and the control store hears nothing from it (the
// same rule that declared it down, checked again now). A runbook an
// operator started with `lifeline failover` carries that operator's
// approval. Should the lost primary take its lease again meanwhile (the
// region came back), the failover ends: it is no longer needed.
type awaitApproval struct{ base }

func (s *awaitApproval) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	if rb.Approval != nil && rb.Approval.Runbook == rb.ID {
		if !rb.Approval.Approve {
			return false, rejected(rb.Approval)
		}
		return true, nil
	}
	st, _, err := s.state(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	if a := st.Approval; a != nil && a.Runbook == rb.ID {
		rb.Approval = a
		if !a.Approve {
			return false, rejected(a)
		}
		return st.Phase != lifeline.PhaseWaitingApproval, nil
	}
	return false, nil
}

func rejected(a *lifeline.Approval) error {
	return fmt.Errorf("rejected by %s at %s: %s", a.By, a.At.Format("15:04:05"), orNone(a.Reason))
}

func (s *awaitApproval) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	guard := func(c *store.Change) {
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
	}
	// An approval given with the request (lifeline failover), else wait.
	_, err = s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Runbook != rb.ID {
			return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
		}
		guard(c)
		if by := rb.Params["approved_by"]; by != "" && st.Approval == nil {
			st.Approval = &lifeline.Approval{Runbook: rb.ID, Approve: true, By: by, At: s.Now().UTC(), Reason: rb.Params["reason"], Force: rb.Params["force"] == "true"}
			c.Audit = append(c.Audit, approvalAudit(w.Name, st.Approval))
		}
		if st.Approval != nil && st.Approval.Runbook == rb.ID {
			if st.Phase == lifeline.PhaseWaitingApproval {
				st.Phase = lifeline.PhaseFailingOver
				return nil
			}
			return store.ErrUnchanged
		}
		if st.Phase == lifeline.PhaseWaitingApproval {
			return store.ErrUnchanged
		}
		st.Phase = lifeline.PhaseWaitingApproval
		return nil
	})
	if err != nil {
		return "", err
	}
	from := rb.Params["from_region"]
	every := s.T.Control.CheckInterval
	var note string
	for {
		st, _, err := s.state(ctx, w.Name)
		if err != nil {
			s.Log.Warn("await approval: reading the state", "err", err)
		} else if a := st.Approval; a != nil && a.Runbook == rb.ID {
			rb.Approval = a
			if !a.Approve {
				return "", rejected(a)
			}
			if st.Phase == lifeline.PhaseWaitingApproval {
				// Approved through `lifeline approve`: move on.
				if _, err := s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
					if st.Runbook != rb.ID || st.Phase != lifeline.PhaseWaitingApproval {
						return store.ErrUnchanged
					}
					guard(c)
					st.Phase = lifeline.PhaseFailingOver
					return nil
				}); err != nil {
					return "", err
				}
			}
			how := "approved by " + a.By
			if a.Quorum {
				how = "approved by the witness quorum"
			}
			if a.Reason != "" {
				how += ": " + a.Reason
			}
			return how, nil
		}
		snap, err := s.S.ReadSnapshot(ctx, w.Name, clientv3.WithSerializable())
		if err == nil {
			if snap.Lease != nil {
				return "", fmt.Errorf("%s holds the primary lease again (epoch %d): region %s is back, no failover", snap.Lease.Node, snap.Lease.Epoch, from)
			}
			if w.Failover == lifeline.FailoverAuto && snap.HasState {
				v := RegionDown(s.T, w, snap.State, from, snap.Reports, snap.Health, s.Now())
				note = v.Reason
				if v.Down {
					a := &lifeline.Approval{Runbook: rb.ID, Approve: true, By: "witness quorum", At: s.Now().UTC(), Quorum: true, Reason: v.Reason}
					_, err := s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
						if st.Runbook != rb.ID {
							return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
						}
						if st.Approval != nil {
							return store.ErrUnchanged // a human was faster
						}
						guard(c)
						st.Approval = a
						c.Audit = append(c.Audit, approvalAudit(w.Name, a))
						return nil
					})
					if err != nil && !errors.Is(err, store.ErrConflict) {
						return "", err
					}
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return note, ctx.Err()
		}
		s.Sleep(ctx, every)
	}
}

// approvalAudit is the audit entry of a decision at the gate, written in
// the same transaction as the decision.
func approvalAudit(workload string, a *lifeline.Approval) lifeline.AuditEntry {
	result := "approved"
	if !a.Approve {
		result = "rejected"
	}
	detail := a.Reason
	if a.Force {
		detail = "forced (readiness refusals overridden): " + detail
	}
	return lifeline.AuditEntry{Time: a.At, Runbook: a.Runbook, Workload: workload, Kind: "approval", Step: "await-approval",
		Result: result, Detail: detail, Actor: a.By}
}
