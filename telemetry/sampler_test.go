package telemetry_test

import (
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/telemetry"
)

func TestRing_KeepsTheHighestPerStepAndTheLastHour(t *testing.T) {
	r := telemetry.NewRingForTest(3)
	r.Add(10, 0.5, 100)
	r.Add(10, 0.2, 300) // same step: the highest of each wins
	r.Add(20, 1, 0)
	r.Add(30, 2, 0)
	r.Add(40, 3, 0) // overwrites step 10
	got := r.Since(0)
	want := []telemetry.Point{{T: 20, Seconds: 1}, {T: 30, Seconds: 2}, {T: 40, Seconds: 3}}
	if len(got) != len(want) {
		t.Fatalf("points %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("point %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := r.Since(35); len(got) != 1 || got[0].T != 40 {
		t.Errorf("since 35: %+v", got)
	}
	r2 := telemetry.NewRingForTest(3)
	r2.Add(10, 0.5, 100)
	r2.Add(10, 0.2, 300)
	if got := r2.Since(0); len(got) != 1 || got[0] != (telemetry.Point{T: 10, Seconds: 0.5, Bytes: 300}) {
		t.Errorf("one step: %+v", got)
	}
}

func TestSampler_LagOfAStandbyThatStopsStreaming(t *testing.T) {
	tp := &lifeline.Topology{
		Regions: []lifeline.Region{{Name: "eu-west", Zones: []lifeline.Zone{{Name: "a"}}}, {Name: "eu-central", Zones: []lifeline.Zone{{Name: "a"}}}},
		Workloads: []lifeline.Workload{{Name: "orders", Strategy: lifeline.WarmStandby, Active: "eu-west",
			Objectives: lifeline.Objectives{RPO: 2 * time.Second}}},
	}
	w := &tp.Workloads[0]
	st := lifeline.WorkloadState{Active: "eu-west", Primary: "eu-west/a", Epoch: 1, Databases: []string{"eu-west", "eu-central"}}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s := &telemetry.Sampler{T: tp}
	at := func(now time.Time, primaryLSN string, replica *lifeline.ReplicaStatus, standby *lifeline.NodeStatus) telemetry.Lag {
		t.Helper()
		p := lifeline.NodeStatus{Node: "eu-west/a", LSN: primaryLSN, Healthy: true}
		if replica != nil {
			p.Replicas = []lifeline.ReplicaStatus{*replica}
		}
		f := status.Facts{State: st, HasState: true, Reports: map[string]lifeline.NodeStatus{"eu-west/a": p}, Now: now}
		if standby != nil {
			f.Reports["eu-central/a"] = *standby
		}
		rep := &status.Report{Workloads: []status.Workload{status.Build(tp, w, f)}}
		lags := s.LagForTest(map[string]status.Facts{"orders": f}, rep, now)
		if len(lags) != 1 || lags[0].Node != "eu-central/a" {
			t.Fatalf("lags %+v", lags)
		}
		return lags[0]
	}
	got := at(t0, "0/3000100", &lifeline.ReplicaStatus{Name: "eu_central_a", Connected: true, LagBytes: 256, ReplayLag: 0.5},
		&lifeline.NodeStatus{Node: "eu-central/a", LSN: "0/3000000", Healthy: true})
	if got.Bytes != 256 || got.Seconds != 0.5 || !got.Connected || got.RPOSeconds != 2 {
		t.Errorf("streaming: %+v; want the primary's view", got)
	}
	// Stopped: no longer connected, then no longer reporting; its lag
	// grows from when it was last caught up (t0 - 0.5 s).
	got = at(t0.Add(5*time.Second), "0/3001000", nil, &lifeline.NodeStatus{Node: "eu-central/a", LSN: "0/3000800"})
	if got.Connected || got.Seconds != 5.5 || got.Bytes != 0x800 {
		t.Errorf("stopped, reporting: %+v; want 5.5 s and 0x800 bytes", got)
	}
	got = at(t0.Add(10*time.Second), "0/3002000", nil, nil)
	if got.Reporting || got.Seconds != 10.5 || got.Bytes != 0x1800 {
		t.Errorf("stopped, silent: %+v; want 10.5 s and 0x1800 bytes", got)
	}
}
