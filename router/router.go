// Package router is where clients enter a workload: authoritative DNS for
// its hostname, a global HTTP entry point that applies the routing policy,
// an HTTP front door per region over the region's healthy service
// instances, and TCP endpoints for PostgreSQL (the writer always leads to
// the current primary, never to a fenced or demoted one; the reader to the
// nearest standby within the RPO). It follows the control store by watch:
// the primary record and lease, the health verdicts of the vantage points
// (health.go), and the routing controls (controls.go).
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/store"
)

// Options configure a router process.
type Options struct {
	// Home is the region the router sits in: the reader endpoint prefers
	// its standbys. Default: each workload's active region at the time.
	Home string
	// Observer, when set, is told of every HTTP request and DNS query
	// answered (metrics).
	Observer Observer
}

// Endpoints are a workload's entry points as `status` shows them.
type Endpoints struct {
	DNS    string `json:"dns"`
	HTTP   string `json:"http"`
	Writer string `json:"writer"`
	Reader string `json:"reader"`
}

// EndpointsOf is where a workload's entry points listen.
func EndpointsOf(t *lifeline.Topology, w *lifeline.Workload) Endpoints {
	host := t.Router.Address
	return Endpoints{
		DNS:    net.JoinHostPort(host, strconv.Itoa(t.Router.DNSPort)),
		HTTP:   net.JoinHostPort(host, strconv.Itoa(t.Router.HTTPPort)),
		Writer: WriterAddress(t, w),
		Reader: net.JoinHostPort(host, strconv.Itoa(w.Routing.ReaderPort)),
	}
}

// RegionalAddress is where a region's HTTP front door for a workload
// listens: the region's entry address, at the HTTP port plus the workload's
// index (one front door per workload and region).
func RegionalAddress(t *lifeline.Topology, w *lifeline.Workload, region *lifeline.Region) string {
	port := t.Router.HTTPPort
	for i := range t.Workloads {
		if t.Workloads[i].Name == w.Name {
			port += i
		}
	}
	return net.JoinHostPort(region.Entry, strconv.Itoa(port))
}

// HealthSettingsOf turns the spec's health-check settings into the checks'.
func HealthSettingsOf(t *lifeline.Topology) HealthSettings {
	h := t.Router.Health
	return HealthSettings{Interval: h.Interval, Timeout: h.Timeout, Fails: h.Fails, Passes: h.Passes, Quorum: h.Quorum}.WithDefaults()
}

// Run serves every workload's entry points until ctx ends.
func Run(ctx context.Context, t *lifeline.Topology, s *store.Store, opts Options, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &router{t: t, s: s, log: log, table: NewRouteTable(), regional: map[string]*Regional{}, health: HealthSettingsOf(t), views: map[string]*store.StateView{}}
	for i := range t.Workloads {
		r.views[t.Workloads[i].Name] = s.View(t.Workloads[i].Name)
	}
	r.monitor = NewMonitor(s, r.health, log)
	r.monitor.Observer = opts.Observer

	var wg sync.WaitGroup
	errs := make(chan error, 8+4*len(t.Workloads))
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	fd := FrontDoorSettings{Observer: opts.Observer}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		wr := NewWriter(t, w, s, log)
		wr.Observer = opts.Observer
		run("writer of "+w.Name, wr.Run)
		rd := NewReader(t, w, s, EndpointsOf(t, w).Reader, opts.Home, log)
		run("reader of "+w.Name, rd.Run)
		for j := range t.Regions {
			region := &t.Regions[j]
			cfg := fd
			cfg.Addr = RegionalAddress(t, w, region)
			cfg.TrustForwarded = true
			cfg.Name = w.Name + "/" + region.Name
			reg := NewRegional(region.Name, cfg, log)
			r.regional[w.Name+"/"+region.Name] = reg
			run("front door of "+w.Name+" in "+region.Name, runRegionalDoor(reg.door, log))
		}
	}
	r.rebuild(ctx)
	global := NewGlobal(r.table, FrontDoorSettings{Addr: net.JoinHostPort(t.Router.Address, strconv.Itoa(t.Router.HTTPPort)), Name: "global", Observer: opts.Observer}, log)
	run("global front door", runDoor(global.door))
	dns := NewDNS(r.table, DNSSettings{Addr: net.JoinHostPort(t.Router.Address, strconv.Itoa(t.Router.DNSPort)), Observer: opts.Observer}, log)
	run("dns", func(ctx context.Context) error {
		if err := dns.Listen(); err != nil {
			return err
		}
		return dns.Run(ctx)
	})
	r.monitor.OnChange = func(map[string]Verdict) { r.rebuildSoon() }
	r.kick = make(chan struct{}, 1)
	run("health monitor", r.monitor.Run)
	run("routes", r.follow)
	log.Info("router serving", "dns", dns.Addr(), "http", global.Addr())
	wg.Wait()
	close(errs)
	return errors.Join(drain(errs)...)
}

func drain(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// runRegionalDoor runs a region's front door where its entry address is
// on this host (or was handed over); on real hosts a router runs on each
// region's entry host, and the others leave that region's door to it.
func runRegionalDoor(d *door, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := d.Listen(); err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				log.Info("front door not on this host: left to the router on its entry host", "addr", d.cfg.Addr)
				return nil
			}
			return err
		}
		return d.Run(ctx)
	}
}

func runDoor(d *door) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := d.Listen(); err != nil {
			return err
		}
		return d.Run(ctx)
	}
}

type router struct {
	t        *lifeline.Topology
	s        *store.Store
	log      *slog.Logger
	table    *RouteTable
	monitor  *Monitor
	health   HealthSettings
	regional map[string]*Regional // by workload/region
	views    map[string]*store.StateView
	kick     chan struct{}
}

func (r *router) rebuildSoon() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// follow rebuilds the routes when a verdict, a primary record or a routing
// control changes (the first by the monitor's callback, the others by a
// watch on the workloads' keys), and every few seconds as a safety net.
func (r *router) follow(ctx context.Context) error {
	go func() {
		prefix := r.s.Keys().Root() + "workloads/"
		for ctx.Err() == nil {
			for wr := range r.s.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix()) {
				for _, ev := range wr.Events {
					if key := string(ev.Kv.Key); strings.HasSuffix(key, "/state") || strings.Contains(key, "/controls/") {
						r.rebuildSoon()
						break
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-r.kick:
		}
		r.rebuild(ctx)
	}
}

// rebuild computes every workload's route and each regional front door's
// instances from the workloads' states, the routing controls and the
// health verdicts. A workload whose state cannot be read keeps the last
// state seen; one never seen gets no route (never the spec's region).
func (r *router) rebuild(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	controls, err := Show(qctx, r.s, r.t)
	if err != nil {
		return
	}
	on := map[string]bool{}
	for _, c := range controls {
		on[c.Workload+"/"+c.Region] = c.On
	}
	var routes []Route
	for i := range r.t.Workloads {
		w := &r.t.Workloads[i]
		st, ok, err := r.views[w.Name].Read(qctx, clientv3.WithSerializable())
		if err != nil {
			r.log.Warn("routes: the workload's state cannot be read", "workload", w.Name, "err", err)
		}
		if !ok {
			continue
		}
		active := st.Active
		plan := compute.Plan(r.t, w, active)
		route := Route{Workload: w.Name, Hostname: w.Routing.Hostname, TTL: w.Routing.TTL, Policy: policyOf(w), Active: active}
		for j := range r.t.Regions {
			region := &r.t.Regions[j]
			var healthy []string
			for _, inst := range plan {
				if inst.Node.Region == region.Name && r.monitor.Up(InstanceTarget(inst)) {
					healthy = append(healthy, inst.Addr)
				}
			}
			r.regional[w.Name+"/"+region.Name].SetInstances(healthy)
			weight := 1
			if n, ok := w.Routing.Weights[region.Name]; ok {
				weight = n
			}
			addr, _ := netip.ParseAddr(region.Entry)
			route.Regions = append(route.Regions, RegionState{
				Name: region.Name, Addrs: []netip.Addr{addr}, Entry: RegionalAddress(r.t, w, region),
				Healthy: r.monitor.Up(EntryTarget(w.Name, region.Name)), On: on[w.Name+"/"+region.Name], Weight: weight,
			})
		}
		if route.Hostname != "" {
			routes = append(routes, route)
		}
	}
	r.table.Update(routes)
}

func policyOf(w *lifeline.Workload) Policy {
	p := Policy{Kind: PolicyKind(w.Routing.Policy)}
	for _, l := range w.Routing.Latency {
		if prefix, err := netip.ParsePrefix(l.Subnet); err == nil {
			p.Latency = append(p.Latency, LatencyRule{Subnet: prefix, RTT: l.RTT})
		}
	}
	for _, g := range w.Routing.Geo {
		if prefix, err := netip.ParsePrefix(g.Subnet); err == nil {
			p.Geo = append(p.Geo, GeoRule{Subnet: prefix, Region: g.Region})
		}
	}
	return p
}

// EntryTarget names a region's front door of a workload among the health targets.
func EntryTarget(workload, region string) string { return workload + "/" + region + "/entry" }

// InstanceTarget names a service instance among the health targets.
func InstanceTarget(i compute.Instance) string { return i.Name() }

// DatabaseCheckInterval is how often the vantage points check each
// database (a TCP connection): a region is declared down when its
// databases fail these checks for control.region-down-after, so their
// interval adds to the detection of a lost region.
const DatabaseCheckInterval = time.Second

// Targets is what every vantage point checks while each workload is in
// state states[workload]: the regional front doors, the service
// instances, and the databases. A workload without a state gets only its
// front doors checked.
func Targets(t *lifeline.Topology, states map[string]lifeline.WorkloadState) []Target {
	var out []Target
	for i := range t.Workloads {
		w := &t.Workloads[i]
		for j := range t.Regions {
			out = append(out, Target{Name: EntryTarget(w.Name, t.Regions[j].Name), Kind: CheckHTTP,
				Address: RegionalAddress(t, w, &t.Regions[j]), Path: DefaultHealthPath})
		}
		st, ok := states[w.Name]
		if !ok {
			continue
		}
		for _, inst := range compute.Plan(t, w, st.Active) {
			out = append(out, Target{Name: InstanceTarget(inst), Kind: CheckHTTP, Address: inst.Addr, Path: inst.Health})
		}
		for _, id := range t.DatabaseNodesIn(st) {
			out = append(out, Target{Name: w.Name + "/" + id.String() + "/postgres", Kind: CheckTCP,
				Address: net.JoinHostPort(t.Address(id), strconv.Itoa(w.Database.Port)), Interval: DatabaseCheckInterval})
		}
	}
	return out
}

// RunChecker runs one vantage point (a site: a region's first node, or the
// witness) until ctx ends, following each workload's state.
func RunChecker(ctx context.Context, t *lifeline.Topology, s *store.Store, vantage string, log *slog.Logger) error {
	c := NewChecker(s, vantage, HealthSettingsOf(t), log)
	views := map[string]*store.StateView{}
	for i := range t.Workloads {
		views[t.Workloads[i].Name] = s.View(t.Workloads[i].Name)
	}
	update := func() {
		states := map[string]lifeline.WorkloadState{}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		for name, v := range views {
			if st, ok, _ := v.Read(qctx, clientv3.WithSerializable()); ok {
				states[name] = st
			}
		}
		c.SetTargets(Targets(t, states))
	}
	update()
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				update()
			}
		}
	}()
	return c.Run(ctx)
}
