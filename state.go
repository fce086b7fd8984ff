package lifeline

import (
	"fmt"
	"slices"
	"time"
)

// Phase says what a workload is going through.
type Phase string

const (
	// PhaseSteady: one primary serves, no runbook runs.
	PhaseSteady Phase = "steady"
	// PhaseFailingOver: a zone or region failover runs.
	PhaseFailingOver Phase = "failing-over"
	// PhaseWaitingApproval: a region failover waits for `lifeline approve`
	// (or, with failover: auto, for the witness quorum).
	PhaseWaitingApproval Phase = "waiting-approval"
	// PhaseSwitchingOver: a planned switchover moves the writer.
	PhaseSwitchingOver Phase = "switching-over"
	// PhaseFailingBack: the writer goes back to a region that returned.
	PhaseFailingBack Phase = "failing-back"
)

// WorkloadState is the one stored record of where a workload stands: the
// active region, the primary and its epoch, the phase, the runbook in
// progress and its approval. It lives in the control store and changes only
// by compare-and-swap through the store's typed methods; every agent, the
// router, the controller and the CLI read it with one reader. The spec's
// `active` is only its first value.
type WorkloadState struct {
	// Active is the region whose database takes writes.
	Active string `json:"active"`
	// Primary is the node named primary ("REGION/ZONE"); Epoch grows with
	// every change of primary, and agents act only on the newest.
	Primary string    `json:"primary"`
	Epoch   int64     `json:"epoch"`
	Since   time.Time `json:"since"`
	Phase   Phase     `json:"phase"`
	// Runbook is the id of the runbook in progress ("" when none) and
	// RunbookKind its kind: one runbook per workload at a time.
	Runbook     string `json:"runbook,omitempty"`
	RunbookKind string `json:"runbook_kind,omitempty"`
	// Approval is the decision taken on the runbook in progress.
	Approval *Approval `json:"approval,omitempty"`
	// Databases lists the regions whose nodes hold a database. Every
	// region for the streaming strategies; for backup-restore the active
	// region, and the regions a failover or a failback added.
	Databases []string `json:"databases"`
	// Fenced lists regions fenced by a region failover: no node there may
	// take the primary lease until a failback lifts it.
	Fenced []string `json:"fenced,omitempty"`
	// Demote names the primary a switchover asked to stop writes
	// cleanly; Demoted is what it reported once stopped.
	Demote  string     `json:"demote,omitempty"`
	Demoted *Demotion  `json:"demoted,omitempty"`
	Restore *RestoreAt `json:"restore,omitempty"`
}

// Approval is the decision on a runbook that waits at its approval gate.
type Approval struct {
	Runbook string    `json:"runbook"`
	Approve bool      `json:"approve"` // false: rejected
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
	// Force overrides the readiness refusals (recorded in the audit log).
	Force bool `json:"force,omitempty"`
	// Quorum is set when the witness quorum, not a human, approved
	// (failover: auto).
	Quorum bool `json:"quorum,omitempty"`
}

// Demotion is a primary's clean stop during a switchover: its shutdown
// checkpoint, which the new primary must have replayed before it promotes.
type Demotion struct {
	Node     string    `json:"node"`
	Epoch    int64     `json:"epoch"`
	LSN      string    `json:"lsn"` // the shutdown checkpoint's location
	Timeline int64     `json:"timeline"`
	At       time.Time `json:"at"`
}

// RestoreAt tells the named primary (backup-restore) to build its database
// from its own region's repository before it serves.
type RestoreAt struct {
	Node string `json:"node"`
	// Backup is the base backup to start from ("" for the newest).
	Backup string `json:"backup,omitempty"`
}

// InitialState is a workload's state before its first change: the spec's
// active region, its first zone as primary at epoch 1.
func (t *Topology) InitialState(w *Workload, now time.Time) WorkloadState {
	st := WorkloadState{Active: w.Active, Primary: t.InitialPrimary(w).String(), Epoch: 1, Since: now.UTC(), Phase: PhaseSteady}
	if w.Strategy.StandbyDatabase() {
		st.Databases = t.RegionNames()
	} else {
		st.Databases = []string{w.Active}
	}
	return st
}

// PrimaryNode parses Primary; ok is false when none is named.
func (s WorkloadState) PrimaryNode() (NodeID, bool) {
	id, err := ParseNodeID(s.Primary)
	return id, err == nil
}

// Busy reports whether a runbook holds the workload.
func (s WorkloadState) Busy() bool { return s.Runbook != "" }

// HasDatabase reports whether the nodes of a region hold a database.
func (s WorkloadState) HasDatabase(region string) bool { return slices.Contains(s.Databases, region) }

// IsFenced reports whether a region is fenced off.
func (s WorkloadState) IsFenced(region string) bool { return slices.Contains(s.Fenced, region) }

// Validate checks what every reader relies on.
func (s WorkloadState) Validate(t *Topology) error {
	if s.Primary != "" {
		id, err := ParseNodeID(s.Primary)
		if err != nil {
			return fmt.Errorf("workload state: primary: %w", err)
		}
		if _, err := t.Zone(id); err != nil {
			return fmt.Errorf("workload state: primary: %w", err)
		}
		if id.Region != s.Active {
			return fmt.Errorf("workload state: primary %s is not in the active region %s", s.Primary, s.Active)
		}
	}
	if _, err := t.Region(s.Active); err != nil {
		return fmt.Errorf("workload state: active: %w", err)
	}
	if s.Epoch < 1 {
		return fmt.Errorf("workload state: epoch %d", s.Epoch)
	}
	return nil
}

// DatabaseNodesIn lists the nodes that hold a database for the workload in
// state st: every zone of the regions st.Databases lists.
func (t *Topology) DatabaseNodesIn(st WorkloadState) []NodeID {
	var ids []NodeID
	for _, id := range t.Nodes() {
		if st.HasDatabase(id.Region) {
			ids = append(ids, id)
		}
	}
	return ids
}

// RoleIn is the role the topology gives a node in state st.
func (t *Topology) RoleIn(w *Workload, st WorkloadState, id NodeID) Role {
	if !st.HasDatabase(id.Region) {
		return RoleNone
	}
	primary, _ := st.PrimaryNode()
	if id == primary {
		return RolePrimary
	}
	if w.Database.Sync != "" && id.Region == primary.Region {
		return RoleSyncStandby
	}
	return RoleStandby
}

// SyncCandidatesIn lists the standbys that may acknowledge a synchronous
// commit in state st: the other database nodes of the primary's region.
func (t *Topology) SyncCandidatesIn(w *Workload, st WorkloadState, primary NodeID) []NodeID {
	if w.Database.Sync == "" {
		return nil
	}
	var ids []NodeID
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == primary.Region && id != primary {
			ids = append(ids, id)
		}
	}
	return ids
}

// Evidence is what a region failover was decided on, snapshotted while it
// was still readable: where each surviving standby stood when the region
// was lost, and the loss that implies.
type Evidence struct {
	// Region is the region lost; Primary its primary then.
	Region  string `json:"region"`
	Primary string `json:"primary"`
	// LostAt is when the primary's lease went (the fault, as the control
	// store saw it); DetectedAt when the region was declared down.
	LostAt     time.Time `json:"lost_at"`
	DetectedAt time.Time `json:"detected_at"`
	// PrimaryLSN is the last position the primary reported.
	PrimaryLSN      string     `json:"primary_lsn,omitempty"`
	PrimaryReported time.Time  `json:"primary_reported,omitzero"`
	Standbys        []Standing `json:"standbys"`
	// Seen says which vantage points saw the region down, and since when.
	Seen []string `json:"seen,omitempty"`
	// EstimatedLossBytes and EstimatedLossSeconds are what the most
	// advanced standby lacks of what the primary last reported.
	EstimatedLossBytes   int64   `json:"estimated_loss_bytes"`
	EstimatedLossSeconds float64 `json:"estimated_loss_seconds"`
	// Copy is, for backup-restore, how far the target region's copy of
	// the repository was behind.
	Copy *CopyRecord `json:"copy,omitempty"`
}

// Standing is one surviving standby's position at the loss.
type Standing struct {
	Node       string    `json:"node"`
	ReceiveLSN string    `json:"receive_lsn"`
	ReplayLSN  string    `json:"replay_lsn"`
	LagBytes   int64     `json:"lag_bytes"`
	LagSeconds float64   `json:"lag_seconds"`
	Reported   time.Time `json:"reported"`
	Streaming  bool      `json:"streaming"`
}

// Best is the most advanced standby of the evidence ("" when none).
func (e *Evidence) Best() (Standing, bool) {
	var best Standing
	var bestLSN LSN
	found := false
	for _, s := range e.Standbys {
		l, err := ParseLSN(s.ReceiveLSN)
		if r, rerr := ParseLSN(s.ReplayLSN); rerr == nil && (err != nil || r > l) {
			l, err = r, nil
		}
		if err == nil && (!found || l > bestLSN) {
			best, bestLSN, found = s, l, true
		}
	}
	return best, found
}

// AuditEntry is one line of the audit log: what happened, when, with what
// result, how long it took, and who did it.
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

// ControlRecord is the stored value of a region's routing control. A
// region without a record is on.
type ControlRecord struct {
	On      bool      `json:"on"`
	Changed time.Time `json:"changed"`
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason,omitempty"`
	// Forced names the runbook whose lock the change overrode.
	Forced string `json:"forced,omitempty"`
}

// Alarm is something an operator must know about, raised by the
// controller (a region down) and sent to every configured webhook.
type Alarm struct {
	ID       string    `json:"id"`
	Workload string    `json:"workload"`
	Kind     string    `json:"kind"` // e.g. "region-down"
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	Raised   time.Time `json:"raised"`
	Cleared  time.Time `json:"cleared,omitzero"`
	Runbook  string    `json:"runbook,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// RejoinRecord is how a node last came back as a standby of a new primary:
// by pg_rewind, by a new base backup, or as a cleanly demoted primary that
// needed neither, with what it cost.
type RejoinRecord struct {
	Node    string    `json:"node"`
	Method  string    `json:"method"` // "rewind", "reseed", "clean" (demoted, nothing to copy)
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
	// BytesCopied is what the rejoin copied (pg_rewind's count, or the
	// base backup's size); DataBytes the size of the data directory.
	BytesCopied int64 `json:"bytes_copied"`
	DataBytes   int64 `json:"data_bytes"`
	// Diverged names where the WAL the old primary wrote after the fork
	// (writes the failover lost) was saved, and from which LSN.
	Diverged     string `json:"diverged,omitempty"`
	DivergedFrom string `json:"diverged_from,omitempty"`
	Error        string `json:"error,omitempty"`
}
