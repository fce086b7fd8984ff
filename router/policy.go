package router

import (
	"net/netip"
	"time"
)

// PolicyKind names a routing policy, as the spec's routing.policy spells it.
type PolicyKind string

const (
	// PolicyFailover sends every client to the active region while it is
	// healthy and switched on, else to the first healthy, switched-on
	// standby region in spec order.
	PolicyFailover PolicyKind = "failover"
	// PolicyWeighted spreads clients over the healthy, switched-on regions
	// in proportion to their weights.
	PolicyWeighted PolicyKind = "weighted"
	// PolicyLatency sends a client to the region with the lowest measured
	// round trip from its subnet (Policy.Latency).
	PolicyLatency PolicyKind = "latency"
	// PolicyGeolocation sends a client to the region its subnet is assigned
	// to (Policy.Geo), e.g. for data residency.
	PolicyGeolocation PolicyKind = "geolocation"
)

// Policy is a workload's routing policy and the tables it needs.
type Policy struct {
	Kind PolicyKind
	// Latency is used by PolicyLatency: per client subnet, the measured
	// round trip to each region. The most specific subnet that contains
	// the client wins; a client in no subnet is routed in failover order.
	Latency []LatencyRule
	// Geo is used by PolicyGeolocation: per client subnet, its region. The
	// most specific subnet wins; a client in no subnet is routed in
	// failover order.
	Geo []GeoRule
}

// LatencyRule is one row of a latency table.
type LatencyRule struct {
	Subnet netip.Prefix
	// RTT is the round trip from Subnet to each region; a region missing
	// here is never the nearest for this subnet.
	RTT map[string]time.Duration
}

// GeoRule assigns a client subnet to a region.
type GeoRule struct {
	Subnet netip.Prefix
	Region string
}

// RegionState is what the router knows of one region of a workload at one
// moment: where its entry points are and whether traffic may go there.
type RegionState struct {
	Name string
	// Addrs are the region's entry addresses, answered in DNS A records.
	Addrs []netip.Addr
	// Entry is the region's HTTP front door (host:port), where the global
	// entry point proxies to.
	Entry string
	// Healthy is the verdict of the health checks (a majority of vantage
	// points) on the region's entry point.
	Healthy bool
	// On is the region's routing control: an operator's switch that health
	// never overrides.
	On bool
	// Weight is the region's share under PolicyWeighted; 0 takes no traffic
	// while a region with a weight is usable.
	Weight int
}

// Reason says why a Decision chose its region.
type Reason string

const (
	// ReasonPolicy: the policy's own choice was usable (healthy and on).
	ReasonPolicy Reason = "policy"
	// ReasonFallback: the policy's choice was unusable, or the policy had
	// none for this client; the first usable region in failover order
	// (active, then standbys in spec order) was chosen.
	ReasonFallback Reason = "fallback"
	// ReasonFailOpen: no region is both healthy and on. Health checks that
	// fail everywhere at once are more likely wrong than right (a broken
	// checker, a partitioned router), so the router answers as if every
	// switched-on region were healthy: the active region if it is on, else
	// the first switched-on region in spec order. A switched-off region is
	// answered only when every region is off, which the routing controls'
	// safety rules forbid.
	ReasonFailOpen Reason = "fail-open"
	// ReasonNone: there is no region at all.
	ReasonNone Reason = "none"
)

// Decision is the region chosen for one client.
type Decision struct {
	// Index is the chosen region's index in the input; -1 with ReasonNone.
	Index  int
	Reason Reason
}

// Choose applies a routing policy to a workload's regions (in spec order)
// for one client. active names the region that holds the primary now. rnd
// returns a uniform integer in [0, n) and is used only by PolicyWeighted;
// pass a seeded source to make choices reproducible. Choose is pure and
// does not allocate.
//
// It never chooses a region that is unhealthy or switched off while one
// that is healthy and on exists; when none is, it fails open (see
// ReasonFailOpen). An unknown policy kind behaves like PolicyFailover.
func Choose(p *Policy, active string, regions []RegionState, client netip.Addr, rnd func(n int) int) Decision {
	if len(regions) == 0 {
		return Decision{Index: -1, Reason: ReasonNone}
	}
	pick := -1
	switch p.Kind {
	case PolicyWeighted:
		pick = weighted(regions, rnd)
	case PolicyLatency:
		pick = nearest(p.Latency, regions, client)
	case PolicyGeolocation:
		pick = assigned(p.Geo, regions, client)
	}
	if pick >= 0 && usable(&regions[pick]) {
		return Decision{Index: pick, Reason: ReasonPolicy}
	}
	if i := failoverOrder(active, regions); i >= 0 {
		if p.Kind != PolicyWeighted && p.Kind != PolicyLatency && p.Kind != PolicyGeolocation {
			return Decision{Index: i, Reason: ReasonPolicy}
		}
		return Decision{Index: i, Reason: ReasonFallback}
	}
	return Decision{Index: failOpen(active, regions), Reason: ReasonFailOpen}
}

func usable(r *RegionState) bool { return r.Healthy && r.On }

// failoverOrder is the active region if usable, else the first usable
// region in spec order, else -1.
func failoverOrder(active string, regions []RegionState) int {
	first := -1
	for i := range regions {
		if !usable(&regions[i]) {
			continue
		}
		if regions[i].Name == active {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

// failOpen is the active region if switched on, else the first switched-on
// region, else the active region, else the first region.
func failOpen(active string, regions []RegionState) int {
	act, on := -1, -1
	for i := range regions {
		if regions[i].Name == active {
			act = i
			if regions[i].On {
				return i
			}
		}
		if on < 0 && regions[i].On {
			on = i
		}
	}
	switch {
	case on >= 0:
		return on
	case act >= 0:
		return act
	}
	return 0
}

// weighted draws among the usable regions by weight. It returns -1 (so
// Choose falls back to failover order) when no usable region has a weight.
func weighted(regions []RegionState, rnd func(n int) int) int {
	total := 0
	for i := range regions {
		if usable(&regions[i]) && regions[i].Weight > 0 {
			total += regions[i].Weight
		}
	}
	if total == 0 || rnd == nil {
		return -1
	}
	n := rnd(total)
	for i := range regions {
		if !usable(&regions[i]) || regions[i].Weight <= 0 {
			continue
		}
		if n < regions[i].Weight {
			return i
		}
		n -= regions[i].Weight
	}
	return -1
}

// nearest is the region with the lowest round trip from the client's most
// specific subnet in the table (ties: spec order), or -1.
func nearest(table []LatencyRule, regions []RegionState, client netip.Addr) int {
	best := -1
	bits := -1
	client = client.Unmap()
	for i := range table {
		if b := table[i].Subnet.Bits(); b > bits && client.IsValid() && table[i].Subnet.Contains(client) {
			best, bits = i, b
		}
	}
	if best < 0 {
		return -1
	}
	pick := -1
	var rtt time.Duration
	for i := range regions {
		d, ok := table[best].RTT[regions[i].Name]
		if ok && (pick < 0 || d < rtt) {
			pick, rtt = i, d
		}
	}
	return pick
}

// assigned is the region of the client's most specific subnet, or -1.
func assigned(table []GeoRule, regions []RegionState, client netip.Addr) int {
	best := -1
	bits := -1
	client = client.Unmap()
	for i := range table {
		if b := table[i].Subnet.Bits(); b > bits && client.IsValid() && table[i].Subnet.Contains(client) {
			best, bits = i, b
		}
	}
	if best < 0 {
		return -1
	}
	for i := range regions {
		if regions[i].Name == table[best].Region {
			return i
		}
	}
	return -1
}
