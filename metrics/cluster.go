package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeline-dr/lifeline/telemetry"
)

// Snapshots gives the latest cluster snapshot (telemetry.Sampler is one).
type Snapshots interface {
	Snapshot() (telemetry.Snapshot, bool)
}

var _ Snapshots = (*telemetry.Sampler)(nil)

// StepBuckets are the runbook step duration histogram's buckets: from a
// step that finds its effect in place to a restore that takes minutes.
var StepBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Cluster exports the cluster as of the latest snapshot.
type Cluster struct {
	Src Snapshots
	// Now is the clock (time.Now when nil), for ages.
	Now func() time.Time
}

var _ prometheus.Collector = (*Cluster)(nil)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dSnapshotAge    = desc("lifeline_telemetry_snapshot_age_seconds", "Age of the cluster snapshot the other lifeline_ series come from.")
	dStoreUp        = desc("lifeline_control_store_up", "1 when the last read of the control store succeeded, else 0.")
	dLeader         = desc("lifeline_controller_leader", "1 for the node whose agent leads the controller.", "node")
	dLagBytes       = desc("lifeline_replication_lag_bytes", "How far a standby is behind its primary, in bytes of WAL.", "workload", "node")
	dLagSeconds     = desc("lifeline_replication_lag_seconds", "How far a standby is behind its primary, in seconds (the primary's replay lag while it streams; the time since it last was caught up while it does not).", "workload", "node")
	dRPOUsed        = desc("lifeline_rpo_budget_used_ratio", "Replication lag in seconds over the workload's RPO: above 1, a region loss now would lose more than the RPO allows.", "workload", "node")
	dStreaming      = desc("lifeline_standby_streaming", "1 while the primary sees the standby connected, else 0.", "workload", "node")
	dHealthy        = desc("lifeline_node_healthy", "1 when the node's agent reports its database healthy, else 0 (also when it does not report).", "workload", "node", "role")
	dEpoch          = desc("lifeline_workload_epoch", "The workload's epoch: it grows with every change of primary.", "workload")
	dPhase          = desc("lifeline_workload_phase", "1 for the phase the workload is in.", "workload", "phase")
	dRPO            = desc("lifeline_workload_rpo_seconds", "The workload's recovery point objective.", "workload")
	dRTO            = desc("lifeline_workload_rto_seconds", "The workload's recovery time objective.", "workload")
	dBackupAge      = desc("lifeline_backup_age_seconds", "Time since the last base backup was taken (whether it succeeded or not: see lifeline_backup_last_failed).", "workload")
	dBackupDuration = desc("lifeline_backup_duration_seconds", "How long the last base backup took.", "workload")
	dBackupSize     = desc("lifeline_backup_size_bytes", "Size of the last base backup, before compression.", "workload")
	dBackupFailed   = desc("lifeline_backup_last_failed", "1 when the last base backup failed, else 0.", "workload")
	dVerifyAge      = desc("lifeline_backup_verify_age_seconds", "Time since the last restore drill (backup verify).", "workload")
	dVerifyPassed   = desc("lifeline_backup_verify_passed", "1 when the last restore drill passed, else 0.", "workload")
	dVerifyDuration = desc("lifeline_backup_verify_duration_seconds", "How long the last restore drill took, restore to checked.", "workload")
	dCopyLag        = desc("lifeline_backup_copy_lag_seconds", "How far a region's copy of the active region's repository is behind (0 while in sync).", "workload", "region")
	dRunbooks       = desc("lifeline_runbooks_total", "Runbooks stored, by kind and state.", "workload", "kind", "state")
	dFailovers      = desc("lifeline_failovers_total", "Changes of primary recorded, by kind (zone-failover, region-failover, switchover, failback).", "workload", "kind")
	dSteps          = desc("lifeline_runbook_step_duration_seconds", "Durations of the finished steps of every stored runbook.", "kind", "step")
	dHealthUp       = desc("lifeline_health_check_up", "A vantage point's verdict on a target: 1 up, 0 down.", "target", "vantage")
	dAlarms         = desc("lifeline_alarms_active", "Alarms raised and not cleared, by kind.", "workload", "kind")
	dRouting        = desc("lifeline_routing_control_on", "A region's routing control: 1 on, 0 off.", "workload", "region")
)

// Describe implements prometheus.Collector.
func (c *Cluster) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dSnapshotAge, dStoreUp, dLeader, dLagBytes, dLagSeconds, dRPOUsed, dStreaming, dHealthy, dEpoch, dPhase, dRPO, dRTO,
		dBackupAge, dBackupDuration, dBackupSize, dBackupFailed, dVerifyAge, dVerifyPassed, dVerifyDuration, dCopyLag,
		dRunbooks, dFailovers, dSteps, dHealthUp, dAlarms, dRouting} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *Cluster) Collect(ch chan<- prometheus.Metric) {
	snap, ok := c.Src.Snapshot()
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if !ok {
		gauge(ch, dStoreUp, 0)
		return
	}
	gauge(ch, dSnapshotAge, now.Sub(snap.At).Seconds())
	gauge(ch, dStoreUp, b2f(snap.Error == ""))
	rep := snap.Status
	if rep.Controller != "" {
		gauge(ch, dLeader, 1, rep.Controller)
	}
	for _, l := range snap.Lag {
		gauge(ch, dLagBytes, float64(l.Bytes), l.Workload, l.Node)
		gauge(ch, dLagSeconds, l.Seconds, l.Workload, l.Node)
		if l.RPOSeconds > 0 {
			gauge(ch, dRPOUsed, l.Seconds/l.RPOSeconds, l.Workload, l.Node)
		}
		gauge(ch, dStreaming, b2f(l.Connected), l.Workload, l.Node)
	}
	for _, w := range rep.Workloads {
		gauge(ch, dEpoch, float64(w.Epoch), w.Name)
		if w.Phase != "" {
			gauge(ch, dPhase, 1, w.Name, string(w.Phase))
		}
		gauge(ch, dRPO, w.RPOSeconds, w.Name)
		gauge(ch, dRTO, w.RTOSeconds, w.Name)
		for _, n := range w.Nodes {
			gauge(ch, dHealthy, b2f(n.Healthy), w.Name, n.Region+"/"+n.Zone, n.Role)
		}
		if b := w.Backups.Last; b != nil {
			gauge(ch, dBackupAge, now.Sub(b.At).Seconds(), w.Name)
			gauge(ch, dBackupDuration, b.Seconds, w.Name)
			gauge(ch, dBackupSize, float64(b.Bytes), w.Name)
			gauge(ch, dBackupFailed, b2f(b.Error != ""), w.Name)
		}
		if v := w.Backups.Verify; v != nil {
			gauge(ch, dVerifyAge, now.Sub(v.At).Seconds(), w.Name)
			gauge(ch, dVerifyPassed, b2f(v.Passed), w.Name)
			gauge(ch, dVerifyDuration, v.TotalSeconds, w.Name)
		}
		for _, cp := range w.Backups.Copies {
			gauge(ch, dCopyLag, cp.CopyRecord.LagSeconds(now), w.Name, cp.Region)
		}
	}
	for _, n := range snap.RunbookCounts {
		ch <- prometheus.MustNewConstMetric(dRunbooks, prometheus.CounterValue, float64(n.N), n.Workload, n.Kind, n.State)
	}
	for _, n := range snap.FailoverCounts {
		ch <- prometheus.MustNewConstMetric(dFailovers, prometheus.CounterValue, float64(n.N), n.Workload, n.Kind)
	}
	c.steps(ch, snap.Steps)
	for _, h := range snap.Health {
		gauge(ch, dHealthUp, b2f(h.Up), h.Target, h.Vantage)
	}
	active := map[[2]string]int{}
	for _, a := range snap.Alarms {
		if a.Cleared.IsZero() {
			active[[2]string{a.Workload, a.Kind}]++
		}
	}
	for k, n := range active {
		gauge(ch, dAlarms, float64(n), k[0], k[1])
	}
	for _, r := range snap.Routing {
		gauge(ch, dRouting, b2f(r.On), r.Workload, r.Region)
	}
}

// steps builds one histogram per (kind, step) from the stored runbooks.
func (c *Cluster) steps(ch chan<- prometheus.Metric, steps []telemetry.StepTiming) {
	type key struct{ kind, step string }
	type hist struct {
		count   uint64
		sum     float64
		buckets map[float64]uint64
	}
	hs := map[key]*hist{}
	var order []key
	for _, s := range steps {
		k := key{s.Kind, s.Step}
		h := hs[k]
		if h == nil {
			h = &hist{buckets: map[float64]uint64{}}
			hs[k] = h
			order = append(order, k)
		}
		h.count++
		h.sum += s.Seconds
		for _, b := range StepBuckets {
			if s.Seconds <= b {
				h.buckets[b]++
			}
		}
	}
	for _, k := range order {
		h := hs[k]
		ch <- prometheus.MustNewConstHistogram(dSteps, h.count, h.sum, h.buckets, k.kind, k.step)
	}
}
