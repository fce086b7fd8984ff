package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

func primaryOf(w status.Workload) status.Node {
	for _, n := range w.Nodes {
		if n.Role == "primary" {
			return n
		}
	}
	return status.Node{}
}

func name(n status.Node) string { return n.Region + "/" + n.Zone }

// waitPrimary waits until a node other than old is primary and healthy.
func waitPrimary(t *testing.T, u *topotest.Up, old string, timeout time.Duration) (status.Workload, status.Node) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// Through a partition a status call can time out: try again.
		rep, err := u.TryStatus()
		if err == nil {
			w := rep.Workloads[0]
			if p := primaryOf(w); p.Healthy && name(p) != old && w.LeaseHolder == name(p) {
				return w, p
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("no new primary after %v: %v", timeout, err)
			}
			t.Fatalf("no new primary after %v: %+v", timeout, rep.Workloads[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitNode waits until a node reports healthy in the given role. A status
// call that fails (just after a heal, a request can reach a member that has
// not caught up with the others yet) is tried again until the timeout.
func waitNode(t *testing.T, u *topotest.Up, node, role string, timeout time.Duration) status.Node {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep, err := u.TryStatus()
		if err == nil {
			for _, n := range rep.Workloads[0].Nodes {
				if name(n) == node && n.Healthy && n.Role == role {
					return n
				}
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("%s not a healthy %s after %v: %v\nits agent's log ends:\n%s", node, role, timeout, err, tailOf(logOf(t, u, node), 60))
			}
			t.Fatalf("%s not a healthy %s after %v:\n%s\nits agent's log ends:\n%s", node, role, timeout, u.Output(), tailOf(logOf(t, u, node), 60))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func lifeline(t *testing.T, u *topotest.Up, args ...string) string {
	t.Helper()
	out, err := u.Lifeline(args...)
	if err != nil {
		t.Fatalf("lifeline %v: %v\n%s", args, err, out)
	}
	return out
}

func logOf(t *testing.T, u *topotest.Up, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.DataDir, "logs", strings.ReplaceAll(node, "/", "-")+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkNoneLost fails the test for every acknowledged write the node lacks.
func checkNoneLost(t *testing.T, ctx context.Context, u *topotest.Up, node status.Node, res gameday.Result) {
	t.Helper()
	missing, err := gameday.Missing(ctx, u.NodeDSN(node), res.Acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes are missing on %s, first %+v", len(missing), len(res.Acked), name(node), missing[0])
	}
}

// zoneFailure runs the zone-failure story on the warm-standby example:
// the primary's zone is lost, the cut-off primary fences itself, old
// primaries rejoin by pg_rewind or by a new base backup; throughout, no
// acknowledged write is lost and no two nodes accept writes at once.
func zoneFailure(t *testing.T, u *topotest.Up) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w := u.WaitHealthy(t, time.Minute).Workloads[0]
	nodes := map[string]string{}
	for _, n := range w.Nodes {
		nodes[name(n)] = u.NodeDSN(n)
	}
	watch := gameday.WatchWriters(ctx, nodes, 20*time.Millisecond)
	defer func() {
		rep := watch.Stop()
		if rep.MaxWritable > 1 {
			t.Errorf("two writable primaries at once (%d rounds sampled): %v", rep.Rounds, rep.Overlaps)
		}
	}()
	writer := u.DSN(w.Writer)

	t.Run("kill the primary's zone", func(t *testing.T) {
		old := primaryOf(u.Status(t).Workloads[0])
		load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if err := load.WaitAcksAfter(ctx, time.Time{}, 50); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		lifeline(t, u, "node", "kill", name(old))
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if err := load.WaitAcksAfter(wctx, killed, 50); err != nil {
			t.Fatalf("writes through the writer endpoint did not resume: %v", err)
		}
		res := load.Stop()
		_, p := waitPrimary(t, u, name(old), time.Minute)
		checkNoneLost(t, ctx, u, p, res)
		rto, _ := res.Recovery(killed)
		t.Logf("primary %s -> %s; writes through the writer endpoint resumed %.2fs after the kill; %d acknowledged, %d failed attempts",
			name(old), name(p), rto.Seconds(), len(res.Acked), len(res.Failures))

		rbs := runbooks(t, u)
		if len(rbs) == 0 {
			t.Fatal("no runbook")
		}
		last := rbs[len(rbs)-1]
		var steps []string
		for _, s := range last.Steps {
			steps = append(steps, s.Name)
		}
		if last.Kind != "zone-failover" || strings.Join(steps, ",") != "fence,pick,promote,repoint,verify" {
			t.Errorf("runbook = %+v", last)
		}
		deadline := time.Now().Add(time.Minute)
		for last.State != "succeeded" && time.Now().Before(deadline) {
			time.Sleep(time.Second)
			rbs = runbooks(t, u)
			last = rbs[len(rbs)-1]
		}
		if last.State != "succeeded" {
			t.Errorf("runbook state %s", last.State)
		}
		if w := u.Status(t).Workloads[0]; w.LastFailover == nil || w.LastFailover.From != name(old) || w.LastFailover.To != name(p) {
			t.Errorf("status last failover = %+v", w.LastFailover)
		}

		t.Run("the old primary rejoins by pg_rewind", func(t *testing.T) {
			lifeline(t, u, "node", "start", name(old))
			n := waitNode(t, u, name(old), "sync-standby", 2*time.Minute)
			if !strings.Contains(logOf(t, u, name(old)), "rejoined by pg_rewind") {
				t.Error("the old primary did not rejoin by pg_rewind")
			}
			checkNoneLost(t, ctx, u, n, res)
		})
	})

	t.Run("the controller leader dies in the middle of a failover", func(t *testing.T) {
		leader := safeLeader(t, u)
		victim := nodeNamed(t, u, leader)
		old := primaryOf(u.Status(t).Workloads[0])
		before := runbookIDs(t, u)
		load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if err := load.WaitAcksAfter(ctx, time.Time{}, 20); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		lifeline(t, u, "node", "kill", name(old))
		// Kill the leader's agent once its runbook runs, before it ends.
		var rb runbookView
		for deadline := time.Now().Add(30 * time.Second); ; {
			if r, ok := newRunbook(t, u, before); ok && r.State == "running" {
				rb = r
				break
			} else if ok {
				t.Fatalf("the runbook ended before the leader could be killed: %+v", r)
			}
			if time.Now().After(deadline) {
				t.Fatal("no failover runbook started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := syscall.Kill(victim.AgentPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the controller leader %s (agent %d) %.2fs after the primary, with the runbook at %s",
			leader, victim.AgentPID, time.Since(killed).Seconds(), rb.current())

		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if err := load.WaitAcksAfter(wctx, killed, 50); err != nil {
			t.Fatalf("writes through the writer endpoint did not resume: %v", err)
		}
		res := load.Stop()
		_, p := waitPrimary(t, u, name(old), time.Minute)
		checkNoneLost(t, ctx, u, p, res)
		for deadline := time.Now().Add(time.Minute); rb.State == "running"; {
			if time.Now().After(deadline) {
				t.Fatalf("the runbook did not end: %+v", rb)
			}
			time.Sleep(500 * time.Millisecond)
			rb, _ = newRunbook(t, u, before)
		}
		if rb.ID != "" && (rb.State != "succeeded" || rb.Leader == leader) {
			t.Errorf("runbook %s: state %s, last moved on by %s; want succeeded, completed by another controller than %s (%s)",
				rb.ID, rb.State, rb.Leader, leader, rb.Error)
		}
		if n := len(runbookIDs(t, u)) - len(before); n != 1 {
			t.Errorf("%d runbooks ran for one failover", n)
		}
		rto, _ := res.Recovery(killed)
		t.Logf("primary %s -> %s, completed by controller %s; writes resumed %.2fs after the kill", name(old), name(p), rb.Leader, rto.Seconds())

		lifeline(t, u, "node", "start", leader)
		lifeline(t, u, "node", "start", name(old))
		waitNode(t, u, name(old), "sync-standby", 2*time.Minute)
		waitNode(t, u, leader, "standby", 2*time.Minute)
	})

	t.Run("a primary cut off from etcd fences itself before another is promoted", func(t *testing.T) {
		old := cutOffPrimary(t, ctx, u, nodes)
		lifeline(t, u, "link", "heal")
		waitNode(t, u, old, "sync-standby", 2*time.Minute)
	})

	t.Run("a former primary whose rewind fails is reseeded", func(t *testing.T) {
		old := primaryOf(u.Status(t).Workloads[0])
		lifeline(t, u, "node", "kill", name(old))
		waitPrimary(t, u, name(old), time.Minute)
		// A damaged disk: pg_rewind cannot read the control file.
		data := filepath.Join(u.DataDir, "nodes", old.Region, old.Zone, "orders", "data")
		if err := os.Remove(filepath.Join(data, "global", "pg_control")); err != nil {
			t.Fatal(err)
		}
		lifeline(t, u, "node", "start", name(old))
		waitNode(t, u, name(old), "sync-standby", 3*time.Minute)
		log := logOf(t, u, name(old))
		if !strings.Contains(log, "reseeding with a base backup") {
			t.Error("no reseed in the log")
		}
		if aside, _ := filepath.Glob(data + ".discarded-*"); len(aside) != 1 {
			t.Errorf("the damaged data directory was not kept aside: %v", aside)
		}
	})

	t.Run("a primary's server dies with its agent", func(t *testing.T) {
		old := primaryOf(u.Status(t).Workloads[0])
		if old.AgentPID == 0 || old.PostgresPID == 0 {
			t.Fatalf("no pids for %s: %+v", name(old), old)
		}
		// Only the agent: its PostgreSQL gets the parent-death signal.
		if err := syscall.Kill(old.AgentPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(old.PostgresPID, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("postmaster %d outlived its agent %d", old.PostgresPID, old.AgentPID)
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitPrimary(t, u, name(old), time.Minute)
		lifeline(t, u, "node", "start", name(old))
		waitNode(t, u, name(old), "sync-standby", 2*time.Minute)
	})
	t.Run("etcd quorum lost: the primary fences itself, writes come back with the quorum", func(t *testing.T) {
		quorumLost(t, ctx, u, writer)
	})
}

// quorumLost stops two of the control store's three members (the witness
// and eu-central's member, which lives in eu-central/a's agent) under a
// writer: the primary cannot renew its lease and fences itself, so writes
// stop (Lifeline has no failsafe mode: a primary that cannot reach the
// quorum does not go on alone); when the members come back, writes resume
// with nothing acknowledged lost.
func quorumLost(t *testing.T, ctx context.Context, u *topotest.Up, writer string) {
	old := primaryOf(u.Status(t).Workloads[0])
	if old.Region != "eu-west" {
		t.Fatalf("the primary is %s; the story needs it in eu-west", name(old))
	}
	load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := load.WaitAcksAfter(ctx, time.Time{}, 20); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	lifeline(t, u, "node", "kill", "witness")
	lifeline(t, u, "node", "kill", "eu-central/a")
	// The primary's own DSN: writable until it fences itself.
	fenced := time.Time{}
	for deadline := time.Now().Add(time.Minute); fenced.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s still takes writes a minute after the quorum was lost", name(old))
		}
		if !writable(ctx, u.NodeDSN(old)) {
			fenced = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	// While the quorum is gone, nothing takes writes.
	lastAck, _ := load.Result().LastAckBefore(time.Now())
	time.Sleep(3 * time.Second)
	if a, ok := load.Result().LastAckBefore(time.Now()); ok && a.At.After(fenced.Add(time.Second)) {
		t.Errorf("a write was acknowledged at %s, %.2fs after %s fenced itself with no quorum",
			a.At.Format("15:04:05.000"), a.At.Sub(fenced).Seconds(), name(old))
	}
	back := time.Now()
	lifeline(t, u, "node", "start", "witness")
	lifeline(t, u, "node", "start", "eu-central/a")
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if err := load.WaitAcksAfter(wctx, back, 20); err != nil {
		t.Fatalf("writes did not come back with the quorum: %v", err)
	}
	res := load.Stop()
	_, p := waitPrimary(t, u, "", time.Minute)
	checkNoneLost(t, ctx, u, p, res)
	resumed, _ := res.Recovery(back)
	t.Logf("quorum lost at %s: %s fenced itself %.2fs later (last write acknowledged %.2fs after the loss); quorum back: writes resumed on %s %.2fs after the members were started; %d acknowledged, %d failed attempts",
		lost.Format("15:04:05.000"), name(old), fenced.Sub(lost).Seconds(), lastAck.At.Sub(lost).Seconds(), name(p), resumed.Seconds(), len(res.Acked), len(res.Failures))
	waitNode(t, u, "eu-central/a", "standby", 2*time.Minute)
}

// runbookView is a runbook as `lifeline runbooks --json` shows it.
type runbookView struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	State  string `json:"state"`
	Leader string `json:"leader"`
	Error  string `json:"error"`
	Steps  []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"steps"`
}

// current names the first step that has not ended.
func (r runbookView) current() string {
	for _, s := range r.Steps {
		if s.State != "succeeded" && s.State != "skipped" {
			return s.Name + " (" + s.State + ")"
		}
	}
	return "its end"
}

func runbooks(t *testing.T, u *topotest.Up) []runbookView {
	t.Helper()
	var rbs []runbookView
	if err := json.Unmarshal([]byte(lifeline(t, u, "runbooks", "--json")), &rbs); err != nil {
		t.Fatal(err)
	}
	return rbs
}

func runbookIDs(t *testing.T, u *topotest.Up) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range runbooks(t, u) {
		ids[r.ID] = true
	}
	return ids
}

// newRunbook returns the runbook that is not among before.
func newRunbook(t *testing.T, u *topotest.Up, before map[string]bool) (runbookView, bool) {
	t.Helper()
	for _, r := range runbooks(t, u) {
		if !before[r.ID] {
			return r, true
		}
	}
	return runbookView{}, false
}

func nodeNamed(t *testing.T, u *topotest.Up, node string) status.Node {
	t.Helper()
	for _, n := range u.Status(t).Workloads[0].Nodes {
		if name(n) == node {
			return n
		}
	}
	t.Fatalf("no node %s", node)
	return status.Node{}
}

// safeLeader makes the controller leader a node whose death costs neither
// a failover candidate (it is in another region than the primary) nor an
// embedded etcd member (hosted by each region's first zone), so that
// killing it tests the controller alone: it asks leaders that are not to
// step down (`lifeline controller resign`), which puts them at the end of
// the election's queue.
func safeLeader(t *testing.T, u *topotest.Up) string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		rep := u.Status(t)
		leader := rep.Controller
		primary := primaryOf(rep.Workloads[0])
		var node status.Node
		first := map[string]string{} // region → its first zone
		for _, n := range rep.Workloads[0].Nodes {
			if name(n) == leader {
				node = n
			}
			if _, ok := first[n.Region]; !ok {
				first[n.Region] = n.Zone
			}
		}
		safe := node.Region != "" && node.Region != primary.Region && node.Zone != first[node.Region]
		if safe && node.Healthy {
			return leader
		}
		if attempt >= 4*len(rep.Workloads[0].Nodes) {
			t.Fatalf("could not make a safe, healthy node the controller leader (it is %q)", leader)
		}
		if leader != "" && !safe {
			t.Logf("the controller leader %s is the primary, a failover candidate or an etcd member: asking it to resign", leader)
			lifeline(t, u, "controller", "resign")
		} else {
			time.Sleep(time.Second) // an election is under way, or the leader catches up
		}
	}
}

// tailOf is the last n lines of s.
func tailOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cutOffPrimary cuts the primary's node off from every other host (its
// etcd member, its standbys, the router) while clients write to it
// directly: it must fence itself before another node takes writes, and no
// acknowledged write may be lost. It returns the old primary's name, still
// cut off.
func cutOffPrimary(t *testing.T, ctx context.Context, u *topotest.Up, nodes map[string]string) string {
	old := primaryOf(u.Status(t).Workloads[0])
	// Clients that write to the old primary directly, not through the
	// writer endpoint: only fencing can stop them.
	load, err := gameday.StartLoad(ctx, u.NodeDSN(old), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := load.WaitAcksAfter(ctx, time.Time{}, 20); err != nil {
		t.Fatal(err)
	}
	seen := gameday.WatchWriters(ctx, nodes, 20*time.Millisecond)
	cut := time.Now()
	lifeline(t, u, "link", "cut", name(old))
	_, p := waitPrimary(t, u, name(old), time.Minute)
	res := load.Stop()
	rep := seen.Stop()
	lastOld, ok := res.LastAckBefore(time.Now())
	if !ok {
		t.Fatal("no write acknowledged by the old primary")
	}
	newFirst, ok := rep.First[name(p)]
	if !ok {
		t.Fatalf("never saw %s writable", name(p))
	}
	if !lastOld.At.Before(newFirst) || !rep.Last[name(old)].Before(newFirst) {
		t.Errorf("the old primary took a write at %s (last seen writable %s) but %s was writable from %s",
			lastOld.At.Format("15:04:05.000"), rep.Last[name(old)].Format("15:04:05.000"), name(p), newFirst.Format("15:04:05.000"))
	}
	checkNoneLost(t, ctx, u, p, res)
	t.Logf("cut at %s; old primary's last write %.2fs later; %s writable %.2fs after the cut",
		cut.Format("15:04:05.000"), lastOld.At.Sub(cut).Seconds(), name(p), newFirst.Sub(cut).Seconds())
	return name(old)
}

// writable reports whether the server at dsn answers within half a second
// and is not in recovery.
func writable(ctx context.Context, dsn string) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false
	}
	defer c.Close(context.Background())
	var rec bool
	return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec) == nil && !rec
}
