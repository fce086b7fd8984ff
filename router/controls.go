package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
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

// ControlRecord is the stored value of a routing control.
type ControlRecord = lifeline.ControlRecord

// ControlOptions qualify a change.
type ControlOptions struct {
	// Force overrides the runbook lock; it needs a Reason.
	Force bool
	// Reason is written to the audit log.
	Reason string
	// Actor is who asks (a user, or "controller"); required.
	Actor string
	// Runbook is the runbook asking, if any: the runbook that holds the
	// workload may change its routing (a failover reroutes).
	Runbook string
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
	if lockHolder != "" && lockHolder != opts.Runbook {
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
	regions := t.RegionNames()
	for attempt := 0; attempt < 10; attempt++ {
		read, err := s.ReadControls(ctx, w.Name)
		if err != nil {
			return err
		}
		current := map[string]bool{}
		for r, rec := range read.Records {
			current[r] = rec.On
		}
		holder := read.Runbook
		if read.On(region) == on {
			return nil
		}
		if err := CheckControl(regions, current, holder, region, on, opts); err != nil {
			auditControl(ctx, s, w.Name, region, "refused", fmt.Sprintf("switch %s: %v; reason: %s", onOff(on), err, opts.Reason), opts.Actor)
			return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, err)
		}
		forced := holder
		if holder == opts.Runbook {
			forced = ""
		}
		rec := ControlRecord{On: on, Changed: time.Now().UTC(), Actor: opts.Actor, Reason: opts.Reason, Forced: forced}
		detail := opts.Reason
		if forced != "" {
			detail = fmt.Sprintf("forced over runbook %s: %s", holder, opts.Reason)
		}
		err = s.SetControl(ctx, w.Name, regions, read, region, rec, lifeline.AuditEntry{
			Time: rec.Changed, Workload: w.Name, Runbook: opts.Runbook, Kind: "routing-control", Step: region,
			Result: onOff(on), Detail: detail, Actor: opts.Actor,
		})
		if errors.Is(err, store.ErrConflict) {
			continue // changed under us: read and check again
		}
		return err
	}
	return fmt.Errorf("routing control of %s/%s: %w", w.Name, region, store.ErrConflict)
}

// auditControl records a refusal; a failure to record it does not hide
// the refusal itself.
func auditControl(ctx context.Context, s *store.Store, workload, region, result, detail, actor string) {
	_ = s.Audit(ctx, lifeline.AuditEntry{
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
		read, err := s.ReadControls(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		recs := read.Records
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

// Switch is the routing controls as a runbook uses them: it may switch the
// regions of the workload it holds.
type Switch struct {
	S *store.Store
	T *lifeline.Topology
}

// SetRegion switches a region on or off on behalf of a runbook.
func (sw Switch) SetRegion(ctx context.Context, workload, region string, on bool, runbookID, reason string) error {
	return Set(ctx, sw.S, sw.T, workload, region, on, ControlOptions{Actor: "controller", Runbook: runbookID, Reason: reason})
}

// RegionOn reports whether a region is switched on.
func (sw Switch) RegionOn(ctx context.Context, workload, region string) (bool, error) {
	c, err := sw.S.ReadControls(ctx, workload)
	if err != nil {
		return false, err
	}
	return c.On(region), nil
}

// ProbeEntry checks a workload's global HTTP entry point: a GET of its
// first service's health path with the workload's hostname must succeed.
func ProbeEntry(ctx context.Context, t *lifeline.Topology, w *lifeline.Workload) error {
	path := DefaultHealthPath
	if len(w.Services) > 0 && w.Services[0].Health != "" {
		path = w.Services[0].Health
	}
	host := t.Router.Address
	if host == "0.0.0.0" || host == "" {
		host = "127.0.0.1"
	}
	return Probe(ctx, nil, Target{Name: w.Name + "/entry", Kind: CheckHTTP, Address: net.JoinHostPort(host, strconv.Itoa(t.Router.HTTPPort)), Path: path, Host: w.Routing.Hostname}, 2*time.Second)
}
