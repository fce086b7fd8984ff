package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	ll "github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/plan"
	"github.com/lifeline-dr/lifeline/readiness"
	"github.com/lifeline-dr/lifeline/status"
)

// readinessSpec is one small topology with a streaming workload (failover:
// auto, so the witness is checked too) and a backup-restore one.
const readinessSpec = `name: shop
control: {etcd: embedded}
regions:
  - name: eu-west
    zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]
  - name: eu-central
    zones: [{name: a, address: 127.0.2.1}]
witness: {address: 127.0.3.1}
links: {cross-region: {latency: 5ms}}
workloads:
  - name: orders
    strategy: warm-standby
    objectives: {rpo: 1s, rto: 30s}
    active: eu-west
    failover: auto
    services:
      - {name: api, command: [lifeline, example-app, --listen, "{addr}"], health: /healthz, replicas: {active: 2, standby: 1}}
  - name: ledger
    strategy: backup-restore
    objectives: {rpo: 5m, rto: 30m}
    active: eu-west
    database: {port: 5442}
    backups: {full: 6h}
`

func workloadOf(rep *status.Report, name string) (status.Workload, bool) {
	for _, w := range rep.Workloads {
		if w.Name == name {
			return w, true
		}
	}
	return status.Workload{}, false
}

func readinessOf(w status.Workload, region string) (ll.Readiness, bool) {
	for _, r := range w.Readiness {
		if r.Region == region {
			return r, true
		}
	}
	return ll.Readiness{}, false
}

func failingNames(r ll.Readiness) []string {
	var out []string
	for _, c := range r.Failing() {
		out = append(out, c.Name)
	}
	return out
}

// waitReadiness waits until `lifeline status --json` says eu-central is
// READY for workload, or NOT READY with check among the failing ones.
func waitReadiness(t *testing.T, u *topotest.Up, workload string, ready bool, check string, timeout time.Duration) ll.Readiness {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last ll.Readiness
	for {
		rep, err := u.TryStatus()
		if err == nil {
			if w, ok := workloadOf(rep, workload); ok {
				if r, ok := readinessOf(w, "eu-central"); ok {
					last = r
					if r.Ready == ready && (ready || slices.Contains(failingNames(r), check)) {
						return r
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: eu-central not %s after %v (err %v); last: %+v", workload, map[bool]string{true: "READY", false: "NOT READY on " + check}[ready], timeout, err, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestReadiness runs one topology and, for each readiness check, produces
// its cause and removes it: eu-central turns NOT READY with that check
// failing, then READY again. A failover to a NOT READY region is refused
// unless forced; every change raises an alarm.
func TestReadiness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	specFile := topotest.Spec(t, readinessSpec)
	u := topotest.Start(t, specFile, filepath.Join(testenv.Dir(t), "data"))
	rep := u.WaitHealthy(t, 3*time.Minute)
	orders, _ := workloadOf(rep, "orders")
	var standby status.Node
	for _, n := range orders.Nodes {
		if n.Region == "eu-central" {
			standby = n
		}
	}
	waitReadiness(t, u, "orders", true, "", 2*time.Minute)
	waitReadiness(t, u, "ledger", true, "", 3*time.Minute)

	t.Run("standby stopped", func(t *testing.T) {
		lifeline(t, u, "node", "stop", "eu-central/a")
		r := waitReadiness(t, u, "orders", false, readiness.CheckStandby, time.Minute)
		t.Logf("NOT READY: %v", r.Failing())
		lifeline(t, u, "node", "start", "eu-central/a")
		waitReadiness(t, u, "orders", true, "", 3*time.Minute)
	})

	t.Run("lag beyond the rpo", func(t *testing.T) {
		// Replay paused on the standby while writes go on: it still
		// streams, but what it would serve falls behind.
		conn := u.Connect(t, ctx, standby)
		if _, err := conn.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
			t.Fatal(err)
		}
		load, err := gameday.StartLoad(ctx, u.DSN(orders.Writer), 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer load.Stop()
		r := waitReadiness(t, u, "orders", false, readiness.CheckLag, time.Minute)
		t.Logf("NOT READY: %v", r.Failing())
		if _, err := conn.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
			t.Fatal(err)
		}
		waitReadiness(t, u, "orders", true, "", time.Minute)
	})

	t.Run("routing off", func(t *testing.T) {
		lifeline(t, u, "routing", "set", "eu-central=off", "--workload", "orders", "--reason", "maintenance")
		waitReadiness(t, u, "orders", false, readiness.CheckRouting, time.Minute)
		table := lifeline(t, u, "status")
		if !strings.Contains(table, "standby eu-central: NOT READY") || !strings.Contains(table, "routing: eu-central is switched off in routing") {
			t.Errorf("status does not show eu-central NOT READY with its failing check:\n%s", table)
		}
		// A failover there is refused (exit status 3), naming the check.
		out, err := u.Lifeline("failover", "--workload", "orders", "--to", "eu-central", "--no-wait")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out, "eu-central is NOT READY: routing") {
			t.Errorf("failover to a NOT READY region: %v\n%s", err, out)
		}
		lifeline(t, u, "routing", "set", "eu-central=on", "--workload", "orders")
		waitReadiness(t, u, "orders", true, "", time.Minute)
	})

	t.Run("port taken", func(t *testing.T) {
		// The second service instance a failover starts in eu-central.
		addr := net.JoinHostPort(standby.Address, "8081")
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := waitReadiness(t, u, "orders", false, readiness.CheckPorts, time.Minute)
		t.Logf("NOT READY: %v", r.Failing())
		l.Close()
		waitReadiness(t, u, "orders", true, "", time.Minute)
	})

	t.Run("newest backup deleted", func(t *testing.T) {
		// Deleted in both regions' repositories, so the copy cannot
		// bring it back; a new backup removes the cause.
		var newest string
		for _, region := range []string{"eu-west", "eu-central"} {
			dir := filepath.Join(u.DataDir, "backups", region, "ledger", "backups")
			ids, err := os.ReadDir(dir)
			if err != nil || len(ids) == 0 {
				t.Fatalf("%s's backups: %v %v", region, ids, err)
			}
			names := make([]string, len(ids))
			for i, e := range ids {
				names[i] = e.Name()
			}
			sort.Strings(names)
			newest = names[len(names)-1]
			if err := os.RemoveAll(filepath.Join(dir, newest)); err != nil {
				t.Fatal(err)
			}
		}
		r := waitReadiness(t, u, "ledger", false, readiness.CheckBackups, time.Minute)
		t.Logf("NOT READY after deleting %s: %v", newest, r.Failing())
		lifeline(t, u, "backup", "now", "--workload", "ledger")
		waitReadiness(t, u, "ledger", true, "", 2*time.Minute)
	})

	// The plan of the running topology reads its restore drill and
	// readiness; its continuity plan is written as HTML.
	var p plan.Plan
	if err := json.Unmarshal([]byte(lifeline(t, u, "plan", "--json")), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Workloads) != 2 || p.Workloads[0].Recommended == "" {
		t.Errorf("plan of the running topology: %+v", p)
	}
	page := filepath.Join(testenv.Dir(t), "plan.html")
	lifeline(t, u, "plan", "--document", "--out", page)
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "Last restore drill") || !strings.Contains(string(b), "eu-central: READY") {
		t.Errorf("continuity plan %s: %v\n%.2000s", page, err, b)
	}

	// Every change raised an alarm: NOT READY ones (cleared since) and
	// READY again ones.
	var alarms []ll.Alarm
	if err := json.Unmarshal([]byte(lifeline(t, u, "alarms", "--json")), &alarms); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, a := range alarms {
		counts[a.Workload+" "+a.Kind]++
		if a.Kind == "not-ready" && a.Cleared.IsZero() {
			t.Errorf("alarm %s still active: %s", a.ID, a.Summary)
		}
	}
	if counts["orders not-ready"] < 4 || counts["orders ready"] < 4 || counts["ledger not-ready"] < 1 || counts["ledger ready"] < 1 {
		t.Errorf("alarms by kind: %v; want one per change", counts)
	}
}
