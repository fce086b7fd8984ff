package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() { register("demote", func(e *Env) runbook.Action { return &demote{base{e, "demote"}} }) }

// demote stops writes on the primary cleanly, as CloudNativePG's demotion
// token does: the state asks the primary's agent to demote it; the agent
// shuts the server down (a shutdown checkpoint, which every connected
// standby receives before the walsenders exit), lets go of the lease and
// reports the checkpoint's location. The step then waits until the
// switchover's target has replayed past it: the target holds every
// acknowledged write, and the old primary can follow the new one without
// a rewind.
type demote struct{ base }

func (s *demote) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	if has(rb, "demoted") {
		return true, nil
	}
	st, _, err := s.state(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	// Promoted already (a leader that died after the promotion).
	return st.Epoch >= newEpoch(rb) && st.Primary == rb.Params["to"], nil
}

func (s *demote) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	to, err := lifeline.ParseNodeID(rb.Params["to"])
	if err != nil {
		return "", fmt.Errorf("demote: no target: %w", err)
	}
	from := rb.Params["from"]
	start := s.Now()
	_, err = s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		switch {
		case st.Runbook != rb.ID:
			return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
		case st.Primary != from || st.Epoch != newEpoch(rb)-1:
			return fmt.Errorf("the primary changed to %s (epoch %d) since the switchover began", st.Primary, st.Epoch)
		case st.Demote == from:
			return store.ErrUnchanged
		}
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
		st.Demote, st.Demoted = from, nil
		return nil
	})
	if err != nil {
		return "", err
	}
	var d *lifeline.Demotion
	// Polled often: the write pause is this step.
	const every = 20 * time.Millisecond
	_, err = s.until(ctx, waitFor(w, 30*time.Second), every, func() (bool, string, error) {
		st, _, err := s.state(ctx, w.Name)
		if err != nil {
			return false, "", err
		}
		if st.Demoted == nil || st.Demoted.Node != from {
			return false, fmt.Sprintf("%s has not stopped writes yet", from), nil
		}
		d = st.Demoted
		_, _, held, err := s.S.LeaseKey(ctx, w.Name)
		if err != nil || held {
			return false, fmt.Sprintf("%s still holds the primary lease", from), err
		}
		return true, "", nil
	})
	if err != nil {
		return "", err
	}
	stopped := s.Now()
	want, err := lifeline.ParseLSN(d.LSN)
	if err != nil {
		return "", fmt.Errorf("demote: %s reported a bad checkpoint location %q", from, d.LSN)
	}
	// The target's replay position, asked of the target itself (its
	// agent reports only every check interval), else from its reports.
	replayed := func() (string, error) {
		reports, err := s.reports(ctx, w.Name)
		if err != nil {
			return "", err
		}
		return reports[to.String()].LSN, nil
	}
	if s.Connect != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := s.Connect(cctx, w, to)
		cancel()
		if err == nil {
			defer conn.Close(context.Background())
			replayed = func() (string, error) {
				var lsn string
				qctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				err := conn.QueryRow(qctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, '')").Scan(&lsn)
				return lsn, err
			}
		}
	}
	var note string
	_, err = s.until(ctx, waitFor(w, 30*time.Second), every, func() (bool, string, error) {
		lsn, err := replayed()
		if err != nil {
			return false, err.Error(), nil
		}
		replay, perr := lifeline.ParseLSN(lsn)
		if perr != nil || replay <= want {
			note = fmt.Sprintf("%s replayed %s of the shutdown checkpoint at %s", to, orNone(lsn), d.LSN)
			return false, note, nil
		}
		return true, "", nil
	})
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			return "", fmt.Errorf("%s did not replay %s's last WAL: %w (the switchover stops; %s resumes as primary)", to, from, err, from)
		}
		return "", err
	}
	rb.Params["demoted"], rb.Params["demoted_lsn"] = "true", d.LSN
	return fmt.Sprintf("%s stopped writes at %s after %s; %s replayed it after %s more", from, d.LSN,
		stopped.Sub(start).Round(time.Millisecond), to, s.Now().Sub(stopped).Round(time.Millisecond)), nil
}
