package router_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline/router"
)

// regions builds region states from a compact description: for each
// region, "h" healthy, "u" unhealthy, followed by "+" on or "-" off, e.g.
// regions("west:h+", "central:u+").
func regions(specs ...string) []router.RegionState {
	var out []router.RegionState
	for _, s := range specs {
		name, st := s[:len(s)-3], s[len(s)-2:]
		out = append(out, router.RegionState{Name: name, Healthy: st[0] == 'h', On: st[1] == '+'})
	}
	return out
}

type choice struct {
	Region string
	Reason router.Reason
}

func chosen(rs []router.RegionState, d router.Decision) choice {
	if d.Index < 0 {
		return choice{Reason: d.Reason}
	}
	return choice{Region: rs[d.Index].Name, Reason: d.Reason}
}

func TestChoose_Failover(t *testing.T) {
	failover := &router.Policy{Kind: router.PolicyFailover}
	tests := []struct {
		name    string
		active  string
		regions []router.RegionState
		want    choice
	}{
		{"active healthy", "west", regions("west:h+", "central:h+", "north:h+"), choice{"west", router.ReasonPolicy}},
		{"active not first in spec", "central", regions("west:h+", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"active unhealthy: first healthy standby", "west", regions("west:u+", "central:h+", "north:h+"), choice{"central", router.ReasonPolicy}},
		{"standby order is spec order", "north", regions("west:h+", "central:h+", "north:u+"), choice{"west", router.ReasonPolicy}},
		{"active switched off", "west", regions("west:h-", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"first standby off, second on", "west", regions("west:u+", "central:h-", "north:h+"), choice{"north", router.ReasonPolicy}},
		{"none healthy: fail open to active", "west", regions("west:u+", "central:u+"), choice{"west", router.ReasonFailOpen}},
		{"none healthy, active off: first on", "west", regions("west:u-", "central:u+"), choice{"central", router.ReasonFailOpen}},
		{"healthy ones all off: fail open, controls win", "west", regions("west:u+", "central:h-"), choice{"west", router.ReasonFailOpen}},
		{"all off (forbidden by the safety rules): active", "central", regions("west:u-", "central:u-"), choice{"central", router.ReasonFailOpen}},
		{"unknown active: first healthy", "gone", regions("west:u+", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"unknown active, none healthy: first on", "gone", regions("west:u-", "central:u+"), choice{"central", router.ReasonFailOpen}},
		{"no regions", "west", nil, choice{Reason: router.ReasonNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chosen(tt.regions, router.Choose(failover, tt.active, tt.regions, netip.Addr{}, nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Choose (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChoose_Weighted(t *testing.T) {
	p := &router.Policy{Kind: router.PolicyWeighted}
	weigh := func(rs []router.RegionState, w ...int) []router.RegionState {
		for i := range rs {
			rs[i].Weight = w[i]
		}
		return rs
	}
	tests := []struct {
		name    string
		regions []router.RegionState
		draws   int
		want    map[string]int // share per region, in percent (±3)
		reason  router.Reason
	}{
		{"80/20", weigh(regions("west:h+", "central:h+"), 80, 20), 10000, map[string]int{"west": 80, "central": 20}, router.ReasonPolicy},
		{"equal thirds", weigh(regions("a:h+", "b:h+", "c:h+"), 1, 1, 1), 30000, map[string]int{"a": 33, "b": 33, "c": 33}, router.ReasonPolicy},
		{"unhealthy region's weight goes to the others", weigh(regions("a:h+", "b:u+", "c:h+"), 50, 25, 25), 10000, map[string]int{"a": 67, "c": 33}, router.ReasonPolicy},
		{"switched-off region gets nothing", weigh(regions("a:h-", "b:h+"), 99, 1), 1000, map[string]int{"b": 100}, router.ReasonPolicy},
		{"weight 0 takes nothing", weigh(regions("a:h+", "b:h+"), 0, 5), 1000, map[string]int{"b": 100}, router.ReasonPolicy},
		{"only usable region has weight 0: failover order", weigh(regions("a:u+", "b:h+"), 5, 0), 100, map[string]int{"b": 100}, router.ReasonFallback},
		{"none healthy: fail open to active", weigh(regions("a:u+", "b:u+"), 1, 9), 100, map[string]int{"a": 100}, router.ReasonFailOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, 2))
			counts := map[string]int{}
			for range tt.draws {
				d := router.Choose(p, tt.regions[0].Name, tt.regions, netip.Addr{}, rnd.IntN)
				if d.Reason != tt.reason {
					t.Fatalf("reason %s, want %s", d.Reason, tt.reason)
				}
				counts[tt.regions[d.Index].Name]++
			}
			got := map[string]int{}
			for name, n := range counts {
				got[name] = n * 100 / tt.draws
			}
			approx := cmp.Comparer(func(a, b int) bool { return a-b <= 3 && b-a <= 3 })
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("shares in %% (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("deterministic given the source", func(t *testing.T) {
		rs := weigh(regions("a:h+", "b:h+", "c:h+"), 3, 2, 1)
		seq := func() []int {
			rnd := rand.New(rand.NewPCG(7, 7))
			var out []int
			for range 50 {
				out = append(out, router.Choose(p, "a", rs, netip.Addr{}, rnd.IntN).Index)
			}
			return out
		}
		if diff := cmp.Diff(seq(), seq()); diff != "" {
			t.Errorf("two runs with the same seed differ:\n%s", diff)
		}
	})
	t.Run("draw boundaries", func(t *testing.T) {
		rs := weigh(regions("a:h+", "b:h+"), 3, 2)
		var got []string
		for n := range 5 {
			d := router.Choose(p, "a", rs, netip.Addr{}, func(int) int { return n })
			got = append(got, rs[d.Index].Name)
		}
		if diff := cmp.Diff([]string{"a", "a", "a", "b", "b"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestChoose_Latency(t *testing.T) {
	p := &router.Policy{Kind: router.PolicyLatency, Latency: []router.LatencyRule{
		{Subnet: netip.MustParsePrefix("10.0.0.0/8"), RTT: map[string]time.Duration{"west": 5 * time.Millisecond, "central": 25 * time.Millisecond}},
		{Subnet: netip.MustParsePrefix("10.2.0.0/16"), RTT: map[string]time.Duration{"west": 30 * time.Millisecond, "central": 4 * time.Millisecond, "north": 2 * time.Millisecond}},
		{Subnet: netip.MustParsePrefix("192.0.2.0/24"), RTT: map[string]time.Duration{"mars": time.Second}},
		{Subnet: netip.MustParsePrefix("2001:db8::/32"), RTT: map[string]time.Duration{"central": time.Millisecond}},
	}}
	tests := []struct {
		name    string
		client  string
		regions []router.RegionState
		want    choice
	}{
		{"nearest", "10.1.2.3", regions("west:h+", "central:h+"), choice{"west", router.ReasonPolicy}},
		{"most specific subnet wins", "10.2.9.9", regions("west:h+", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"nearest among the workload's regions", "10.2.9.9", regions("west:h+", "central:h+", "north:h+"), choice{"north", router.ReasonPolicy}},
		{"nearest unhealthy: failover order", "10.2.9.9", regions("west:h+", "central:u+"), choice{"west", router.ReasonFallback}},
		{"nearest off: failover order, active first", "10.1.0.1", regions("central:h+", "west:h-"), choice{"central", router.ReasonFallback}},
		{"client in no subnet: failover order", "172.16.0.1", regions("central:h+", "west:h+"), choice{"west", router.ReasonFallback}},
		{"no region of the table exists: failover order", "192.0.2.7", regions("west:h+", "central:h+"), choice{"west", router.ReasonFallback}},
		{"IPv6 client", "2001:db8::1", regions("west:h+", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"IPv4-mapped client", "::ffff:10.2.0.1", regions("west:h+", "central:h+"), choice{"central", router.ReasonPolicy}},
		{"unknown client: failover order", "", regions("west:h+", "central:h+"), choice{"west", router.ReasonFallback}},
		{"none healthy: fail open", "10.2.0.1", regions("west:u+", "central:u+"), choice{"west", router.ReasonFailOpen}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var client netip.Addr
			if tt.client != "" {
				client = netip.MustParseAddr(tt.client)
			}
			got := chosen(tt.regions, router.Choose(p, "west", tt.regions, client, nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Choose (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChoose_Geolocation(t *testing.T) {
	p := &router.Policy{Kind: router.PolicyGeolocation, Geo: []router.GeoRule{
		{Subnet: netip.MustParsePrefix("10.0.0.0/8"), Region: "west"},
		{Subnet: netip.MustParsePrefix("10.9.0.0/16"), Region: "central"},
		{Subnet: netip.MustParsePrefix("0.0.0.0/0"), Region: "north"},
	}}
	tests := []struct {
		name    string
		client  string
		regions []router.RegionState
		want    choice
	}{
		{"assigned", "10.1.1.1", regions("west:h+", "central:h+", "north:h+"), choice{"west", router.ReasonPolicy}},
		{"most specific", "10.9.1.1", regions("west:h+", "central:h+", "north:h+"), choice{"central", router.ReasonPolicy}},
		{"default route", "8.8.8.8", regions("west:h+", "central:h+", "north:h+"), choice{"north", router.ReasonPolicy}},
		{"assigned region unhealthy: failover order", "10.9.1.1", regions("west:h+", "central:u+", "north:h+"), choice{"west", router.ReasonFallback}},
		{"assigned region off: failover order", "10.1.1.1", regions("west:h-", "central:h+", "north:h+"), choice{"central", router.ReasonFallback}},
		{"assigned region not in the workload", "8.8.8.8", regions("west:h+", "central:h+"), choice{"west", router.ReasonFallback}},
		{"none healthy: fail open", "10.9.1.1", regions("west:u+", "central:u+"), choice{"west", router.ReasonFailOpen}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chosen(tt.regions, router.Choose(p, "west", tt.regions, netip.MustParseAddr(tt.client), nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Choose (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChoose_NeverUnusableWhileUsable checks the invariant over every
// combination of health and switches of three regions, for every policy.
func TestChoose_NeverUnusableWhileUsable(t *testing.T) {
	policies := []*router.Policy{
		{Kind: router.PolicyFailover},
		{Kind: router.PolicyWeighted},
		{Kind: router.PolicyLatency, Latency: []router.LatencyRule{{Subnet: netip.MustParsePrefix("0.0.0.0/0"), RTT: map[string]time.Duration{"c": 1}}}},
		{Kind: router.PolicyGeolocation, Geo: []router.GeoRule{{Subnet: netip.MustParsePrefix("0.0.0.0/0"), Region: "b"}}},
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, p := range policies {
		for bits := range 1 << 6 {
			rs := []router.RegionState{{Name: "a", Weight: 1}, {Name: "b", Weight: 2}, {Name: "c", Weight: 3}}
			anyUsable := false
			for i := range rs {
				rs[i].Healthy = bits&(1<<(2*i)) != 0
				rs[i].On = bits&(1<<(2*i+1)) != 0
				anyUsable = anyUsable || (rs[i].Healthy && rs[i].On)
			}
			for range 20 {
				d := router.Choose(p, "a", rs, netip.MustParseAddr("192.0.2.1"), rnd.IntN)
				r := rs[d.Index]
				if anyUsable && !(r.Healthy && r.On) {
					t.Fatalf("%s %06b: chose %+v while a usable region exists", p.Kind, bits, r)
				}
				if !anyUsable && d.Reason != router.ReasonFailOpen {
					t.Fatalf("%s %06b: reason %s, want fail-open", p.Kind, bits, d.Reason)
				}
			}
		}
	}
}

func BenchmarkChoose(b *testing.B) {
	p := &router.Policy{Kind: router.PolicyLatency, Latency: []router.LatencyRule{
		{Subnet: netip.MustParsePrefix("10.0.0.0/8"), RTT: map[string]time.Duration{"west": 5, "central": 25}},
		{Subnet: netip.MustParsePrefix("10.2.0.0/16"), RTT: map[string]time.Duration{"west": 30, "central": 4}},
	}}
	rs := regions("west:h+", "central:h+")
	client := netip.MustParseAddr("10.2.3.4")
	b.ReportAllocs()
	for b.Loop() {
		router.Choose(p, "west", rs, client, nil)
	}
}
