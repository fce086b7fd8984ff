package runbook

import (
	"context"
	"encoding/json"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// AuditEntry is one line of the audit log.
type AuditEntry = lifeline.AuditEntry

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
func Audit(ctx context.Context, s *store.Store, entry AuditEntry) error { return s.Audit(ctx, entry) }

// AuditLog reads the audit log in time order.
func AuditLog(ctx context.Context, s *store.Store) ([]AuditEntry, error) { return s.AuditLog(ctx) }
