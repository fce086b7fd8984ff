// Package e2e holds end-to-end tests: real local topologies (lifeline up,
// agents, etcd, PostgreSQL, the WAN emulator) under real faults (SIGKILL,
// cut links), asserting what must never happen.
package e2e
