package router_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/router"
)

// topology is two regions of two zones each on sub.1-4, with one
// warm-standby workload "orders" (RPO 1s) on port.
func topology(sub string, port int) *lifeline.Topology {
	return &lifeline.Topology{
		Name:    "test",
		Control: lifeline.Control{CheckInterval: 50 * time.Millisecond},
		Regions: []lifeline.Region{
			{Name: "eu-west", Zones: []lifeline.Zone{{Name: "a", Address: sub + ".1"}, {Name: "b", Address: sub + ".2"}}},
			{Name: "eu-central", Zones: []lifeline.Zone{{Name: "a", Address: sub + ".3"}, {Name: "b", Address: sub + ".4"}}},
		},
		Workloads: []lifeline.Workload{{
			Name: "orders", Strategy: lifeline.WarmStandby, Active: "eu-west",
			Objectives: lifeline.Objectives{RPO: time.Second, RTO: 30 * time.Second},
			Database:   lifeline.Database{Port: port},
		}},
	}
}

// facts builds the agents' reports: the primary (west/a) reports its
// replicas with the given replay lags in seconds (absent: not connected);
// every other node reports a healthy streaming standby unless listed in
// down.
func facts(lags map[string]float64, down ...string) (lifeline.WorkloadState, map[string]lifeline.NodeStatus) {
	primary := lifeline.WorkloadState{Active: "eu-west", Primary: "eu-west/a", Epoch: 1, Databases: []string{"eu-west", "eu-central"}}
	reports := map[string]lifeline.NodeStatus{}
	p := lifeline.NodeStatus{Node: "eu-west/a", Role: lifeline.RolePrimary, Healthy: true, Running: true}
	for node, lag := range lags {
		id, _ := lifeline.ParseNodeID(node)
		p.Replicas = append(p.Replicas, lifeline.ReplicaStatus{Name: id.Slug(), Connected: true, ReplayLag: lag, LagBytes: int64(lag * 1e6)})
	}
	reports[p.Node] = p
	for _, n := range []string{"eu-west/b", "eu-central/a", "eu-central/b"} {
		reports[n] = lifeline.NodeStatus{Node: n, Role: lifeline.RoleStandby, Healthy: true, Running: true, InRecovery: true, Streaming: true}
	}
	for _, n := range down {
		st := reports[n]
		st.Healthy = false
		reports[n] = st
	}
	return primary, reports
}

func TestPickReader(t *testing.T) {
	top := topology("127.0.9", 5432)
	w := &top.Workloads[0]
	addr := func(last string) string { return "127.0.9." + last + ":5432" }
	tests := []struct {
		name    string
		home    string
		lags    map[string]float64
		down    []string
		edit    func(lifeline.WorkloadState, map[string]lifeline.NodeStatus) lifeline.WorkloadState
		want    router.ReadChoice
		wantRPO time.Duration
	}{
		{name: "home region's standby", home: "eu-west",
			lags: map[string]float64{"eu-west/b": 0, "eu-central/a": 0.2, "eu-central/b": 0.1},
			want: router.ReadChoice{Node: "eu-west/b", Addr: addr("2"), Standby: true, Fit: []string{addr("2"), addr("3"), addr("4")}}},
		{name: "home is the other region", home: "eu-central",
			lags: map[string]float64{"eu-west/b": 0, "eu-central/a": 0.2, "eu-central/b": 0.1},
			want: router.ReadChoice{Node: "eu-central/a", Addr: addr("3"), Standby: true, Fit: []string{addr("3"), addr("4"), addr("2")}}},
		{name: "home standby behind the RPO: next in the region", home: "eu-central",
			lags: map[string]float64{"eu-west/b": 0, "eu-central/a": 1.5, "eu-central/b": 0.1},
			want: router.ReadChoice{Node: "eu-central/b", Addr: addr("4"), Standby: true, Fit: []string{addr("4"), addr("2")}}},
		{name: "home region unfit: other region", home: "eu-central",
			lags: map[string]float64{"eu-west/b": 0.3, "eu-central/a": 5}, down: []string{"eu-central/b"},
			want: router.ReadChoice{Node: "eu-west/b", Addr: addr("2"), Standby: true, Fit: []string{addr("2")}}},
		{name: "lag exactly the RPO is within it", home: "eu-central",
			lags: map[string]float64{"eu-central/a": 1},
			want: router.ReadChoice{Node: "eu-central/a", Addr: addr("3"), Standby: true, Fit: []string{addr("3")}}},
		{name: "every standby behind: primary", home: "eu-central",
			lags: map[string]float64{"eu-west/b": 2, "eu-central/a": 3, "eu-central/b": 4},
			want: router.ReadChoice{Node: "eu-west/a", Addr: addr("1")}},
		{name: "standby not reported by the primary: unknown lag, unfit", home: "eu-west",
			lags: map[string]float64{"eu-central/a": 0.5},
			want: router.ReadChoice{Node: "eu-central/a", Addr: addr("3"), Standby: true, Fit: []string{addr("3")}}},
		{name: "unhealthy standby", home: "eu-west", lags: map[string]float64{"eu-west/b": 0}, down: []string{"eu-west/b"},
			want: router.ReadChoice{Node: "eu-west/a", Addr: addr("1")}},
		{name: "standby not streaming", home: "eu-west", lags: map[string]float64{"eu-west/b": 0},
			edit: func(p lifeline.WorkloadState, r map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				st := r["eu-west/b"]
				st.Streaming = false
				r["eu-west/b"] = st
				return p
			},
			want: router.ReadChoice{Node: "eu-west/a", Addr: addr("1")}},
		{name: "disconnected in the primary's view", home: "eu-west", lags: map[string]float64{"eu-west/b": 0},
			edit: func(p lifeline.WorkloadState, r map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				st := r["eu-west/a"]
				st.Replicas[0].Connected = false
				return p
			},
			want: router.ReadChoice{Node: "eu-west/a", Addr: addr("1")}},
		{name: "primary's report missing: lags unknown, and it may be down: nowhere", home: "eu-west", lags: map[string]float64{"eu-west/b": 0},
			edit: func(p lifeline.WorkloadState, r map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				delete(r, "eu-west/a")
				return p
			},
			want: router.ReadChoice{}},
		{name: "primary fenced and no standby fit: nowhere", home: "eu-west", lags: map[string]float64{"eu-west/b": 5},
			edit: func(p lifeline.WorkloadState, r map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				st := r["eu-west/a"]
				st.Fenced = true
				r["eu-west/a"] = st
				return p
			},
			want: router.ReadChoice{}},
		{name: "no home: the active region's standby first", home: "",
			lags: map[string]float64{"eu-west/b": 0.5, "eu-central/a": 0.1},
			edit: func(p lifeline.WorkloadState, r map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				p.Active = "eu-central" // as if the primary were there
				return p
			},
			want: router.ReadChoice{Node: "eu-central/a", Addr: addr("3"), Standby: true, Fit: []string{addr("3"), addr("2")}}},
		{name: "no primary known: nowhere", home: "eu-west", lags: map[string]float64{"eu-west/b": 0},
			edit: func(lifeline.WorkloadState, map[string]lifeline.NodeStatus) lifeline.WorkloadState {
				return lifeline.WorkloadState{}
			},
			want: router.ReadChoice{}},
		{name: "RPO 0: only a standby with no lag at all", home: "eu-west", wantRPO: -1,
			lags: map[string]float64{"eu-west/b": 0.001, "eu-central/a": 0},
			want: router.ReadChoice{Node: "eu-central/a", Addr: addr("3"), Standby: true, Fit: []string{addr("3")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ww := *w
			if tt.wantRPO < 0 {
				ww.Objectives.RPO = 0
			}
			primary, reports := facts(tt.lags, tt.down...)
			if tt.edit != nil {
				primary = tt.edit(primary, reports)
			}
			got := router.PickReader(top, &ww, tt.home, primary, reports)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PickReader (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeDatabase listens on addr and writes name to every connection, then
// echoes.
func fakeDatabase(t *testing.T, addr, name string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			}()
		}
	}()
}

// TestReader_FollowsLag runs the reader endpoint over fake databases with
// the reports in a real etcd: connections go to the home standby, move to
// the primary when it falls behind the RPO (and the open one is closed),
// and come back.
func TestReader_FollowsLag(t *testing.T) {
	t.Parallel()
	s := connect(t)
	sub := testenv.Subnet(t)
	const port = 15432
	top := topology(sub, port)
	w := &top.Workloads[0]
	for i, n := range []string{"eu-west/a", "eu-west/b", "eu-central/a", "eu-central/b"} {
		fakeDatabase(t, sub+"."+strconv.Itoa(i+1)+":"+strconv.Itoa(port), n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(lags map[string]float64) {
		t.Helper()
		primary, reports := facts(lags)
		if err := s.Put(ctx, s.Keys().State(w.Name), primary); err != nil {
			t.Fatal(err)
		}
		for node, st := range reports {
			if err := s.Put(ctx, s.Keys().Status(w.Name, node), st); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(map[string]float64{"eu-west/b": 0.1, "eu-central/a": 0.1, "eu-central/b": 0.1})
	listen := sub + ".10:" + strconv.Itoa(port)
	rd := router.NewReader(top, w, s, listen, "eu-central", quiet)
	done := make(chan error, 1)
	go func() { done <- rd.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("reader: %v", err)
		}
	})
	waitFor(t, "a target", 10*time.Second, func() bool { return rd.Target() != "" })
	dial := func() (net.Conn, string) {
		t.Helper()
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return c, line[:len(line)-1]
	}
	c, who := dial()
	defer c.Close()
	if who != "eu-central/a" {
		t.Fatalf("connected to %s, want the home standby eu-central/a", who)
	}
	publish(map[string]float64{"eu-west/b": 3, "eu-central/a": 3, "eu-central/b": 3})
	waitFor(t, "the primary as target", 10*time.Second, func() bool { return rd.Target() == sub+".1:"+strconv.Itoa(port) })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("the connection to a standby behind the RPO is still open")
	}
	c2, who := dial()
	c2.Close()
	if who != "eu-west/a" {
		t.Errorf("connected to %s, want the primary", who)
	}
	publish(map[string]float64{"eu-west/b": 0, "eu-central/a": 2, "eu-central/b": 0.5})
	waitFor(t, "a fit standby in the home region", 10*time.Second, func() bool { return rd.Target() == sub+".4:"+strconv.Itoa(port) })
}

// What the vantage points check follows the workload's state; a workload
// whose state was never read gets its front doors checked, and no
// instance or database of the spec's guess.
func TestTargets_FollowTheState(t *testing.T) {
	top := topology("127.0.9", 5432)
	top.Workloads[0].Services = []lifeline.Service{{Name: "api", Health: "/healthz", Replicas: lifeline.Replicas{Active: 2, Standby: 0}}}
	names := func(ts []router.Target) []string {
		var out []string
		for _, x := range ts {
			out = append(out, x.Name)
		}
		return out
	}
	none := names(router.Targets(top, nil))
	if diff := cmp.Diff([]string{"orders/eu-west/entry", "orders/eu-central/entry"}, none); diff != "" {
		t.Errorf("without a state (-want +got):\n%s", diff)
	}
	central := lifeline.WorkloadState{Active: "eu-central", Primary: "eu-central/a", Epoch: 5, Databases: []string{"eu-central"}}
	got := names(router.Targets(top, map[string]lifeline.WorkloadState{"orders": central}))
	want := []string{"orders/eu-west/entry", "orders/eu-central/entry", "orders/api@eu-central/a#0", "orders/api@eu-central/b#1",
		"orders/eu-central/a/postgres", "orders/eu-central/b/postgres"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("active eu-central (-want +got):\n%s", diff)
	}
}
