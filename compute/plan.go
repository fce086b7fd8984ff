// Package compute runs a workload's service instances as processes on the
// agents' nodes. Placement is a pure function of the topology (Plan), so
// agents, health checkers and the router all agree where every instance
// listens without a registry.
package compute

import (
	"fmt"
	"net"
	"strconv"

	"github.com/lifeline-dr/lifeline"
)

// BasePort is the first port of the first service; each further service
// starts 100 ports higher, and a node's instances of one service take
// consecutive ports.
const BasePort = 8080

// Instance is one service process on one node.
type Instance struct {
	Workload string
	Service  string
	Node     lifeline.NodeID
	// Index numbers the service's instances in the region.
	Index  int
	Addr   string
	Health string
}

// Name identifies the instance in logs and health results.
func (i Instance) Name() string {
	return fmt.Sprintf("%s/%s@%s#%d", i.Workload, i.Service, i.Node, i.Index)
}

// Plan places every service instance of a workload while active is the
// active region: replicas.active instances there, replicas.standby in every
// other region, spread round-robin over each region's zones.
func Plan(t *lifeline.Topology, w *lifeline.Workload, active string) []Instance {
	var out []Instance
	for si, s := range w.Services {
		for _, r := range t.Regions {
			n := s.Replicas.Standby
			if r.Name == active {
				n = s.Replicas.Active
			}
			perNode := map[string]int{}
			for k := 0; k < n && len(r.Zones) > 0; k++ {
				z := r.Zones[k%len(r.Zones)]
				port := BasePort + 100*si + perNode[z.Name]
				perNode[z.Name]++
				out = append(out, Instance{
					Workload: w.Name, Service: s.Name, Node: lifeline.NodeID{Region: r.Name, Zone: z.Name}, Index: k,
					Addr: net.JoinHostPort(z.Address, strconv.Itoa(port)), Health: s.Health,
				})
			}
		}
	}
	return out
}

// On returns the instances placed on one node.
func On(plan []Instance, node lifeline.NodeID) []Instance {
	var out []Instance
	for _, i := range plan {
		if i.Node == node {
			out = append(out, i)
		}
	}
	return out
}
