package plan

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/store"
)

// scenarioFaults names the fault of the example scenarios, for history
// entries written before the history kept fault kinds and whose report
// is gone.
var scenarioFaults = map[string]string{
	"zone-loss": "kill-zone", "region-loss": "kill-region", "accidental-delete": "delete",
}

// LoadHistory reads a data directory's game days with the kinds of faults
// each injected: from the entry, else its report.json, else the example
// scenario of its name.
func LoadHistory(dataDir string) ([]gameday.HistoryEntry, error) {
	entries, err := gameday.History(dataDir)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		e := &entries[i]
		if len(e.Faults) > 0 {
			continue
		}
		if e.Report != "" {
			if r, err := gameday.ReadReport(filepath.Join(filepath.Dir(e.Report), gameday.ReportJSON)); err == nil {
				e.Faults = r.FaultKinds()
				if e.Workload == "" {
					e.Workload = r.Workload
				}
				continue
			}
		}
		if f, ok := scenarioFaults[e.Scenario]; ok {
			e.Faults = []string{f}
		}
	}
	return entries, nil
}

// ReadFacts reads each workload's last restore drill and readiness from a
// running topology's control store, with history given. A read that fails
// leaves the fact unknown and is returned as an error with the facts read.
func ReadFacts(ctx context.Context, s *store.Store, t *lifeline.Topology, history []gameday.HistoryEntry) (map[string]Facts, error) {
	out := map[string]Facts{}
	var errs []error
	for _, w := range t.Workloads {
		f := Facts{History: history}
		var v lifeline.VerifyRecord
		if _, found, err := s.Get(ctx, s.Keys().BackupState(w.Name, "verify"), &v); err != nil {
			errs = append(errs, err)
		} else if found {
			f.Verify = &v
		}
		r, err := s.Readiness(ctx, w.Name)
		if err != nil {
			errs = append(errs, err)
		}
		f.Readiness = r
		out[w.Name] = f
		if ctx.Err() != nil {
			break
		}
	}
	return out, errors.Join(errs...)
}
