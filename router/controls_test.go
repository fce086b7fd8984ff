package router_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func ruleOf(err error) string {
	var re *router.RuleError
	if errors.As(err, &re) {
		return re.Rule
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func TestCheckControl(t *testing.T) {
	regions := []string{"west", "central", "north"}
	tests := []struct {
		name    string
		current map[string]bool
		lock    string
		region  string
		on      bool
		opts    router.ControlOptions
		want    string
	}{
		{"switch one off, others on", nil, "", "west", false, router.ControlOptions{}, ""},
		{"switch the last one off", map[string]bool{"central": false, "north": false}, "", "west", false, router.ControlOptions{}, router.RuleAtLeastOneOn},
		{"switch off with one other on", map[string]bool{"central": false}, "", "west", false, router.ControlOptions{}, ""},
		{"switch the last one off, forced with a reason", map[string]bool{"central": false, "north": false}, "", "west", false,
			router.ControlOptions{Force: true, Reason: "drill"}, router.RuleAtLeastOneOn},
		{"switch on with everything off", map[string]bool{"west": false, "central": false, "north": false}, "", "west", true, router.ControlOptions{}, ""},
		{"locked", nil, "rb-1", "west", false, router.ControlOptions{}, router.RuleRunbookLock},
		{"locked, switching on", map[string]bool{"west": false}, "rb-1", "west", true, router.ControlOptions{}, router.RuleRunbookLock},
		{"locked, forced without a reason", nil, "rb-1", "west", false, router.ControlOptions{Force: true, Reason: "  "}, router.RuleRunbookLock},
		{"locked, forced with a reason", nil, "rb-1", "west", false, router.ControlOptions{Force: true, Reason: "failover stuck"}, ""},
		{"force without a lock", nil, "", "west", false, router.ControlOptions{Force: true}, ""},
		{"regions not in the spec do not count", map[string]bool{"central": false, "north": false, "gone": true}, "", "west", false, router.ControlOptions{}, router.RuleAtLeastOneOn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ruleOf(router.CheckControl(regions, tt.current, tt.lock, tt.region, tt.on, tt.opts))
			if got != tt.want {
				t.Errorf("refused by %q, want %q", got, tt.want)
			}
		})
	}
}

func TestControls_Set(t *testing.T) {
	t.Parallel()
	s := connect(t)
	top := topology("127.0.9", 5432)
	ctx := context.Background()
	alice := router.ControlOptions{Actor: "alice", Reason: "maintenance"}

	if err := router.Set(ctx, s, top, "orders", "eu-west", false, alice); err != nil {
		t.Fatalf("switch eu-west off: %v", err)
	}
	err := router.Set(ctx, s, top, "orders", "eu-central", false, alice)
	if !errors.Is(err, router.ErrRefused) || !strings.Contains(err.Error(), `rule "at-least-one-region-on"`) {
		t.Fatalf("switching the last region off: %v, want refused by at-least-one-region-on", err)
	}
	if err := router.Set(ctx, s, top, "orders", "eu-west", false, alice); err != nil {
		t.Errorf("switching an off region off again: %v, want no-op", err)
	}

	// A runbook takes the workload's lock.
	if _, _, err := s.InitState(ctx, "orders", lifeline.WorkloadState{Active: "eu-west", Primary: "eu-west/a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	setRunbook := func(id string) {
		t.Helper()
		if _, err := s.UpdateState(ctx, "orders", func(st *lifeline.WorkloadState, _ *store.Change) error {
			st.Runbook = id
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	setRunbook("rb-42")
	err = router.Set(ctx, s, top, "orders", "eu-west", true, alice)
	if ruleOf(err) != router.RuleRunbookLock || !strings.Contains(err.Error(), "rb-42") {
		t.Fatalf("change under a runbook: %v, want refused by runbook-lock naming rb-42", err)
	}
	if err := router.Set(ctx, s, top, "orders", "eu-west", true, router.ControlOptions{Actor: "bob", Force: true}); ruleOf(err) != router.RuleRunbookLock {
		t.Fatalf("forced without a reason: %v, want refused", err)
	}
	if err := router.Set(ctx, s, top, "orders", "eu-west", true, router.ControlOptions{Actor: "bob", Force: true, Reason: "runbook stuck"}); err != nil {
		t.Fatalf("forced with a reason: %v", err)
	}
	// The runbook that holds the workload reroutes it itself.
	if err := router.Set(ctx, s, top, "orders", "eu-central", false, router.ControlOptions{Actor: "controller", Runbook: "rb-42", Reason: "failover"}); err != nil {
		t.Fatalf("the lock holder's own change: %v", err)
	}
	if err := router.Set(ctx, s, top, "orders", "eu-central", true, router.ControlOptions{Actor: "controller", Runbook: "rb-42", Reason: "failover"}); err != nil {
		t.Fatal(err)
	}
	setRunbook("")

	got, err := router.Show(ctx, s, top)
	if err != nil {
		t.Fatal(err)
	}
	want := []router.RegionControl{
		{Workload: "orders", Region: "eu-west", On: true, Actor: "bob", Reason: "runbook stuck"},
		{Workload: "orders", Region: "eu-central", On: true, Actor: "controller", Reason: "failover"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(router.RegionControl{}, "Changed")); diff != "" {
		t.Errorf("Show (-want +got):\n%s", diff)
	}

	log, err := runbook.AuditLog(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range log {
		if e.Kind == "routing-control" {
			lines = append(lines, strings.Join([]string{e.Actor, e.Workload, e.Step, e.Result, e.Detail}, " | "))
		}
	}
	wantLog := []string{
		"alice | orders | eu-west | off | maintenance",
		`alice | orders | eu-central | refused | switch off: rule "at-least-one-region-on": switching eu-central off would leave no region on; switch another region on first; reason: maintenance`,
		`alice | orders | eu-west | refused | switch on: rule "runbook-lock": runbook rb-42 holds the workload; wait for it, or force with a reason; reason: maintenance`,
		`bob | orders | eu-west | refused | switch on: rule "runbook-lock": runbook rb-42 holds the workload; forcing needs a reason; reason: `,
		"bob | orders | eu-west | on | forced over runbook rb-42: runbook stuck",
		"controller | orders | eu-central | off | failover",
		"controller | orders | eu-central | on | failover",
	}
	if diff := cmp.Diff(wantLog, lines); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}

	for _, bad := range []struct{ workload, region, actor string }{
		{"nope", "eu-west", "a"}, {"orders", "mars", "a"}, {"orders", "eu-west", ""},
	} {
		err := router.Set(ctx, s, top, bad.workload, bad.region, false, router.ControlOptions{Actor: bad.actor})
		if err == nil || errors.Is(err, router.ErrRefused) {
			t.Errorf("Set(%q, %q, actor %q) = %v, want a plain error", bad.workload, bad.region, bad.actor, err)
		}
	}
}

// TestControls_ConcurrentChanges switches the two regions off at the same
// time, many times over: each change alone is allowed, both together are
// not, and the transaction must let exactly one through.
func TestControls_ConcurrentChanges(t *testing.T) {
	t.Parallel()
	s := connect(t)
	top := topology("127.0.9", 5432)
	ctx := context.Background()
	opts := router.ControlOptions{Actor: "race"}
	for round := range 20 {
		for _, r := range []string{"eu-west", "eu-central"} {
			if err := router.Set(ctx, s, top, "orders", r, true, opts); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, r := range []string{"eu-west", "eu-central"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = router.Set(ctx, s, top, "orders", r, false, opts)
			}()
		}
		close(start)
		wg.Wait()
		rules := []string{ruleOf(errs[0]), ruleOf(errs[1])}
		if !(rules[0] == "" && rules[1] == router.RuleAtLeastOneOn) && !(rules[1] == "" && rules[0] == router.RuleAtLeastOneOn) {
			t.Fatalf("round %d: outcomes %q, want exactly one refused by %s", round, rules, router.RuleAtLeastOneOn)
		}
		got, err := router.Show(ctx, s, top)
		if err != nil {
			t.Fatal(err)
		}
		if !got[0].On && !got[1].On {
			t.Fatalf("round %d: every region is off", round)
		}
	}
}
