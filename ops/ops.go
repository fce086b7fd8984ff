package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// Ops runs operators' requests against one topology's control store.
type Ops struct {
	T *lifeline.Topology
	S *store.Store
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Ready checks that region can take w over now (readiness.Runner.Gate);
	// nil checks nothing beyond controller.CheckFailover.
	Ready func(ctx context.Context, w *lifeline.Workload, region string) error
}

func (o *Ops) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Ops) ready(ctx context.Context, w *lifeline.Workload, region string) error {
	if o.Ready == nil {
		return nil
	}
	return o.Ready(ctx, w, region)
}

func (o *Ops) catalog() controller.Catalog { return controller.Catalog{Env: &controller.Env{T: o.T}} }

// Workload resolves a workload name; "" is the only workload, when there
// is one.
func Workload(t *lifeline.Topology, name string) (*lifeline.Workload, error) {
	if name != "" {
		w, err := t.Workload(name)
		if err != nil {
			return nil, &Error{Kind: NotFound, Err: err}
		}
		return w, nil
	}
	if len(t.Workloads) != 1 {
		return nil, newError(Invalid, "the topology has %d workloads: choose one", len(t.Workloads))
	}
	return &t.Workloads[0], nil
}

// Decision is an approver's answer at a region failover's approval gate.
type Decision struct {
	Approve bool
	// Actor is who decides, for the audit log.
	Actor  string
	Reason string
	// Force overrides the readiness refusals (recorded in the audit log).
	Force bool
}

// Decide approves or rejects the runbook id, which must wait at its
// approval gate. Approving checks first that the region failed over to can
// take over (controller.CheckFailover), unless forced. The decision, the
// phase and the audit entry are written in one compare-and-swap.
func (o *Ops) Decide(ctx context.Context, id string, d Decision) (*lifeline.Approval, error) {
	rb, err := runbook.Get(ctx, o.S, id)
	if err != nil {
		return nil, classifyGet(err)
	}
	w, err := o.T.Workload(rb.Workload)
	if err != nil {
		return nil, err
	}
	verb := "approve"
	if !d.Approve {
		verb = "reject"
	}
	if d.Approve && !d.Force {
		st, _, _, err := o.S.State(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		reports, err := o.S.Statuses(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		copyRec := o.copyRecord(ctx, w.Name, rb.Params["to_region"])
		if err := controller.CheckFailover(o.T, w, st, rb.Params["to_region"], reports, rb.Evidence, copyRec, o.now()); err != nil {
			return nil, fmt.Errorf("approve %s: %w", rb.ID, err)
		}
		if err := o.ready(ctx, w, rb.Params["to_region"]); err != nil {
			return nil, fmt.Errorf("approve %s: %w", rb.ID, err)
		}
	}
	a := &lifeline.Approval{Runbook: rb.ID, Approve: d.Approve, By: d.Actor, At: o.now().UTC(), Reason: d.Reason, Force: d.Force}
	_, err = o.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		switch {
		case st.Runbook != rb.ID:
			return newError(Conflict, "%s is not in progress (the workload's runbook is %q)", rb.ID, st.Runbook)
		case st.Approval != nil && st.Approval.Runbook == rb.ID:
			return newError(Conflict, "%s was %s already by %s at %s", rb.ID, map[bool]string{true: "approved", false: "rejected"}[st.Approval.Approve],
				st.Approval.By, st.Approval.At.Format(time.RFC3339))
		case st.Phase != lifeline.PhaseWaitingApproval:
			return newError(Conflict, "%s does not wait for approval (phase %s)", rb.ID, st.Phase)
		}
		st.Approval = a
		if d.Approve {
			st.Phase = lifeline.PhaseFailingOver
		}
		detail := d.Reason
		if d.Force {
			detail = "forced (readiness refusals overridden): " + detail
		}
		c.Audit = []lifeline.AuditEntry{{Time: a.At, Runbook: rb.ID, Workload: w.Name, Kind: "approval", Step: "await-approval",
			Result: verb + "d", Detail: detail, Actor: a.By}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func classifyGet(err error) error {
	// runbook.Get says "not found" in its text only.
	if strings.HasSuffix(err.Error(), ": not found") {
		return &Error{Kind: NotFound, Err: err}
	}
	return err
}

func (o *Ops) copyRecord(ctx context.Context, workload, region string) *lifeline.CopyRecord {
	var rec lifeline.CopyRecord
	if _, found, err := o.S.Get(ctx, o.S.Keys().BackupState(workload, "copy-"+region), &rec); err == nil && found {
		return &rec
	}
	return nil
}

// FailoverRequest is an operator's region failover: the approval is theirs.
type FailoverRequest struct {
	Workload string
	To       string
	Actor    string
	Reason   string
	// Force overrides the readiness refusals and revokes a primary lease
	// still held (recorded in the audit log).
	Force bool
}

// Failover begins the region-failover runbook towards req.To, approved by
// req.Actor, after the readiness check (unless forced). The controller
// leader runs it.
func (o *Ops) Failover(ctx context.Context, req FailoverRequest) (*runbook.Runbook, error) {
	w, err := Workload(o.T, req.Workload)
	if err != nil {
		return nil, err
	}
	if err := o.checkRegion(req.To); err != nil {
		return nil, err
	}
	snap, err := o.S.ReadSnapshot(ctx, w.Name)
	if err != nil {
		return nil, err
	}
	if !snap.HasState {
		return nil, fmt.Errorf("%s: %w", w.Name, store.ErrNoState)
	}
	now := o.now()
	ev := controller.BuildEvidence(o.T, w, snap.State, snap.State.Active, snap.Reports[snap.State.Primary], snap.Reports, controller.Verdict{}, now)
	copyRec := o.copyRecord(ctx, w.Name, req.To)
	if !req.Force {
		if err := controller.CheckFailover(o.T, w, snap.State, req.To, snap.Reports, &ev, copyRec, now); err != nil {
			return nil, fmt.Errorf("failover of %s to %s: %w", w.Name, req.To, err)
		}
		if err := o.ready(ctx, w, req.To); err != nil {
			return nil, fmt.Errorf("failover of %s to %s: %w", w.Name, req.To, err)
		}
	}
	params := map[string]string{"from": snap.State.Primary, "epoch": strconv.FormatInt(snap.State.Epoch, 10), "from_region": snap.State.Active,
		"to_region": req.To, "approved_by": req.Actor, "reason": req.Reason, "lost_at": now.UTC().Format(time.RFC3339Nano)}
	if req.Force {
		params["force"] = "true"
	}
	ev.Copy = copyRec
	return o.begin(ctx, runbook.Request{Workload: w.Name, Kind: string(controller.RegionFailover), Params: params, Evidence: &ev, Actor: req.Actor, Reason: req.Reason})
}

// PlannedRequest is a switchover or a failback.
type PlannedRequest struct {
	Workload string
	// To is a region or REGION/ZONE; a failback's default is the spec's
	// active region.
	To     string
	Actor  string
	Reason string
}

// Planned begins a switchover or a failback (kind controller.Switchover or
// controller.Failback) after its checks: a switchover's target must stream;
// a failback's region must not be the active one already.
func (o *Ops) Planned(ctx context.Context, kind string, req PlannedRequest) (*runbook.Runbook, error) {
	w, err := Workload(o.T, req.Workload)
	if err != nil {
		return nil, err
	}
	to, region, err := o.plannedTarget(w, kind, req.To)
	if err != nil {
		return nil, err
	}
	st, _, found, err := o.S.State(ctx, w.Name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", w.Name, store.ErrNoState)
	}
	if kind == controller.Switchover {
		reports, err := o.S.Statuses(ctx, w.Name, clientv3.WithSerializable())
		if err != nil {
			return nil, err
		}
		if _, err := controller.SwitchoverTarget(o.T, w, st, to, reports, o.now()); err != nil {
			return nil, &Error{Kind: Refused, Err: fmt.Errorf("switchover of %s to %s refused: %w", w.Name, to, err)}
		}
	} else if st.Active == region && !st.IsFenced(region) {
		return nil, newError(Refused, "failback of %s refused: %s is the active region already", w.Name, region)
	}
	params := map[string]string{"from": st.Primary, "epoch": strconv.FormatInt(st.Epoch, 10), "target": to, "to_region": region, "from_region": st.Active}
	return o.begin(ctx, runbook.Request{Workload: w.Name, Kind: kind, Params: params, Actor: req.Actor, Reason: req.Reason})
}

// plannedTarget checks a switchover's or failback's target: it returns the
// target and its region.
func (o *Ops) plannedTarget(w *lifeline.Workload, kind, to string) (string, string, error) {
	if kind != controller.Switchover && kind != controller.Failback {
		return "", "", newError(Invalid, "runbook kind %q is not a planned one (switchover, failback)", kind)
	}
	if kind == controller.Failback && to == "" {
		to = w.Active
	}
	if to == "" {
		return "", "", newError(Invalid, "a target region or REGION/ZONE is required")
	}
	if id, err := lifeline.ParseNodeID(to); err == nil {
		if _, err := o.T.Zone(id); err != nil {
			return "", "", &Error{Kind: Invalid, Err: err}
		}
		return to, id.Region, nil
	}
	if err := o.checkRegion(to); err != nil {
		return "", "", err
	}
	return to, to, nil
}

func (o *Ops) checkRegion(region string) error {
	if region == "" {
		return newError(Invalid, "a target region is required")
	}
	if _, err := o.T.Region(region); err != nil {
		return &Error{Kind: Invalid, Err: err}
	}
	return nil
}

func (o *Ops) begin(ctx context.Context, req runbook.Request) (*runbook.Runbook, error) {
	rb, err := runbook.Begin(ctx, o.S, o.catalog(), req, o.now(), "")
	if errors.Is(err, runbook.ErrLocked) {
		return nil, &Error{Kind: Locked, Err: err}
	}
	return rb, err
}

// Step is one step of a plan.
type Step struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
}

// PlanView is what a runbook would do, without running it.
type PlanView struct {
	Workload string `json:"workload"`
	Strategy string `json:"strategy"`
	Kind     string `json:"kind"`
	To       string `json:"to"`
	// Phase is the workload's phase while it runs.
	Phase lifeline.Phase `json:"phase"`
	Steps []Step         `json:"steps"`
}

// Plan lists the steps a runbook kind would run for a workload towards to,
// after checking the target as the real request would.
func Plan(t *lifeline.Topology, workload, kind, to string) (*PlanView, error) {
	w, err := Workload(t, workload)
	if err != nil {
		return nil, err
	}
	o := &Ops{T: t}
	switch kind {
	case string(controller.RegionFailover):
		if err := o.checkRegion(to); err != nil {
			return nil, err
		}
	case controller.Switchover, controller.Failback:
		if to, _, err = o.plannedTarget(w, kind, to); err != nil {
			return nil, err
		}
	}
	names, phase, err := controller.Plan(kind, w.Strategy)
	if err != nil {
		return nil, &Error{Kind: Invalid, Err: err}
	}
	p := &PlanView{Workload: w.Name, Strategy: string(w.Strategy), Kind: kind, To: to, Phase: phase}
	for _, n := range names {
		p.Steps = append(p.Steps, Step{Name: n, Doc: controller.StepDoc[n]})
	}
	return p, nil
}

// GetRunbook reads one runbook; one that does not exist is a NotFound.
func GetRunbook(ctx context.Context, s *store.Store, id string) (*runbook.Runbook, error) {
	rb, err := runbook.Get(ctx, s, id)
	if err != nil {
		return nil, classifyGet(err)
	}
	return rb, nil
}
