package controller_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/spec"
)

const topo = `name: shop
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}, {name: c, address: 127.0.1.3}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
workloads:
  - {name: db, strategy: warm-standby, objectives: {rpo: 0s, rto: 30s}, active: west,
     services: [{name: api, command: [x], replicas: {active: 1, standby: 1}}]}
`

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func setup(t *testing.T) (*lifeline.Topology, *lifeline.Workload) {
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

func TestDecide(t *testing.T) {
	top, w := setup(t)
	primary := lifeline.PrimaryRecord{Node: "west/a", Epoch: 4}
	held := &lifeline.LeaseRecord{Node: "west/a", Epoch: 4}
	stale := standby("west/b", "0/500", false)
	stale.Reported = now.Add(-time.Minute)
	fenced := standby("west/c", "0/500", false)
	fenced.Fenced = true
	stopped := standby("west/b", "0/500", false)
	stopped.Running = false
	for _, c := range []struct {
		name string
		in   controller.Input
		want controller.Action
	}{
		{"not bootstrapped", controller.Input{}, controller.None},
		{"primary holds its lease", controller.Input{Primary: primary, Lease: held,
			Reports: reports(standby("west/b", "0/500", true))}, controller.None},
		{"lease of another epoch: wait for it", controller.Input{Primary: primary, Lease: &lifeline.LeaseRecord{Node: "west/b", Epoch: 3}},
			controller.None},
		{"lease lost, standbys ready", controller.Input{Primary: primary, Grace: 0,
			Reports: reports(standby("west/b", "0/500", false), standby("west/c", "0/400", false))}, controller.ZoneFailover},
		{"lease missing at start-up: grace", controller.Input{Primary: primary, LeaseMissing: time.Second, Grace: 3 * time.Second,
			Reports: reports(standby("west/b", "0/500", false))}, controller.None},
		{"lease missing longer than grace", controller.Input{Primary: primary, LeaseMissing: 4 * time.Second, Grace: 3 * time.Second,
			Reports: reports(standby("west/b", "0/500", false))}, controller.ZoneFailover},
		{"runbook already running", controller.Input{Primary: primary, Locked: true,
			Reports: reports(standby("west/b", "0/500", false))}, controller.None},
		{"stale, stopped and fenced standbys do not count", controller.Input{Primary: primary,
			Reports: reports(stale, fenced)}, controller.None},
		{"stopped standby does not count", controller.Input{Primary: primary,
			Reports: reports(stopped)}, controller.None},
		{"only the other region can take over", controller.Input{Primary: primary,
			Reports: reports(standby("east/a", "0/300", false))}, controller.RegionFailoverNeeded},
		{"the primary itself is not a candidate", controller.Input{Primary: primary,
			Reports: reports(standby("west/a", "0/900", false))}, controller.None},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.in.Topology, c.in.Workload, c.in.Now = top, w, now
			if got := controller.Decide(c.in); got.Action != c.want {
				t.Errorf("Decide = %q (%s), want %q", got.Action, got.Reason, c.want)
			}
		})
	}
}

func TestPick(t *testing.T) {
	top, w := setup(t)
	from := lifeline.NodeID{Region: "west", Zone: "a"}
	replayAhead := standby("west/c", "0/600", false)
	replayAhead.ReceiveLSN = ""
	for _, c := range []struct {
		name    string
		reports map[string]lifeline.NodeStatus
		want    string
		err     error
	}{
		{"most advanced wins", reports(standby("west/b", "0/400", false), standby("west/c", "1/0", false)), "west/c", nil},
		{"tie goes to spec order", reports(standby("west/b", "0/500", false), standby("west/c", "0/500", false)), "west/b", nil},
		{"positions not final while one streams", reports(standby("west/b", "0/400", false), standby("west/c", "0/500", true)), "", controller.ErrStillStreaming},
		{"the other region is never picked for a zone failover", reports(standby("east/a", "9/0", false)), "", controller.ErrNoCandidate},
		{"replay position counts when nothing was received", reports(standby("west/b", "0/500", false), replayAhead), "west/c", nil},
		{"nobody", reports(), "", controller.ErrNoCandidate},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := controller.Pick(top, w, from, c.reports, now)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if diff := cmp.Diff(c.want, stringOrEmpty(got)); err == nil && diff != "" {
				t.Errorf("picked (-want +got):\n%s", diff)
			}
		})
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
		from := lifeline.NodeID{Region: "west", Zone: "a"}
		b := standby("west/b", lifeline.LSN(lb).String(), streamB)
		b.Running = runB
		c := standby("west/c", lifeline.LSN(lc).String(), false)
		c.Running, c.Fenced = runC, fenceC
		a := standby("west/a", lifeline.LSN(la).String(), false)
		rs := reports(a, b, c, standby("east/a", "F/0", false))
		got, lsn, err := controller.Pick(top, w, from, rs, now)
		if err != nil {
			return
		}
		st := rs[got.String()]
		if got.Region != "west" || got == from || !st.Running || st.Fenced || st.Streaming {
			t.Fatalf("picked %s: %+v", got, st)
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
