package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// The safety rules of routing controls, by the names errors give them.
const (
	// RuleAtLeastOneOn: every workload keeps at least one region switched
	// on. Force does not override it: with every region off there is
	// nowhere to send clients, which is an outage, not a recovery.
	RuleAtLeastOneOn = "at-least-one-region-on"
	// RuleRunbookLock: no change while a runbook holds the workload's lock
	// (a failover is rerouting it), unless forced with a reason.
	RuleRunbookLock = "runbook-lock"
)

// ErrRefused matches (errors.Is) every change a safety rule refused.
var ErrRefused = errors.New("routing change refused")

// RuleError is a change refused by a safety rule.
type RuleError struct {
	Rule   string
	Detail string
}

func (e *RuleError) Error() string { return fmt.Sprintf("rule %q: %s", e.Rule, e.Detail) }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RuleError) Is(target error) bool { return target == ErrRefused }

// ControlRecord is the stored value of a routing control. A region without
// a record is on.
type ControlRecord struct {
	On      bool      `json:"on"`
	Changed time.Time `json:"changed"`
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason,omitempty"`
	// Forced names the runbook whose lock the change overrode.
	Forced string `json:"forced,omitempty"`
}

// ControlOptions qualify a change.
type ControlOptions struct {
	// Force overrides the runbook lock; it needs a Reason.
	Force bool
	// Reason is written to the audit log.
	Reason string
	// Actor is who asks (a user, or "controller"); required.
	Actor string
}

// CheckControl applies the safety rules to switching region on or off,
// given the workload's regions (spec order), their current controls
// (absent: on), and the runbook holding the workload's lock ("" when
// none). It is pure; nil means the change is allowed.
func CheckControl(regions []string, current map[string]bool, lockHolder, region string, on bool, opts ControlOptions) error {
	if !on {
		left := 0
		for _, r := range regions {
			if r != region && isOn(current, r) {
				left++
			}
		}
		if left == 0 {
			return &RuleError{Rule: RuleAtLeastOneOn, Detail: fmt.Sprintf(
				"switching %s off would leave no region on; switch another region on first", region)}
		}
	}
	if lockHolder != "" {
		switch {
		case !opts.Force:
			return &RuleError{Rule: RuleRunbookLock, Detail: fmt.Sprintf(
				"runbook %s holds the workload; wait for it, or force with a reason", lockHolder)}
		case strings.TrimSpace(opts.Reason) == "":
			return &RuleError{Rule: RuleRunbookLock, Detail: fmt.Sprintf(
				"runbook %s holds the workload; forcing needs a reason", lockHolder)}
		}
	}
	return nil
}

func isOn(current map[string]bool, region string) bool {
	on, ok := current[region]
	return !ok || on
}

// Set switches a workload's region on or off. The safety rules are checked
// and the change written in one etcd transaction, guarded by the
// revisions of every control of the workload and of its runbook lock: a
// concurrent change or a runbook taking the lock in between makes Set
// re-read and re-check, so two changes that are each allowed but together
// would switch every region off cannot both pass. A refused change returns
// a *RuleError naming the rule. Changes and refusals are written to the
// audit log; switching a region to the state it is in changes nothing and
// is not logged.
func Set(ctx context.Context, s *store.Store, t *lifeline.Topology, workload, region string, on bool, opts ControlOptions) error {
	w, err := t.Workload(workload)
	if err != nil {
		return fmt.Errorf("routing control: %w", err)
	}
	if _, err := t.Region(region); err != nil {
		return fmt.Errorf("routing control of %s: %w", w.Name, err)
	}
	if strings.TrimSpace(opts.Actor) == "" {
		return fmt.Errorf("routing control of %s/%s: an actor is required for the audit log", w.Name, region)
	}
	keys := s.Keys()
	regions := t.RegionNames()
	for attempt := 0; attempt < 10; attempt++ {
		read, err := s.Client().Txn(ctx).Then(
			clientv3.OpGet(keys.ControlPrefix(w.Name), clientv3.WithPrefix()),
			clientv3.OpGet(keys.Lock(w.Name)),
		).Commit()
		if err != nil {
			return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, err)
		}
		current := map[string]bool{}
		revs := map[string]int64{}
		for _, kv := range read.Responses[0].GetResponseRange().Kvs {
			var rec ControlRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("routing control: decode %s: %w", kv.Key, err)
			}
			r := strings.TrimPrefix(string(kv.Key), keys.ControlPrefix(w.Name))
			current[r] = rec.On
			revs[string(kv.Key)] = kv.ModRevision
		}
		holder, lockRev := "", int64(0)
		if kvs := read.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			holder, lockRev = string(kvs[0].Value), kvs[0].ModRevision
		}
		if isOn(current, region) == on {
			return nil
		}
		if err := CheckControl(regions, current, holder, region, on, opts); err != nil {
			auditControl(ctx, s, w.Name, region, "refused", fmt.Sprintf("switch %s: %v; reason: %s", onOff(on), err, opts.Reason), opts.Actor)
			return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, err)
		}
		rec := ControlRecord{On: on, Changed: time.Now().UTC(), Actor: opts.Actor, Reason: opts.Reason, Forced: holder}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		conds := []clientv3.Cmp{
			// A key that does not exist compares as revision 0.
			clientv3.Compare(clientv3.ModRevision(keys.Lock(w.Name)), "=", lockRev),
		}
		for _, r := range regions {
			k := keys.Control(w.Name, r)
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(k), "=", revs[k]))
		}
		resp, err := s.Client().Txn(ctx).If(conds...).Then(clientv3.OpPut(keys.Control(w.Name, region), string(b))).Commit()
		if err != nil {
			return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, err)
		}
		if !resp.Succeeded {
			continue // changed under us: read and check again
		}
		detail := opts.Reason
		if holder != "" {
			detail = fmt.Sprintf("forced over runbook %s: %s", holder, opts.Reason)
		}
		if err := runbook.Audit(ctx, s, runbook.AuditEntry{
			Time: rec.Changed, Workload: w.Name, Kind: "routing-control", Step: region,
			Result: onOff(on), Detail: detail, Actor: opts.Actor,
		}); err != nil {
			return fmt.Errorf("routing control of %s/%s switched %s, but the audit log was not written: %w", w.Name, region, onOff(on), err)
		}
		return nil
	}
	return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, store.ErrConflict)
}

// auditControl records a refusal; a failure to record it does not hide
// the refusal itself.
func auditControl(ctx context.Context, s *store.Store, workload, region, result, detail, actor string) {
	_ = runbook.Audit(ctx, s, runbook.AuditEntry{
		Workload: workload, Kind: "routing-control", Step: region, Result: result, Detail: detail, Actor: actor,
	})
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// RegionControl is the routing control of one region of one workload.
type RegionControl struct {
	Workload string `json:"workload"`
	Region   string `json:"region"`
	On       bool   `json:"on"`
	// Changed, Actor and Reason of the last change; zero when the region
	// was never switched (it is on).
	Changed time.Time `json:"changed,omitzero"`
	Actor   string    `json:"actor,omitempty"`
	Reason  string    `json:"reason,omitempty"`
}

// Show returns the routing control of every region of every workload, in
// spec order.
func Show(ctx context.Context, s *store.Store, t *lifeline.Topology) ([]RegionControl, error) {
	var out []RegionControl
	for i := range t.Workloads {
		w := &t.Workloads[i]
		recs, err := store.List[ControlRecord](ctx, s, s.Keys().ControlPrefix(w.Name))
		if err != nil {
			return nil, fmt.Errorf("routing controls of %s: %w", w.Name, err)
		}
		for _, r := range t.RegionNames() {
			c := RegionControl{Workload: w.Name, Region: r, On: true}
			if rec, ok := recs[r]; ok {
				c.On, c.Changed, c.Actor, c.Reason = rec.On, rec.Changed, rec.Actor, rec.Reason
			}
			out = append(out, c)
		}
	}
	return out, nil
}
