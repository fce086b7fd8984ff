// Package ops holds what an operator can do to a workload, once, for every
// front end: approve or reject a region failover at its gate, fail over to
// a region, switch over, fail back, and the plan of each. The HTTP API
// calls it (and the CLI goes through the API, so that every change is made
// by an agent in the name of a token); `--plan` calls it directly.
//
// Guarantees: a decision at the approval gate is one compare-and-swap of the
// workload's state with its audit entry in the same transaction; a runbook
// is begun by runbook.Begin (the state's compare-and-swap is the lock) and
// run by the controller leader, which runs every runbook it finds in a
// state that no one runs. Nothing here runs a step itself, so any agent may
// serve these calls.
//
// Errors say what the caller may do about them: *Error with a Kind
// (invalid, not found, refused, conflict), and *controller.Refusal for the
// readiness refusals that --force overrides.
package ops
