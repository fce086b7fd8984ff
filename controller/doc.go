// Package controller is the brain that runs in the leader among the agents.
// Each check interval it observes every workload (its stored state, the
// primary lease, the agents' reports and the health checks' results, in one
// read), decides with Decide (a pure function of those and the clock: a
// zone failover, a region failover, or nothing) and acts by starting a
// runbook. It also runs every runbook it finds in a workload's state that
// no one runs (one an operator began with `lifeline switchover`, or one a
// previous leader left), so that a runbook survives its controller.
//
// Runbooks are lists of steps (Plan gives them per kind and strategy), one
// file per step (step_*.go), each registered by name and working only
// through Env: the store behind an interface, an injected clock.
//
// Guarantees: leadership is an etcd election, and every write a step makes
// to the workload's state is a compare-and-swap guarded by it, so a
// deposed leader changes nothing; a new primary is named only while the
// old primary's lease is gone; a region failover passes its approval gate
// (a human's `lifeline approve`, or with failover: auto the witness
// quorum) before it fences the old region and promotes; with RPO 0 a zone
// failover promotes only when the quorum-commit rule rules out a lost
// acknowledged commit.
package controller
