package wan

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/lifeline-dr/lifeline"
)

// Kind says what a route carries.
type Kind string

const (
	KindPostgres   Kind = "postgres"
	KindEtcdClient Kind = "etcd-client"
	KindEtcdPeer   Kind = "etcd-peer"
)

// Route is one emulated path: connections to Listen are forwarded to Target.
type Route struct {
	Kind Kind
	// From is the node whose connections use the route ("eu-central/a");
	// empty for etcd peer routes, whose sender is learned per connection.
	From string
	// To is the node or site that Target belongs to.
	To     string
	Listen string
	Target string
	// CrossRegion routes get the cross-region link's latency.
	CrossRegion bool
}

// Ports of a local topology's links. Each node's outgoing routes listen on
// its own address from FirstPort up; etcd peer routes listen on the member's
// address at PeerPort.
const (
	PeerPort  = 20000
	FirstPort = 20001
)

// Plan lists every route of a local topology; nil for a distributed one.
// It is a pure function of the topology, so the process that runs the links
// and every agent that dials through them agree without talking.
//
// Routed: every cross-region PostgreSQL connection (replication, base
// backups), every agent's connection to an etcd member of another site
// (also inside its region, so that one node can be cut off from etcd), and
// all etcd peer traffic (every member is in its own site).
func Plan(t *lifeline.Topology) []Route {
	if t.Mode != lifeline.ModeLocal {
		return nil
	}
	type endpoint struct {
		to, region, host string
		port             int
		kind             Kind
	}
	var eps []endpoint
	sites := t.Sites()
	if t.Control.Embedded() {
		for _, s := range sites {
			eps = append(eps, endpoint{siteID(s), siteRegion(s), s.Address, t.Control.ClientPort, KindEtcdClient})
		}
	}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		// Every node: any may hold a database (backup-restore builds one
		// in the region a failover moves to).
		for _, id := range t.Nodes() {
			eps = append(eps, endpoint{id.String(), id.Region, t.Address(id), w.Database.Port, KindPostgres})
		}
	}
	var routes []Route
	for _, from := range t.Nodes() {
		port := FirstPort
		site, hostsSite := t.SiteOf(from)
		for _, ep := range eps {
			cross := ep.region != from.Region
			switch {
			case ep.kind == KindPostgres && !cross:
				continue // zones of a region talk directly
			case ep.kind == KindEtcdClient && hostsSite && siteID(site) == ep.to:
				continue // its own member, in process
			}
			routes = append(routes, Route{
				Kind: ep.kind, From: from.String(), To: ep.to,
				Listen:      net.JoinHostPort(t.Address(from), strconv.Itoa(port)),
				Target:      net.JoinHostPort(ep.host, strconv.Itoa(ep.port)),
				CrossRegion: cross,
			})
			port++
		}
	}
	if t.Control.Embedded() {
		for _, s := range sites {
			routes = append(routes, Route{
				Kind: KindEtcdPeer, To: siteID(s),
				Listen:      net.JoinHostPort(s.Address, strconv.Itoa(PeerPort)),
				Target:      net.JoinHostPort(s.Address, strconv.Itoa(t.Control.PeerPort)),
				CrossRegion: true,
			})
		}
	}
	return routes
}

// siteID names a site as routes do: the node that hosts the member, or "witness".
func siteID(s lifeline.Site) string {
	if s.Name == lifeline.WitnessSite {
		return lifeline.WitnessSite
	}
	return s.Node.String()
}

func siteRegion(s lifeline.Site) string {
	if s.Name == lifeline.WitnessSite {
		return lifeline.WitnessSite
	}
	return s.Node.Region
}

// Dialer tells a node which address reaches a target: the route's listener
// when the target is routed from that node, the target itself otherwise.
type Dialer struct {
	from   string
	routes map[string]string // target → listen
}

// NewDialer returns the dialer of one node ("eu-west/a").
func NewDialer(t *lifeline.Topology, from string) *Dialer {
	d := &Dialer{from: from, routes: map[string]string{}}
	for _, r := range Plan(t) {
		if r.From == from {
			d.routes[r.Target] = r.Listen
		}
	}
	return d
}

// Address returns host:port to dial to reach target host:port.
func (d *Dialer) Address(target string) string {
	if l, ok := d.routes[target]; ok {
		return l
	}
	return target
}

// HostPort is Address split for libpq-style host and port settings.
func (d *Dialer) HostPort(host string, port int) (string, int) {
	h, p, err := net.SplitHostPort(d.Address(net.JoinHostPort(host, strconv.Itoa(port))))
	if err != nil {
		return host, port
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// PeerURL is the URL other members dial to reach a site's etcd member.
func PeerURL(t *lifeline.Topology, s lifeline.Site) string {
	port := t.Control.PeerPort
	if t.Mode == lifeline.ModeLocal {
		port = PeerPort
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(s.Address, strconv.Itoa(port)))
}

// Sites maps each peer URL to the site it belongs to, so that a peer route
// can tell which member a connection comes from.
func siteByPeerURL(t *lifeline.Topology) map[string]string {
	m := map[string]string{}
	for _, s := range t.Sites() {
		m[PeerURL(t, s)] = siteID(s)
	}
	return m
}

// regionOf maps a route endpoint ("eu-west/a", "witness") to its region.
func regionOf(id string) string {
	if n, err := lifeline.ParseNodeID(id); err == nil {
		return n.Region
	}
	return id
}

// sortRoutes orders routes for stable listings.
func sortRoutes(rs []Route) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Listen < rs[j].Listen })
}
