package router_test

import (
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/router"
)

func TestRouteTable_Update(t *testing.T) {
	now := time.Unix(1700000000, 0)
	table := router.NewRouteTable()
	table.Now = func() time.Time { return now }
	orders := ordersRoute(true)
	other := router.Route{Workload: "pay", Hostname: "pay.bank.internal.", TTL: time.Second, Active: "eu-west",
		Regions: []router.RegionState{{Name: "eu-west", Addrs: addrs("127.0.1.30"), Healthy: true, On: true}}}
	table.Update([]router.Route{orders, other})
	rs := table.Routes()

	for _, host := range []string{"orders.shop.internal", "ORDERS.shop.internal.", "orders.Shop.Internal"} {
		if r := rs.Lookup(host); r == nil || r.Workload != "orders" {
			t.Errorf("Lookup(%q) = %v, want orders", host, r)
		}
	}
	if r := rs.Lookup("shop.internal"); r != nil {
		t.Errorf("Lookup of the zone apex = %v, want nil", r)
	}
	if s := rs.Serial("shop.internal."); s != 1700000000 {
		t.Errorf("first serial %d, want the Unix time", s)
	}

	// The caller's slices are copied: changing them changes nothing.
	orders.Regions[0].Healthy = false
	orders.Regions[0].Addrs[0] = addrs("10.9.9.9")[0]
	if r := rs.Lookup("orders.shop.internal"); !r.Regions[0].Healthy || r.Regions[0].Addrs[0].String() != "127.0.1.10" {
		t.Errorf("the snapshot changed with the caller's route: %+v", r.Regions[0])
	}

	// A change in one zone moves that zone's serial only; several changes
	// in one second still move it forward.
	table.Update([]router.Route{orders, other})
	table.Update([]router.Route{ordersRoute(true), other})
	rs2 := table.Routes()
	if got := rs2.Serial("orders.shop.internal"); got != 1700000002 {
		t.Errorf("serial after two changes in the same second: %d, want 1700000002", got)
	}
	if got := rs2.Serial("pay.bank.internal"); got != 1700000000 {
		t.Errorf("serial of the unchanged zone: %d, want 1700000000", got)
	}
	if rs.Lookup("orders.shop.internal").Regions[0].Healthy != true {
		t.Errorf("an old snapshot changed after Update")
	}
	// A clock that went back does not move a serial backward.
	now = now.Add(-time.Hour)
	table.Update([]router.Route{orders, other})
	if got := table.Routes().Serial("shop.internal."); got != 1700000003 {
		t.Errorf("serial with the clock moved back: %d, want 1700000003", got)
	}
	if got := table.Routes().Serial("nowhere.example."); got != 0 {
		t.Errorf("serial outside the zones: %d, want 0", got)
	}
}
