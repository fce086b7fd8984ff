package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ll "github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/status"
)

// TestStrategies loses the active region of the other example specs under a
// steady writer (warm-standby is TestWarmStandby's region failure): active-active fails
// over on the witness quorum alone (failover: auto), pilot-light after an
// approval, scaling its services from none, and backup-restore after an
// approval by restoring eu-central's own copy of the backups. In each the
// writes resume in eu-central, the only writes lost are the newest ones,
// and the services answer through the global entry point from eu-central.
// Backup-restore then fails back: eu-west rejoins, the writer returns with
// no acknowledged write lost, and eu-central holds no database again.
func TestStrategies(t *testing.T) {
	for _, c := range []struct {
		example  string
		failback bool
	}{
		{"active-active", false},
		{"pilot-light", false},
		{"backup-restore", true},
	} {
		t.Run(c.example, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			specFile := topotest.Example(t, c.example)
			u := topotest.Start(t, specFile, filepath.Join(testenv.Dir(t), "data"))
			w := u.WaitHealthy(t, 3*time.Minute).Workloads[0]
			if w.Strategy == string(ll.BackupRestore) {
				waitCopied(t, u, "eu-central")
			}
			nodes := map[string]string{}
			for _, n := range allNodes(t, specFile) {
				nodes[name(n)] = u.NodeDSN(n)
			}
			watch := gameday.WatchWriters(ctx, nodes, 20*time.Millisecond)
			defer func() {
				if rep := watch.Stop(); rep.MaxWritable > 1 {
					t.Errorf("two writable primaries at once: %v", rep.Overlaps)
				}
			}()
			writer := u.DSN(w.Writer)
			load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer load.Stop()
			if err := load.WaitAcksAfter(ctx, time.Time{}, 50); err != nil {
				t.Fatal(err)
			}
			if w.Strategy == string(ll.BackupRestore) {
				// What is archived and copied to eu-central survives: make
				// sure the load's table and first writes are (archive_timeout
				// is RPO/2, at most a minute).
				conn := u.Connect(t, ctx, primaryOf(w))
				var seg string
				if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
					t.Fatal(err)
				}
				waitState(t, u, "segment "+seg+" copied to eu-central", 2*time.Minute, func(w status.Workload) bool {
					for _, c := range w.Backups.Copies {
						if c.Region == "eu-central" && c.NewestWAL >= seg {
							return true
						}
					}
					return false
				})
			}
			killed, dead := killRegion(t, u, w, "eu-west")
			if w.Failover == string(ll.FailoverApprove) {
				st := waitState(t, u, "waiting for approval", 2*time.Minute, func(w status.Workload) bool {
					return w.Phase == ll.PhaseWaitingApproval
				})
				if a, ok := load.Result().FirstAckAfter(dead); ok {
					t.Fatalf("a write was acknowledged %.2fs after eu-west was gone, before any approval", a.At.Sub(dead).Seconds())
				}
				lifeline(t, u, "approve", st.Runbook, "--reason", "e2e")
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
			defer wcancel()
			if err := load.WaitAcksAfter(wctx, dead, 30); err != nil {
				t.Fatalf("writes did not resume in eu-central: %v\n%s", err, lifeline(t, u, "runbooks"))
			}
			res := load.Stop()
			st := waitState(t, u, "failed over", 3*time.Minute, func(w status.Workload) bool {
				return w.Active == "eu-central" && w.Phase == ll.PhaseSteady
			})
			p := primaryOf(st)
			lost := checkLostSuffix(t, ctx, u, p, res, dead)
			first, _ := res.FirstAckAfter(dead)
			rbs := regionRunbooks(t, u)
			rb := rbs[len(rbs)-1]
			if rb.Kind != "region-failover" || rb.State != "succeeded" {
				t.Fatalf("runbook %+v", rb)
			}
			if w.Failover == string(ll.FailoverAuto) && (rb.Approval == nil || !rb.Approval.Quorum) {
				t.Errorf("failover: auto went on without the witness quorum's approval: %+v", rb.Approval)
			}
			var order map[string]any
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
				if order, err = postOrder(st, "orders.shop.internal"); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || order["region"] != "eu-central" {
				t.Errorf("POST /orders through the global entry point: %v %v", order, err)
			}
			t.Logf("%s: first write %.2fs after the kill; %d acknowledged writes lost; steps: %s", c.example,
				first.At.Sub(killed).Seconds(), len(lost), stepTimes(rb))
			if !c.failback {
				return
			}

			for _, n := range allNodes(t, specFile) {
				if n.Region == "eu-west" {
					lifeline(t, u, "node", "start", name(n))
				}
			}
			load, err = gameday.StartLoad(ctx, writer, 10*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer load.Stop()
			if err := load.WaitAcksAfter(ctx, time.Time{}, 30); err != nil {
				t.Fatal(err)
			}
			out := lifeline(t, u, "failback")
			if err := load.WaitAcksAfter(ctx, time.Now(), 20); err != nil {
				t.Fatal(err)
			}
			res = load.Stop()
			st = waitState(t, u, "failed back", 3*time.Minute, func(w status.Workload) bool {
				return w.Active == "eu-west" && w.Phase == ll.PhaseSteady && len(w.Databases) == 1
			})
			checkNoneLost(t, ctx, u, primaryOf(st), res)
			for _, n := range st.Nodes {
				if n.Region != "eu-west" {
					t.Errorf("%s still holds a database after the failback: %+v", name(n), st.Databases)
				}
			}
			t.Logf("failback:\n%s", out)
		})
	}
}

// allNodes lists every node of the topology, database or not.
func allNodes(t *testing.T, specFile string) []status.Node {
	t.Helper()
	top, err := spec.Load(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []status.Node
	for _, id := range top.Nodes() {
		out = append(out, status.Node{Region: id.Region, Zone: id.Zone, Address: top.Address(id), Port: top.Workloads[0].Database.Port})
	}
	return out
}

// waitCopied waits until region's copy of the repository holds a base
// backup and is in sync.
func waitCopied(t *testing.T, u *topotest.Up, region string) {
	t.Helper()
	waitState(t, u, "a copy of the backups in "+region, 3*time.Minute, func(w status.Workload) bool {
		for _, c := range w.Backups.Copies {
			if c.Region == region && c.Backup != "" && c.LagSeconds == 0 {
				return true
			}
		}
		return false
	})
}

func stepTimes(rb regionView) string {
	var parts []string
	for _, s := range rb.Steps {
		parts = append(parts, fmt.Sprintf("%s %s", s.Name, s.State))
	}
	return strings.Join(parts, ", ")
}
