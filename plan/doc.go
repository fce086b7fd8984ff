// Package plan weighs a workload's DR strategies against what its failures
// cost (`lifeline plan`) and writes its continuity plan (`lifeline plan
// --document`).
//
// For every workload and every strategy, multi-zone alone included, a plan
// gives the expected RPO and RTO of each risk the spec's impact considers
// (zone loss, region loss, an operator's error, corruption), the standing
// cost of what the strategy keeps in the standby regions, the expected
// yearly loss (Σ likelihood × (downtime cost × RTO + data-loss cost ×
// RPO)), and the strategy it recommends, with its reason in one sentence.
//
// What it guarantees:
//   - A figure is "measured" only when it comes from a game day of the data
//     directory's history (gamedays/history.jsonl): the newest run of the
//     workload whose only fault is the risk's (kill-zone, kill-region,
//     delete), under the same strategy (a zone's loss: any strategy, since
//     every strategy fails a zone over the same way). It then carries the
//     run's id and date. Every other figure is "estimated" from the spec's
//     settings, and says from which: lease TTL, check interval,
//     region-down-after, cross-region latency, archive_timeout, the health
//     checks, and the restore time of the last restore drill when there is
//     one (else the database's size at 250 MB/s).
//   - Building a plan (Build) and its document (Markdown, HTML) are pure
//     functions of the topology and the facts read (Facts): history,
//     restore drill, readiness. Reading them is the caller's (Load).
//
// The recommendation is the strategy of lowest yearly cost (standing cost
// plus expected loss) among those that meet the workload's objectives for
// the loss of a zone and of a region; when none does, the cheapest, with
// the objectives named as out of reach.
package plan
