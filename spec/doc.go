// Package spec turns lifeline.yaml into a lifeline.Topology.
//
// Decoding is strict: unknown keys, duplicate keys, bad durations, references
// to undeclared regions and strategies without what they need are all
// reported at once, each as FILE:LINE: what is wrong. Defaults are filled in
// one place (Default) before validation, so validation sees what will run.
//
// A workload's optional impact section (what an hour down and a minute of
// lost writes cost, the risks weighed with their yearly likelihoods, the
// prices of standing capacity) takes what it leaves out from its tier's
// defaults (DefaultImpact); its optional contacts name who to call and who
// approves a region failover. `lifeline plan` reads both.
package spec
