package controller

import (
	"context"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("repoint", func(e *Env) runbook.Action { return &repoint{base{e, "repoint"}} }) }

// repoint waits (bounded) for the live standbys to stream from the new
// primary; their agents repoint themselves when the state changes. A node
// that is down is not waited for: it rejoins when it returns.
type repoint struct{ base }

func (s *repoint) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "repointed"), nil
}

func (s *repoint) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, st, err := s.current(ctx, rb)
	if err != nil {
		return "", err
	}
	var following, waiting []string
	_, err = s.until(ctx, 30*time.Second, s.T.Control.CheckInterval/2, func() (bool, string, error) {
		following, waiting = nil, nil
		reports, err := s.reports(ctx, w.Name)
		if err != nil {
			return false, "", err
		}
		for _, id := range s.T.DatabaseNodesIn(st) {
			name := id.String()
			if name == st.Primary {
				continue
			}
			r, ok := reports[name]
			switch {
			case !ok || s.Now().Sub(r.Reported) > s.T.Control.LeaseTTL:
				continue // down: it rejoins when it returns
			case r.Streaming && r.Reported.After(rb.Updated.Add(-time.Second)):
				following = append(following, name)
			default:
				waiting = append(waiting, name)
			}
		}
		return len(waiting) == 0, "", nil
	})
	if err != nil && ctx.Err() != nil {
		return "", err
	}
	rb.Params["repointed"] = "true"
	note := "following: " + strings.Join(following, ", ")
	if len(waiting) > 0 {
		note += "; not yet: " + strings.Join(waiting, ", ")
	}
	return note, nil
}
