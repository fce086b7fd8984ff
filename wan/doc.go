// Package wan makes one machine behave like several regions. Every
// cross-region connection of a local topology (replication, base backups,
// etcd traffic) goes through a route of this package, which adds the spec's
// cross-region latency to each direction and can cut links like a network
// partition: bytes stop, connections hang, nothing is refused.
//
// Plan is a pure function of the topology: the process that runs the routes
// and every agent that dials through them compute the same addresses.
// In a distributed topology there are no routes and dialing is direct.
package wan
