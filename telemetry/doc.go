// Package telemetry is what every agent keeps watching for the operator
// surface: a snapshot of the cluster (what `lifeline status` shows, the
// routing controls, alarms, recent runbooks, health verdicts) refreshed
// every sample interval, each standby's replication lag as the RPO sees it,
// and an hour of lag history in a ring buffer per standby.
//
// The API answers status from the latest snapshot instead of reading etcd
// per request (reads cross regions), the dashboard's events are the
// snapshots as they change, and the Prometheus collectors export them. A
// snapshot says when it was taken and, when the last refresh failed, why:
// a stale snapshot is shown as such, never as current.
//
// Lag is defined for every standby, reporting or not: while the primary
// sees it connected, its lag is the primary's view (pg_stat_replication's
// bytes and replay lag); while it is not, its lag in seconds is the time
// since it was last seen caught up (by this process; from the sampler's
// start for one never seen), and in bytes the primary's position less the
// standby's last known one. A stopped standby's lag therefore grows, as
// the data a region loss would cost does.
package telemetry
