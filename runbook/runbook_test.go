package runbook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// fakeStep records calls; its effect is a flag, so Check is idempotent.
type fakeStep struct {
	name  string
	done  atomic.Bool
	calls atomic.Int32
	block chan struct{} // when set, the first Do blocks until ctx ends
	once  sync.Once
}

func (s *fakeStep) Name() string                                          { return s.name }
func (s *fakeStep) Pre(context.Context, *runbook.Runbook) error           { return nil }
func (s *fakeStep) Check(context.Context, *runbook.Runbook) (bool, error) { return s.done.Load(), nil }
func (s *fakeStep) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	s.calls.Add(1)
	blocked := false
	s.once.Do(func() {
		if s.block != nil {
			close(s.block)
			blocked = true
		}
	})
	if blocked {
		<-ctx.Done()
		return "", ctx.Err()
	}
	s.done.Store(true)
	return "ok", nil
}

// kinds is a catalog of fixed kinds, the same for every workload.
type kinds map[string]runbook.Kind

func (k kinds) Kind(_, name string) (runbook.Kind, error) {
	if kind, ok := k[name]; ok {
		return kind, nil
	}
	return runbook.Kind{}, fmt.Errorf("no kind %q", name)
}

func catalog(ks ...runbook.Kind) kinds {
	m := kinds{}
	for _, k := range ks {
		m[k.Name] = k
	}
	return m
}

// initState records a workload's state, which a runbook's lock lives in.
func initState(t *testing.T, ctx context.Context, s *store.Store, workload string) {
	t.Helper()
	if _, _, err := s.InitState(ctx, workload, lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1, Phase: lifeline.PhaseSteady}); err != nil {
		t.Fatal(err)
	}
}

func req(workload, kind string, params map[string]string) runbook.Request {
	return runbook.Request{Workload: workload, Kind: kind, Params: params}
}

// leader campaigns for the controller election and returns an engine whose
// writes are guarded by that leadership.
func leader(t *testing.T, ctx context.Context, s *store.Store, name string, kinds ...runbook.Kind) (*runbook.Engine, *concurrency.Session) {
	t.Helper()
	sess, err := concurrency.NewSession(s.Client(), concurrency.WithTTL(2))
	if err != nil {
		t.Fatal(err)
	}
	el := concurrency.NewElection(sess, s.Keys().Election("controller"))
	if err := el.Campaign(ctx, name); err != nil {
		t.Fatal(err)
	}
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	return runbook.NewEngine(s, name, guard, slog.New(slog.DiscardHandler), catalog(kinds...)), sess
}

func TestEngine_ResumeAfterLeaderDies(t *testing.T) {
	s, err := store.Connect(testenv.Etcd(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	steps := []*fakeStep{{name: "fence"}, {name: "pick"}, {name: "promote", block: make(chan struct{})}, {name: "verify"}}
	kind := runbook.Kind{Name: "test-failover"}
	for _, st := range steps {
		kind.Steps = append(kind.Steps, st)
	}

	initState(t, ctx, s, "orders")
	a, sessA := leader(t, ctx, s, "agent-a", kind)
	rb, err := a.Start(ctx, req("orders", kind.Name, map[string]string{"from": "west/a"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Start(ctx, req("orders", kind.Name, nil)); !errors.Is(err, runbook.ErrLocked) {
		t.Fatalf("second runbook: err = %v, want ErrLocked", err)
	}
	if st, _, _, err := s.State(ctx, "orders"); err != nil || st.Runbook != rb.ID || st.Phase != lifeline.PhaseFailingOver {
		t.Fatalf("state while the runbook runs = %+v (%v)", st, err)
	}
	runCtx, kill := context.WithCancel(ctx)
	errA := make(chan error, 1)
	go func() { errA <- a.Run(runCtx, rb) }()
	<-steps[2].block // the leader is in the middle of "promote"

	// The leader dies: its session ends and its work stops.
	sessA.Close()
	kill()
	if err := <-errA; err == nil {
		t.Fatal("a dead leader's run must not succeed")
	}

	b, sessB := leader(t, ctx, s, "agent-b", kind)
	defer sessB.Close()
	open, err := b.Unfinished(ctx)
	if err != nil || len(open) != 1 || open[0].ID != rb.ID {
		t.Fatalf("unfinished = %v, %v", open, err)
	}
	if err := b.Run(ctx, open[0]); err != nil {
		t.Fatal(err)
	}
	got, err := runbook.Get(ctx, s, rb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runbook.Succeeded || got.Leader != "agent-b" {
		t.Fatalf("runbook = %+v", got)
	}
	for i, st := range steps {
		want := int32(1)
		if st.name == "promote" {
			want = 2 // interrupted once, completed by the next leader
		}
		if st.calls.Load() != want {
			t.Errorf("step %s ran %d times, want %d", st.name, st.calls.Load(), want)
		}
		// Progress is recorded in the background: a step the dead leader
		// finished shows as succeeded, or as skipped when its record was
		// lost with the leader and the next one found its effect in place.
		if s := got.Steps[i].State; s != runbook.Succeeded && s != runbook.Skipped {
			t.Errorf("step %s state %s", st.name, s)
		}
	}
	// The lock is released: a new runbook may start.
	for _, st := range steps {
		st.done.Store(false)
	}
	if st, _, _, err := s.State(ctx, "orders"); err != nil || st.Runbook != "" || st.Phase != lifeline.PhaseSteady {
		t.Fatalf("state after the runbook = %+v (%v)", st, err)
	}
	if _, err := b.Start(ctx, req("orders", kind.Name, nil)); err != nil {
		t.Fatalf("after finish: %v", err)
	}
	b.Flush()
	log, err := runbook.AuditLog(ctx, s)
	if err != nil || len(log) < 6 {
		t.Fatalf("audit log: %d entries, %v", len(log), err)
	}
}

func TestEngine_DeposedLeaderCannotWrite(t *testing.T) {
	s, err := store.Connect(testenv.Etcd(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := &fakeStep{name: "only"}
	kind := runbook.Kind{Name: "k", Steps: []runbook.Action{st}}
	initState(t, ctx, s, "w")
	a, sess := leader(t, ctx, s, "a", kind)
	rb, err := a.Start(ctx, req("w", "k", nil))
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
	if err := a.Run(ctx, rb); !errors.Is(err, runbook.ErrNotLeader) {
		t.Fatalf("run by a deposed leader: err = %v, want ErrNotLeader", err)
	}
	got, err := runbook.Get(ctx, s, rb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps[0].State != runbook.Pending || got.State != runbook.Running {
		t.Errorf("a deposed leader recorded progress: %+v", got)
	}
}

// An operator begins a runbook without leading: the lock is taken, with the
// audit entry naming who asked, and a leader then runs it.
func TestBegin_ByAnOperator(t *testing.T) {
	s, err := store.Connect(testenv.Etcd(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := &fakeStep{name: "only"}
	kind := runbook.Kind{Name: "switchover", Phase: lifeline.PhaseSwitchingOver, Steps: []runbook.Action{st}}
	initState(t, ctx, s, "w")
	rb, err := runbook.Begin(ctx, s, catalog(kind), runbook.Request{Workload: "w", Kind: "switchover", Actor: "alice", Reason: "maintenance"}, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runbook.Begin(ctx, s, catalog(kind), runbook.Request{Workload: "w", Kind: "switchover", Actor: "bob"}, time.Now(), ""); !errors.Is(err, runbook.ErrLocked) {
		t.Fatalf("a second runbook: err = %v, want ErrLocked", err)
	}
	state, _, _, err := s.State(ctx, "w")
	if err != nil || state.Runbook != rb.ID || state.Phase != lifeline.PhaseSwitchingOver {
		t.Fatalf("state = %+v (%v)", state, err)
	}
	log, err := s.AuditLog(ctx)
	if err != nil || len(log) == 0 || log[len(log)-1].Actor != "alice" || log[len(log)-1].Result != "started" {
		t.Fatalf("audit log = %+v (%v)", log, err)
	}
	e, sess := leader(t, ctx, s, "ctl", kind)
	defer sess.Close()
	if err := e.Run(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if got, err := runbook.Get(ctx, s, rb.ID); err != nil || got.State != runbook.Succeeded || got.StartedBy != "alice" {
		t.Fatalf("runbook = %+v (%v)", got, err)
	}
}
