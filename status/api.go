package status

import (
	"net"
	"strconv"

	"github.com/lifeline-dr/lifeline"
)

// APIEndpoints lists the base URL of every agent's HTTP API (and
// dashboard), in spec order: each node's address at the API port.
func APIEndpoints(t *lifeline.Topology) []string {
	out := make([]string, 0, len(t.Nodes()))
	for _, id := range t.Nodes() {
		out = append(out, "https://"+net.JoinHostPort(t.Address(id), strconv.Itoa(t.API.Port)))
	}
	return out
}
