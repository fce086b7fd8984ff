package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/internal/chromium"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/telemetry"
	"github.com/lifeline-dr/lifeline/web"
)

// history is an hour of one standby's lag.
func history() []telemetry.Series {
	now := time.Now().Unix() / 10 * 10
	var pts []telemetry.Point
	for i := int64(0); i < 360; i++ {
		pts = append(pts, telemetry.Point{T: now - 3600 + 10*i, Seconds: float64(i%60) / 60})
	}
	return []telemetry.Series{{Workload: "orders", Node: "eu-central/a", RPOSeconds: 1, Points: pts}}
}

// fixture is two regions, five nodes, a region failover waiting for
// approval.
func fixture() (*lifeline.Topology, telemetry.Fixed) {
	t := &lifeline.Topology{Name: "shop", API: lifeline.API{Port: 8443}, Witness: &lifeline.Witness{Address: "127.0.3.1"}, Router: lifeline.Router{Address: "127.0.3.1"},
		Regions: []lifeline.Region{
			{Name: "eu-west", Zones: []lifeline.Zone{{Name: "a", Address: "127.0.1.1"}, {Name: "b", Address: "127.0.1.2"}, {Name: "c", Address: "127.0.1.3"}}},
			{Name: "eu-central", Zones: []lifeline.Zone{{Name: "a", Address: "127.0.2.1"}, {Name: "b", Address: "127.0.2.2"}}}},
		Workloads: []lifeline.Workload{{Name: "orders", Strategy: lifeline.WarmStandby, Active: "eu-west"}}}
	now := time.Now().UTC()
	roles := map[string]string{"eu-west/a": "primary", "eu-west/b": "sync-standby", "eu-west/c": "sync-standby", "eu-central/a": "standby", "eu-central/b": "standby"}
	var nodes []status.Node
	for _, id := range t.Nodes() {
		nodes = append(nodes, status.Node{Region: id.Region, Zone: id.Zone, Role: roles[id.String()], Healthy: id.Region == "eu-central", Address: t.Address(id), Port: 5432, LSN: "0/3000000"})
	}
	rbID := "20261204T120000000-orders-region-failover"
	ev := &lifeline.Evidence{Region: "eu-west", Primary: "eu-west/a", Standbys: []lifeline.Standing{{Node: "eu-central/a", ReceiveLSN: "0/3000000", ReplayLSN: "0/3000000", Reported: now}},
		Seen: []string{"witness since 12:00:01"}, EstimatedLossBytes: -1, EstimatedLossSeconds: -1}
	rb := runbook.Runbook{ID: rbID, Workload: "orders", Kind: "region-failover", State: runbook.Running, Created: now.Add(-10 * time.Second), Updated: now,
		Params: map[string]string{"from_region": "eu-west", "to_region": "eu-central"}, Evidence: ev,
		Steps: []runbook.Step{{Name: "detect", State: runbook.Succeeded, Seconds: 0.1}, {Name: "await-approval", State: runbook.Running}, {Name: "fence-region", State: runbook.Pending}}}
	snap := telemetry.Snapshot{At: now,
		Status: &status.Report{Name: "shop", Controller: "eu-central/a", Workloads: []status.Workload{{
			Name: "orders", Strategy: "warm-standby", Active: "eu-west", Primary: "eu-west/a", Epoch: 1, Phase: lifeline.PhaseWaitingApproval,
			Runbook: rbID, RunbookKind: "region-failover", Failover: "approve", RPOSeconds: 1, RTOSeconds: 30,
			Writer: "127.0.3.1:5432", Reader: "127.0.3.1:5433", HTTP: "127.0.3.1:8000", DNS: "127.0.3.1:5353", Nodes: nodes,
			Backups: status.Backups{Copies: []status.Copy{{CopyRecord: lifeline.CopyRecord{Region: "eu-central", From: "eu-west", NewestWAL: "000000010000000000000003"}, LagSeconds: 1.5}}}}}},
		Lag:      []telemetry.Lag{{Workload: "orders", Node: "eu-central/a", Seconds: 0.2, RPOSeconds: 1, Connected: true}},
		Routing:  []router.RegionControl{{Workload: "orders", Region: "eu-west", On: true}, {Workload: "orders", Region: "eu-central", On: true}},
		Alarms:   []lifeline.Alarm{{ID: "a1", Workload: "orders", Kind: "region-down", Severity: "critical", Summary: "eu-west is down", Raised: now, Evidence: ev}},
		Runbooks: []runbook.Runbook{rb},
	}
	return t, telemetry.Fixed{Snap: snap, Series: history()}
}

// TestDashboard_InChromium loads the dashboard over a fixed cluster (no
// topology: the end-to-end test runs one) as a viewer: no console error,
// every node with its role, the approval panel with its evidence and a
// disabled approve button, a lag chart, and nothing wider than a phone.
func TestDashboard_InChromium(t *testing.T) {
	browser := chromium.Find(t, "the dashboard is not checked in a browser")
	tp, c := fixture()
	srv := api.New(api.Config{T: tp, Node: "eu-central/a", Sampler: c, Assets: web.Handler(), DataDir: t.TempDir(),
		Tokens: api.StaticTokens{"llt_v": {Name: "v", Role: "viewer"}}})
	ts := httptest.NewTLSServer(srv)
	// Closed after the browser (cleanups run last first): Close waits for
	// the event stream, which ends with the browser's connection.
	t.Cleanup(ts.Close)
	ctx := chromium.Start(t, browser, filepath.Join(t.TempDir(), "profile"), 1280, 1200)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var problems chromium.Problems
	problems.Watch(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", "llt_v"), chromedp.Click("#signin"), chromedp.WaitVisible("#map .node"), chromedp.WaitVisible("#approve")); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Snap.Status.Workloads[0].Nodes {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('.node[data-node="%s/%s"] .role')?.textContent || ""`, n.Region, n.Zone)))
		if err != nil || got != n.Role {
			t.Errorf("node %s/%s: role %q (%v), want %q", n.Region, n.Zone, got, err, n.Role)
		}
	}
	for expr, want := range map[string]string{
		`String(document.getElementById("approve").disabled)`:                                 "true",
		`document.getElementById("approve").title.includes("approver")`:                       "true",
		`String(document.querySelectorAll("#evidence tbody tr").length)`:                      "1",
		`String(document.querySelectorAll("#chart svg polyline").length)`:                     "1",
		`document.getElementById("whoami").textContent`:                                       "v (viewer)",
		`String(document.querySelector("#workloads").textContent.includes("127.0.3.1:5432"))`: "true",
	} {
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
			got = fmt.Sprint(v)
			if (err == nil && got == want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 391 {
		t.Errorf("on a 390 px wide screen the page is %d px wide (%v)", w, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.ArtifactDir(), "dashboard-phone.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	problems.Check(t)
	t.Logf("screenshot %s", out)
}
