package controller

import (
	"fmt"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Refusal is a failover, switchover or failback refused, with every reason
// and the evidence for it. Readiness refusals are overridden by --force
// (recorded in the audit log); Locked ones are not.
type Refusal struct {
	Reasons []string
	// Locked: another runbook holds the workload (no --force for that).
	Locked bool
}

func (r *Refusal) Error() string {
	how := "; --force overrides (recorded in the audit log)"
	if r.Locked {
		how = ""
	}
	return "refused: " + strings.Join(r.Reasons, "; ") + how
}

// CheckFailover says whether region to can take over from the active
// region now: nil, or a *Refusal. The streaming strategies need a standby
// there that runs in recovery, within the RPO of the lost primary's last
// position when the evidence knows it; backup-restore needs a base backup
// in the region's own copy of the repository. It is pure.
func CheckFailover(t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, to string, reports map[string]lifeline.NodeStatus, ev *lifeline.Evidence, copyRec *lifeline.CopyRecord, now time.Time) error {
	var reasons []string
	if _, err := t.Region(to); err != nil {
		return &Refusal{Locked: true, Reasons: []string{err.Error()}}
	}
	if to == st.Active {
		return &Refusal{Locked: true, Reasons: []string{fmt.Sprintf("%s is the active region already", to)}}
	}
	if !w.Strategy.StandbyDatabase() {
		switch {
		case copyRec == nil:
			reasons = append(reasons, fmt.Sprintf("region %s has no copy of the backups yet", to))
		case copyRec.Backup == "":
			reasons = append(reasons, fmt.Sprintf("region %s's copy of the repository holds no base backup (newest WAL %s)", to, orNone(copyRec.NewestWAL)))
		}
		if len(reasons) > 0 {
			return &Refusal{Reasons: reasons}
		}
		return nil
	}
	var ready []string
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region != to {
			continue
		}
		r, ok := reports[id.String()]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("%s does not report", id))
		case !usable(t, r, now):
			reasons = append(reasons, fmt.Sprintf("%s is not a running standby (%s)", id, orNone(r.Error)))
		default:
			ready = append(ready, id.String())
		}
	}
	if len(ready) == 0 {
		if len(reasons) == 0 {
			reasons = append(reasons, fmt.Sprintf("region %s holds no standby of %s", to, w.Name))
		}
		return &Refusal{Reasons: reasons}
	}
	if ev != nil && ev.EstimatedLossSeconds > w.Objectives.RPO.Seconds() {
		best, _ := ev.Best()
		return &Refusal{Reasons: []string{fmt.Sprintf("the best standby %s was %.1fs behind the lost primary (%d bytes), beyond the RPO of %s",
			best.Node, ev.EstimatedLossSeconds, ev.EstimatedLossBytes, w.Objectives.RPO)}}
	}
	return nil
}

// StepDoc says in one line what each step does, for --plan.
var StepDoc = map[string]string{
	"fence":          "wait until the lost primary's lease is gone (it stops writing before it can expire)",
	"pick":           "choose the most advanced standby once positions are final (quorum-commit rule inside the region)",
	"promote":        "name it primary at the next epoch (lease gone, state unchanged), hand it the lease, wait until it writes",
	"repoint":        "wait until the live standbys stream from the new primary",
	"verify":         "commit a transaction on the new primary",
	"detect":         "record the evidence (standby positions, estimated loss), raise the alarm, call the webhooks",
	"await-approval": "wait for `lifeline approve` (failover: approve) or the witness quorum (failover: auto)",
	"fence-region":   "fence the lost region (no lease there), switch it off in routing, the new region on",
	"restore":        "name the new region's first zone primary; it restores the newest backup and WAL from its own repository",
	"scale":          "wait until the active region runs its active count of service instances, all healthy",
	"reroute":        "routing follows the state (fenced regions off, the others on); wait for the public entry point",
	"wait-lag-zero":  "choose the target and wait until it is within 1 MiB of the primary",
	"demote":         "stop writes cleanly on the primary (shutdown checkpoint), wait until the target replayed it",
	"rejoin":         "lift the returning region's fence; wait until its nodes stream (pg_rewind, else a new base backup)",
	"retire":         "backup-restore: stop holding a database outside the active region",
}
