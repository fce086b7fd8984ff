package plan_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/chromium"
	"github.com/lifeline-dr/lifeline/plan"
)

// document builds the continuity plan of an example with contacts, a game
// day and a restore drill.
func document(t *testing.T, example string) (*lifeline.Topology, *plan.Document) {
	t.Helper()
	top := load(t, example, "    routing:", `    contacts:
      - {name: Ana <Souza>, role: approver, reach: "+33 6 12 34 56 78"}
      - {name: Bo, role: dba, reach: "#db-oncall"}
    routing:`)
	rto := 7.3
	facts := plan.Facts{
		History: []gameday.HistoryEntry{{ID: "g1", Scenario: "region-loss", Strategy: example, Workload: "orders", Faults: []string{"kill-region"},
			Started: now.Add(-24 * time.Hour), Passed: true, RPOSeconds: 0.4, RTOSeconds: &rto}},
		Verify:    &lifeline.VerifyRecord{At: now, Region: "eu-west", Backup: "20260310T100000Z", Passed: true, RestoreSeconds: 3.1, TotalSeconds: 5, Tables: 2, Rows: 99},
		Readiness: []lifeline.Readiness{{Workload: "orders", Region: "eu-central", Ready: false, Checks: []lifeline.ReadinessCheck{{Name: "lag", Detail: "2s behind"}}}},
	}
	get := func(*lifeline.Workload) plan.Facts { return facts }
	d, err := plan.NewDocument(top, plan.Build(top, get, now), get)
	if err != nil {
		t.Fatal(err)
	}
	return top, d
}

// steps lists every runbook step of the workload's strategy as the
// document must show it: "name: what it does".
func steps(t *testing.T, w *lifeline.Workload) []string {
	t.Helper()
	var out []string
	for _, kind := range controller.Kinds {
		names, _, err := controller.Plan(kind, w.Strategy)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out = append(out, n+": "+controller.StepDoc[n])
		}
	}
	return out
}

func TestDocument_Markdown(t *testing.T) {
	for _, ex := range []string{"backup-restore", "warm-standby"} {
		top, d := document(t, ex)
		md := d.Markdown()
		plain := strings.ReplaceAll(md, "**", "")
		for _, s := range steps(t, &top.Workloads[0]) {
			if !strings.Contains(plain, s) {
				t.Errorf("%s: the document lacks the step %q", ex, s)
			}
		}
		for _, want := range []string{"#### region-failover", "Approvers: Ana <Souza> (+33 6 12 34 56 78)", "| Bo | dba | #db-oncall |",
			"| region-loss | " + ex + " | passed | 0 | 400ms | 7.3s |", "Passed at 2026-03-10 12:00 UTC: backup 20260310T100000Z",
			"eu-central: NOT READY (lag: 2s behind)", "Recommended: "} {
			if !strings.Contains(md, want) {
				t.Errorf("%s: the document lacks %q:\n%s", ex, want, md)
			}
		}
	}
}

// TestDocument_HTMLInChromium: the continuity plan's HTML loads in
// headless Chromium with no console error and no request leaving the
// file, and shows every runbook step of the workload's strategy. Skipped
// only where Chromium is not installed (apt-get install -y chromium).
func TestDocument_HTMLInChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install -y chromium): the continuity plan's HTML is not checked in a browser")
	}
	top, d := document(t, "pilot-light")
	html, err := d.HTML()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "plan.html")
	if err := os.WriteFile(page, html, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(chromium.Start(t, browser, filepath.Join(dir, "profile"), 1280, 900), 90*time.Second)
	defer cancel()
	var problems chromium.Problems
	problems.Watch(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+page), chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("ol.steps li")).map(li => li.innerText)`))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	external, err := chromedp.Run(ctx, chromedp.Evaluate[int](`performance.getEntriesByType("resource").length`))
	if err != nil {
		t.Fatal(err)
	}
	problems.Check(t)
	if external != 0 {
		t.Errorf("the page loaded %d resources; it must be self-contained", external)
	}
	want := steps(t, &top.Workloads[0])
	if len(shown) != len(want) {
		t.Errorf("%d steps shown, want %d:\n%s", len(shown), len(want), strings.Join(shown, "\n"))
	}
	for _, s := range want {
		s = strings.ReplaceAll(s, "`", "") // shown as code elements
		found := false
		for _, li := range shown {
			found = found || strings.TrimSpace(li) == s
		}
		if !found {
			t.Errorf("step %q not shown", s)
		}
	}
	for _, s := range []string{"Ana <Souza>", "Who approves a region failover", "Last restore drill", "pilot-light (spec)"} {
		if !strings.Contains(text, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
}
