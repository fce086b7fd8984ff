// Package readiness says, continuously, whether each standby region of a
// workload can take over now (AWS Route 53 ARC's readiness checks, for
// Lifeline's own topology).
//
// Evaluate is pure: from the workload's state, the agents' reports, the
// routing controls, the backups' copy and restore drill, the witness's
// health results and what was found on the hosts, it lists every check of
// a region with its verdict. A region is READY when every check passes:
//
//   - region: it is not fenced (a region failover left it; a failback lifts it)
//   - routing: its routing control is on (an operator switched it off)
//   - standby (streaming strategies): one of its databases runs as a standby
//     and streams from the primary (in recovery is enough once the primary
//     is gone: the failover's evidence then measures the loss)
//   - lag: that standby's replay lag is within the RPO
//   - version: its PostgreSQL major version is the primary's
//   - settings: it has at least the primary's max_connections, workers,
//     senders, prepared transactions and locks (a hot standby refuses to
//     run with fewer), and the same wal_level, archive_mode, wal_log_hints
//     and data checksums
//   - backups (backup-restore): its copy of the repository holds a base
//     backup no older than backups.full (plus a tenth), and its WAL copy is
//     within the RPO
//   - drill (backup-restore): the last restore drill passed (none yet is
//     not a failure: the controller drills every new backup, the first too)
//   - services: every service's command is found (local topologies: on
//     this host; distributed ones cannot be checked from here)
//   - ports: nothing listens on an address a failover would start a service
//     instance or a database on (local topologies; dialled, never bound)
//   - witness (failover: auto): the witness reports health results, so the
//     quorum that approves an automatic failover can form
//
// Runner evaluates every workload's standby regions every few seconds on
// the controller leader, stores each region's record (store.PutReadiness)
// and raises an alarm on every change, NOT READY and back to READY.
// `lifeline status` shows the records; `lifeline failover` to a region
// that is NOT READY is refused without --force.
package readiness
