package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lifeline-dr/lifeline"
)

// Error is one problem in a spec, at a line of its file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every problem found in a spec, in line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses a spec file.
func Load(path string) (*lifeline.Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a spec strictly, fills in defaults and validates it. The
// error, when not nil, is an Errors naming file:line for every problem.
func Parse(file string, data []byte) (*lifeline.Topology, error) {
	p := &parser{file: file, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		p.yamlErr(err)
		return nil, p.errs
	}
	if len(root.Content) == 0 {
		p.add(0, "the spec is empty")
		return nil, p.errs
	}
	p.index("", root.Content[0])

	var f fileSpec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		p.yamlErr(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.add(extra.Line, "a spec holds one YAML document; found a second one")
	}
	if len(p.errs) > 0 {
		p.sort()
		return nil, p.errs
	}
	t := p.build(&f)
	Default(t)
	p.validate(t)
	if len(p.errs) > 0 {
		p.sort()
		return nil, p.errs
	}
	return t, nil
}

type parser struct {
	file    string
	lines   map[string]int // path → line of its value ("regions[0].zones[1].address")
	errs    Errors
	regions map[string]bool // declared regions, once validate has seen them
}

func (p *parser) add(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// at reports a problem at a path, or at its nearest ancestor that is in the file.
func (p *parser) at(path, format string, args ...any) {
	p.add(p.line(path), format, args...)
}

func (p *parser) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return p.lines[""]
}

func (p *parser) sort() {
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
}

func (p *parser) index(path string, n *yaml.Node) {
	p.lines[path] = n.Line
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if path != "" {
				k = path + "." + k
			}
			p.index(k, n.Content[i+1])
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p.index(fmt.Sprintf("%s[%d]", path, i), c)
		}
	}
}

var (
	yamlLineRe     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownKeyRe   = regexp.MustCompile(`^field (\S+) not found in type spec\.(\w+)$`)
	cannotDecodeRe = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.*)$")
)

// yamlErr turns the decoder's messages into file:line errors a user can act on.
func (p *parser) yamlErr(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		line := 0
		if g := yamlLineRe.FindStringSubmatch(m); g != nil {
			line, _ = strconv.Atoi(g[1])
			m = g[2]
		}
		if g := unknownKeyRe.FindStringSubmatch(m); g != nil {
			m = fmt.Sprintf("unknown key %q in %s (known keys: %s)", g[1], sectionName(g[2]), strings.Join(knownKeys(g[2]), ", "))
		} else if g := cannotDecodeRe.FindStringSubmatch(m); g != nil {
			m = fmt.Sprintf("%q is not %s", g[2], typeWord(g[3]))
		}
		p.add(line, "%s", m)
	}
}

func typeWord(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "spec."):
		return "a mapping"
	case goType == "int":
		return "a whole number"
	case goType == "bool":
		return "true or false"
	case goType == "float64":
		return "a number"
	}
	return "a " + goType
}

// sections maps the decoder's type names to the words a user knows.
var sections = map[string]any{
	"fileSpec": fileSpec{}, "controlSpec": controlSpec{}, "regionSpec": regionSpec{},
	"zoneSpec": zoneSpec{}, "witnessSpec": witnessSpec{}, "linksSpec": linksSpec{},
	"linkSpec": linkSpec{}, "workloadSpec": workloadSpec{}, "objectivesSpec": objectivesSpec{},
	"databaseSpec": databaseSpec{}, "backupsSpec": backupsSpec{}, "serviceSpec": serviceSpec{},
	"replicasSpec": replicasSpec{}, "routingSpec": routingSpec{}, "routerSpec": routerSpec{},
	"healthSpec": healthSpec{}, "latencySpec": latencySpec{}, "geoSpec": geoSpec{},
	"alertsSpec": alertsSpec{}, "webhookSpec": webhookSpec{},
	"impactSpec": impactSpec{}, "riskSpec": riskSpec{}, "pricesSpec": pricesSpec{}, "contactSpec": contactSpec{},
}

func sectionName(typeName string) string {
	if typeName == "fileSpec" {
		return "the spec"
	}
	return strings.TrimSuffix(typeName, "Spec")
}

func knownKeys(typeName string) []string {
	v, ok := sections[typeName]
	if !ok {
		return nil
	}
	t := reflect.TypeOf(v)
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// duration accepts Go durations plus days ("7d"), and reports a bad one
// with its line without stopping the decoding of the rest of the file.
type duration struct {
	time.Duration
	set bool
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: bad duration %q: want a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d", n.Line, n.Value)}}
	}
	if v < 0 {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: bad duration %q: must not be negative", n.Line, n.Value)}}
	}
	d.Duration, d.set = v, true
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return 0, err
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// etcdSpec is `etcd: embedded` or `etcd: {endpoints: [...]}`.
type etcdSpec struct {
	Embedded  bool
	Endpoints []string
	line      int
}

func (e *etcdSpec) UnmarshalYAML(n *yaml.Node) error {
	e.line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "embedded" {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: etcd: want \"embedded\" or {endpoints: [...]}, got %q", n.Line, n.Value)}}
		}
		e.Embedded = true
		return nil
	case yaml.MappingNode:
		var errs []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value != "endpoints" {
				errs = append(errs, fmt.Sprintf("line %d: unknown key %q in etcd (known keys: endpoints)", k.Line, k.Value))
				continue
			}
			if err := v.Decode(&e.Endpoints); err != nil {
				errs = append(errs, fmt.Sprintf("line %d: etcd endpoints: want a list of URLs", v.Line))
			}
		}
		if len(errs) > 0 {
			return &yaml.TypeError{Errors: errs}
		}
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: etcd: want \"embedded\" or {endpoints: [...]}", n.Line)}}
}

// The file's shape. Keys are kebab-case; every struct is decoded strictly.
type fileSpec struct {
	Name      string         `yaml:"name"`
	Mode      string         `yaml:"mode"`
	Control   controlSpec    `yaml:"control"`
	Regions   []regionSpec   `yaml:"regions"`
	Witness   *witnessSpec   `yaml:"witness"`
	Links     linksSpec      `yaml:"links"`
	Router    routerSpec     `yaml:"router"`
	Alerts    alertsSpec     `yaml:"alerts"`
	API       apiSpec        `yaml:"api"`
	Workloads []workloadSpec `yaml:"workloads"`
}

type apiSpec struct {
	Port int `yaml:"port"`
}

type routerSpec struct {
	Address  string     `yaml:"address"`
	DNSPort  int        `yaml:"dns-port"`
	HTTPPort int        `yaml:"http-port"`
	Health   healthSpec `yaml:"health"`
}

type healthSpec struct {
	Interval duration `yaml:"interval"`
	Timeout  duration `yaml:"timeout"`
	Fails    int      `yaml:"fails"`
	Passes   int      `yaml:"passes"`
	Quorum   int      `yaml:"quorum"`
}

type controlSpec struct {
	Etcd            etcdSpec `yaml:"etcd"`
	ClientPort      int      `yaml:"client-port"`
	PeerPort        int      `yaml:"peer-port"`
	LeaseTTL        duration `yaml:"lease-ttl"`
	CheckInterval   duration `yaml:"check-interval"`
	RegionDownAfter duration `yaml:"region-down-after"`
}

type alertsSpec struct {
	Webhooks []webhookSpec `yaml:"webhooks"`
}

type webhookSpec struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

type regionSpec struct {
	Name  string     `yaml:"name"`
	Zones []zoneSpec `yaml:"zones"`
	Entry string     `yaml:"entry"`
}

type zoneSpec struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
}

type witnessSpec struct {
	Address string `yaml:"address"`
}

type linksSpec struct {
	CrossRegion linkSpec `yaml:"cross-region"`
}

type linkSpec struct {
	Latency duration `yaml:"latency"`
}

type workloadSpec struct {
	Name       string         `yaml:"name"`
	Strategy   string         `yaml:"strategy"`
	Objectives objectivesSpec `yaml:"objectives"`
	Active     string         `yaml:"active"`
	Failover   string         `yaml:"failover"`
	Database   databaseSpec   `yaml:"database"`
	Backups    backupsSpec    `yaml:"backups"`
	Services   []serviceSpec  `yaml:"services"`
	Routing    routingSpec    `yaml:"routing"`
	Impact     *impactSpec    `yaml:"impact"`
	Contacts   []contactSpec  `yaml:"contacts"`
}

type objectivesSpec struct {
	RPO duration `yaml:"rpo"`
	RTO duration `yaml:"rto"`
}

type databaseSpec struct {
	Engine              string            `yaml:"engine"`
	Sync                *string           `yaml:"sync"`
	Port                int               `yaml:"port"`
	Superuser           string            `yaml:"superuser"`
	Password            string            `yaml:"password"`
	ReplicationUser     string            `yaml:"replication-user"`
	ReplicationPassword string            `yaml:"replication-password"`
	Parameters          map[string]string `yaml:"parameters"`
}

type backupsSpec struct {
	Repository string   `yaml:"repository"`
	Full       duration `yaml:"full"`
	Retention  string   `yaml:"retention"`
	Key        string   `yaml:"key"`
}

type serviceSpec struct {
	Name     string       `yaml:"name"`
	Command  []string     `yaml:"command"`
	Health   string       `yaml:"health"`
	Replicas replicasSpec `yaml:"replicas"`
}

type replicasSpec struct {
	Active  *int `yaml:"active"`
	Standby *int `yaml:"standby"`
}

type routingSpec struct {
	Hostname    string         `yaml:"hostname"`
	Policy      string         `yaml:"policy"`
	TTL         duration       `yaml:"ttl"`
	WriterPort  int            `yaml:"writer-port"`
	ReaderPort  int            `yaml:"reader-port"`
	Weights     map[string]int `yaml:"weights"`
	Latency     []latencySpec  `yaml:"latency"`
	Geolocation []geoSpec      `yaml:"geolocation"`
}

type latencySpec struct {
	Subnet string              `yaml:"subnet"`
	RTT    map[string]duration `yaml:"rtt"`
}

type geoSpec struct {
	Subnet string `yaml:"subnet"`
	Region string `yaml:"region"`
}

// build converts the file's shape to domain types. Values that need a
// decision (retention as a window or a count) are checked here.
func (p *parser) build(f *fileSpec) *lifeline.Topology {
	t := &lifeline.Topology{
		Name: f.Name,
		Mode: lifeline.Mode(f.Mode),
		Control: lifeline.Control{
			Endpoints:       f.Control.Etcd.Endpoints,
			ClientPort:      f.Control.ClientPort,
			PeerPort:        f.Control.PeerPort,
			LeaseTTL:        f.Control.LeaseTTL.Duration,
			CheckInterval:   f.Control.CheckInterval.Duration,
			RegionDownAfter: f.Control.RegionDownAfter.Duration,
		},
		Links: lifeline.Links{CrossRegion: lifeline.Link{Latency: f.Links.CrossRegion.Latency.Duration}},
		API:   lifeline.API{Port: f.API.Port},
		Router: lifeline.Router{Address: f.Router.Address, DNSPort: f.Router.DNSPort, HTTPPort: f.Router.HTTPPort,
			Health: lifeline.HealthChecks{Interval: f.Router.Health.Interval.Duration, Timeout: f.Router.Health.Timeout.Duration,
				Fails: f.Router.Health.Fails, Passes: f.Router.Health.Passes, Quorum: f.Router.Health.Quorum}},
	}
	for _, h := range f.Alerts.Webhooks {
		t.Alerts.Webhooks = append(t.Alerts.Webhooks, lifeline.Webhook{URL: h.URL, Secret: lifeline.Secret(h.Secret)})
	}
	for _, r := range f.Regions {
		region := lifeline.Region{Name: r.Name, Entry: r.Entry}
		for _, z := range r.Zones {
			region.Zones = append(region.Zones, lifeline.Zone{Name: z.Name, Address: z.Address})
		}
		t.Regions = append(t.Regions, region)
	}
	if f.Witness != nil {
		t.Witness = &lifeline.Witness{Address: f.Witness.Address}
	}
	for i, w := range f.Workloads {
		wl := lifeline.Workload{
			Name:       w.Name,
			Strategy:   lifeline.Strategy(w.Strategy),
			Objectives: lifeline.Objectives{RPO: w.Objectives.RPO.Duration, RTO: w.Objectives.RTO.Duration},
			Active:     w.Active,
			Failover:   lifeline.FailoverMode(w.Failover),
			Database: lifeline.Database{
				Engine:              w.Database.Engine,
				Port:                w.Database.Port,
				Superuser:           w.Database.Superuser,
				Password:            lifeline.Secret(w.Database.Password),
				ReplicationUser:     w.Database.ReplicationUser,
				ReplicationPassword: lifeline.Secret(w.Database.ReplicationPassword),
				Parameters:          w.Database.Parameters,
			},
			Backups: lifeline.Backups{
				Repository: w.Backups.Repository,
				Full:       w.Backups.Full.Duration,
				Key:        lifeline.Secret(w.Backups.Key),
			},
			Routing: lifeline.Routing{Hostname: w.Routing.Hostname, Policy: w.Routing.Policy, TTL: w.Routing.TTL.Duration,
				WriterPort: w.Routing.WriterPort, ReaderPort: w.Routing.ReaderPort, Weights: w.Routing.Weights},
		}
		for _, l := range w.Routing.Latency {
			rule := lifeline.LatencyRule{Subnet: l.Subnet, RTT: map[string]time.Duration{}}
			for r, d := range l.RTT {
				rule.RTT[r] = d.Duration
			}
			wl.Routing.Latency = append(wl.Routing.Latency, rule)
		}
		for _, g := range w.Routing.Geolocation {
			wl.Routing.Geo = append(wl.Routing.Geo, lifeline.GeoRule{Subnet: g.Subnet, Region: g.Region})
		}
		if w.Database.Sync != nil {
			wl.Database.Sync = *w.Database.Sync
			if wl.Database.Sync == "" {
				wl.Database.Sync = SyncNone
			}
		}
		if r := w.Backups.Retention; r != "" {
			path := fmt.Sprintf("workloads[%d].backups.retention", i)
			if n, err := strconv.Atoi(r); err == nil {
				if n < 1 {
					p.at(path, "backups.retention %q: keep at least 1 full backup", r)
				}
				wl.Backups.RetentionFull = n
			} else if d, err := parseDuration(r); err == nil && d > 0 {
				wl.Backups.Retention = d
			} else {
				p.at(path, "backups.retention %q: want a duration (7d, 36h) or a number of full backups", r)
			}
		}
		for _, s := range w.Services {
			svc := lifeline.Service{Name: s.Name, Command: s.Command, Health: s.Health}
			if s.Replicas.Active != nil {
				svc.Replicas.Active = *s.Replicas.Active
			} else {
				svc.Replicas.Active = -1
			}
			if s.Replicas.Standby != nil {
				svc.Replicas.Standby = *s.Replicas.Standby
			} else {
				svc.Replicas.Standby = -1
			}
			wl.Services = append(wl.Services, svc)
		}
		wl.Impact = unsetImpact()
		if w.Impact != nil {
			wl.Impact = p.buildImpact(fmt.Sprintf("workloads[%d].impact", i), w.Impact)
		}
		for _, c := range w.Contacts {
			wl.Contacts = append(wl.Contacts, lifeline.Contact{Name: c.Name, Role: c.Role, Reach: c.Reach})
		}
		t.Workloads = append(t.Workloads, wl)
	}
	return t
}

// SyncNone is how a spec says "no synchronous standby": `sync: none`.
const SyncNone = "none"

var nameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// validate checks what the shape alone cannot: names, references between
// sections, addresses, and what each strategy needs.
func (p *parser) validate(t *lifeline.Topology) {
	p.checkName("name", "name", t.Name)
	switch t.Mode {
	case lifeline.ModeLocal, lifeline.ModeDistributed:
	default:
		p.at("mode", "mode %q: want local or distributed", t.Mode)
	}
	if len(t.Control.Endpoints) > 0 && t.Mode == lifeline.ModeLocal {
		// An external etcd is allowed in local mode, but only on loopback.
		for i, e := range t.Control.Endpoints {
			if !loopbackURL(e) {
				p.at(fmt.Sprintf("control.etcd.endpoints[%d]", i), "etcd endpoint %q: a local topology only uses loopback addresses (127.0.0.0/8)", e)
			}
		}
	}
	p.checkPort("control.client-port", t.Control.ClientPort)
	p.checkPort("control.peer-port", t.Control.PeerPort)
	switch c := t.Control; {
	case c.LeaseTTL < 2*time.Second:
		p.at("control.lease-ttl", "control.lease-ttl %s: at least 2s (etcd cannot keep shorter leases through a leader election)", c.LeaseTTL)
	case c.CheckInterval <= 0 || c.CheckInterval*4 > c.LeaseTTL:
		p.at("control.lease-ttl", "control.lease-ttl %s must be at least 4 times check-interval %s, or a healthy primary fences itself between two renewals", c.LeaseTTL, c.CheckInterval)
	}

	if len(t.Regions) == 0 {
		p.at("regions", "regions: at least one region is required")
	}
	addrs := map[string]string{}
	regions := map[string]bool{}
	p.regions = regions
	for i, r := range t.Regions {
		rp := fmt.Sprintf("regions[%d]", i)
		p.checkName(rp+".name", "region name", r.Name)
		if regions[r.Name] {
			p.at(rp+".name", "region %q is declared twice", r.Name)
		}
		regions[r.Name] = true
		if len(r.Zones) == 0 {
			p.at(rp+".zones", "region %q: at least one zone is required", r.Name)
		}
		zones := map[string]bool{}
		for j, z := range r.Zones {
			zp := fmt.Sprintf("%s.zones[%d]", rp, j)
			p.checkName(zp+".name", "zone name", z.Name)
			if zones[z.Name] {
				p.at(zp+".name", "zone %q is declared twice in region %q", z.Name, r.Name)
			}
			zones[z.Name] = true
			p.checkAddress(zp+".address", t.Mode, z.Address, r.Name+"/"+z.Name, addrs)
		}
	}
	if t.Witness != nil {
		p.checkAddress("witness.address", t.Mode, t.Witness.Address, "the witness", addrs)
	}
	if a := t.Router.Address; a != "" && (t.Witness == nil || a != t.Witness.Address) {
		p.checkAddress("router.address", t.Mode, a, "the router", addrs)
	}
	p.checkPort("router.dns-port", t.Router.DNSPort)
	p.checkPort("router.http-port", t.Router.HTTPPort)
	p.checkPort("api.port", t.API.Port)
	if h := t.Router.Health; h.Timeout > h.Interval {
		p.at("router.health.timeout", "router.health.timeout %s must not exceed the interval %s", h.Timeout, h.Interval)
	}
	for i, r := range t.Regions {
		if r.Entry == "" {
			continue
		}
		ip, err := netip.ParseAddr(r.Entry)
		if err != nil || (t.Mode == lifeline.ModeLocal && !ip.IsLoopback()) {
			p.at(fmt.Sprintf("regions[%d].entry", i), "region %q: entry %q must be an IP address (on loopback in a local topology)", r.Name, r.Entry)
		}
	}
	if t.Control.Embedded() && len(t.Sites()) == 2 {
		p.at("regions", "embedded etcd needs an odd number of sites to keep a quorum when one is lost: add a witness (witness: {address: ...}) or a third region")
	}
	if t.Mode == lifeline.ModeDistributed && t.Links.CrossRegion.Latency > 0 {
		p.at("links", "links emulate a network and apply only to mode: local")
	}

	if len(t.Workloads) == 0 {
		p.at("workloads", "workloads: at least one workload is required")
	}
	names := map[string]bool{}
	ports := map[int]string{}
	writers := map[int]string{}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		wp := fmt.Sprintf("workloads[%d]", i)
		p.checkName(wp+".name", "workload name", w.Name)
		if names[w.Name] {
			p.at(wp+".name", "workload %q is declared twice", w.Name)
		}
		names[w.Name] = true
		if !w.Strategy.Valid() {
			p.at(wp+".strategy", "strategy %q: want one of %s", w.Strategy, strategyList())
		}
		if w.Objectives.RPO == 0 && p.lines[wp+".objectives.rpo"] == 0 {
			p.at(wp+".objectives", "workload %q: objectives.rpo is required (the data loss it may suffer, e.g. 0s or 5m)", w.Name)
		}
		if w.Objectives.RTO == 0 {
			p.at(wp+".objectives", "workload %q: objectives.rto is required and above 0 (the downtime it may suffer, e.g. 30s)", w.Name)
		}
		active, err := t.Region(w.Active)
		switch {
		case w.Active == "":
			p.at(wp, "workload %q: active is required: the region that takes writes (%s)", w.Name, strings.Join(t.RegionNames(), ", "))
		case err != nil:
			p.at(wp+".active", "active region %q is not declared (regions: %s)", w.Active, strings.Join(t.RegionNames(), ", "))
		}
		if len(t.Regions) < 2 {
			p.at(wp+".strategy", "workload %q: strategy %s needs a second region to recover into", w.Name, w.Strategy)
		}
		switch w.Failover {
		case lifeline.FailoverApprove:
		case lifeline.FailoverAuto:
			if t.Witness == nil && len(t.Regions) < 3 {
				p.at(wp+".failover", "failover: auto needs a witness quorum: declare a witness (witness: {address: ...}) or use failover: approve")
			}
		default:
			p.at(wp+".failover", "failover %q: want approve or auto", w.Failover)
		}
		p.checkDatabase(wp+".database", w, active)
		if t.Mode == lifeline.ModeDistributed && !w.Database.Password.Set() {
			// Hosts reach each other over a real network: nothing may be
			// let in on its address alone.
			p.at(wp+".database.password", "workload %q: mode: distributed needs database password and replication-password (e.g. password: env:%s_DB_PASSWORD)",
				w.Name, strings.ToUpper(strings.ReplaceAll(w.Name, "-", "_")))
		}
		if prev, ok := ports[w.Database.Port]; ok {
			p.at(wp+".database.port", "database port %d is already used by workload %q", w.Database.Port, prev)
		}
		ports[w.Database.Port] = w.Name
		p.checkPort(wp+".routing.writer-port", w.Routing.WriterPort)
		if prev, ok := writers[w.Routing.WriterPort]; ok {
			p.at(wp+".routing.writer-port", "writer port %d is already used by workload %q", w.Routing.WriterPort, prev)
		}
		writers[w.Routing.WriterPort] = w.Name
		p.checkBackups(wp+".backups", w)
		p.checkServices(wp, w)
		p.checkRouting(wp+".routing", w)
		p.checkImpact(wp+".impact", w)
		p.checkContacts(wp+".contacts", w)
	}
}

func (p *parser) checkDatabase(path string, w *lifeline.Workload, active *lifeline.Region) {
	d := &w.Database
	if d.Engine != "postgres" {
		p.at(path+".engine", "database engine %q: only postgres is supported", d.Engine)
	}
	p.checkPort(path+".port", d.Port)
	switch {
	case d.Sync == SyncNone || d.Sync == "":
		d.Sync = ""
	case !syncRe.MatchString(d.Sync):
		p.at(path+".sync", "database sync %q: want \"ANY N\" (e.g. ANY 1) or none", d.Sync)
	case active != nil:
		n, _ := strconv.Atoi(strings.Fields(d.Sync)[1])
		if n < 1 || n > len(active.Zones)-1 {
			p.at(path+".sync", "database sync %q: region %q has %d other zone(s) to hold a synchronous standby", d.Sync, active.Name, len(active.Zones)-1)
		}
	}
	wp := path[:strings.LastIndex(path, ".")]
	if w.Objectives.RPO == 0 && p.lines[wp+".objectives.rpo"] != 0 {
		// A region's loss costs what asynchronous replication across
		// regions had not yet shipped: RPO 0 cannot hold for it.
		p.at(wp+".objectives.rpo", "objectives.rpo 0 cannot hold when region %s is lost: replication to the other regions is asynchronous (a synchronous standby in another region would put the WAN round trip on every commit); set rpo to the cross-region lag you accept, e.g. 1s (a zone's loss still loses nothing: database.sync keeps a synchronous standby in the active region)", w.Active)
	}
	if w.Objectives.RPO == 0 && d.Sync == "" && p.lines[wp+".objectives.rpo"] != 0 {
		p.at(path+".sync", "objectives.rpo 0 needs a synchronous standby in the active region: set database.sync (e.g. \"ANY 1\") and give region %q a second zone", w.Active)
	}
	for _, s := range []struct {
		key string
		v   lifeline.Secret
	}{{"password", d.Password}, {"replication-password", d.ReplicationPassword}} {
		if err := s.v.Check(); err != nil {
			p.at(path+"."+s.key, "database %s: %v", s.key, err)
		}
	}
	if d.Password.Set() != d.ReplicationPassword.Set() {
		p.at(path, "database: set both password and replication-password, or neither (a local topology then trusts its own addresses)")
	}
	for _, u := range []struct{ key, v string }{{"superuser", d.Superuser}, {"replication-user", d.ReplicationUser}} {
		if !pgNameRe.MatchString(u.v) {
			p.at(path+"."+u.key, "database %s %q: want a lower-case PostgreSQL role name", u.key, u.v)
		}
	}
	for k := range d.Parameters {
		if !pgNameRe.MatchString(k) && !strings.Contains(k, ".") {
			p.at(path+".parameters", "database parameter %q is not a PostgreSQL setting name", k)
		}
	}
}

var (
	syncRe   = regexp.MustCompile(`^ANY [1-9][0-9]?$`)
	pgNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
)

func (p *parser) checkBackups(path string, w *lifeline.Workload) {
	b := &w.Backups
	if !strings.Contains(b.Repository, "://") {
		p.at(path+".repository", "backups repository %q: want a URL such as file:///var/backups/{region} or s3://bucket/prefix", b.Repository)
	} else if !strings.Contains(b.Repository, "{region}") {
		p.at(path+".repository", "backups repository %q: needs {region} so that every region keeps its own copy", b.Repository)
	}
	if err := b.Key.Check(); err != nil {
		p.at(path+".key", "backups key: %v", err)
	}
	if b.Full <= 0 {
		p.at(path+".full", "backups full must be above 0")
	}
}

func (p *parser) checkServices(wp string, w *lifeline.Workload) {
	names := map[string]bool{}
	for j, s := range w.Services {
		sp := fmt.Sprintf("%s.services[%d]", wp, j)
		p.checkName(sp+".name", "service name", s.Name)
		if names[s.Name] {
			p.at(sp+".name", "service %q is declared twice", s.Name)
		}
		names[s.Name] = true
		if len(s.Command) == 0 {
			p.at(sp+".command", "service %q: command is required", s.Name)
		}
		if s.Health != "" && !strings.HasPrefix(s.Health, "/") {
			p.at(sp+".health", "service %q: health %q: want an HTTP path such as /healthz", s.Name, s.Health)
		}
		if s.Replicas.Active < 1 {
			p.at(sp+".replicas.active", "service %q: replicas.active must be at least 1", s.Name)
		}
		switch w.Strategy {
		case lifeline.BackupRestore, lifeline.PilotLight:
			if s.Replicas.Standby > 0 {
				p.at(sp+".replicas.standby", "service %q: %s runs no service instances in the standby region; set replicas.standby to 0 or use warm-standby", s.Name, w.Strategy)
			}
		case lifeline.WarmStandby, lifeline.ActiveActive:
			if s.Replicas.Standby < 1 {
				p.at(sp+".replicas.standby", "service %q: %s keeps service instances running in the standby region; replicas.standby must be at least 1", s.Name, w.Strategy)
			}
		}
	}
}

func (p *parser) checkRouting(path string, w *lifeline.Workload) {
	r := &w.Routing
	p.checkPort(path+".reader-port", r.ReaderPort)
	if r.ReaderPort == r.WriterPort {
		p.at(path+".reader-port", "routing reader-port %d is the writer-port too", r.ReaderPort)
	}
	for region, weight := range r.Weights {
		if !p.regions[region] {
			p.at(path+".weights", "routing weights: region %q is not declared", region)
		}
		if weight < 0 {
			p.at(path+".weights", "routing weights: %s weighs %d; weights are 0 or more", region, weight)
		}
	}
	for i, l := range r.Latency {
		lp := fmt.Sprintf("%s.latency[%d]", path, i)
		if _, err := netip.ParsePrefix(l.Subnet); err != nil {
			p.at(lp+".subnet", "routing latency subnet %q: want a CIDR such as 10.1.0.0/16", l.Subnet)
		}
		for region := range l.RTT {
			if !p.regions[region] {
				p.at(lp+".rtt", "routing latency: region %q is not declared", region)
			}
		}
	}
	for i, g := range r.Geo {
		gp := fmt.Sprintf("%s.geolocation[%d]", path, i)
		if _, err := netip.ParsePrefix(g.Subnet); err != nil {
			p.at(gp+".subnet", "routing geolocation subnet %q: want a CIDR such as 10.1.0.0/16", g.Subnet)
		}
		if !p.regions[g.Region] {
			p.at(gp+".region", "routing geolocation: region %q is not declared", g.Region)
		}
	}
	if r.Hostname != "" && !hostnameRe.MatchString(r.Hostname) {
		p.at(path+".hostname", "routing hostname %q is not a DNS name", r.Hostname)
	}
	switch r.Policy {
	case "failover", "weighted", "latency", "geolocation":
	default:
		p.at(path+".policy", "routing policy %q: want failover, weighted, latency or geolocation", r.Policy)
	}
	if w.Strategy == lifeline.ActiveActive && r.Policy == "failover" && p.lines[path+".policy"] != 0 {
		p.at(path+".policy", "active-active serves from every region: use policy latency, geolocation or weighted")
	}
}

var hostnameRe = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$|^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*internal\.?$`)

func (p *parser) checkName(path, what, name string) {
	if name == "" {
		p.at(path, "%s is required", what)
		return
	}
	if !nameRe.MatchString(name) {
		p.at(path, "%s %q: use lower-case letters, digits and '-', at most 32 characters", what, name)
	}
}

func (p *parser) checkPort(path string, port int) {
	if port < 1 || port > 65535 {
		p.at(path, "port %d: want 1 to 65535", port)
	}
}

func (p *parser) checkAddress(path string, mode lifeline.Mode, addr, who string, seen map[string]string) {
	if addr == "" {
		p.at(path, "%s: address is required", who)
		return
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		if mode == lifeline.ModeLocal {
			p.at(path, "%s: address %q is not an IP address; a local topology uses loopback addresses (127.0.0.0/8)", who, addr)
		}
	} else if mode == lifeline.ModeLocal && !(ip.Is4() && ip.IsLoopback()) {
		p.at(path, "%s: address %s is outside 127.0.0.0/8; a local topology only uses loopback addresses", who, addr)
	} else if ip.Is4() && ip.IsLoopback() && ip.As4()[3] == 0 {
		p.at(path, "%s: address %s is a network address; use a host address such as %s", who, addr, netip.AddrFrom4([4]byte{127, ip.As4()[1], ip.As4()[2], 1}))
	}
	if prev, ok := seen[addr]; ok {
		p.at(path, "%s: address %s is already used by %s", who, addr, prev)
	}
	seen[addr] = who
}

func loopbackURL(u string) bool {
	host := u
	if _, rest, ok := strings.Cut(u, "://"); ok {
		host = rest
	}
	host, _, _ = strings.Cut(host, "/")
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	return host == "localhost" || (err == nil && ip.IsLoopback())
}

func strategyList() string {
	s := make([]string, len(lifeline.Strategies))
	for i, v := range lifeline.Strategies {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
