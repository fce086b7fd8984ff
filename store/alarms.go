package store

import (
	"context"
	"sort"

	"github.com/lifeline-dr/lifeline"
)

// RaiseAlarm records an alarm (or updates one with the same id).
func (s *Store) RaiseAlarm(ctx context.Context, a lifeline.Alarm) error {
	return s.Put(ctx, s.keys.AlarmPrefix(a.Workload)+a.ID, a)
}

// Alarms reads a workload's alarms, newest first.
func (s *Store) Alarms(ctx context.Context, workload string) ([]lifeline.Alarm, error) {
	m, err := List[lifeline.Alarm](ctx, s, s.keys.AlarmPrefix(workload))
	if err != nil {
		return nil, err
	}
	out := make([]lifeline.Alarm, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Raised.After(out[j].Raised) })
	return out, nil
}

// RecordRejoin keeps how a node last rejoined.
func (s *Store) RecordRejoin(ctx context.Context, workload string, r lifeline.RejoinRecord) error {
	return s.Put(ctx, s.keys.Rejoin(workload, r.Node), r)
}

// Rejoins reads how each node of a workload last rejoined, by node.
func (s *Store) Rejoins(ctx context.Context, workload string) (map[string]lifeline.RejoinRecord, error) {
	return List[lifeline.RejoinRecord](ctx, s, s.keys.RejoinPrefix(workload))
}
