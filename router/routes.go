package router

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Route is one workload's routing at one moment: its public hostname, its
// policy, and the state of each of its regions. The router builds Routes
// from the topology, the health verdicts, the routing controls and the
// primary record, and hands them to a RouteTable.
type Route struct {
	Workload string
	// Hostname is the workload's public name (routing.hostname). Its zone,
	// which the DNS server is authoritative for, is its parent domain.
	Hostname string
	// TTL of the A answers (routing.ttl).
	TTL    time.Duration
	Policy Policy
	// Active is the region that holds the primary now (the primary
	// record's region; the spec's active region before there is one).
	Active string
	// Regions in spec order.
	Regions []RegionState
}

// Choose applies the route's policy for one client.
func (r *Route) Choose(client netip.Addr, rnd func(n int) int) Decision {
	return Choose(&r.Policy, r.Active, r.Regions, client, rnd)
}

// RouteSource is what the DNS server and the global front door read their
// answers from: a consistent snapshot, replaced as a whole.
type RouteSource interface {
	Routes() *Routes
}

// Routes is an immutable snapshot of every workload's Route, indexed for
// lookups by name. Obtain it from a RouteTable; never modify it.
type Routes struct {
	byName map[string]*compiled // canonical FQDN
	byHost map[string]*compiled // lower case, no final dot: an HTTP Host
	zones  map[string]*zone     // canonical zone apex
}

// compiled is a Route with what answering needs precomputed.
type compiled struct {
	Route
	zone *zone
	a    [][]dns.RR // per region, the A records
}

// zone is one zone the DNS server is authoritative for.
type zone struct {
	apex   string // canonical FQDN, "shop.internal."
	ns     string // "ns.shop.internal."
	serial uint32
	minTTL uint32
	names  map[string]*compiled
	routes []Route // what the serial was computed from
}

// Lookup returns the route of a hostname (any case, with or without the
// final dot), or nil.
func (rs *Routes) Lookup(host string) *Route {
	if rs == nil {
		return nil
	}
	c := rs.lookup(host)
	if c == nil {
		return nil
	}
	return &c.Route
}

func (rs *Routes) lookup(host string) *compiled {
	if c, ok := rs.byName[host]; ok { // fast path: already canonical
		return c
	}
	return rs.byName[canonical(host)]
}

// Serial is the SOA serial of the zone that holds host (0 when none).
func (rs *Routes) Serial(host string) uint32 {
	if c := rs.lookup(host); c != nil {
		return c.zone.serial
	}
	if z := rs.zones[canonical(host)]; z != nil {
		return z.serial
	}
	return 0
}

// zoneOf returns the zone that name is in (the longest apex that is a
// suffix of name at a label boundary), or nil.
func (rs *Routes) zoneOf(name string) *zone {
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if z, ok := rs.zones[name[off:]]; ok {
			return z
		}
	}
	return nil
}

func canonical(host string) string {
	return dns.CanonicalName(host)
}

// RouteTable holds the current Routes and replaces them atomically: readers
// (every DNS query, every proxied request) never lock.
type RouteTable struct {
	mu  sync.Mutex // serializes Update
	cur atomic.Pointer[Routes]
	// Now is the clock of SOA serials; time.Now when nil.
	Now func() time.Time
}

var _ RouteSource = (*RouteTable)(nil)

// NewRouteTable returns an empty table.
func NewRouteTable() *RouteTable {
	t := &RouteTable{}
	t.cur.Store(&Routes{byName: map[string]*compiled{}, byHost: map[string]*compiled{}, zones: map[string]*zone{}})
	return t
}

// Routes returns the current snapshot.
func (t *RouteTable) Routes() *Routes { return t.cur.Load() }

// Update replaces every route. A zone's SOA serial moves forward whenever
// any of its routes changed since the previous Update: it becomes the Unix
// time, or the previous serial plus one when that is not larger (several
// changes in one second, or a clock that went back). Routes without a
// hostname are kept for the HTTP front door but not served in DNS. Update
// copies what it keeps; the caller may reuse routes.
func (t *RouteTable) Update(routes []Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	prev := t.cur.Load()
	next := &Routes{byName: map[string]*compiled{}, byHost: map[string]*compiled{}, zones: map[string]*zone{}}
	for _, r := range routes {
		if r.Hostname == "" {
			continue
		}
		name := canonical(r.Hostname)
		apex := parent(name)
		z := next.zones[apex]
		if z == nil {
			z = &zone{apex: apex, ns: "ns." + apex, names: map[string]*compiled{}, minTTL: ^uint32(0)}
			next.zones[apex] = z
		}
		c := &compiled{Route: cloneRoute(r), zone: z}
		c.Hostname = name
		ttl := ttlSeconds(r.TTL)
		z.minTTL = min(z.minTTL, ttl)
		for _, reg := range c.Regions {
			rrs := make([]dns.RR, 0, len(reg.Addrs))
			for _, a := range reg.Addrs {
				if !a.Unmap().Is4() {
					continue
				}
				ip := a.Unmap().As4()
				rrs = append(rrs, &dns.A{
					Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
					A:   net.IP(ip[:]),
				})
			}
			c.a = append(c.a, rrs[:len(rrs):len(rrs)])
		}
		z.names[name] = c
		z.routes = append(z.routes, c.Route)
		next.byName[name] = c
		next.byHost[strings.TrimSuffix(name, ".")] = c
	}
	stamp := uint32(now().Unix())
	for apex, z := range next.zones {
		var old *zone
		if prev != nil {
			old = prev.zones[apex]
		}
		switch {
		case old == nil:
			z.serial = stamp
		case reflect.DeepEqual(old.routes, z.routes):
			z.serial = old.serial
		default:
			z.serial = max(stamp, old.serial+1)
		}
	}
	t.cur.Store(next)
}

// parent is the parent domain of a canonical FQDN ("." for a TLD).
func parent(name string) string {
	if off, end := dns.NextLabel(name, 0); !end {
		return name[off:]
	}
	return "."
}

func ttlSeconds(d time.Duration) uint32 {
	s := d / time.Second
	switch {
	case s < 0:
		return 0
	case s > 1<<31-1:
		return 1<<31 - 1
	}
	return uint32(s)
}

func cloneRoute(r Route) Route {
	r.Regions = append([]RegionState(nil), r.Regions...)
	for i := range r.Regions {
		r.Regions[i].Addrs = append([]netip.Addr(nil), r.Regions[i].Addrs...)
	}
	r.Policy.Latency = append([]LatencyRule(nil), r.Policy.Latency...)
	r.Policy.Geo = append([]GeoRule(nil), r.Policy.Geo...)
	return r
}

// nonTerminal reports whether name is an empty non-terminal of the zone:
// no record of its own, but a name below it has one (NODATA, not NXDOMAIN).
func (z *zone) nonTerminal(name string) bool {
	for n := range z.names {
		if len(n) > len(name) && strings.HasSuffix(n, name) && n[len(n)-len(name)-1] == '.' {
			return true
		}
	}
	return false
}
