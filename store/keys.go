package store

import "path"

// The key layout, in one place. Everything of a cluster lives under
// /lifeline/<cluster>/ so that several clusters can share one external etcd.
//
//	topology                               the spec the cluster was built from (JSON)
//	workloads/<w>/state                    WorkloadState: active region, primary, epoch, phase, runbook, approval
//	workloads/<w>/status/<region>/<zone>   NodeStatus, under the agent's session lease
//	workloads/<w>/lease                    the primary's lease (fencing), under its lease
//	workloads/<w>/failovers/<id>           record of each failover
//	workloads/<w>/backup/<name>            last backup, verification, copy per region
//	workloads/<w>/controls/<region>        routing control (on/off) of a region; absent = on
//	workloads/<w>/alarms/<id>              alarms raised (region down, ...)
//	workloads/<w>/readiness/<region>       Readiness: can this standby region take over now (store/readiness.go)
//	workloads/<w>/rejoins/<node>           how a node last rejoined (rewind, reseed; bytes copied)
//	health/<target>/<vantage>              a vantage point's health-check result, under its lease
//	runbooks/<id>                          runbook progress
//	audit/<time>-<id>                      audit log entries
//	tokens/<name>                          API token: its role and SHA-256, never the token itself
//	election/controller                    controller leader election prefix
type Keys struct{ root string }

// NewKeys returns the key layout of a cluster.
func NewKeys(cluster string) Keys { return Keys{root: "/lifeline/" + cluster + "/"} }

// Root is the prefix of every key of the cluster.
func (k Keys) Root() string { return k.root }

func (k Keys) Topology() string { return k.root + "topology" }

func (k Keys) workload(w string) string { return k.root + "workloads/" + w + "/" }

// State is the workload's one stored state (lifeline.WorkloadState).
func (k Keys) State(w string) string { return k.workload(w) + "state" }

// legacyPrimary is where versions before the state record kept the primary.
func (k Keys) legacyPrimary(w string) string { return k.workload(w) + "primary" }

func (k Keys) StatusPrefix(w string) string { return k.workload(w) + "status/" }

func (k Keys) Status(w, node string) string { return k.StatusPrefix(w) + node }

func (k Keys) Lease(w string) string { return k.workload(w) + "lease" }

func (k Keys) FailoverPrefix(w string) string { return k.workload(w) + "failovers/" }

// BackupState holds what the last backup, copy or verification did
// (name: "last", "verify", "copy-<region>").
func (k Keys) BackupState(w, name string) string { return k.workload(w) + "backup/" + name }

func (k Keys) BackupStatePrefix(w string) string { return k.workload(w) + "backup/" }

func (k Keys) RunbookPrefix() string { return k.root + "runbooks/" }

func (k Keys) Runbook(id string) string { return k.RunbookPrefix() + id }

func (k Keys) AuditPrefix() string { return k.root + "audit/" }

func (k Keys) Election(name string) string { return path.Join(k.root, "election", name) }

// Resign holds the name of an election's leader that an operator asked to
// step down (outside the candidates' prefix).
func (k Keys) Resign(name string) string { return k.Election(name) + "-resign" }

// ControlPrefix is where a workload's routing controls live, one key per region.
func (k Keys) ControlPrefix(w string) string { return k.workload(w) + "controls/" }

// Control is the routing control of one region of a workload.
func (k Keys) Control(w, region string) string { return k.ControlPrefix(w) + region }

// AlarmPrefix is where a workload's alarms live.
func (k Keys) AlarmPrefix(w string) string { return k.workload(w) + "alarms/" }

// Rejoin is how a node of a workload last rejoined as a standby.
func (k Keys) Rejoin(w, node string) string { return k.workload(w) + "rejoins/" + node }

// RejoinPrefix holds every node's last rejoin.
func (k Keys) RejoinPrefix(w string) string { return k.workload(w) + "rejoins/" }

// HealthPrefix is where vantage points publish their health-check results.
func (k Keys) HealthPrefix() string { return k.root + "health/" }

// Health is one vantage point's latest result for one target.
func (k Keys) Health(target, vantage string) string { return k.HealthPrefix() + target + "/" + vantage }

// TokenPrefix is where API tokens live, one key per name.
func (k Keys) TokenPrefix() string { return k.root + "tokens/" }

// Token is one API token's record.
func (k Keys) Token(name string) string { return k.TokenPrefix() + name }
