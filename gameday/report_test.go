package gameday_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/gameday"
)

// synthetic is a 30-second run: a zone is lost at +10s, writes fail until
// +14.2s, one acknowledged write (w0098) is missing afterwards, one write
// of unknown outcome (w0105) is present.
func synthetic() gameday.Raw {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	raw := gameday.Raw{LoadStart: t0, LoadEnd: t0.Add(30 * time.Second), PresentRead: t0.Add(31 * time.Second)}
	fault := t0.Add(10 * time.Second)
	for i := 0; i < 300; i++ {
		start := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		a := gameday.Attempt{ID: fmt.Sprintf("w%04d", i), Op: gameday.OpWrite, Start: start, End: start.Add(20 * time.Millisecond),
			Outcome: gameday.OK, Instance: "api-1", Region: "eu-west"}
		if i%5 == 4 {
			a.Op, a.ID = gameday.OpRead, ""
		}
		switch {
		case start.After(fault) && start.Before(t0.Add(14200*time.Millisecond)):
			a.Outcome, a.Error, a.End = gameday.Unknown, "503", start.Add(time.Second)
		case !start.Before(t0.Add(14200 * time.Millisecond)):
			a.Region, a.Instance = "eu-west", "api-2"
		}
		raw.Attempts = append(raw.Attempts, a)
		if a.Op == gameday.OpWrite && (a.Outcome == gameday.OK && a.ID != "w0098" || a.ID == "w0105") {
			raw.Present = append(raw.Present, a.ID)
		}
	}
	raw.Events = []gameday.Event{
		{Kind: gameday.StepInject, Name: "kill-zone", Detail: "eu-west/a", Planned: 10 * time.Second, Start: fault, End: fault.Add(50 * time.Millisecond)},
		{Kind: gameday.StepHeal, Name: "kill-zone", Detail: "eu-west/a", Planned: 25 * time.Second, Start: t0.Add(25 * time.Second), End: t0.Add(25100 * time.Millisecond)},
	}
	raw.Runbooks = []gameday.Runbook{{ID: "rb1", Kind: "zone-failover", State: "succeeded", Started: fault.Add(3 * time.Second), Seconds: 1,
		Steps: []gameday.RunbookStep{
			{Name: "fence", State: "succeeded", Started: fault.Add(3 * time.Second), Finished: fault.Add(3200 * time.Millisecond), Seconds: 0.2},
			{Name: "promote", State: "succeeded", Started: fault.Add(3200 * time.Millisecond), Finished: fault.Add(4 * time.Second), Seconds: 0.8},
		}}}
	return raw
}

func TestAnalyze(t *testing.T) {
	f := gameday.Analyze(synthetic())
	if got, want := f.Lost, []string{"w0098"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lost = %v, want %v", got, want)
	}
	if got, want := f.Recovered, []string{"w0105"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recovered = %v, want %v", got, want)
	}
	// The first write started once the fault was in effect and acknowledged
	// started at +14.2s (w0142) and ended 20ms later.
	if f.RTOSeconds == nil || *f.RTOSeconds != 4.22 {
		t.Errorf("rto = %v, want 4.22", f.RTOSeconds)
	}
	if ff := f.Faults[0]; ff.FirstWrite == nil || ff.FirstWrite.ID != "w0142" {
		t.Errorf("first write after the fault = %+v", ff.FirstWrite)
	}
	// w0098 was acknowledged at +9.82s, 0.18s before the fault.
	if f.RPOSeconds != 0.18 {
		t.Errorf("rpo = %v, want 0.08", f.RPOSeconds)
	}
	var names []string
	for _, p := range f.Phases {
		names = append(names, p.Name)
	}
	if got, want := strings.Join(names, ","), "before the fault,outage,after recovery,zone-failover: fence,zone-failover: promote"; got != want {
		t.Errorf("phases = %s, want %s", got, want)
	}
	if got := len(f.Timeline); got != 30 {
		t.Errorf("%d seconds in the timeline, want 30", got)
	}
}

// writeSynthetic writes the synthetic run's report into dir.
func writeSynthetic(t *testing.T, dir string) *gameday.Report {
	t.Helper()
	var expect []gameday.Expectation
	for _, e := range []string{"lost-writes == 0", "rto <= 30s", "rpo <= objective", "unexpected == 0"} {
		x, err := gameday.ParseExpectation(e)
		if err != nil {
			t.Fatal(err)
		}
		expect = append(expect, x)
	}
	r := &gameday.Report{Version: gameday.ReportVersion, ID: "gdtest", Scenario: "zone-loss", File: "zone-loss.yaml", Workload: "orders",
		Plan:       gameday.Plan{Hypothesis: "no write is lost", Participants: []gameday.Participant{{Name: "ada", Role: "commander"}}},
		Objectives: gameday.Objectives{RPO: time.Second, RTO: 30 * time.Second}, Dir: dir}
	if err := r.Finish(synthetic(), expect); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReport_Recompute: the figures in report.json equal those computed
// again from its raw events, and report.md shows them.
func TestReport_Recompute(t *testing.T) {
	dir := t.TempDir()
	r := writeSynthetic(t, dir)
	if r.Passed {
		t.Error("a run with a lost write passed")
	}
	got, err := gameday.ReadReport(filepath.Join(dir, gameday.ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(gameday.Analyze(got.Raw))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := json.Marshal(got.Figures)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(stored) {
		t.Errorf("figures recomputed from raw events differ from report.json's:\n%s\n%s", again, stored)
	}
	md, err := os.ReadFile(filepath.Join(dir, gameday.ReportMD))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAILED", "| RTO | 4.220s |", "0.180s (1 acknowledged writes lost)", "| `lost-writes == 0` | 1 | **FAIL** |", "zone-failover: promote", "w0098"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	t.Logf("RPO %.3fs, RTO %.3fs, %d lost, %d recovered", got.Figures.RPOSeconds, *got.Figures.RTOSeconds, len(got.Figures.Lost), len(got.Figures.Recovered))
}

func TestHistory(t *testing.T) {
	dir := t.TempDir()
	rto := []float64{5, 4}
	for i, v := range rto {
		r := &gameday.Report{ID: fmt.Sprint(i), Scenario: "zone-loss", Dir: dir, Started: time.Now()}
		r.Figures.RTOSeconds = &v
		if err := gameday.AppendHistory(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	h, err := gameday.History(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[1].RTOChange == nil || *h[1].RTOChange != -1 {
		t.Fatalf("history = %+v", h)
	}
	var b strings.Builder
	if err := gameday.PrintHistory(&b, h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "4.00s (-1.00s)") {
		t.Errorf("history table:\n%s", b.String())
	}
}
