package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() { register("rejoin", func(e *Env) runbook.Action { return &rejoin{base{e, "rejoin"}} }) }

// rejoinWait bounds how long a failback waits for the returning region's
// nodes to stream: a node that cannot be rewound is reseeded by a base
// backup across regions, which takes as long as the database is large.
const rejoinWait = 30 * time.Minute

// rejoin is a failback's first step: it lifts the fence on the region
// failing back (params to_region), so its nodes may hold the primary
// again, and waits until each of them streams from the current primary.
// Their agents rejoin by themselves (pg_rewind, else a new base backup);
// the note says how each did and what it copied, and where the WAL the
// old primary wrote after the failover (the writes it lost) was saved.
type rejoin struct{ base }

func (s *rejoin) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "rejoined"), nil
}

func (s *rejoin) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	region := rb.Params["to_region"]
	if _, err := s.T.Region(region); err != nil {
		return "", err
	}
	st, err := s.S.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Runbook != rb.ID {
			return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
		}
		changed := false
		if i := slices.Index(st.Fenced, region); i >= 0 {
			st.Fenced = slices.Delete(st.Fenced, i, i+1)
			changed = true
		}
		if !st.HasDatabase(region) {
			st.Databases = append(st.Databases, region)
			changed = true
		}
		if !changed {
			return store.ErrUnchanged
		}
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	var nodes []lifeline.NodeID
	for _, id := range s.T.DatabaseNodesIn(st) {
		if id.Region == region {
			nodes = append(nodes, id)
		}
	}
	start := s.Now()
	_, err = s.until(ctx, max(rejoinWait, w.Objectives.RTO), s.T.Control.CheckInterval, func() (bool, string, error) {
		reports, err := s.reports(ctx, w.Name)
		if err != nil {
			return false, "", err
		}
		var waiting []string
		for _, id := range nodes {
			r, ok := reports[id.String()]
			if !ok || !fresh(s.T, r, s.Now()) || !r.InRecovery || !r.Streaming {
				why := "no report"
				if ok {
					why = orNone(r.Error)
				}
				waiting = append(waiting, fmt.Sprintf("%s (%s)", id, why))
			}
		}
		return len(waiting) == 0, "waiting for " + strings.Join(waiting, ", "), nil
	})
	if err != nil {
		return "", err
	}
	rb.Params["rejoined"] = "true"
	recs, err := s.S.Rejoins(ctx, w.Name)
	if err != nil {
		return "", err
	}
	var notes []string
	var copied, size int64
	for _, id := range nodes {
		r, ok := recs[id.String()]
		if !ok {
			notes = append(notes, id.String()+" streams (never a primary: nothing to rewind)")
			continue
		}
		n := fmt.Sprintf("%s by %s, copied %s of %s", id, r.Method, bytesOf(r.BytesCopied), bytesOf(r.DataBytes))
		if r.Diverged != "" {
			n += fmt.Sprintf("; its WAL after %s (writes the failover lost) saved at %s", r.DivergedFrom, r.Diverged)
			rb.Params["diverged_wal"] = r.Diverged
		}
		copied += r.BytesCopied
		size = max(size, r.DataBytes)
		notes = append(notes, n)
	}
	sort.Strings(notes)
	rb.Params["rejoin_bytes_copied"] = itoa(copied)
	rb.Params["rejoin_data_bytes"] = itoa(size)
	return fmt.Sprintf("%s streams after %s: %s", region, s.Now().Sub(start).Round(time.Second), strings.Join(notes, "; ")), nil
}

func bytesOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
