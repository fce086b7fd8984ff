package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
)

// Controls is a workload's routing controls as of one read, with what a
// change must compare so that two changes that are each allowed cannot
// together break a safety rule.
type Controls struct {
	// Records by region; a region without one is on.
	Records map[string]lifeline.ControlRecord
	// Runbook holds the workload ("" when none), from its state.
	Runbook  string
	revs     map[string]int64 // by key; absent = 0
	stateRev int64
}

// On reports whether a region is switched on.
func (c Controls) On(region string) bool {
	rec, ok := c.Records[region]
	return !ok || rec.On
}

// ReadControls reads a workload's routing controls and its state.
func (s *Store) ReadControls(ctx context.Context, workload string, opts ...clientv3.OpOption) (Controls, error) {
	c := Controls{Records: map[string]lifeline.ControlRecord{}, revs: map[string]int64{}}
	prefix := s.keys.ControlPrefix(workload)
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(prefix, append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...),
		clientv3.OpGet(s.keys.State(workload), opts...),
	).Commit()
	if err != nil {
		return c, fmt.Errorf("routing controls of %s: %w", workload, err)
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var rec lifeline.ControlRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return c, fmt.Errorf("routing controls: decode %s: %w", kv.Key, err)
		}
		c.Records[strings.TrimPrefix(string(kv.Key), prefix)] = rec
		c.revs[string(kv.Key)] = kv.ModRevision
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		var st lifeline.WorkloadState
		if err := json.Unmarshal(kvs[0].Value, &st); err != nil {
			return c, fmt.Errorf("routing controls: decode %s: %w", kvs[0].Key, err)
		}
		c.Runbook, c.stateRev = st.Runbook, kvs[0].ModRevision
	}
	return c, nil
}

// SetControl writes one region's control if neither any control of the
// workload (regions lists them all) nor its state changed since read, and
// the audit entry with it. ErrConflict means: read and check again.
func (s *Store) SetControl(ctx context.Context, workload string, regions []string, read Controls, region string, rec lifeline.ControlRecord, audit lifeline.AuditEntry) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// A key that does not exist compares as revision 0.
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.keys.State(workload)), "=", read.stateRev)}
	for _, r := range regions {
		k := s.keys.Control(workload, r)
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(k), "=", read.revs[k]))
	}
	ak, av, err := s.auditOp(audit)
	if err != nil {
		return err
	}
	resp, err := s.cli.Txn(ctx).If(conds...).Then(clientv3.OpPut(s.keys.Control(workload, region), string(b)), clientv3.OpPut(ak, av)).Commit()
	if err != nil {
		return fmt.Errorf("routing control of %s/%s: %w", workload, region, err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}
