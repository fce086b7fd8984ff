package lifeline

import "time"

// Tier says how much a workload matters to the business; it chooses the
// defaults of its impact (spec.DefaultImpact).
type Tier string

const (
	TierCritical Tier = "critical"
	TierHigh     Tier = "high"
	TierMedium   Tier = "medium"
	TierLow      Tier = "low"
)

// Tiers lists the tiers from the most to the least critical.
var Tiers = []Tier{TierCritical, TierHigh, TierMedium, TierLow}

// Risk names a kind of failure a plan weighs.
type Risk string

const (
	// RiskZone: one zone of the active region is lost (a data centre).
	RiskZone Risk = "zone-loss"
	// RiskRegion: the whole active region is lost.
	RiskRegion Risk = "region-loss"
	// RiskOperator: an operator's error, such as a DELETE without its
	// WHERE clause; replication copies it everywhere, PITR undoes it.
	RiskOperator Risk = "operator-error"
	// RiskCorruption: data corrupted on every copy (a bug, a bad disk that
	// replicated); the backups undo it.
	RiskCorruption Risk = "corruption"
)

// Risks lists the risks a plan knows, in the order it shows them.
var Risks = []Risk{RiskZone, RiskRegion, RiskOperator, RiskCorruption}

// Impact is what a workload's failures cost, for `lifeline plan`.
type Impact struct {
	Tier Tier `json:"tier"`
	// Currency of every amount (a code such as EUR; only shown).
	Currency string `json:"currency"`
	// DowntimePerHour is what an hour without the workload costs.
	DowntimePerHour float64 `json:"downtime_per_hour"`
	// DataLossPerMinute is what a minute of lost writes costs. A spec may
	// give a lost transaction's cost instead, with how many are written a
	// minute: the parser multiplies them.
	DataLossPerMinute float64 `json:"data_loss_per_minute"`
	// ApprovalTime is how long reaching an approver takes, counted in the
	// RTO of a region failover with failover: approve (0: not counted).
	ApprovalTime time.Duration `json:"approval_time_ns"`
	// Risks are the failures considered, with their yearly likelihood.
	Risks []RiskLikelihood `json:"risks"`
	// Prices of what a strategy keeps running in the standby regions.
	Prices Prices `json:"prices"`
	// DataGB is the database's size, for storage and restore estimates
	// where no backup was measured.
	DataGB float64 `json:"data_gb"`
}

// RiskLikelihood is one risk considered and how often it is expected.
type RiskLikelihood struct {
	Risk Risk `json:"risk"`
	// PerYear is the expected number of occurrences a year (0.05: once in
	// twenty years).
	PerYear float64 `json:"per_year"`
	// Lasts is how long the failure lasts when it is waited out rather
	// than failed over (a region's outage under multi-zone alone).
	Lasts time.Duration `json:"lasts_ns,omitempty"`
}

// Prices are monthly prices of standing capacity.
type Prices struct {
	InstanceMonth  float64 `json:"instance_month"`   // one service instance
	DatabaseMonth  float64 `json:"database_month"`   // one database node
	StorageGBMonth float64 `json:"storage_gb_month"` // one GB of volume or object storage
}

// Likelihood returns a risk's entry; ok is false when it is not considered.
func (i Impact) Likelihood(r Risk) (RiskLikelihood, bool) {
	for _, l := range i.Risks {
		if l.Risk == r {
			return l, true
		}
	}
	return RiskLikelihood{}, false
}

// Contact is a person a continuity plan names.
type Contact struct {
	Name string `json:"name"`
	// Role is what they do in an incident: approver (may approve a region
	// failover), commander, dba, sre, owner, communications, ...
	Role string `json:"role"`
	// Reach is how to reach them (a phone number, a pager, a channel).
	Reach string `json:"reach"`
}

// ContactRoleApprover is the role of contacts who may approve a region failover.
const ContactRoleApprover = "approver"

// Readiness is whether a standby region can take over a workload now, as
// the controller leader last judged it.
type Readiness struct {
	Workload string           `json:"workload"`
	Region   string           `json:"region"`
	Ready    bool             `json:"ready"`
	Checks   []ReadinessCheck `json:"checks"`
	// Since is when Ready last changed; Evaluated when the checks ran.
	Since     time.Time `json:"since"`
	Evaluated time.Time `json:"evaluated"`
	// Alarm is the alarm raised when the region turned NOT READY, cleared
	// when it is READY again.
	Alarm string `json:"alarm,omitempty"`
}

// ReadinessCheck is one check of a standby region's readiness.
type ReadinessCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Failing lists the checks that failed.
func (r Readiness) Failing() []ReadinessCheck {
	var out []ReadinessCheck
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// PromotionSettings are the settings a standby must share with its primary
// to take over: a hot standby refuses to run with fewer connections,
// workers, senders, prepared transactions or locks than its primary, and
// the others decide what a promoted server archives, logs and rewinds.
var PromotionSettings = []string{
	"max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
	"max_locks_per_transaction", "wal_level", "archive_mode", "wal_log_hints", "data_checksums",
}
