package store

import (
	"context"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
)

// ReadinessPrefix is where a workload's standby regions' readiness lives,
// one key per region (workloads/<w>/readiness/<region>).
func (k Keys) ReadinessPrefix(w string) string { return k.workload(w) + "readiness/" }

// Readiness is one standby region's readiness record.
func (k Keys) Readiness(w, region string) string { return k.ReadinessPrefix(w) + region }

// PutReadiness records a standby region's readiness as last evaluated.
func (s *Store) PutReadiness(ctx context.Context, r lifeline.Readiness) error {
	return s.Put(ctx, s.keys.Readiness(r.Workload, r.Region), r)
}

// Readiness reads a workload's readiness records, in region order.
func (s *Store) Readiness(ctx context.Context, workload string, opts ...clientv3.OpOption) ([]lifeline.Readiness, error) {
	m, err := List[lifeline.Readiness](ctx, s, s.keys.ReadinessPrefix(workload), opts...)
	if err != nil {
		return nil, err
	}
	out := make([]lifeline.Readiness, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out, nil
}
