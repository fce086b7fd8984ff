package controller

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

func init() { register("retire", func(e *Env) runbook.Action { return &retire{base{e, "retire"}} }) }

// retire ends a backup-restore failback: the regions other than the active
// one stop holding a database again (their agents stop their servers and
// set the data aside), as the strategy keeps only backups there.
type retire struct{ base }

func (s *retire) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	st, _, err := s.state(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	return len(st.Databases) == 1 && st.Databases[0] == st.Active, nil
}

func (s *retire) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	var dropped []string
	_, err := s.S.UpdateState(ctx, rb.Workload, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Runbook != rb.ID {
			return fmt.Errorf("the workload's state names runbook %q, not this one", st.Runbook)
		}
		dropped = nil
		for _, r := range st.Databases {
			if r != st.Active {
				dropped = append(dropped, r)
			}
		}
		st.Databases = []string{st.Active}
		if g, ok := runbook.Guard(ctx); ok {
			c.Guard = append(c.Guard, g)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return "no database kept in " + strings.Join(dropped, ", "), nil
}
