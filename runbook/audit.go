package runbook

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/lifeline-dr/lifeline/store"
)

// AuditEntry is one line of the audit log: what happened, when, with what
// result and how long it took.
type AuditEntry struct {
	Time     time.Time `json:"time"`
	Runbook  string    `json:"runbook,omitempty"`
	Workload string    `json:"workload,omitempty"`
	Kind     string    `json:"kind"`
	Step     string    `json:"step,omitempty"`
	Result   string    `json:"result"`
	Seconds  float64   `json:"seconds"`
	Detail   string    `json:"detail,omitempty"`
	Actor    string    `json:"actor"`
}

func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// audit appends to the audit log in the background. The log is a record,
// not a gate: it must not slow a recovery, and a failure to write it is
// logged and does not stop one.
func (e *Engine) audit(_ context.Context, rb *Runbook, step, result string, seconds float64, detail string) {
	entry := AuditEntry{
		Time: e.Now().UTC(), Runbook: rb.ID, Workload: rb.Workload, Kind: rb.Kind, Step: step,
		Result: result, Seconds: seconds, Detail: detail, Actor: e.Leader,
	}
	e.pending.Add(1)
	go func() {
		defer e.pending.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Audit(ctx, e.store, entry); err != nil {
			e.log.Warn("audit log", "err", err)
		}
	}()
}

// Flush waits for audit entries still being written.
func (e *Engine) Flush() { e.pending.Wait() }

// Audit appends an entry to the audit log.
func Audit(ctx context.Context, s *store.Store, entry AuditEntry) error {
	if entry.Time.IsZero() {
		entry.Time = time.Now().UTC()
	}
	key := fmt.Sprintf("%s%s-%s-%s", s.Keys().AuditPrefix(), entry.Time.Format("20060102T150405.000000000"), entry.Runbook, entry.Step)
	return s.Put(ctx, key, entry)
}

// AuditLog reads the audit log in time order.
func AuditLog(ctx context.Context, s *store.Store) ([]AuditEntry, error) {
	m, err := store.List[AuditEntry](ctx, s, s.Keys().AuditPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]AuditEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
