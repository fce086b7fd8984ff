package telemetry_test

import (
	"testing"

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
