// Package spec turns lifeline.yaml into a lifeline.Topology.
//
// Decoding is strict: unknown keys, duplicate keys, bad durations, references
// to undeclared regions and strategies without what they need are all
// reported at once, each as FILE:LINE: what is wrong. Defaults are filled in
// one place (Default) before validation, so validation sees what will run.
package spec
