package ops_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/ops"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
)

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want ops.Kind
	}{
		{&ops.Error{Kind: ops.Conflict, Err: errors.New("decided already")}, ops.Conflict},
		{fmt.Errorf("approve x: %w", &controller.Refusal{Reasons: []string{"lag"}}), ops.Refused},
		{&controller.Refusal{Locked: true, Reasons: []string{"active already"}}, ops.Locked},
		{fmt.Errorf("start: %w", runbook.ErrLocked), ops.Locked},
		{fmt.Errorf("routing: %w", &router.RuleError{Rule: router.RuleAtLeastOneOn}), ops.Refused},
		{fmt.Errorf("region x: %w", lifeline.ErrNotFound), ops.NotFound},
		{errors.New("etcd timed out"), ops.Internal},
	} {
		if got, _ := ops.KindOf(c.err); got != c.want {
			t.Errorf("KindOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if _, reasons := ops.KindOf(&controller.Refusal{Reasons: []string{"a", "b"}}); len(reasons) != 2 {
		t.Errorf("reasons %v", reasons)
	}
}

func TestPlan(t *testing.T) {
	tp := &lifeline.Topology{
		Regions:   []lifeline.Region{{Name: "eu-west", Zones: []lifeline.Zone{{Name: "a"}, {Name: "b"}}}, {Name: "eu-central", Zones: []lifeline.Zone{{Name: "a"}}}},
		Workloads: []lifeline.Workload{{Name: "orders", Strategy: lifeline.WarmStandby, Active: "eu-west"}},
	}
	for _, c := range []struct {
		kind, to string
		steps    int
		wantKind ops.Kind
	}{
		{"region-failover", "eu-central", 8, ""},
		{"region-failover", "mars", 0, ops.Invalid},
		{"switchover", "eu-central/a", 7, ""},
		{"switchover", "eu-central/z", 0, ops.Invalid},
		{"switchover", "", 0, ops.Invalid},
		{"failback", "", 8, ""},
		{"teleport", "eu-west", 0, ops.Invalid},
	} {
		p, err := ops.Plan(tp, "", c.kind, c.to)
		if c.wantKind != "" {
			if got, _ := ops.KindOf(err); err == nil || got != c.wantKind {
				t.Errorf("Plan(%s, %q): %v, want a %s error", c.kind, c.to, err, c.wantKind)
			}
			continue
		}
		if err != nil || len(p.Steps) != c.steps {
			t.Errorf("Plan(%s, %q) = %+v, %v; want %d steps", c.kind, c.to, p, err, c.steps)
		}
	}
}
