package gameday_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline/gameday"
)

// TestCheckSet: on a synthetic ledger, a lost, an unexpected and a
// recovered write are each classified as Jepsen's set checker does.
func TestCheckSet(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w := func(id string, o gameday.Outcome) gameday.Attempt {
		return gameday.Attempt{ID: id, Op: gameday.OpWrite, Start: at, End: at.Add(time.Millisecond), Outcome: o}
	}
	for _, c := range []struct {
		name     string
		attempts []gameday.Attempt
		present  []string
		want     gameday.SetResult
	}{
		{"acknowledged and present", []gameday.Attempt{w("a", gameday.OK)}, []string{"a"}, gameday.SetResult{}},
		{"lost: acknowledged, missing", []gameday.Attempt{w("a", gameday.OK), w("b", gameday.OK)}, []string{"a"}, gameday.SetResult{Lost: []string{"b"}}},
		{"recovered: unknown, present", []gameday.Attempt{w("a", gameday.Unknown)}, []string{"a"}, gameday.SetResult{Recovered: []string{"a"}}},
		{"unknown and missing is fine", []gameday.Attempt{w("a", gameday.Unknown)}, nil, gameday.SetResult{}},
		{"unexpected: never attempted", []gameday.Attempt{w("a", gameday.OK)}, []string{"a", "z"}, gameday.SetResult{Unexpected: []string{"z"}}},
		{"unexpected: refused, yet present", []gameday.Attempt{w("a", gameday.Failed)}, []string{"a"}, gameday.SetResult{Unexpected: []string{"a"}}},
		{"reads are not writes", []gameday.Attempt{{ID: "r", Op: gameday.OpRead, Outcome: gameday.OK}}, nil, gameday.SetResult{}},
		{"all three at once",
			[]gameday.Attempt{w("ok", gameday.OK), w("lost", gameday.OK), w("maybe", gameday.Unknown), w("no", gameday.Failed)},
			[]string{"ok", "maybe", "ghost", "ok"},
			gameday.SetResult{Lost: []string{"lost"}, Recovered: []string{"maybe"}, Unexpected: []string{"ghost"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := gameday.CheckSet(c.attempts, c.present)
			if diff := cmp.Diff(c.want, got, cmpEmpty); diff != "" {
				t.Errorf("CheckSet (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpEmpty treats nil and empty slices alike.
var cmpEmpty = cmp.Transformer("empty", func(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
})

func TestExpectation_Check(t *testing.T) {
	rto := 4.5
	f := gameday.Figures{Attempts: 10, OK: 9, Errors: 1, Availability: 90, RPOSeconds: 0.25, RTOSeconds: &rto,
		SetResult: gameday.SetResult{Lost: []string{"x"}}, Faults: []gameday.FaultFigures{{Name: "kill-zone"}}}
	obj := gameday.Objectives{RPO: time.Second, RTO: 3 * time.Second}
	for _, c := range []struct {
		expr string
		pass bool
	}{
		{"rpo <= 1s", true}, {"rpo == 0s", false}, {"rpo <= objective", true},
		{"rto <= 30s", true}, {"rto < 4s", false}, {"rto <= objective", false},
		{"lost-writes == 0", false}, {"lost-writes <= 1", true}, {"unexpected == 0", true},
		{"availability >= 90%", true}, {"availability > 90%", false}, {"errors != 0", true},
	} {
		x, err := gameday.ParseExpectation(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if v := gameday.Check([]gameday.Expectation{x}, f, obj)[0]; v.Passed != c.pass {
			t.Errorf("%s: passed %v (got %s), want %v", c.expr, v.Passed, v.Got, c.pass)
		}
	}
	x, _ := gameday.ParseExpectation("rto <= 30s")
	if v := gameday.Check([]gameday.Expectation{x}, gameday.Figures{Faults: []gameday.FaultFigures{{Name: "kill-zone", Detail: "eu-west/a"}}}, obj)[0]; v.Passed || v.Got != "not measured: no write succeeded after kill-zone eu-west/a" {
		t.Errorf("rto without a write after the fault: %+v", v)
	}
}

// A final read that failed measures no lost write: the acknowledged writes
// are not called lost, and every expectation on them fails as not measured.
func TestAnalyze_Unread(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	raw := gameday.Raw{LoadStart: t0, LoadEnd: t0.Add(10 * time.Second),
		Attempts: []gameday.Attempt{{ID: "w1", Op: gameday.OpWrite, Outcome: gameday.OK, Start: t0, End: t0.Add(time.Millisecond)}},
		Events:   []gameday.Event{{Kind: gameday.StepInject, Name: "kill-zone", Start: t0.Add(time.Second), End: t0.Add(time.Second)}}}
	f := gameday.Analyze(raw)
	if !f.Unread || len(f.Lost) != 0 {
		t.Fatalf("unread %v, lost %v: want unread and none lost", f.Unread, f.Lost)
	}
	for _, expr := range []string{"lost-writes == 0", "rpo <= 1s", "unexpected == 0"} {
		x, _ := gameday.ParseExpectation(expr)
		if v := gameday.Check([]gameday.Expectation{x}, f, gameday.Objectives{})[0]; v.Passed || !strings.HasPrefix(v.Got, "not measured: the database could not be read") {
			t.Errorf("%s: %+v", expr, v)
		}
	}
	if got := f.RPOText(); !strings.HasPrefix(got, "not measured") {
		t.Errorf("RPOText %q", got)
	}
}

func TestAbortRule_Tripped(t *testing.T) {
	r, err := gameday.ParseAbortRule("errors > 50% for 3s")
	if err != nil {
		t.Fatal(err)
	}
	b := func(ok, errs int) gameday.Bucket { return gameday.Bucket{OK: ok, Errors: errs} }
	for _, c := range []struct {
		name    string
		buckets []gameday.Bucket
		now     int
		want    bool
	}{
		{"healthy", []gameday.Bucket{b(10, 0), b(10, 0), b(10, 0)}, 3, false},
		{"three bad seconds", []gameday.Bucket{b(10, 0), b(1, 9), b(0, 10), b(4, 6)}, 4, true},
		{"two bad seconds only", []gameday.Bucket{b(10, 0), b(10, 0), b(1, 9), b(0, 10)}, 4, false},
		{"silence counts as failing", []gameday.Bucket{b(0, 0), b(0, 0), b(0, 0)}, 3, true},
		{"exactly half is not more", []gameday.Bucket{b(5, 5), b(5, 5), b(5, 5)}, 3, false},
		{"too early", []gameday.Bucket{b(0, 10), b(0, 10)}, 2, false},
	} {
		if got := r.Tripped(c.buckets, c.now); got != c.want {
			t.Errorf("%s: tripped %v, want %v", c.name, got, c.want)
		}
	}
}
