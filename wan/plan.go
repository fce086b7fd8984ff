package wan

import (
	"net"
	"sort"
	"strconv"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
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

// Plan lists every route of a local topology on loopback; nil for a
// namespace topology and a distributed one, whose hosts connect directly.
// It is a pure function of the topology, so the process that runs the links
// and every agent that dials through them agree without talking.
//
// Routed: every cross-region PostgreSQL connection (replication, base
// backups), every agent's connection to an etcd member of another site
// (also inside its region, so that one node can be cut off from etcd), and
// all etcd peer traffic (every member is in its own site).
func Plan(t *lifeline.Topology) []Route {
	if !t.RoutedWAN() {
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
	from    string
	routes  map[string]string // target → listen
	targets map[string]string // listen → target
}

// NewDialer returns the dialer of one node ("eu-west/a").
func NewDialer(t *lifeline.Topology, from string) *Dialer {
	d := &Dialer{from: from, routes: map[string]string{}, targets: map[string]string{}}
	for _, r := range Plan(t) {
		if r.From == from {
			d.routes[r.Target] = r.Listen
			d.targets[r.Listen] = r.Target
		}
	}
	return d
}

// Target is Address's inverse: the host:port behind a route's listen
// address (addr itself when it is none), which a server's certificate
// names.
func (d *Dialer) Target(addr string) string {
	if t, ok := d.targets[addr]; ok {
		return t
	}
	return addr
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

// PeerAddress is the host:port other members dial to reach a site's etcd
// member (its route, in a local topology on loopback).
func PeerAddress(t *lifeline.Topology, s lifeline.Site) string {
	port := t.Control.PeerPort
	if t.RoutedWAN() {
		port = PeerPort
	}
	return net.JoinHostPort(s.Address, strconv.Itoa(port))
}

// peerSenders maps what tells a peer connection's sender to its site: the
// peer address etcd names in X-PeerURLs (plain http://), and the TLS
// server name each member sends under certs.PeerDomain (https://).
func peerSenders(t *lifeline.Topology) map[string]string {
	m := map[string]string{}
	for _, s := range t.Sites() {
		m[PeerAddress(t, s)] = siteID(s)
		m[certs.PeerServerName(s.Name)] = siteID(s)
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
