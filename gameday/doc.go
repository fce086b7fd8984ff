// Package gameday proves recovery objectives by measuring them: a game day
// is a scenario file (scenario.go) run against a local topology, with a
// load whose ledger records every request, faults and operator actions on a
// timeline, and a report whose every figure is computed from raw events.
//
// What a caller may rely on:
//
//   - Scenarios are parsed strictly: unknown or repeated keys, bad
//     durations, unknown faults, actions and metrics are reported together
//     as spec.Errors, each FILE:LINE: what. Parsing reads no other file.
//   - Faults (fault_*.go) and actions (action*.go) are registered by the
//     name a scenario uses, each in its own file behind a small interface
//     (Fault: Name, Inject, Heal; Action: Name, Run). They act through the
//     public lifeline commands (node, link, restore, approve, switchover,
//     failback), run as child processes, so a game day exercises what an
//     operator runs. Heal is safe after a partial run, and every fault
//     injected is healed before the run ends, also after an abort or
//     Ctrl-C.
//   - Every request carries an id unique to its run (the run id, a dash, a
//     sequence number) and is recorded with its start, end, outcome (ok,
//     error: refused before it could take effect, unknown: it may have) and
//     the instance and region that served it.
//   - After the run the ids present in the database are read once, and the
//     writes are classified as Jepsen's set checker does (CheckSet): lost
//     (acknowledged, missing), recovered (unknown, present), unexpected
//     (present, never attempted or refused).
//   - RPO is the count of lost writes and the span from the oldest of them
//     to the first fault; RTO is, for each fault, from the moment its
//     command began to the end of the first write acknowledged among those
//     started after the first write it cost had failed (or, when it cost
//     none, after its command returned), as the client saw it.
//   - Analyze is a pure function of Raw; report.json holds both, and the
//     figures in it are those Analyze gives on its raw events.
//   - A game day that starts a topology holds the machine-wide topology lock
//     (LockFile) that the tests hold, and stops the topology it started.
package gameday
