package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// Store is what runbook steps need of the control store; *store.Store is
// one, and step tests use an in-memory fake.
type Store interface {
	State(ctx context.Context, workload string, opts ...clientv3.OpOption) (lifeline.WorkloadState, int64, bool, error)
	ChangeState(ctx context.Context, workload string, c store.Change) error
	UpdateState(ctx context.Context, workload string, fn func(*lifeline.WorkloadState, *store.Change) error) (lifeline.WorkloadState, error)
	LeaseKey(ctx context.Context, workload string, opts ...clientv3.OpOption) (lifeline.LeaseRecord, clientv3.LeaseID, bool, error)
	RevokeLeaseOf(ctx context.Context, workload string, rec lifeline.LeaseRecord) (bool, error)
	Statuses(ctx context.Context, workload string, opts ...clientv3.OpOption) (map[string]lifeline.NodeStatus, error)
	ReadSnapshot(ctx context.Context, workload string, opts ...clientv3.OpOption) (store.Snapshot, error)
	Audit(ctx context.Context, e lifeline.AuditEntry) error
	RaiseAlarm(ctx context.Context, a lifeline.Alarm) error
	Rejoins(ctx context.Context, workload string) (map[string]lifeline.RejoinRecord, error)
}

var _ Store = (*store.Store)(nil)

// Routing switches a workload's regions on and off in routing; the runbook
// that holds the workload may.
type Routing interface {
	SetRegion(ctx context.Context, workload, region string, on bool, runbookID, reason string) error
	RegionOn(ctx context.Context, workload, region string) (bool, error)
}

// Notifier sends an alarm to the configured webhooks.
type Notifier interface {
	Notify(ctx context.Context, a lifeline.Alarm) error
}

// Env is what every runbook step works with. The clock is injected, so that
// step tests run without waiting.
type Env struct {
	T *lifeline.Topology
	S Store
	// Connect opens a superuser connection to a node's database.
	Connect func(ctx context.Context, w *lifeline.Workload, node lifeline.NodeID) (*pgx.Conn, error)
	Routing Routing
	// ProbeInstance checks one service instance's health URL as the
	// vantage points do.
	ProbeInstance func(ctx context.Context, inst compute.Instance) error
	// ProbeEntry checks the workload's public entry point (the global
	// HTTP front door); nil where there is none to reach.
	ProbeEntry func(ctx context.Context, w *lifeline.Workload) error
	Notify     Notifier
	Now        func() time.Time
	// Sleep waits d or until ctx ends.
	Sleep func(ctx context.Context, d time.Duration)
	Log   *slog.Logger
	// Leader names the controller running the steps (the audit log's actor).
	Leader string
}

// realSleep waits d or until ctx ends.
func realSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (e *Env) workload(rb *runbook.Runbook) (*lifeline.Workload, error) {
	return e.T.Workload(rb.Workload)
}

// reports reads the agents' reports from the nearest member: a report a
// moment old is as good as the newest (they are written every check
// interval), and positions that matter are final once nothing streams.
func (e *Env) reports(ctx context.Context, w string) (map[string]lifeline.NodeStatus, error) {
	m, err := e.S.Statuses(ctx, w, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	out := make(map[string]lifeline.NodeStatus, len(m))
	for _, st := range m {
		out[st.Node] = st
	}
	return out, nil
}

// state reads the workload's state; a missing state is an error.
func (e *Env) state(ctx context.Context, w string, opts ...clientv3.OpOption) (lifeline.WorkloadState, int64, error) {
	st, rev, found, err := e.S.State(ctx, w, opts...)
	if err == nil && !found {
		err = fmt.Errorf("state of %s: %w", w, store.ErrNoState)
	}
	return st, rev, err
}

// current returns the runbook's workload and its stored state.
func (e *Env) current(ctx context.Context, rb *runbook.Runbook) (*lifeline.Workload, lifeline.WorkloadState, error) {
	w, err := e.workload(rb)
	if err != nil {
		return nil, lifeline.WorkloadState{}, err
	}
	st, _, err := e.state(ctx, w.Name)
	return w, st, err
}

// until calls ok every interval until it reports true, fails, or timeout
// passes (then it returns the last note with ErrTimeout).
func (e *Env) until(ctx context.Context, timeout, every time.Duration, ok func() (bool, string, error)) (string, error) {
	deadline := e.Now().Add(timeout)
	for {
		done, note, err := ok()
		if err != nil || done {
			return note, err
		}
		if ctx.Err() != nil {
			return note, ctx.Err()
		}
		if !e.Now().Before(deadline) {
			return note, fmt.Errorf("%w after %s: %s", ErrTimeout, timeout, note)
		}
		e.Sleep(ctx, every)
	}
}

// ErrTimeout is a step that waited as long as the workload's objectives allow.
var ErrTimeout = fmt.Errorf("gave up")

// waitFor is how long a step may wait for something the failover's RTO
// depends on: the RTO itself, at least min.
func waitFor(w *lifeline.Workload, atLeast time.Duration) time.Duration {
	return max(w.Objectives.RTO, atLeast)
}

// stepFactory builds a step over an Env.
type stepFactory func(*Env) runbook.Action

var registry = map[string]stepFactory{}

// register makes a step available under its name; each step's file
// registers itself.
func register(name string, f stepFactory) {
	if _, dup := registry[name]; dup {
		panic("controller: step " + name + " registered twice")
	}
	registry[name] = f
}

// StepNames lists the registered steps.
func StepNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Kinds lists the runbook kinds.
var Kinds = []string{string(ZoneFailover), string(RegionFailover), Switchover, Failback}

// Plan lists the steps of a runbook kind for a strategy, in order.
func Plan(kind string, s lifeline.Strategy) ([]string, lifeline.Phase, error) {
	switch kind {
	case string(ZoneFailover):
		return []string{"fence", "pick", "promote", "repoint", "verify"}, lifeline.PhaseFailingOver, nil
	case string(RegionFailover):
		if !s.StandbyDatabase() {
			return []string{"detect", "await-approval", "fence-region", "restore", "scale", "reroute", "verify"}, lifeline.PhaseFailingOver, nil
		}
		return []string{"detect", "await-approval", "fence-region", "pick", "promote", "scale", "reroute", "verify"}, lifeline.PhaseFailingOver, nil
	case Switchover:
		return []string{"wait-lag-zero", "demote", "promote", "repoint", "scale", "reroute", "verify"}, lifeline.PhaseSwitchingOver, nil
	case Failback:
		steps := []string{"rejoin", "wait-lag-zero", "demote", "promote", "repoint", "scale", "reroute", "verify"}
		if !s.StandbyDatabase() {
			steps = append(steps, "retire")
		}
		return steps, lifeline.PhaseFailingBack, nil
	}
	return nil, "", fmt.Errorf("runbook kind %q: want one of %s", kind, strings.Join(Kinds, ", "))
}

// Catalog builds runbook kinds from the registered steps.
type Catalog struct {
	Env *Env
}

// Kind is the kind's steps for the workload's strategy.
func (c Catalog) Kind(workload, kind string) (runbook.Kind, error) {
	w, err := c.Env.T.Workload(workload)
	if err != nil {
		return runbook.Kind{}, err
	}
	names, phase, err := Plan(kind, w.Strategy)
	if err != nil {
		return runbook.Kind{}, err
	}
	k := runbook.Kind{Name: kind, Phase: phase}
	for _, n := range names {
		f, ok := registry[n]
		if !ok {
			return runbook.Kind{}, fmt.Errorf("runbook %s: step %q is not registered", kind, n)
		}
		k.Steps = append(k.Steps, f(c.Env))
	}
	return k, nil
}

// base gives a step its name and the Pre it shares with most steps.
type base struct {
	*Env
	name string
}

func (b base) Name() string { return b.name }

func (b base) Pre(context.Context, *runbook.Runbook) error { return nil }

func has(rb *runbook.Runbook, param string) bool { return rb.Params[param] != "" }
