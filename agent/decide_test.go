package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/spec"
)

const decideTopo = `name: shop
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
workloads:
  - {name: db, strategy: warm-standby, objectives: {rpo: 1s, rto: 30s}, active: west}
`

// TestNodeDecision is the agent's safety logic as a table: what a node does
// given its own observations and the workload's state.
func TestNodeDecision(t *testing.T) {
	top, err := spec.Parse("t.yaml", []byte(decideTopo))
	if err != nil {
		t.Fatal(err)
	}
	w := &top.Workloads[0]
	westA, westB, eastA := lifeline.NodeID{Region: "west", Zone: "a"}, lifeline.NodeID{Region: "west", Zone: "b"}, lifeline.NodeID{Region: "east", Zone: "a"}
	st := func(primary string, epoch int64, edit ...func(*lifeline.WorkloadState)) lifeline.WorkloadState {
		id, _ := lifeline.ParseNodeID(primary)
		s := lifeline.WorkloadState{Active: id.Region, Primary: primary, Epoch: epoch, Databases: []string{"east", "west"}}
		for _, e := range edit {
			e(&s)
		}
		return s
	}
	primaryRunning := local{Initialized: true, Running: true, RunningAs: lifeline.RolePrimary, LeaseValid: true, LeaseHeld: true}
	standbyRunning := local{Initialized: true, Running: true, RunningAs: lifeline.RoleStandby}
	stoppedPrimary := local{Initialized: true, WasPrimary: true}
	demotedAt4 := &lifeline.Demotion{Node: "west/a", Epoch: 4, LSN: "0/3000028"}
	for _, c := range []struct {
		name  string
		me    lifeline.NodeID
		state lifeline.WorkloadState
		l     local
		want  []act
	}{
		{"first primary: initdb and serve", westA, st("west/a", 1), local{}, []act{actTakeLease, actInitDB, actServePrimary}},
		{"primary holding its lease: serve", westA, st("west/a", 3), primaryRunning, []act{actServePrimary}},
		{"primary without a valid lease: fence, then take it", westA, st("west/a", 3), local{Initialized: true, Running: true, RunningAs: lifeline.RolePrimary}, []act{actFence, actTakeLease, actServePrimary}},
		{"stopped primary: take the lease, start", westA, st("west/a", 3), local{Initialized: true}, []act{actTakeLease, actServePrimary}},
		{"named primary while a standby: take the lease, promote", westB, st("west/b", 4), standbyRunning, []act{actTakeLease, actPromote}},
		{"named primary at a later epoch with no data: never bootstrap", westB, st("west/b", 4), local{}, nil},
		{"named primary to restore (backup-restore)", eastA, st("east/a", 5, func(s *lifeline.WorkloadState) { s.Restore = &lifeline.RestoreAt{Node: "east/a"} }), local{}, []act{actTakeLease, actRestore, actServePrimary}},
		{"restore order for another node: not this one", eastA, st("east/a", 5, func(s *lifeline.WorkloadState) { s.Restore = &lifeline.RestoreAt{Node: "east/b"} }), local{}, nil},
		{"primary in a fenced region: stop", westA, st("west/a", 3, func(s *lifeline.WorkloadState) { s.Fenced = []string{"west"} }), primaryRunning, []act{actFence}},
		{"primary in a fenced region, stopped: never take the lease", westA, st("west/a", 3, func(s *lifeline.WorkloadState) { s.Fenced = []string{"west"} }), local{Initialized: true}, nil},
		{"asked to demote: stop cleanly", westA, st("west/a", 4, func(s *lifeline.WorkloadState) { s.Demote = "west/a" }), primaryRunning, []act{actDemote}},
		{"asked to demote, already stopped: report again, no lease", westA, st("west/a", 4, func(s *lifeline.WorkloadState) { s.Demote = "west/a" }), local{Initialized: true, WasPrimary: true, Demoted: demotedAt4}, []act{actDemote}},
		{"another node is primary: a running primary stops and rewinds", westA, st("west/b", 5), primaryRunning, []act{actFence, actRejoin, actFollow}},
		{"former primary, stopped: rewind before following", westA, st("west/b", 5), stoppedPrimary, []act{actRejoin, actFollow}},
		{"demoted cleanly into this epoch: follow without a rewind", westA, st("east/a", 5), local{Initialized: true, WasPrimary: true, Demoted: demotedAt4}, []act{actFollow}},
		{"an older demotion does not count: rewind", westA, st("east/a", 7), local{Initialized: true, WasPrimary: true, Demoted: demotedAt4}, []act{actRejoin, actFollow}},
		{"another node's demotion does not count", westB, st("east/a", 5), local{Initialized: true, WasPrimary: true, Demoted: demotedAt4}, []act{actRejoin, actFollow}},
		{"standby holding a stale lease: let go, follow", westB, st("west/a", 5), local{Initialized: true, Running: true, RunningAs: lifeline.RoleStandby, LeaseHeld: true}, []act{actFence, actFollow}},
		{"empty standby: seed", eastA, st("west/a", 1), local{}, []act{actSeed, actFollow}},
		{"running standby: follow", eastA, st("west/a", 2), standbyRunning, []act{actFollow}},
		{"stopped standby that was a standby: start following", eastA, st("west/a", 2), local{Initialized: true}, []act{actFollow}},
		{"region without a database: retire what is here", eastA, st("west/a", 2, func(s *lifeline.WorkloadState) { s.Databases = []string{"west"} }), standbyRunning, []act{actRetire}},
		{"region without a database, nothing here: nothing", eastA, st("west/a", 2, func(s *lifeline.WorkloadState) { s.Databases = []string{"west"} }), local{}, nil},
		{"no primary named: wait", westA, lifeline.WorkloadState{Active: "west", Epoch: 1, Databases: []string{"west"}}, local{}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := nodeDecision(c.me, top, w, c.state, c.l)
			if diff := cmp.Diff(c.want, got.Acts); diff != "" {
				t.Errorf("acts (-want +got), why %q:\n%s", got.Why, diff)
			}
			if got.Why == "" {
				t.Error("no reason")
			}
		})
	}
}
