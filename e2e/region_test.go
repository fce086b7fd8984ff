package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ll "github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

// regionView is a runbook with what a region failover shows.
type regionView struct {
	runbookView
	Params   map[string]string `json:"params"`
	Evidence *ll.Evidence      `json:"evidence"`
	Approval *ll.Approval      `json:"approval"`
}

func regionRunbooks(t *testing.T, u *topotest.Up) []regionView {
	t.Helper()
	var rbs []regionView
	if err := json.Unmarshal([]byte(lifeline(t, u, "runbooks", "--json")), &rbs); err != nil {
		t.Fatal(err)
	}
	return rbs
}

// waitState waits until the workload's state satisfies ok.
func waitState(t *testing.T, u *topotest.Up, what string, timeout time.Duration, ok func(status.Workload) bool) status.Workload {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep, err := u.TryStatus()
		if err == nil && ok(rep.Workloads[0]) {
			return rep.Workloads[0]
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s: not after %v: %v", what, timeout, err)
			}
			t.Fatalf("%s: not after %v: %+v", what, timeout, rep.Workloads[0])
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// killRegion kills every node of a region at once (SIGKILL to each agent's
// process group, in parallel). It returns when the kills began and when
// every node was gone.
func killRegion(t *testing.T, u *topotest.Up, w status.Workload, region string) (at, dead time.Time) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(w.Nodes))
	at = time.Now()
	for _, n := range w.Nodes {
		if n.Region != region {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := u.Lifeline("node", "kill", name(n)); err != nil {
				errs <- fmt.Errorf("kill %s: %v: %s", name(n), err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return at, time.Now()
}

// checkLostSuffix asserts what asynchronous replication allows: of the
// writes acknowledged before the fault, the ones lost are only the newest
// (a single writer's writes commit in order, so a hole, a lost write older
// than one that survived, is a loss that replication lag cannot explain).
// It returns the lost writes.
func checkLostSuffix(t *testing.T, ctx context.Context, u *topotest.Up, node status.Node, res gameday.Result, fault time.Time) []gameday.Ack {
	t.Helper()
	missing, err := gameday.Missing(ctx, u.NodeDSN(node), res.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) == 0 {
		return nil
	}
	lost := map[int64]bool{}
	for _, m := range missing {
		lost[m.ID] = true
	}
	for _, a := range res.Acked {
		if !lost[a.ID] && a.ID > missing[0].ID && a.At.Before(fault) {
			t.Errorf("write %d (acknowledged %s) was lost while the later write %d survived: not a replication lag",
				missing[0].ID, missing[0].At.Format("15:04:05.000"), a.ID)
			break
		}
	}
	return missing
}

// postOrder writes one order through the workload's global HTTP entry point.
func postOrder(w status.Workload, host string) (map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+w.HTTP+"/orders", nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// regionFailure runs the region story on the warm-standby example,
// under a steady writer through the writer endpoint: a planned switchover
// to the other region and back (no acknowledged write lost, the old
// primary follows without a rewind), refusals, the loss of the whole
// active region (the failover waits for approval; after it, writes resume
// in the other region and the only writes lost are the newest ones), and
// the failback once the region returns (no write lost, the old primary
// rejoins by pg_rewind). Never two writable primaries.
func regionFailure(t *testing.T, u *topotest.Up) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	w := u.WaitHealthy(t, 2*time.Minute).Workloads[0]
	nodes := map[string]string{}
	for _, n := range w.Nodes {
		nodes[name(n)] = u.NodeDSN(n)
	}
	if len(nodes) != 5 {
		t.Fatalf("%d database nodes, want 5 (both regions): %+v", len(nodes), w.Nodes)
	}
	watch := gameday.WatchWriters(ctx, nodes, 20*time.Millisecond)
	defer func() {
		rep := watch.Stop()
		if rep.MaxWritable > 1 {
			t.Errorf("two writable primaries at once (%d rounds sampled): %v", rep.Rounds, rep.Overlaps)
		}
	}()
	writer := u.DSN(w.Writer)

	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"failover", "--to", "eu-west"}, "is the active region already"},
			{[]string{"failover", "--to", "mars"}, `region "mars": not found`},
			{[]string{"switchover", "--to", "eu-central/z"}, `zone "z": not found`},
			{[]string{"switchover", "--to", "eu-west/a"}, "is the primary already"},
			{[]string{"failback"}, "is the active region already"},
			{[]string{"approve", "no-such-runbook"}, "not found"},
		} {
			out, err := u.Lifeline(c.args...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("lifeline %s: err %v, output %q; want a refusal saying %q", strings.Join(c.args, " "), err, out, c.want)
			}
		}
		out := lifeline(t, u, "failover", "--to", "eu-central", "--plan")
		for _, step := range []string{"detect", "await-approval", "fence-region", "pick", "promote", "scale", "reroute", "verify"} {
			if !strings.Contains(out, step) {
				t.Errorf("failover --plan lacks %s:\n%s", step, out)
			}
		}
	})

	t.Run("switchover to the other region and back loses nothing", func(t *testing.T) {
		// Back to eu-west/a, with the controller leader killed in the
		// middle: another finishes the same runbook.
		for _, to := range []string{"eu-central", "eu-west/a"} {
			old := primaryOf(u.Status(t).Workloads[0])
			var leader string
			var victim status.Node
			if to == "eu-west/a" {
				leader = safeLeader(t, u)
				victim = nodeNamed(t, u, leader)
			}
			load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer load.Stop() // a failed check must not leave it writing
			if err := load.WaitAcksAfter(ctx, time.Time{}, 30); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var out string
			if leader == "" {
				out = lifeline(t, u, "switchover", "--to", to)
			} else {
				before := runbookIDs(t, u)
				lifeline(t, u, "switchover", "--to", to, "--no-wait")
				rb := waitRunbook(t, u, before, func(r runbookView) bool { return r.current() != "wait-lag-zero (pending)" }, time.Minute)
				if err := syscall.Kill(victim.AgentPID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				t.Logf("killed the controller leader %s with the switchover at %s", leader, rb.current())
				rb = waitRunbook(t, u, before, func(r runbookView) bool { return r.State != "running" }, 2*time.Minute)
				if rb.State != "succeeded" || rb.Leader == leader {
					t.Fatalf("switchover %s: state %s, last moved on by %s; want succeeded by another controller than %s (%s)", rb.ID, rb.State, rb.Leader, leader, rb.Error)
				}
				out = fmt.Sprintf("runbook %s finished by %s", rb.ID, rb.Leader)
				lifeline(t, u, "node", "start", leader)
			}
			done := time.Now()
			if err := load.WaitAcksAfter(ctx, done, 20); err != nil {
				t.Fatalf("writes did not resume after the switchover: %v\n%s", err, out)
			}
			res := load.Stop()
			st := u.Status(t).Workloads[0]
			p := primaryOf(st)
			if region, _, _ := strings.Cut(to, "/"); p.Region != region || st.Active != region || st.Phase != ll.PhaseSteady {
				t.Fatalf("after the switchover to %s: active %s, primary %s, phase %s\n%s", to, st.Active, name(p), st.Phase, out)
			}
			checkNoneLost(t, ctx, u, p, res)
			n := waitNode(t, u, name(old), "standby", 2*time.Minute)
			checkNoneLost(t, ctx, u, n, res)
			if strings.Contains(logOf(t, u, name(old)), "pg_rewind") || strings.Contains(logOf(t, u, name(old)), "reseeding") {
				t.Errorf("%s needed a rewind or a copy after a clean demotion", name(old))
			}
			t.Logf("switchover %s -> %s in %.2fs; writes paused at most %.2fs; %d acknowledged, none lost\n%s",
				name(old), name(p), done.Sub(start).Seconds(), res.MaxPause(start, done).Seconds(), len(res.Acked), out)
		}
		// Its region's sync standby again.
		waitState(t, u, "every node healthy", 2*time.Minute, func(w status.Workload) bool {
			for _, n := range w.Nodes {
				if !n.Healthy {
					return false
				}
			}
			return true
		})
	})

	var failedOver bool
	t.Run("region loss waits for approval, then eu-central takes over", func(t *testing.T) {
		// The controller leader in eu-central (a node whose loss costs
		// neither etcd nor the best standby) dies while the runbook waits
		// for approval: the next leader takes the same runbook on.
		leader := safeLeader(t, u)
		victim := nodeNamed(t, u, leader)
		before := runbookIDs(t, u)
		old := primaryOf(u.Status(t).Workloads[0])
		load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer load.Stop() // a failed check must not leave it writing
		if err := load.WaitAcksAfter(ctx, time.Time{}, 50); err != nil {
			t.Fatal(err)
		}
		killed, dead := killRegion(t, u, u.Status(t).Workloads[0], "eu-west")
		st := waitState(t, u, "waiting for approval", time.Minute, func(w status.Workload) bool {
			return w.Phase == ll.PhaseWaitingApproval
		})
		waiting := time.Now()
		var rb regionView
		for _, r := range regionRunbooks(t, u) {
			if !before[r.ID] {
				rb = r
			}
		}
		if rb.Kind != "region-failover" || rb.ID != st.Runbook || rb.Evidence == nil {
			t.Fatalf("runbook = %+v, state %+v", rb, st)
		}
		best, ok := rb.Evidence.Best()
		if !ok || !strings.HasPrefix(best.Node, "eu-central/") {
			t.Fatalf("evidence names no eu-central standby: %+v", rb.Evidence)
		}
		if err := syscall.Kill(victim.AgentPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the controller leader %s while the failover waits for approval", leader)
		alarms := lifeline(t, u, "alarms")
		if !strings.Contains(alarms, "region-down") || !strings.Contains(alarms, "eu-west") {
			t.Errorf("alarms:\n%s", alarms)
		}
		// Nothing is acknowledged while the runbook waits for a human.
		time.Sleep(2 * time.Second)
		if a, ok := load.Result().FirstAckAfter(dead); ok {
			t.Fatalf("a write was acknowledged at %s, %.2fs after every node of the region was dead, before any approval",
				a.At.Format("15:04:05.000"), a.At.Sub(dead).Seconds())
		}
		approved := time.Now()
		lifeline(t, u, "approve", rb.ID, "--reason", "e2e: eu-west is gone")
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		if err := load.WaitAcksAfter(wctx, approved, 50); err != nil {
			t.Fatalf("writes did not resume after the approval: %v", err)
		}
		res := load.Stop()
		st = waitState(t, u, "the failover done", 2*time.Minute, func(w status.Workload) bool {
			return w.Phase == ll.PhaseSteady && w.Active == "eu-central"
		})
		if r, _ := newRunbook(t, u, before); r.State != "succeeded" || r.Leader == leader {
			t.Errorf("region failover %s: state %s, finished by %s; want succeeded by another controller than %s", r.ID, r.State, r.Leader, leader)
		}
		lifeline(t, u, "node", "start", leader)
		p := primaryOf(st)
		if p.Region != "eu-central" || len(st.Fenced) != 1 || st.Fenced[0] != "eu-west" {
			t.Fatalf("after the failover: primary %s, fenced %v", name(p), st.Fenced)
		}
		lost := checkLostSuffix(t, ctx, u, p, res, dead)
		first, _ := res.FirstAckAfter(approved)
		span := time.Duration(0)
		if len(lost) > 0 {
			span = killed.Sub(lost[0].At)
		}
		t.Logf("region eu-west lost (primary %s): waiting for approval %.2fs after the kill; approved %.2fs later; "+
			"first write %.2fs after the approval (%.2fs after the kill); %d acknowledged writes lost, spanning %.3fs before the kill; "+
			"evidence: best standby %s at %s, estimated loss %d bytes",
			name(old), waiting.Sub(killed).Seconds(), approved.Sub(waiting).Seconds(), first.At.Sub(approved).Seconds(), first.At.Sub(killed).Seconds(),
			len(lost), span.Seconds(), best.Node, best.ReceiveLSN, rb.Evidence.EstimatedLossBytes)
		routing := lifeline(t, u, "routing", "show")
		if !strings.Contains(routing, "eu-west") || !regexpOff(routing, "eu-west") {
			t.Errorf("eu-west is not switched off:\n%s", routing)
		}
		// The example app takes orders through the global entry point,
		// served from eu-central.
		var order map[string]any
		deadline := time.Now().Add(time.Minute)
		for {
			order, err = postOrder(st, "orders.shop.internal")
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil || order["region"] != "eu-central" {
			t.Errorf("POST /orders through the global entry point: %v %v", order, err)
		}
		failedOver = true
	})

	t.Run("the region returns and fails back with no write lost", func(t *testing.T) {
		if !failedOver {
			t.Skip("the region did not fail over")
		}
		for _, n := range u.Status(t).Workloads[0].Nodes {
			if n.Region == "eu-west" {
				lifeline(t, u, "node", "start", name(n))
			}
		}
		load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer load.Stop() // a failed check must not leave it writing
		if err := load.WaitAcksAfter(ctx, time.Time{}, 30); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out := lifeline(t, u, "failback")
		done := time.Now()
		if err := load.WaitAcksAfter(ctx, done, 20); err != nil {
			t.Fatalf("writes did not resume after the failback: %v\n%s", err, out)
		}
		res := load.Stop()
		st := waitState(t, u, "back in eu-west", time.Minute, func(w status.Workload) bool {
			return w.Active == "eu-west" && w.Phase == ll.PhaseSteady && len(w.Fenced) == 0
		})
		p := primaryOf(st)
		checkNoneLost(t, ctx, u, p, res)
		var fb regionView
		for _, r := range regionRunbooks(t, u) {
			if r.Kind == "failback" {
				fb = r
			}
		}
		copied, _ := strconv.ParseInt(fb.Params["rejoin_bytes_copied"], 10, 64)
		size, _ := strconv.ParseInt(fb.Params["rejoin_data_bytes"], 10, 64)
		for _, n := range st.Nodes {
			if n.Region == "eu-west" && strings.Contains(logOf(t, u, name(n)), "reseeding with a base backup") {
				t.Errorf("%s was reseeded: the failback should rewind", name(n))
			}
		}
		t.Logf("failback to %s in %.1fs; writes paused at most %.2fs; rejoin copied %d of %d bytes; diverged WAL saved at %q\n%s",
			name(p), done.Sub(start).Seconds(), res.MaxPause(start, done).Seconds(), copied, size, fb.Params["diverged_wal"], out)
	})
}

// waitRunbook waits for the runbook begun after before to satisfy ok.
func waitRunbook(t *testing.T, u *topotest.Up, before map[string]bool, ok func(runbookView) bool, timeout time.Duration) runbookView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if r, found := newRunbook(t, u, before); found && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			r, _ := newRunbook(t, u, before)
			t.Fatalf("runbook not as expected after %v: %+v", timeout, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// regexpOff reports whether `routing show` lists region as off.
func regexpOff(out, region string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == region && i+1 < len(f) && strings.EqualFold(f[i+1], "off") {
				return true
			}
		}
	}
	return false
}
