package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
)

// ErrNotLeader is returned when a change guarded by the writer's
// controller leadership was refused because it no longer leads.
var ErrNotLeader = errors.New("no longer the controller leader")

// ErrNoState is returned by callers that need a workload's state before
// any agent recorded it.
var ErrNoState = errors.New("the workload has no state yet (not bootstrapped)")

// State reads a workload's state and its revision; found is false before
// the first agent recorded it. A value that cannot be decoded is an
// error, never "not found".
func (s *Store) State(ctx context.Context, workload string, opts ...clientv3.OpOption) (lifeline.WorkloadState, int64, bool, error) {
	var st lifeline.WorkloadState
	rev, found, err := s.Get(ctx, s.keys.State(workload), &st, opts...)
	return st, rev, found, err
}

// InitState records a workload's first state unless it has one, and
// returns the state as stored. A data directory from before the state
// record holds a primary record instead: its node and epoch carry over.
func (s *Store) InitState(ctx context.Context, workload string, init lifeline.WorkloadState) (lifeline.WorkloadState, int64, error) {
	var legacy struct {
		Node  string    `json:"node"`
		Epoch int64     `json:"epoch"`
		Since time.Time `json:"since"`
	}
	if _, found, err := s.Get(ctx, s.keys.legacyPrimary(workload), &legacy); err != nil {
		return init, 0, err
	} else if found {
		if id, err := lifeline.ParseNodeID(legacy.Node); err == nil {
			init.Primary, init.Active, init.Epoch, init.Since = legacy.Node, id.Region, legacy.Epoch, legacy.Since
		}
	}
	b, err := json.Marshal(init)
	if err != nil {
		return init, 0, err
	}
	key := s.keys.State(workload)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return init, 0, fmt.Errorf("record the state of %s: %w", workload, err)
	}
	st, rev, found, err := s.State(ctx, workload)
	if err == nil && !found {
		err = fmt.Errorf("state of %s: %w", workload, ErrNoState)
	}
	if err == nil && resp.Succeeded {
		_ = s.Audit(ctx, lifeline.AuditEntry{Workload: workload, Kind: "state", Result: "recorded",
			Detail: fmt.Sprintf("active %s, primary %s (epoch %d)", st.Active, st.Primary, st.Epoch), Actor: "agent"})
	}
	return st, rev, err
}

// Change is one compare-and-swap of a workload's state, with what must
// hold and what is written along with it.
type Change struct {
	// Rev is the revision the new state was computed from: the change
	// fails with ErrConflict if the state moved on since.
	Rev  int64
	Next lifeline.WorkloadState
	// Guard holds only while the writer leads (a controller's election
	// key); the change fails with ErrNotLeader otherwise.
	Guard []clientv3.Cmp
	// LeaseGone requires the primary lease key to be absent: no primary
	// may be serving.
	LeaseGone bool
	// Handoff, when set, puts the primary lease key for Next's primary
	// bound to this etcd lease (the node's spare): it promotes without a
	// write of its own.
	Handoff clientv3.LeaseID
	// DropLease, when set, deletes the primary lease key if it still holds
	// this record (a primary that stopped cleanly lets go of it in the
	// same write that says so).
	DropLease *lifeline.LeaseRecord
	// Runbook, when set, is written with the change (id → JSON).
	Runbook *RunbookWrite
	// Audit entries are written in the same transaction: the record of a
	// decision exists exactly when the decision does.
	Audit []lifeline.AuditEntry
}

// RunbookWrite is a runbook's stored progress.
type RunbookWrite struct {
	ID   string
	JSON string
}

// ErrLeaseHandoff is returned when the lease a Change hands the primary
// lease key to no longer exists.
var ErrLeaseHandoff = errors.New("the spare lease to hand over is gone")

// ChangeState writes c.Next if the state is still at c.Rev and every
// condition of c holds.
func (s *Store) ChangeState(ctx context.Context, workload string, c Change) error {
	b, err := json.Marshal(c.Next)
	if err != nil {
		return fmt.Errorf("encode the state of %s: %w", workload, err)
	}
	key := s.keys.State(workload)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", c.Rev)}
	if c.LeaseGone {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.keys.Lease(workload)), "=", 0))
	}
	ops := []clientv3.Op{clientv3.OpPut(key, string(b))}
	if c.Handoff != 0 {
		lease, _ := json.Marshal(lifeline.LeaseRecord{Node: c.Next.Primary, Epoch: c.Next.Epoch})
		ops = append(ops, clientv3.OpPut(s.keys.Lease(workload), string(lease), clientv3.WithLease(c.Handoff)))
	}
	if c.Runbook != nil {
		ops = append(ops, clientv3.OpPut(s.keys.Runbook(c.Runbook.ID), c.Runbook.JSON))
	}
	if c.DropLease != nil {
		held, _ := json.Marshal(*c.DropLease)
		leaseKey := s.keys.Lease(workload)
		ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(leaseKey), "=", string(held))},
			[]clientv3.Op{clientv3.OpDelete(leaseKey)}, nil))
	}
	for _, e := range c.Audit {
		k, v, err := s.auditOp(e)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(k, v))
	}
	resp, err := s.cli.Txn(ctx).If(c.Guard...).Then(clientv3.OpTxn(cmps, ops, nil)).Commit()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("change the state of %s: %w", workload, ErrLeaseHandoff)
	case err != nil:
		return fmt.Errorf("change the state of %s: %w", workload, err)
	case !resp.Succeeded:
		return fmt.Errorf("change the state of %s: %w", workload, ErrNotLeader)
	case !resp.Responses[0].GetResponseTxn().Succeeded:
		return fmt.Errorf("change the state of %s: %w", workload, ErrConflict)
	}
	return nil
}

// UpdateState reads the state, lets fn change it (and set the conditions
// and writes that go with the change), and writes it by compare-and-swap,
// reading again when another writer came first. An error from fn ends it
// unchanged; ErrUnchanged from fn ends it without a write and without an
// error. It returns the state as written (or as read, when unchanged).
func (s *Store) UpdateState(ctx context.Context, workload string, fn func(st *lifeline.WorkloadState, c *Change) error) (lifeline.WorkloadState, error) {
	for attempt := 0; ; attempt++ {
		st, rev, found, err := s.State(ctx, workload)
		if err != nil {
			return st, err
		}
		if !found {
			return st, fmt.Errorf("state of %s: %w", workload, ErrNoState)
		}
		c := Change{Rev: rev}
		next := st
		next.Databases = append([]string(nil), st.Databases...)
		next.Fenced = append([]string(nil), st.Fenced...)
		if err := fn(&next, &c); err != nil {
			if errors.Is(err, ErrUnchanged) {
				return st, nil
			}
			return st, err
		}
		c.Next = next
		err = s.ChangeState(ctx, workload, c)
		if !errors.Is(err, ErrConflict) || attempt >= 20 {
			return next, err
		}
	}
}

// ErrUnchanged, returned by an UpdateState function, means there is nothing
// to write.
var ErrUnchanged = errors.New("unchanged")

// LeaseKey reads the primary lease key: its record and the etcd lease it
// lives under; found is false when no primary holds it.
func (s *Store) LeaseKey(ctx context.Context, workload string, opts ...clientv3.OpOption) (lifeline.LeaseRecord, clientv3.LeaseID, bool, error) {
	resp, err := s.cli.Get(ctx, s.keys.Lease(workload), opts...)
	if err != nil {
		return lifeline.LeaseRecord{}, 0, false, fmt.Errorf("read the primary lease of %s: %w", workload, err)
	}
	if len(resp.Kvs) == 0 {
		return lifeline.LeaseRecord{}, 0, false, nil
	}
	var l lifeline.LeaseRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		return l, 0, false, fmt.Errorf("decode the primary lease of %s: %w", workload, err)
	}
	return l, clientv3.LeaseID(resp.Kvs[0].Lease), true, nil
}

// TakeLease puts the primary lease key, bound to the etcd lease id, for the
// node the state names at revision stateRev: only while the key is free
// and the state unchanged, so that a controller failing over and the node
// never both win. When it is not free, it returns what holds it.
func (s *Store) TakeLease(ctx context.Context, workload string, rec lifeline.LeaseRecord, stateRev int64, id clientv3.LeaseID) (took bool, held lifeline.LeaseRecord, heldID clientv3.LeaseID, err error) {
	leaseKey := s.keys.Lease(workload)
	val, _ := json.Marshal(rec)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(leaseKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(s.keys.State(workload)), "=", stateRev)).
		Then(clientv3.OpPut(leaseKey, string(val), clientv3.WithLease(id))).
		Else(clientv3.OpGet(leaseKey)).
		Commit()
	if err != nil {
		return false, held, 0, fmt.Errorf("take the primary lease of %s: %w", workload, err)
	}
	if resp.Succeeded {
		return true, rec, id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return false, held, 0, nil // the state changed
	}
	if err := json.Unmarshal(kvs[0].Value, &held); err != nil {
		return false, held, 0, fmt.Errorf("decode the primary lease of %s: %w", workload, err)
	}
	return false, held, clientv3.LeaseID(kvs[0].Lease), nil
}

// RevokeLeaseOf revokes the etcd lease the workload's primary lease key
// lives under, if the key is still held for (node, epoch): the key goes at
// once, and the holder fences itself at its next renewal (or already has,
// cut off). For `--force` across regions.
func (s *Store) RevokeLeaseOf(ctx context.Context, workload string, rec lifeline.LeaseRecord) (bool, error) {
	have, id, found, err := s.LeaseKey(ctx, workload)
	if err != nil || !found || have != rec {
		return false, err
	}
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false, fmt.Errorf("revoke the primary lease of %s: %w", workload, err)
	}
	return true, nil
}

// Snapshot is what the controller decides on, as of one revision.
type Snapshot struct {
	State    lifeline.WorkloadState
	StateRev int64
	HasState bool
	Lease    *lifeline.LeaseRecord
	Reports  map[string]lifeline.NodeStatus // by node
	Health   []HealthResult
	Rev      int64
}

// HealthResult is one vantage point's stored result for one target (the
// router package's HealthReport, as raw fields).
type HealthResult struct {
	Target  string    `json:"target"`
	Vantage string    `json:"vantage"`
	Up      bool      `json:"up"`
	Streak  int       `json:"streak"`
	Since   time.Time `json:"since"`
	Error   string    `json:"error,omitempty"`
}

// ReadSnapshot reads a workload's state, lease, reports and the health
// results in one transaction. Undecodable values are errors.
func (s *Store) ReadSnapshot(ctx context.Context, workload string, opts ...clientv3.OpOption) (Snapshot, error) {
	var snap Snapshot
	keys := s.keys
	get := func(key string, more ...clientv3.OpOption) clientv3.Op {
		return clientv3.OpGet(key, append(append([]clientv3.OpOption(nil), opts...), more...)...)
	}
	resp, err := s.cli.Txn(ctx).Then(
		get(keys.State(workload)),
		get(keys.Lease(workload)),
		get(keys.StatusPrefix(workload), clientv3.WithPrefix()),
		get(keys.HealthPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return snap, fmt.Errorf("read the state of %s: %w", workload, err)
	}
	snap.Rev = resp.Header.Revision
	r := resp.Responses
	if kvs := r[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, &snap.State); err != nil {
			return snap, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
		}
		snap.StateRev, snap.HasState = kvs[0].ModRevision, true
	}
	if kvs := r[1].GetResponseRange().Kvs; len(kvs) > 0 {
		var l lifeline.LeaseRecord
		if err := json.Unmarshal(kvs[0].Value, &l); err != nil {
			return snap, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
		}
		snap.Lease = &l
	}
	snap.Reports = map[string]lifeline.NodeStatus{}
	for _, kv := range r[2].GetResponseRange().Kvs {
		var st lifeline.NodeStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return snap, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		snap.Reports[st.Node] = st
	}
	for _, kv := range r[3].GetResponseRange().Kvs {
		var h HealthResult
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			return snap, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		snap.Health = append(snap.Health, h)
	}
	return snap, nil
}

// SaveRunbook writes a runbook's progress while guard holds.
func (s *Store) SaveRunbook(ctx context.Context, w RunbookWrite, guard ...clientv3.Cmp) error {
	resp, err := s.cli.Txn(ctx).If(guard...).Then(clientv3.OpPut(s.keys.Runbook(w.ID), w.JSON)).Commit()
	if err != nil {
		return fmt.Errorf("save runbook %s: %w", w.ID, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("save runbook %s: %w", w.ID, ErrNotLeader)
	}
	return nil
}

// Audit appends an entry to the audit log.
func (s *Store) Audit(ctx context.Context, e lifeline.AuditEntry) error {
	k, v, err := s.auditOp(e)
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, k, v); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

func (s *Store) auditOp(e lifeline.AuditEntry) (key, value string, err error) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return "", "", fmt.Errorf("encode audit entry: %w", err)
	}
	return fmt.Sprintf("%s%s-%s-%s", s.keys.AuditPrefix(), e.Time.Format("20060102T150405.000000000"), e.Runbook, e.Step), string(b), nil
}

// AuditLog reads the audit log in time order.
func (s *Store) AuditLog(ctx context.Context) ([]lifeline.AuditEntry, error) {
	resp, err := s.cli.Get(ctx, s.keys.AuditPrefix(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read the audit log: %w", err)
	}
	out := make([]lifeline.AuditEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var e lifeline.AuditEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// DeleteIfValue deletes key while its value is still value (e.g. a
// resignation request that names this node); it reports whether it did.
func (s *Store) DeleteIfValue(ctx context.Context, key, value string) (bool, error) {
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", value)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// StateView is how a long-running process follows a workload's state: the
// one reader that agents, the router and the controller use. When a read
// fails it keeps the last state it saw and says so (the error comes with
// it); it never falls back to the spec. Safe for concurrent use.
type StateView struct {
	s        *Store
	workload string

	mu   sync.Mutex
	last lifeline.WorkloadState
	rev  int64
	seen bool
	at   time.Time
}

// View returns a StateView of a workload's state.
func (s *Store) View(workload string) *StateView { return &StateView{s: s, workload: workload} }

// Read reads the state now. When the read fails (or finds nothing), it
// returns the last state seen with the error: ok says whether there is a
// state at all, err whether it is stale.
func (v *StateView) Read(ctx context.Context, opts ...clientv3.OpOption) (st lifeline.WorkloadState, ok bool, err error) {
	st, rev, found, err := v.s.State(ctx, v.workload, opts...)
	if err == nil && !found {
		err = fmt.Errorf("state of %s: %w", v.workload, ErrNoState)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		return v.last, v.seen, fmt.Errorf("%w (using the state last seen %s ago)", err, time.Since(v.at).Round(time.Millisecond))
	}
	v.setLocked(st, rev)
	return v.last, true, nil
}

// Set records a state seen elsewhere (a watch); an older revision is ignored.
func (v *StateView) Set(st lifeline.WorkloadState, rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.setLocked(st, rev)
}

func (v *StateView) setLocked(st lifeline.WorkloadState, rev int64) {
	if rev < v.rev || (rev == v.rev && v.seen) {
		// A member that lags answered: keep the newer one (epochs and
		// revisions only grow).
		v.at = time.Now()
		return
	}
	v.last, v.rev, v.seen, v.at = st, rev, true, time.Now()
}

// Last is the last state seen without reading; ok is false when none was.
func (v *StateView) Last() (lifeline.WorkloadState, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.last, v.seen
}
