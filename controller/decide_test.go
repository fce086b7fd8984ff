package controller_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/store"
)

const topo = `name: shop
control: {region-down-after: 2s}
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}, {name: c, address: 127.0.1.3}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}, {name: b, address: 127.0.2.2}]}
witness: {address: 127.0.3.1}
workloads:
  - {name: db, strategy: warm-standby, objectives: {rpo: 1s, rto: 30s}, active: west,
     services: [{name: api, command: [x], replicas: {active: 1, standby: 1}}]}
  - {name: br, strategy: backup-restore, objectives: {rpo: 5m, rto: 30m}, active: west, database: {port: 5433},
     routing: {writer-port: 6433, reader-port: 6434},
     services: [{name: api, command: [x], replicas: {active: 1, standby: 0}}]}
`

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func setup(t testing.TB) (*lifeline.Topology, *lifeline.Workload) {
	t.Helper()
	top, err := spec.Parse("t.yaml", []byte(topo))
	if err != nil {
		t.Fatal(err)
	}
	return top, &top.Workloads[0]
}

// standby is a fresh report of a running standby that received up to lsn.
func standby(node, lsn string, streaming bool) lifeline.NodeStatus {
	return lifeline.NodeStatus{Node: node, Running: true, InRecovery: true, Streaming: streaming, ReceiveLSN: lsn, LSN: lsn, Reported: now.Add(-200 * time.Millisecond)}
}

func reports(sts ...lifeline.NodeStatus) map[string]lifeline.NodeStatus {
	m := map[string]lifeline.NodeStatus{}
	for _, s := range sts {
		m[s.Node] = s
	}
	return m
}

// check is one vantage point's result for one node's database of workload db.
func check(workload, node, vantage string, up bool, since time.Duration) store.HealthResult {
	return store.HealthResult{Target: workload + "/" + node + "/postgres", Vantage: vantage, Up: up, Streak: 3, Since: now.Add(-since)}
}

// seenDown: every node of region fails the checks of the given vantage
// points since ago.
func seenDown(workload string, nodes []string, ago time.Duration, vantages ...string) []store.HealthResult {
	var out []store.HealthResult
	for _, n := range nodes {
		for _, v := range vantages {
			out = append(out, check(workload, n, v, false, ago))
		}
	}
	return out
}

var westNodes = []string{"west/a", "west/b", "west/c"}

func state(primary string, epoch int64) lifeline.WorkloadState {
	id, _ := lifeline.ParseNodeID(primary)
	return lifeline.WorkloadState{Active: id.Region, Primary: primary, Epoch: epoch, Phase: lifeline.PhaseSteady, Databases: []string{"east", "west"}}
}

func TestDecide(t *testing.T) {
	top, w := setup(t)
	br := &top.Workloads[1]
	st := state("west/a", 4)
	busy := st
	busy.Runbook, busy.Phase = "r1", lifeline.PhaseFailingOver
	eastActive := state("east/a", 5)
	brState := lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 2, Databases: []string{"west"}}
	held := &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}
	stale := standby("west/b", "0/500", false)
	stale.Reported = now.Add(-time.Minute)
	fenced := standby("west/c", "0/500", false)
	fenced.Fenced = true
	stopped := standby("west/b", "0/500", false)
	stopped.Running = false
	alive := lifeline.NodeStatus{Node: "west/b", Running: false, Reported: now.Add(-time.Second)}
	eastA, eastB := standby("east/a", "0/300", false), standby("east/b", "0/280", false)
	eastStopped := eastA
	eastStopped.Running = false
	down3s := seenDown("db", westNodes, 3*time.Second, "witness", "east")
	flap := append(seenDown("db", westNodes[:2], 3*time.Second, "witness", "east"),
		check("db", "west/c", "witness", false, 500*time.Millisecond), check("db", "west/c", "east", false, 3*time.Second))
	witnessUp := append(seenDown("db", westNodes[:2], 3*time.Second, "witness", "east"),
		check("db", "west/c", "witness", true, time.Second), check("db", "west/c", "east", false, 3*time.Second))
	withOwnRegion := append(append([]store.HealthResult(nil), down3s...), check("db", "west/a", "west", true, time.Minute))
	missingOne := seenDown("db", westNodes[:2], 3*time.Second, "witness", "east")
	for _, c := range []struct {
		name string
		w    *lifeline.Workload
		in   controller.Input
		want controller.Action
		to   string
	}{
		{name: "not bootstrapped", in: controller.Input{}, want: controller.None},
		{name: "no primary named", in: controller.Input{HasState: true, State: lifeline.WorkloadState{Epoch: 1}}, want: controller.None},
		{name: "primary holds its lease", in: controller.Input{State: st, Lease: held,
			Reports: reports(standby("west/b", "0/500", true))}, want: controller.None},
		{name: "lease of another epoch: wait for it", in: controller.Input{State: st, Lease: &lifeline.LeaseRecord{Node: "west/b", Epoch: 3}},
			want: controller.None},
		{name: "lease lost, standbys ready", in: controller.Input{State: st, Grace: 0,
			Reports: reports(standby("west/b", "0/500", false), standby("west/c", "0/400", false))}, want: controller.ZoneFailover},
		{name: "lease missing at start-up: grace", in: controller.Input{State: st, LeaseMissing: time.Second, Grace: 3 * time.Second,
			Reports: reports(standby("west/b", "0/500", false))}, want: controller.None},
		{name: "lease missing longer than grace", in: controller.Input{State: st, LeaseMissing: 4 * time.Second, Grace: 3 * time.Second,
			Reports: reports(standby("west/b", "0/500", false))}, want: controller.ZoneFailover},
		{name: "runbook already running", in: controller.Input{State: busy,
			Reports: reports(standby("west/b", "0/500", false))}, want: controller.None},
		{name: "stale and fenced standbys do not count; region not down", in: controller.Input{State: st,
			Reports: reports(stale, fenced)}, want: controller.None},
		{name: "stopped standby does not count", in: controller.Input{State: st,
			Reports: reports(stopped)}, want: controller.None},
		{name: "the primary itself is not a candidate", in: controller.Input{State: st,
			Reports: reports(standby("west/a", "0/900", false))}, want: controller.None},
		{name: "zone standbys preferred over the other region", in: controller.Input{State: st,
			Health:  seenDown("db", westNodes[:1], 3*time.Second, "witness", "east"),
			Reports: reports(standby("west/b", "0/500", false), eastA)}, want: controller.ZoneFailover},
		{name: "a standby whose report has not aged out but that the witness and east fail to reach is not a candidate",
			in: controller.Input{State: st, Health: seenDown("db", westNodes, time.Second, "witness", "east"),
				Reports: reports(standby("west/b", "0/500", false), eastA)}, want: controller.None},
		{name: "a standby only the witness fails to reach is still a candidate",
			in: controller.Input{State: st, Health: seenDown("db", westNodes, time.Second, "witness"),
				Reports: reports(standby("west/b", "0/500", false), eastA)}, want: controller.ZoneFailover},
		{name: "region down for 3s, seen by the witness and east", in: controller.Input{State: st, Health: down3s,
			Reports: reports(eastA, eastB)}, want: controller.RegionFailover, to: "east"},
		{name: "region down seen by the witness only", in: controller.Input{State: st,
			Health:  seenDown("db", westNodes, 3*time.Second, "witness"),
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "region down seen by the other region only", in: controller.Input{State: st,
			Health:  seenDown("db", westNodes, 3*time.Second, "east"),
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "down for less than region-down-after", in: controller.Input{State: st,
			Health:  seenDown("db", westNodes, time.Second, "witness", "east"),
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "flapping: one node's failures started again a moment ago", in: controller.Input{State: st, Health: flap,
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "the witness reaches one node", in: controller.Input{State: st, Health: witnessUp,
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "one node of the region still reports through etcd", in: controller.Input{State: st, Health: down3s,
			Reports: reports(eastA, eastB, alive)}, want: controller.None},
		{name: "one node unchecked (no results): not declared down", in: controller.Input{State: st, Health: missingOne,
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "the lost region's own vantage point does not count", in: controller.Input{State: st, Health: withOwnRegion,
			Reports: reports(eastA, eastB)}, want: controller.RegionFailover, to: "east"},
		{name: "witness lost too: no quorum, no failover", in: controller.Input{State: st,
			Health:  seenDown("db", westNodes, 3*time.Second, "east"),
			Reports: reports(eastA)}, want: controller.None},
		{name: "region down but no standby elsewhere runs", in: controller.Input{State: st, Health: down3s,
			Reports: reports(eastStopped)}, want: controller.None},
		{name: "region down, one standby elsewhere is enough", in: controller.Input{State: st, Health: down3s,
			Reports: reports(eastB)}, want: controller.RegionFailover, to: "east"},
		{name: "a zone failover runs when the rest of the region dies: wait for it", in: controller.Input{State: busy, Health: down3s,
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "the old primary holds its lease: it is alive", in: controller.Input{State: st, Lease: held, Health: down3s,
			Reports: reports(eastA, eastB)}, want: controller.None},
		{name: "after a failover, east is lost and west takes over", in: controller.Input{State: eastActive,
			Health:  seenDown("db", []string{"east/a", "east/b"}, 5*time.Second, "witness", "west"),
			Reports: reports(standby("west/a", "0/900", false), standby("west/b", "0/800", false))}, want: controller.RegionFailover, to: "west"},
		{name: "backup-restore: region down, the other region restores", w: br, in: controller.Input{State: brState,
			Health: seenDown("br", westNodes, 3*time.Second, "witness", "east")}, want: controller.RegionFailover, to: "east"},
		{name: "backup-restore: zone failover inside the region first", w: br, in: controller.Input{State: brState,
			Reports: reports(standby("west/b", "0/500", false))}, want: controller.ZoneFailover},
		{name: "backup-restore: not down yet", w: br, in: controller.Input{State: brState,
			Health: seenDown("br", westNodes, time.Second, "witness", "east")}, want: controller.None},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.in.Topology, c.in.Workload, c.in.Now = top, w, now
			if c.w != nil {
				c.in.Workload = c.w
			}
			if c.in.State.Epoch != 0 {
				c.in.HasState = true
			}
			got := controller.Decide(c.in)
			if got.Action != c.want || got.To != c.to {
				t.Errorf("Decide = %q to %q (%s), want %q to %q", got.Action, got.To, got.Reason, c.want, c.to)
			}
			if got.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestBuildEvidence(t *testing.T) {
	top, w := setup(t)
	st := state("west/a", 4)
	primary := lifeline.NodeStatus{Node: "west/a", Role: lifeline.RolePrimary, LSN: "0/1000", Reported: now.Add(-3 * time.Second),
		Replicas: []lifeline.ReplicaStatus{{Name: "east_a", LagBytes: 512, ReplayLag: 0.2, Connected: true}}}
	ev := controller.BuildEvidence(top, w, st, "west", primary, reports(standby("east/a", "0/E00", false), standby("east/b", "0/D00", false)),
		controller.Verdict{Since: now.Add(-3 * time.Second), Seen: []string{"x"}}, now)
	best, ok := ev.Best()
	if !ok || best.Node != "east/a" || ev.EstimatedLossBytes != 0x200 || ev.EstimatedLossSeconds != 0.2 || ev.PrimaryLSN != "0/1000" {
		t.Errorf("evidence = %+v", ev)
	}
	unknown := controller.BuildEvidence(top, w, st, "west", lifeline.NodeStatus{}, reports(standby("east/a", "0/E00", false)), controller.Verdict{}, now)
	if unknown.EstimatedLossBytes != -1 || unknown.PrimaryLSN != "" || len(unknown.Standbys) != 1 {
		t.Errorf("evidence without the primary's report = %+v", unknown)
	}
}

func TestPick(t *testing.T) {
	top, w := setup(t)
	st := state("west/a", 4)
	from := lifeline.NodeID{Region: "west", Zone: "a"}
	replayAhead := standby("west/c", "0/600", false)
	replayAhead.ReceiveLSN = ""
	onlyC := []lifeline.NodeID{{Region: "west", Zone: "c"}}
	for _, c := range []struct {
		name    string
		region  string
		syncSet []lifeline.NodeID
		reports map[string]lifeline.NodeStatus
		want    string
		err     error
	}{
		{"most advanced wins", "west", nil, reports(standby("west/b", "0/400", false), standby("west/c", "1/0", false)), "west/c", nil},
		{"tie goes to spec order", "west", nil, reports(standby("west/b", "0/500", false), standby("west/c", "0/500", false)), "west/b", nil},
		{"positions not final while one streams", "west", nil, reports(standby("west/b", "0/400", false), standby("west/c", "0/500", true)), "", controller.ErrStillStreaming},
		{"the other region is never picked for a zone failover", "west", nil, reports(standby("east/a", "9/0", false)), "", controller.ErrNoQuorum},
		{"replay position counts when nothing was received", "west", nil, reports(standby("west/b", "0/500", false), replayAhead), "west/c", nil},
		{"quorum rule: with ANY 1 over b and c, a silent one may hold the last commit", "west", nil,
			reports(standby("west/b", "0/500", false)), "", controller.ErrNoQuorum},
		{"quorum rule: a standby the primary no longer counted is not waited for", "west", onlyC,
			reports(standby("west/c", "0/500", false)), "west/c", nil},
		{"quorum rule: the one the primary counted is silent", "west", onlyC,
			reports(standby("west/b", "0/900", false)), "", controller.ErrNoQuorum},
		{"quorum rule: no synchronous standby at the loss", "west", []lifeline.NodeID{},
			reports(standby("west/b", "0/500", false)), "west/b", nil},
		{"region failover: the most advanced of the other region", "east", nil,
			reports(standby("east/a", "0/300", false), standby("east/b", "0/380", false), standby("west/b", "0/900", false)), "east/b", nil},
		{"region failover: no quorum rule across regions", "east", nil, reports(standby("east/a", "0/300", false)), "east/a", nil},
		{"nobody", "east", nil, reports(), "", controller.ErrNoCandidate},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := controller.Pick(top, w, st, from, c.region, c.syncSet, c.reports, now)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if diff := cmp.Diff(c.want, stringOrEmpty(got)); err == nil && diff != "" {
				t.Errorf("picked (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSyncSet(t *testing.T) {
	p := lifeline.NodeStatus{Node: "eu-west/a", Replicas: []lifeline.ReplicaStatus{
		{Name: "eu_west_b", SyncState: "quorum", Connected: true},
		{Name: "eu_west_c", SyncState: "quorum", Connected: false},
		{Name: "eu_central_a", SyncState: "async", Connected: true},
	}}
	got := controller.SyncSet(p)
	if diff := cmp.Diff([]lifeline.NodeID{{Region: "eu-west", Zone: "b"}}, got); diff != "" {
		t.Errorf("SyncSet (-want +got):\n%s", diff)
	}
	if controller.SyncSet(lifeline.NodeStatus{}) != nil {
		t.Error("no report must give nil (unknown), not an empty set")
	}
}

func stringOrEmpty(id lifeline.NodeID) string {
	if id.Region == "" {
		return ""
	}
	return id.String()
}

// FuzzPick: whatever the reports say, Pick never chooses the old primary, a
// node of another region, or a node that is not a usable standby, and never
// one behind another usable candidate.
func FuzzPick(f *testing.F) {
	f.Add(uint32(5), uint32(7), uint32(3), true, false, true, false)
	f.Fuzz(func(t *testing.T, la, lb, lc uint32, runB, streamB, runC, fenceC bool) {
		top, w := setup(t)
		st := state("west/a", 4)
		from := lifeline.NodeID{Region: "west", Zone: "a"}
		b := standby("west/b", lifeline.LSN(lb).String(), streamB)
		b.Running = runB
		c := standby("west/c", lifeline.LSN(lc).String(), false)
		c.Running, c.Fenced = runC, fenceC
		a := standby("west/a", lifeline.LSN(la).String(), false)
		rs := reports(a, b, c, standby("east/a", "F/0", false))
		got, lsn, err := controller.Pick(top, w, st, from, "west", nil, rs, now)
		if err != nil {
			return
		}
		r := rs[got.String()]
		if got.Region != "west" || got == from || !r.Running || r.Fenced || r.Streaming {
			t.Fatalf("picked %s: %+v", got, r)
		}
		for _, other := range []lifeline.NodeStatus{b, c} {
			l, _ := lifeline.ParseLSN(other.ReceiveLSN)
			if other.Running && !other.Fenced && !other.Streaming && l > lsn {
				t.Fatalf("picked %s at %s but %s is at %s", got, lsn, other.Node, l)
			}
		}
	})
}

func TestStalledStreams(t *testing.T) {
	t0 := time.Unix(1000, 0)
	report := func(lsn string, at time.Duration, streaming bool) map[string]lifeline.NodeStatus {
		return map[string]lifeline.NodeStatus{"eu-west/b": {Node: "eu-west/b", ReceiveLSN: lsn, Streaming: streaming, Reported: t0.Add(at)}}
	}
	steps := []struct {
		reports       map[string]lifeline.NodeStatus
		wantStreaming bool
	}{
		{report("0/100", 0, true), true},
		{report("0/100", 500*time.Millisecond, true), true},  // not long enough
		{report("0/200", 1000*time.Millisecond, true), true}, // moved: starts over
		{report("0/200", 1500*time.Millisecond, true), true},
		{report("0/200", 2000*time.Millisecond, true), false}, // still for 1s: stalled
		{report("0/200", 2500*time.Millisecond, false), false},
	}
	// The agent's own record of when the position last moved counts too:
	// a stream still for a second by its agent's reports is stalled at the
	// first report this pick sees; one still for half a second is not.
	since := func(r map[string]lifeline.NodeStatus, d time.Duration) map[string]lifeline.NodeStatus {
		st := r["eu-west/b"]
		st.ReceiveSince = st.Reported.Add(-d)
		r["eu-west/b"] = st
		return r
	}
	steps = append(steps, []struct {
		reports       map[string]lifeline.NodeStatus
		wantStreaming bool
	}{
		{since(report("0/300", 3000*time.Millisecond, true), 500*time.Millisecond), true},
		{since(report("0/400", 3500*time.Millisecond, true), time.Second), false},
		{since(report("0/500", 4000*time.Millisecond, true), 2*time.Second), false},
		{since(report("0/600", 4500*time.Millisecond, true), 0), true},
	}...)
	s := controller.NewStalledStreams()
	for i, step := range steps {
		in := step.reports["eu-west/b"].Streaming
		got := s.Settle(step.reports, time.Second)["eu-west/b"].Streaming
		if got != step.wantStreaming {
			t.Errorf("step %d: streaming = %v, want %v", i, got, step.wantStreaming)
		}
		if step.reports["eu-west/b"].Streaming != in {
			t.Errorf("step %d: the input was changed", i)
		}
	}
}
