package controller_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// fakeStore is the control store in memory, with the same compare-and-swap
// rules as store.Store's.
type fakeStore struct {
	mu      sync.Mutex
	state   lifeline.WorkloadState
	rev     int64
	lease   *lifeline.LeaseRecord
	leaseID clientv3.LeaseID
	reports map[string]lifeline.NodeStatus
	health  []store.HealthResult
	audit   []lifeline.AuditEntry
	alarms  []lifeline.Alarm
	revoked int
	// onSleep is called at each step's sleep: the world moves on.
	onSleep func(f *fakeStore)
}

func (f *fakeStore) State(context.Context, string, ...clientv3.OpOption) (lifeline.WorkloadState, int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, f.rev, f.rev > 0, nil
}

func (f *fakeStore) ChangeState(_ context.Context, _ string, c store.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Rev != f.rev || (c.LeaseGone && f.lease != nil) {
		return store.ErrConflict
	}
	f.state, f.rev = c.Next, f.rev+1
	if c.Handoff != 0 {
		f.lease, f.leaseID = &lifeline.LeaseRecord{Node: c.Next.Primary, Epoch: c.Next.Epoch}, c.Handoff
	}
	f.audit = append(f.audit, c.Audit...)
	return nil
}

func (f *fakeStore) UpdateState(ctx context.Context, w string, fn func(*lifeline.WorkloadState, *store.Change) error) (lifeline.WorkloadState, error) {
	f.mu.Lock()
	st, rev := f.state, f.rev
	f.mu.Unlock()
	c := store.Change{Rev: rev}
	next := st
	next.Fenced = append([]string(nil), st.Fenced...)
	next.Databases = append([]string(nil), st.Databases...)
	if err := fn(&next, &c); err != nil {
		if errors.Is(err, store.ErrUnchanged) {
			return st, nil
		}
		return st, err
	}
	c.Next = next
	return next, f.ChangeState(ctx, w, c)
}

func (f *fakeStore) LeaseKey(context.Context, string, ...clientv3.OpOption) (lifeline.LeaseRecord, clientv3.LeaseID, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil {
		return lifeline.LeaseRecord{}, 0, false, nil
	}
	return *f.lease, f.leaseID, true, nil
}

func (f *fakeStore) RevokeLeaseOf(_ context.Context, _ string, rec lifeline.LeaseRecord) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil || *f.lease != rec {
		return false, nil
	}
	f.lease, f.revoked = nil, f.revoked+1
	return true, nil
}

func (f *fakeStore) Statuses(context.Context, string, ...clientv3.OpOption) (map[string]lifeline.NodeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]lifeline.NodeStatus{}
	for k, v := range f.reports {
		out[k] = v
	}
	return out, nil
}

func (f *fakeStore) ReadSnapshot(ctx context.Context, w string, _ ...clientv3.OpOption) (store.Snapshot, error) {
	st, rev, found, _ := f.State(ctx, w)
	reports, _ := f.Statuses(ctx, w)
	f.mu.Lock()
	defer f.mu.Unlock()
	return store.Snapshot{State: st, StateRev: rev, HasState: found, Lease: f.lease, Reports: reports, Health: f.health}, nil
}

func (f *fakeStore) Audit(_ context.Context, e lifeline.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeStore) RaiseAlarm(_ context.Context, a lifeline.Alarm) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alarms = append(f.alarms, a)
	return nil
}

func (f *fakeStore) Rejoins(context.Context, string) (map[string]lifeline.RejoinRecord, error) {
	return nil, nil
}

// fakeRouting records the routing controls.
type fakeRouting struct {
	mu  sync.Mutex
	off map[string]bool
}

func (r *fakeRouting) SetRegion(_ context.Context, _, region string, on bool, _, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off == nil {
		r.off = map[string]bool{}
	}
	r.off[region] = !on
	return nil
}

func (r *fakeRouting) RegionOn(_ context.Context, _, region string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.off[region], nil
}

// env is a step environment over a fake store whose clock moves only when
// a step sleeps: no test waits for real time.
func env(t *testing.T, f *fakeStore) (*controller.Env, *fakeRouting) {
	t.Helper()
	top, _ := setup(t)
	clock := now
	var mu sync.Mutex
	routing := &fakeRouting{}
	e := &controller.Env{
		T: top, S: f, Routing: routing, Leader: "test",
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		Sleep: func(_ context.Context, d time.Duration) {
			mu.Lock()
			clock = clock.Add(d)
			mu.Unlock()
			if f.onSleep != nil {
				f.onSleep(f)
			}
		},
		Log: slog.New(slog.DiscardHandler),
	}
	return e, routing
}

func step(t *testing.T, e *controller.Env, name string) runbook.Action {
	t.Helper()
	k, err := controller.Catalog{Env: e}.Kind("db", "region-failover")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"region-failover", "switchover", "failback", "zone-failover"} {
		k2, _ := controller.Catalog{Env: e}.Kind("db", kind)
		k.Steps = append(k.Steps, k2.Steps...)
	}
	for _, a := range k.Steps {
		if a.Name() == name {
			return a
		}
	}
	t.Fatalf("no step %s", name)
	return nil
}

func regionRunbook() *runbook.Runbook {
	return &runbook.Runbook{ID: "rb1", Workload: "db", Kind: "region-failover",
		Params: map[string]string{"from": "west/a", "epoch": "4", "from_region": "west", "to_region": "east"}}
}

func busyState() lifeline.WorkloadState {
	st := state("west/a", 4)
	st.Runbook, st.RunbookKind, st.Phase = "rb1", "region-failover", lifeline.PhaseFailingOver
	return st
}

func TestStep_AwaitApproval(t *testing.T) {
	ctx := context.Background()
	t.Run("waits for a human, then goes on", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1}
		e, _ := env(t, f)
		s := step(t, e, "await-approval")
		sleeps := 0
		f.onSleep = func(f *fakeStore) {
			sleeps++
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.state.Phase != lifeline.PhaseWaitingApproval {
				t.Errorf("phase while waiting = %s", f.state.Phase)
			}
			if sleeps == 5 {
				f.state.Approval = &lifeline.Approval{Runbook: "rb1", Approve: true, By: "alice", Reason: "gone"}
				f.rev++
			}
		}
		rb := regionRunbook()
		note, err := s.Do(ctx, rb)
		if err != nil || !strings.Contains(note, "alice") {
			t.Fatalf("Do = %q, %v", note, err)
		}
		if ok, err := s.Check(ctx, rb); !ok || err != nil {
			t.Errorf("Check after approval = %v, %v", ok, err)
		}
		if f.state.Phase != lifeline.PhaseFailingOver || sleeps != 5 {
			t.Errorf("phase %s after %d sleeps", f.state.Phase, sleeps)
		}
	})
	t.Run("a rejection ends the runbook", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1}
		e, _ := env(t, f)
		f.onSleep = func(f *fakeStore) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.state.Approval = &lifeline.Approval{Runbook: "rb1", Approve: false, By: "bob", Reason: "it is only a partition"}
			f.rev++
		}
		_, err := step(t, e, "await-approval").Do(ctx, regionRunbook())
		if err == nil || !strings.Contains(err.Error(), "rejected by bob") {
			t.Fatalf("Do = %v, want rejected by bob", err)
		}
	})
	t.Run("the region comes back before anyone decides", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1}
		e, _ := env(t, f)
		f.onSleep = func(f *fakeStore) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.lease = &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}
		}
		_, err := step(t, e, "await-approval").Do(ctx, regionRunbook())
		if err == nil || !strings.Contains(err.Error(), "is back") {
			t.Fatalf("Do = %v, want the region back", err)
		}
	})
	t.Run("failover: auto proceeds on the witness quorum", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1, reports: reports(standby("east/a", "0/300", false)),
			health: seenDown("db", westNodes, 3*time.Second, "witness", "east")}
		e, _ := env(t, f)
		w, _ := e.T.Workload("db")
		w.Failover = lifeline.FailoverAuto
		note, err := step(t, e, "await-approval").Do(ctx, regionRunbook())
		if err != nil || !strings.Contains(note, "witness quorum") {
			t.Fatalf("Do = %q, %v", note, err)
		}
		if a := f.state.Approval; a == nil || !a.Quorum || len(f.audit) == 0 || f.audit[len(f.audit)-1].Result != "approved" {
			t.Errorf("approval %+v, audit %+v", a, f.audit)
		}
	})
	t.Run("failover: auto without the witness's word waits", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1, reports: reports(standby("east/a", "0/300", false)),
			health: seenDown("db", westNodes, 3*time.Second, "east")}
		e, _ := env(t, f)
		w, _ := e.T.Workload("db")
		w.Failover = lifeline.FailoverAuto
		cctx, cancel := context.WithCancel(ctx)
		sleeps := 0
		f.onSleep = func(*fakeStore) {
			if sleeps++; sleeps == 20 {
				cancel()
			}
		}
		if _, err := step(t, e, "await-approval").Do(cctx, regionRunbook()); !errors.Is(err, context.Canceled) || f.state.Approval != nil {
			t.Fatalf("Do = %v, approval %+v: want still waiting", err, f.state.Approval)
		}
	})
}

func TestStep_FenceRegion(t *testing.T) {
	ctx := context.Background()
	t.Run("fences the region once the lease is gone, reroutes", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1}
		e, routing := env(t, f)
		s := step(t, e, "fence-region")
		rb := regionRunbook()
		if _, err := s.Do(ctx, rb); err != nil {
			t.Fatal(err)
		}
		if !f.state.IsFenced("west") || !routing.off["west"] || routing.off["east"] {
			t.Errorf("fenced %v, routing off %v", f.state.Fenced, routing.off)
		}
		if ok, err := s.Check(ctx, rb); !ok || err != nil {
			t.Errorf("Check = %v, %v", ok, err)
		}
	})
	t.Run("a lease still held is refused without --force", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1, lease: &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}, leaseID: 7}
		e, _ := env(t, f)
		_, err := step(t, e, "fence-region").Do(ctx, regionRunbook())
		if err == nil || !strings.Contains(err.Error(), "--force") || f.revoked != 0 {
			t.Fatalf("Do = %v (revoked %d), want a refusal naming --force", err, f.revoked)
		}
		if !f.state.IsFenced("west") {
			t.Error("the region must be fenced before anything else, even when refused")
		}
	})
	t.Run("--force revokes the lease, and says so in the audit log", func(t *testing.T) {
		f := &fakeStore{state: busyState(), rev: 1, lease: &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}, leaseID: 7}
		e, _ := env(t, f)
		rb := regionRunbook()
		rb.Params["force"] = "true"
		note, err := step(t, e, "fence-region").Do(ctx, rb)
		if err != nil || f.revoked != 1 || !strings.Contains(note, "forced") {
			t.Fatalf("Do = %q, %v (revoked %d)", note, err, f.revoked)
		}
		if last := f.audit[len(f.audit)-1]; last.Result != "forced" {
			t.Errorf("audit %+v", last)
		}
	})
}

func TestStep_Promote(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{state: busyState(), rev: 1, reports: reports(standby("east/a", "0/300", false))}
	e, _ := env(t, f)
	s := step(t, e, "promote")
	rb := regionRunbook()
	rb.Params["to"] = "east/a"
	// The agent promotes once named.
	f.onSleep = func(f *fakeStore) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.state.Primary == "east/a" {
			r := f.reports["east/a"]
			r.InRecovery, r.Reported = false, f.state.Since.Add(time.Second)
			f.reports["east/a"] = r
		}
	}
	if _, err := s.Do(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if f.state.Primary != "east/a" || f.state.Epoch != 5 || f.state.Active != "east" {
		t.Errorf("state = %+v", f.state)
	}
	// The old primary came back meanwhile: the state moved, nothing is named.
	f2 := &fakeStore{state: busyState(), rev: 1, lease: &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}, reports: reports(standby("east/a", "0/300", false))}
	e2, _ := env(t, f2)
	if _, err := step(t, e2, "promote").Do(ctx, rb); err == nil || f2.state.Primary != "west/a" {
		t.Fatalf("promote next to a held lease: %v, state %+v", err, f2.state)
	}
}

func TestStep_Demote(t *testing.T) {
	ctx := context.Background()
	st := busyState()
	st.RunbookKind, st.Phase = "switchover", lifeline.PhaseSwitchingOver
	f := &fakeStore{state: st, rev: 1, lease: &lifeline.LeaseRecord{Node: "west/a", Epoch: 4},
		reports: reports(standby("east/a", "0/3000000", true))}
	e, _ := env(t, f)
	s := step(t, e, "demote")
	rb := regionRunbook()
	rb.Kind, rb.Params["to"] = "switchover", "east/a"
	sleeps := 0
	f.onSleep = func(f *fakeStore) {
		f.mu.Lock()
		defer f.mu.Unlock()
		sleeps++
		switch {
		case f.state.Demote == "west/a" && f.state.Demoted == nil:
			// The primary's agent stops cleanly and lets go of its lease.
			f.state.Demoted = &lifeline.Demotion{Node: "west/a", Epoch: 4, LSN: "0/3000100"}
			f.lease = nil
			f.rev++
		case f.state.Demoted != nil && sleeps > 6:
			r := f.reports["east/a"]
			r.LSN = "0/3000180" // replayed past the shutdown checkpoint
			f.reports["east/a"] = r
		}
	}
	note, err := s.Do(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Params["demoted_lsn"] != "0/3000100" || !strings.Contains(note, "stopped writes at 0/3000100") {
		t.Errorf("note %q, params %v", note, rb.Params)
	}
	// A target that never replays it: the switchover stops, and says
	// the old primary resumes.
	f2 := &fakeStore{state: st, rev: 1, reports: reports(standby("east/a", "0/1000000", true))}
	e2, _ := env(t, f2)
	f2.onSleep = func(f *fakeStore) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.state.Demote == "west/a" && f.state.Demoted == nil {
			f.state.Demoted = &lifeline.Demotion{Node: "west/a", Epoch: 4, LSN: "0/3000100"}
			f.rev++
		}
	}
	if _, err := step(t, e2, "demote").Do(ctx, rb); err == nil || !strings.Contains(err.Error(), "resumes as primary") {
		t.Fatalf("Do = %v, want the switchover stopped", err)
	}
}

func TestStep_Detect(t *testing.T) {
	f := &fakeStore{state: busyState(), rev: 1}
	e, _ := env(t, f)
	rb := regionRunbook()
	rb.Evidence = &lifeline.Evidence{Region: "west", Primary: "west/a", Standbys: []lifeline.Standing{{Node: "east/a", ReceiveLSN: "0/300"}}, EstimatedLossBytes: 16}
	s := step(t, e, "detect")
	if _, err := s.Do(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
	if len(f.alarms) != 1 || f.alarms[0].Kind != "region-down" || f.alarms[0].Evidence == nil {
		t.Fatalf("alarms = %+v", f.alarms)
	}
	if ok, _ := s.Check(context.Background(), rb); !ok {
		t.Error("Check after Do is false")
	}
}

func TestPlan_EveryStepRegistered(t *testing.T) {
	registered := map[string]bool{}
	for _, n := range controller.StepNames() {
		registered[n] = true
	}
	for _, kind := range controller.Kinds {
		for _, s := range lifeline.Strategies {
			steps, _, err := controller.Plan(kind, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range steps {
				if !registered[n] || controller.StepDoc[n] == "" {
					t.Errorf("%s/%s: step %s registered %v, documented %v", kind, s, n, registered[n], controller.StepDoc[n] != "")
				}
			}
		}
	}
	if _, _, err := controller.Plan("teleport", lifeline.WarmStandby); err == nil {
		t.Error("an unknown kind must be an error")
	}
}
