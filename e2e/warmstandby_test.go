package e2e_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
)

// TestWarmStandby runs the stories that need the warm-standby example on
// one topology, one after the other: a topology's start, first checks and
// stop cost about a minute and a half, and CI has 30 minutes for
// everything. Each story starts from a healthy topology whose primary is
// eu-west/a (settle), and leaves eu-west active; the operator surface's
// ends with eu-west lost, so it runs last. Run one story with
// `go test ./e2e -run 'TestWarmStandby/zone'`. The region story has a
// topology of its own (TestRegionFailure): it asserts from the nodes' logs
// that switchovers and failbacks need no copy, which the stories before
// (a reseed, rewinds) would muddle.
func TestWarmStandby(t *testing.T) {
	u := topotest.Start(t, topotest.Example(t, "warm-standby"), filepath.Join(testenv.Dir(t), "data"))
	for _, s := range []struct {
		name string
		run  func(*testing.T, *topotest.Up)
	}{
		{"router", router},
		{"zone failure", zoneFailure},
		{"game days", gamedays},
		{"operator surface", operatorSurface},
	} {
		t.Run(s.name, func(t *testing.T) {
			settle(t, u)
			s.run(t, u)
		})
	}
}

// settle starts the nodes a story left down, waits until every node is
// healthy and makes eu-west/a the primary (a switchover) when a story
// before moved it.
func settle(t *testing.T, u *topotest.Up) {
	t.Helper()
	const home = "eu-west/a"
	for _, n := range u.Status(t).Workloads[0].Nodes {
		if n.AgentPID == 0 {
			t.Logf("%s was left down: starting it", name(n))
			if out, err := u.Lifeline("node", "start", name(n)); err != nil {
				t.Logf("node start %s: %v\n%s", name(n), err, out)
			}
		}
	}
	w := u.WaitHealthy(t, 2*time.Minute).Workloads[0]
	if p := primaryOf(w); name(p) == home && w.LeaseHolder == home {
		return
	}
	t.Logf("the primary is %s: switching over to %s", name(primaryOf(w)), home)
	lifeline(t, u, "switchover", "--to", home, "--reason", "e2e: the next story starts from "+home)
	waitNode(t, u, home, "primary", 2*time.Minute)
	u.WaitHealthy(t, 2*time.Minute)
}

// TestRegionFailure runs the region story (regionFailure) on a topology of
// its own.
func TestRegionFailure(t *testing.T) {
	u := topotest.Start(t, topotest.Example(t, "warm-standby"), filepath.Join(testenv.Dir(t), "data"))
	regionFailure(t, u)
}
