package metrics_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/promtest"
	"github.com/lifeline-dr/lifeline/metrics"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/store"
	"github.com/lifeline-dr/lifeline/telemetry"
)

func TestArchiveLag(t *testing.T) {
	for _, c := range []struct {
		current, last string
		want          int64
		ok            bool
	}{
		{"0/3000028", "000000010000000000000002", 0x28, true},
		{"0/2FFFFFF", "000000010000000000000002", 0, true},
		{"1/0", "0000000100000000000000FF", 0, true},
		{"1/100", "0000000100000000000000FE", 16<<20 + 0x100, true},
		{"0/1000000", "", 0x1000000, true},
		{"0/3000000", "00000002.history", 0, false},
		{"nonsense", "000000010000000000000002", 0, false},
	} {
		got, ok := metrics.ArchiveLag(c.current, c.last)
		if got != c.want || ok != c.ok {
			t.Errorf("ArchiveLag(%q, %q) = %d, %v; want %d, %v", c.current, c.last, got, ok, c.want, c.ok)
		}
	}
}

type fixed struct{ snap telemetry.Snapshot }

func (f fixed) Snapshot() (telemetry.Snapshot, bool) { return f.snap, true }

// scrape is what a registry of every collector answers, as Prometheus's
// text format.
func scrape(t *testing.T) []byte {
	t.Helper()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	snap := telemetry.Snapshot{
		At: now.Add(-time.Second),
		Status: &status.Report{Name: "shop", Controller: "eu-west/b", Workloads: []status.Workload{{
			Name: "orders", Epoch: 3, Phase: lifeline.PhaseSteady, RPOSeconds: 1, RTOSeconds: 30,
			Nodes: []status.Node{{Region: "eu-west", Zone: "a", Role: "primary", Healthy: true}, {Region: "eu-central", Zone: "a", Role: "standby"}},
			Backups: status.Backups{Last: &lifeline.BackupRecord{At: now.Add(-time.Hour), Seconds: 3.5, Bytes: 1 << 30},
				Verify: &lifeline.VerifyRecord{At: now.Add(-2 * time.Hour), Passed: true, TotalSeconds: 9},
				Copies: []status.Copy{{CopyRecord: lifeline.CopyRecord{Region: "eu-central", At: now, InSyncAt: now.Add(-5 * time.Second), NewestWAL: "a", SourceWAL: "b"}}}},
		}}},
		Lag:            []telemetry.Lag{{Workload: "orders", Node: "eu-central/a", Bytes: 4096, Seconds: 0.4, RPOSeconds: 1, Connected: true}},
		Routing:        []router.RegionControl{{Workload: "orders", Region: "eu-west", On: true}},
		Alarms:         []lifeline.Alarm{{Workload: "orders", Kind: "region-down", Raised: now}},
		Health:         []store.HealthResult{{Target: "orders/db/eu-west/a", Vantage: "witness", Up: true}},
		RunbookCounts:  []telemetry.Count{{Workload: "orders", Kind: "switchover", State: "succeeded", N: 2}},
		FailoverCounts: []telemetry.Count{{Workload: "orders", Kind: "switchover", N: 2}},
		Steps:          []telemetry.StepTiming{{Kind: "switchover", Step: "promote", State: "succeeded", Seconds: 0.3}, {Kind: "switchover", Step: "promote", State: "succeeded", Seconds: 1.2}},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&metrics.Cluster{Src: fixed{snap}, Now: func() time.Time { return now }})
	r := metrics.NewRouter(reg)
	r.HTTPRequest("global", 200, 3*time.Millisecond)
	r.HTTPRequest("orders/eu-west", 503, time.Millisecond)
	r.DNSAnswer("eu-west")
	r.DNSAnswer("nxdomain")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCluster_Series(t *testing.T) {
	text := string(scrape(t))
	for _, want := range []string{
		`lifeline_replication_lag_seconds{node="eu-central/a",workload="orders"} 0.4`,
		`lifeline_replication_lag_bytes{node="eu-central/a",workload="orders"} 4096`,
		`lifeline_rpo_budget_used_ratio{node="eu-central/a",workload="orders"} 0.4`,
		`lifeline_backup_age_seconds{workload="orders"} 3600`,
		`lifeline_backup_copy_lag_seconds{region="eu-central",workload="orders"} 5`,
		`lifeline_failovers_total{kind="switchover",workload="orders"} 2`,
		`lifeline_runbook_step_duration_seconds_count{kind="switchover",step="promote"} 2`,
		`lifeline_runbook_step_duration_seconds_bucket{kind="switchover",step="promote",le="0.5"} 1`,
		`lifeline_health_check_up{target="orders/db/eu-west/a",vantage="witness"} 1`,
		`lifeline_alarms_active{kind="region-down",workload="orders"} 1`,
		`lifeline_router_http_errors_total{code="503",door="orders/eu-west"} 1`,
		`lifeline_router_dns_queries_total{answer="eu-west"} 1`,
		`lifeline_controller_leader{node="eu-west/b"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}

// TestCluster_Promtool: the exposition passes promtool's lint (names,
// units, help).
func TestCluster_Promtool(t *testing.T) {
	promtest.Check(t, scrape(t))
}

// TestGrafanaDashboard_UsesExportedNames: every lifeline_ series the
// dashboard in deploy/ queries is one the collectors export.
func TestGrafanaDashboard_UsesExportedNames(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{
		// The API server's own (api.New registers them).
		"lifeline_api_requests_total": true, "lifeline_api_request_duration_seconds": true,
	}
	descs := make(chan *prometheus.Desc, 100)
	(&metrics.Cluster{}).Describe(descs)
	(&metrics.Archive{}).Describe(descs)
	close(descs)
	for d := range descs {
		exported[regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]] = true
	}
	// The router's, registered by NewRouter (the scrape test checks them).
	for _, name := range []string{"lifeline_router_http_requests_total", "lifeline_router_http_errors_total", "lifeline_router_http_request_duration_seconds", "lifeline_router_dns_queries_total"} {
		exported[name] = true
	}
	used := regexp.MustCompile(`lifeline_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) < 20 {
		t.Fatalf("the dashboard queries %d lifeline_ series", len(used))
	}
	for _, name := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !exported[base] {
			t.Errorf("the Grafana dashboard queries %s, which nothing exports", name)
		}
	}
}
