package readiness_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/readiness"
	"github.com/lifeline-dr/lifeline/store"
)

// fakeStore holds one workload's snapshot and what the runner writes.
type fakeStore struct {
	snap      store.Snapshot
	controls  store.Controls
	kv        map[string]any
	readiness map[string]lifeline.Readiness
	alarms    map[string]lifeline.Alarm
	raised    []lifeline.Alarm
}

func (f *fakeStore) ReadSnapshot(context.Context, string, ...clientv3.OpOption) (store.Snapshot, error) {
	return f.snap, nil
}

func (f *fakeStore) ReadControls(context.Context, string, ...clientv3.OpOption) (store.Controls, error) {
	return f.controls, nil
}

func (f *fakeStore) Get(_ context.Context, key string, v any, _ ...clientv3.OpOption) (int64, bool, error) {
	var val any
	if a, ok := f.alarms[strings.TrimPrefix(key, f.Keys().AlarmPrefix("orders"))]; ok {
		val = a
	} else if x, ok := f.kv[key]; ok {
		val = x
	} else {
		return 0, false, nil
	}
	b, _ := json.Marshal(val)
	return 1, true, json.Unmarshal(b, v)
}

func (f *fakeStore) Keys() store.Keys { return store.NewKeys("shop") }

func (f *fakeStore) Readiness(context.Context, string, ...clientv3.OpOption) ([]lifeline.Readiness, error) {
	var out []lifeline.Readiness
	for _, r := range f.readiness {
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeStore) PutReadiness(_ context.Context, r lifeline.Readiness) error {
	f.readiness[r.Region] = r
	return nil
}

func (f *fakeStore) RaiseAlarm(_ context.Context, a lifeline.Alarm) error {
	f.alarms[a.ID] = a
	f.raised = append(f.raised, a)
	return nil
}

// TestRunner_AlarmOnEveryChange: the runner stores each round's record,
// raises a warning when the region turns NOT READY, nothing while it
// stays so, and clears it with an info alarm when READY again.
func TestRunner_AlarmOnEveryChange(t *testing.T) {
	in := ready(t, "orders")
	in.T.Workloads = in.T.Workloads[:1] // orders only
	clock := now
	f := &fakeStore{snap: store.Snapshot{State: in.State, HasState: true, Reports: in.Reports,
		Health: []store.HealthResult{{Target: "x", Vantage: lifeline.WitnessSite, Up: true}}},
		controls: store.Controls{Records: map[string]lifeline.ControlRecord{}}, kv: map[string]any{},
		readiness: map[string]lifeline.Readiness{}, alarms: map[string]lifeline.Alarm{}}
	r := &readiness.Runner{T: in.T, S: f, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return clock }}
	round := func(wantReady bool, wantRaised int) lifeline.Readiness {
		t.Helper()
		clock = clock.Add(2 * time.Second)
		for id, st := range f.snap.Reports {
			st.Reported = clock
			f.snap.Reports[id] = st
		}
		if err := r.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := f.readiness["eu-central"]
		if got.Ready != wantReady || len(f.raised) != wantRaised {
			t.Fatalf("at %s: ready %v with %d alarms raised %+v; want %v and %d", clock, got.Ready, len(f.raised), f.raised, wantReady, wantRaised)
		}
		return got
	}
	first := round(true, 0) // READY from the start: nothing changed
	round(true, 0)
	if !first.Since.Equal(now.Add(2 * time.Second)) {
		t.Errorf("since %s, want the first round's time", first.Since)
	}
	f.controls.Records["eu-central"] = lifeline.ControlRecord{On: false, Actor: "ana", Changed: clock}
	down := round(false, 1)
	if a := f.raised[0]; a.Kind != "not-ready" || a.Severity != "warning" || !a.Cleared.IsZero() || down.Alarm != a.ID ||
		!strings.Contains(a.Summary, "routing: eu-central is switched off") {
		t.Errorf("NOT READY alarm %+v (record's alarm %q)", a, down.Alarm)
	}
	round(false, 1) // no change, no alarm
	delete(f.controls.Records, "eu-central")
	up := round(true, 3)
	cleared, again := f.raised[1], f.raised[2]
	if cleared.ID != f.raised[0].ID || !cleared.Cleared.Equal(clock) {
		t.Errorf("the NOT READY alarm is not cleared: %+v", cleared)
	}
	if again.Kind != "ready" || again.Severity != "info" || up.Alarm != "" || !up.Since.Equal(clock) {
		t.Errorf("READY again: alarm %+v, record %+v", again, up)
	}

	// A new leader starts from the stored record: no alarm for a state
	// that did not change.
	r2 := &readiness.Runner{T: in.T, S: f, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return clock }}
	if err := r2.Round(context.Background()); err != nil || len(f.raised) != 3 {
		t.Errorf("a new runner raised %d alarms (err %v), want none new", len(f.raised)-3, err)
	}
}
