package spec

import (
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Defaults in one place. Each says why it is the value it is.
const (
	// DefaultLeaseTTL bounds how long a dead primary blocks a failover: it
	// is most of a zone failover's RTO. The primary fences itself when it
	// has not renewed for LeaseTTL-FenceMargin (2s here): an etcd leader
	// election (about 1s) is ridden out; a longer control-store outage
	// costs a restart of the primary, never a second writer. Raise it where
	// etcd runs on slow disks.
	DefaultLeaseTTL = 3 * time.Second
	// DefaultCheckInterval is how often leases are renewed and health is
	// reported: four renewals fit in the fencing window.
	DefaultCheckInterval = 500 * time.Millisecond
	// DefaultRegionDownAfter is how long a region's nodes must fail every
	// check of the witness and another region, silent in the control
	// store, before it is declared down. Added to the primary lease's
	// expiry it detects a lost region in about 4-5 s; a shorter partition
	// than this never starts a region failover (which would still wait
	// for approval, or the witness quorum).
	DefaultRegionDownAfter = 2 * time.Second
	DefaultClientPort      = 2379
	DefaultPeerPort        = 2380
	DefaultDatabasePort    = 5432
	// DefaultRepository keeps backups next to the data of a local topology;
	// {data} is the data directory, {region} the region.
	DefaultRepository = "file://{data}/backups/{region}"
	DefaultFull       = 24 * time.Hour
	DefaultRetention  = 7 * 24 * time.Hour
	DefaultTTL        = 5 * time.Second
	// DefaultDNSPort is not 53: binding it needs root, and `up` must run
	// for any user. Query with dig -p 5353.
	DefaultDNSPort  = 5353
	DefaultHTTPPort = 8000
	// DefaultAPIPort is where every agent serves the HTTP API, the
	// dashboard and /metrics (HTTPS).
	DefaultAPIPort = 8443
)

// Default fills every value the spec left out.
func Default(t *lifeline.Topology) {
	if t.Mode == "" {
		t.Mode = lifeline.ModeLocal
	}
	c := &t.Control
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.PeerPort == 0 {
		c.PeerPort = DefaultPeerPort
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.RegionDownAfter == 0 {
		c.RegionDownAfter = DefaultRegionDownAfter
	}
	if t.Router.Address == "" {
		// A local topology's router shares the witness's loopback address:
		// both stand apart from the regions. A distributed one listens on
		// every interface of the host that runs `lifeline router`.
		switch {
		case t.Mode == lifeline.ModeDistributed:
			t.Router.Address = "0.0.0.0"
		case t.Witness != nil:
			t.Router.Address = t.Witness.Address
		default:
			t.Router.Address = "127.0.0.1"
		}
	}
	if t.API.Port == 0 {
		t.API.Port = DefaultAPIPort
	}
	if t.Router.DNSPort == 0 {
		t.Router.DNSPort = DefaultDNSPort
	}
	if t.Router.HTTPPort == 0 {
		t.Router.HTTPPort = DefaultHTTPPort
	}
	// Health-check defaults live with the checks (router.HealthSettings).
	for i := range t.Regions {
		if r := &t.Regions[i]; r.Entry == "" && len(r.Zones) > 0 {
			r.Entry = r.Zones[0].Address
		}
	}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		if w.Failover == "" {
			w.Failover = lifeline.FailoverApprove
		}
		d := &w.Database
		if d.Engine == "" {
			d.Engine = "postgres"
		}
		if d.Port == 0 {
			d.Port = DefaultDatabasePort
		}
		if d.Superuser == "" {
			d.Superuser = "postgres"
		}
		if d.ReplicationUser == "" {
			d.ReplicationUser = "replicator"
		}
		if d.Sync == "" {
			// RPO 0 for the loss of a zone whenever the active region has a second zone.
			if r, err := t.Region(w.Active); err == nil && len(r.Zones) > 1 {
				d.Sync = "ANY 1"
			}
		}
		b := &w.Backups
		if b.Repository == "" {
			b.Repository = DefaultRepository
		}
		if b.Full == 0 {
			b.Full = DefaultFull
		}
		if b.Retention == 0 && b.RetentionFull == 0 {
			b.Retention = DefaultRetention
		}
		for j := range w.Services {
			r := &w.Services[j].Replicas
			if r.Active < 0 {
				r.Active = 1
			}
			if r.Standby < 0 {
				switch w.Strategy {
				case lifeline.WarmStandby:
					r.Standby = 1
				case lifeline.ActiveActive:
					r.Standby = r.Active
				default:
					r.Standby = 0
				}
			}
		}
		rt := &w.Routing
		if rt.Policy == "" {
			rt.Policy = "failover"
			if w.Strategy == lifeline.ActiveActive {
				rt.Policy = "latency"
			}
		}
		if rt.TTL == 0 {
			rt.TTL = DefaultTTL
		}
		if rt.WriterPort == 0 {
			rt.WriterPort = w.Database.Port
		}
		if rt.ReaderPort == 0 {
			rt.ReaderPort = rt.WriterPort + 1
		}
		defaultImpact(&w.Impact)
	}
}

// DefaultTier is the tier of a workload whose spec names none.
const DefaultTier = lifeline.TierMedium

// DefaultCurrency is the currency of a workload's amounts when the spec
// names none: they are only shown, never converted.
const DefaultCurrency = "EUR"

// DefaultImpact is the impact a tier assumes for what the spec leaves out.
// The amounts are orders of magnitude to start a conversation with the
// business, not data: a critical workload (payments, orders) loses about
// 100 000 an hour down and 20 000 a minute of lost writes, each tier below
// a fifth to a tenth of that. The likelihoods are the same for every tier,
// from public cloud incident histories: a zone incident that takes a
// workload's zone about once in two years, a whole region about once in
// twenty (lasting 8 hours when waited out), an operator's destructive
// mistake once a year, and corruption that reaches every copy once in ten
// years. Prices are a small cloud VM, a database node, and a GB-month of
// volume or object storage.
func DefaultImpact(tier lifeline.Tier) lifeline.Impact {
	im := lifeline.Impact{
		Tier:     tier,
		Currency: DefaultCurrency,
		Risks: []lifeline.RiskLikelihood{
			{Risk: lifeline.RiskZone, PerYear: 0.5},
			{Risk: lifeline.RiskRegion, PerYear: 0.05, Lasts: DefaultRegionOutage},
			{Risk: lifeline.RiskOperator, PerYear: 1},
			{Risk: lifeline.RiskCorruption, PerYear: 0.1},
		},
		Prices: lifeline.Prices{InstanceMonth: 60, DatabaseMonth: 180, StorageGBMonth: 0.05},
		DataGB: 10,
	}
	switch tier {
	case lifeline.TierCritical:
		im.DowntimePerHour, im.DataLossPerMinute, im.DataGB = 100_000, 20_000, 100
	case lifeline.TierHigh:
		im.DowntimePerHour, im.DataLossPerMinute, im.DataGB = 20_000, 4_000, 50
	case lifeline.TierMedium:
		im.DowntimePerHour, im.DataLossPerMinute = 2_000, 400
	default: // low
		im.DowntimePerHour, im.DataLossPerMinute = 200, 40
	}
	return im
}

// DefaultRegionOutage is how long a region's outage lasts when waited out
// (multi-zone alone): the large public cloud region incidents lasted from
// a few hours to a day.
const DefaultRegionOutage = 8 * time.Hour

// defaultImpact fills what a workload's impact section left out (marked
// unset by the parser) from its tier's defaults.
func defaultImpact(im *lifeline.Impact) {
	if im.Tier == "" {
		im.Tier = DefaultTier
	}
	d := DefaultImpact(im.Tier)
	if im.Currency == "" {
		im.Currency = d.Currency
	}
	for _, f := range []struct{ v, d *float64 }{
		{&im.DowntimePerHour, &d.DowntimePerHour}, {&im.DataLossPerMinute, &d.DataLossPerMinute}, {&im.DataGB, &d.DataGB},
		{&im.Prices.InstanceMonth, &d.Prices.InstanceMonth}, {&im.Prices.DatabaseMonth, &d.Prices.DatabaseMonth},
		{&im.Prices.StorageGBMonth, &d.Prices.StorageGBMonth},
	} {
		if *f.v == unset {
			*f.v = *f.d
		}
	}
	if im.ApprovalTime == unset {
		im.ApprovalTime = 0
	}
	if im.Risks == nil {
		im.Risks = d.Risks
	}
	for i := range im.Risks {
		r := &im.Risks[i]
		def, _ := d.Likelihood(r.Risk)
		if r.PerYear == unset {
			r.PerYear = def.PerYear
		}
		if r.Lasts == 0 {
			r.Lasts = def.Lasts
		}
	}
}
