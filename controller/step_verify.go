package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("verify", func(e *Env) runbook.Action { return &verify{base{e, "verify"}} }) }

// verify commits a transaction on the new primary: it proves the primary
// takes writes and, with synchronous replication, that a standby
// acknowledges them.
type verify struct{ base }

func (s *verify) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "verified"), nil
}

func (s *verify) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, st, err := s.current(ctx, rb)
	if err != nil {
		return "", err
	}
	to, ok := st.PrimaryNode()
	if !ok {
		return "", fmt.Errorf("the state names no primary")
	}
	wait := waitFor(w, 30*time.Second)
	vctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := s.Now()
	// The new primary may still be restarting (its agent applies the
	// state): connect until the wait is over.
	var conn *pgx.Conn
	var connErr error
	if _, err := s.until(vctx, wait, s.T.Control.CheckInterval/2, func() (bool, string, error) {
		conn, connErr = s.Connect(vctx, w, to)
		return connErr == nil, "", nil
	}); err != nil {
		if connErr != nil {
			return "", fmt.Errorf("%s took no connection in %s: %w", to, wait, connErr)
		}
		return "", err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(vctx)
	if err != nil {
		return "", err
	}
	if _, err := tx.Exec(vctx, "SET LOCAL synchronous_commit = on; SELECT txid_current()"); err != nil {
		_ = tx.Rollback(context.Background())
		return "", err
	}
	if err := tx.Commit(vctx); err != nil {
		if vctx.Err() != nil {
			return "", fmt.Errorf("a commit on %s waited %s for a synchronous standby: none of %s is up (with RPO 0 writes wait rather than risk loss)",
				to, wait, strings.Join(names(s.T.SyncCandidatesIn(w, st, to)), ", "))
		}
		return "", err
	}
	rb.Params["verified"] = "true"
	return fmt.Sprintf("a commit on %s took %s", to, s.Now().Sub(start).Round(time.Millisecond)), nil
}

func names(ids []lifeline.NodeID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
