// Package metrics exports Lifeline to Prometheus: the cluster as every
// agent sees it (replication lag and the RPO budget it uses, backups and
// their copies and drills, runbooks and their step durations, failovers,
// health-check verdicts, routing controls), the WAL archiving of the
// agent's own PostgreSQL, and the router's HTTP and DNS traffic.
//
// Cluster-wide series come from the agent's telemetry snapshot, not from
// etcd reads at scrape time, and every agent exports them, so they
// survive the loss of any node: aggregate across targets with max by
// (workload, node) (the Grafana dashboard in deploy/ does). Names follow
// Prometheus's conventions (base units as suffixes, counters in _total)
// and are checked with promtool in the tests.
package metrics
