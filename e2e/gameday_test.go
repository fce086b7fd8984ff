package e2e_test

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
)

// exampleScenario is the path of an example game day.
func exampleScenario(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "examples", "gamedays", name)
}

// gamedayRun runs `lifeline gameday run SCENARIO --attach DATA` on the
// test's topology, as a user would, and reads the report it wrote.
func gamedayRun(t *testing.T, u *topotest.Up, scenario string) *gameday.Report {
	t.Helper()
	out := filepath.Join(testenv.Dir(t), "report")
	started := time.Now()
	text, err := u.Lifeline("gameday", "run", exampleScenario(scenario), "--attach", u.DataDir, "--out", out)
	t.Logf("lifeline gameday run %s (%.0fs):\n%s", scenario, time.Since(started).Seconds(), text)
	rep, rerr := gameday.ReadReport(filepath.Join(out, gameday.ReportJSON))
	if rerr != nil {
		t.Fatalf("no report (exit: %v): %v", err, rerr)
	}
	if err != nil {
		t.Errorf("the game day did not pass: %v", err)
	}
	for _, e := range rep.TopErrors(5) {
		t.Logf("%d attempts failed from +%.2fs: %s", e.N, e.First, e.Message)
	}
	// Every figure is what report.json's raw events give.
	again, _ := json.Marshal(gameday.Analyze(rep.Raw))
	stored, _ := json.Marshal(rep.Figures)
	if string(again) != string(stored) {
		t.Errorf("report.json's figures differ from those recomputed from its raw events")
	}
	return rep
}

// gamedays runs game days on the warm-standby topology, as a user would
// (gameday run --attach): an accidental DELETE whose rows come back from a
// point-in-time restore; the loss of the primary's zone, which loses no
// acknowledged write and reports as RTO the ledger's own first successful
// write after it; and every other fault, each injected and healed.
func gamedays(t *testing.T, u *topotest.Up) {
	w := u.WaitHealthy(t, time.Minute).Workloads[0]

	t.Run("accidental delete recovered by PITR", func(t *testing.T) {
		rep := gamedayRun(t, u, "accidental-delete.yaml")
		var deleted, restored bool
		for _, e := range rep.Raw.Events {
			deleted = deleted || (e.Name == "delete" && e.Error == "")
			restored = restored || (e.Name == "restore" && e.Error == "")
			t.Logf("%s %s: %s %s", e.Kind, e.Name, e.Detail, e.Error)
		}
		if !deleted || !restored {
			t.Fatalf("delete ran: %v, restore ran: %v", deleted, restored)
		}
		if n := len(rep.Figures.Lost); n != 0 {
			t.Errorf("%d acknowledged orders missing after the restore: %v", n, rep.Figures.Lost)
		}
		// The rows the DELETE took (even ids) are back in the workload.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u.DSN(w.Writer))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var even int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM app_orders.example_orders WHERE id % 2 = 0 AND left(request, length($1)) = $1", rep.ID).Scan(&even); err != nil {
			t.Fatal(err)
		}
		if even == 0 {
			t.Error("no order with an even id: the deleted rows did not come back")
		}
		t.Logf("%d writes acknowledged, %d orders with even ids present after the restore", rep.Figures.OK, even)
	})

	t.Run("zone loss", func(t *testing.T) {
		rep := gamedayRun(t, u, "zone-loss.yaml")
		f := rep.Figures
		if n := len(f.Lost); n != 0 {
			t.Errorf("%d acknowledged writes lost: %v", n, f.Lost)
		}
		if n := len(f.Unexpected); n != 0 {
			t.Errorf("%d unexpected writes: %v", n, f.Unexpected)
		}
		// The RTO is the ledger's own first write acknowledged after the
		// outage began, counted from the kill.
		var kill *gameday.Event
		for i, e := range rep.Raw.Events {
			if e.Kind == gameday.StepInject && e.Name == "kill-zone" {
				kill = &rep.Raw.Events[i]
			}
		}
		if kill == nil || kill.Error != "" {
			t.Fatalf("no kill-zone in the timeline: %+v", rep.Raw.Events)
		}
		// The outage begins when the first write started after the kill
		// fails; the RTO ends with the first write acknowledged after that.
		failed := kill.End
		for _, a := range rep.Raw.Attempts {
			if a.Op == gameday.OpWrite && a.Outcome != gameday.OK && !a.Start.Before(kill.End) && (failed == kill.End || a.End.Before(failed)) {
				failed = a.End
			}
		}
		var first *gameday.Attempt
		for i, a := range rep.Raw.Attempts {
			if a.Op == gameday.OpWrite && a.Outcome == gameday.OK && !a.Start.Before(failed) && (first == nil || a.Start.Before(first.Start)) {
				first = &rep.Raw.Attempts[i]
			}
		}
		if first == nil || f.RTOSeconds == nil {
			t.Fatalf("no write succeeded after the kill (RTO %v)", f.RTOSeconds)
		}
		if want := first.End.Sub(kill.Start).Seconds(); math.Abs(*f.RTOSeconds-want) > 1e-6 {
			t.Errorf("RTO %.6fs, but the ledger's first write after the kill (%s) ended %.6fs after it", *f.RTOSeconds, first.ID, want)
		}
		t.Logf("zone loss of %s: RPO %.3fs (%d lost), RTO %.3fs (first write %s served by %s %s); %d requests, %.1f%% ok, %d recovered",
			kill.Detail, f.RPOSeconds, len(f.Lost), *f.RTOSeconds, first.ID, first.Region, first.Instance, f.Attempts, f.Availability, len(f.Recovered))
	})

	t.Run("every other fault", func(t *testing.T) {
		rep := gamedayRun(t, u, "../../e2e/testdata/gameday-faults.yaml")
		for _, e := range rep.Raw.Events {
			if e.Error != "" {
				t.Errorf("%s %s (line %d): %s", e.Kind, e.Name, e.Line, e.Error)
			}
		}
		if got, want := len(rep.Raw.Events), 12; got != want {
			t.Errorf("%d steps ran, want %d (6 faults, 6 heals)", got, want)
		}
		if n := len(rep.Figures.Lost); n != 0 {
			t.Errorf("%d acknowledged writes lost: %v", n, rep.Figures.Lost)
		}
		t.Logf("%d requests, %.1f%% ok", rep.Figures.Attempts, rep.Figures.Availability)
	})

	hist, err := u.Lifeline("gameday", "history")
	if err != nil {
		t.Errorf("gameday history: %v\n%s", err, hist)
	}
	t.Logf("lifeline gameday history:\n%s", hist)
}
