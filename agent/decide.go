package agent

import (
	"fmt"

	"github.com/lifeline-dr/lifeline"
)

// local is what an agent observes of its own node for one workload.
type local struct {
	// Initialized: the data directory exists. Running: the server runs,
	// started or promoted as RunningAs ("" when it is not running).
	Initialized bool
	Running     bool
	RunningAs   lifeline.Role
	// LeaseValid: this node holds the primary lease for the state's
	// epoch, renewed in time. LeaseHeld: it holds one for any epoch.
	LeaseValid bool
	LeaseHeld  bool
	// WasPrimary: the stopped data directory last ran as a primary (it may
	// hold WAL the current primary never saw). Only looked at when the
	// server does not run.
	WasPrimary bool
	// Demoted is this node's own record of a clean demotion (switchover),
	// nil when there is none.
	Demoted *lifeline.Demotion
}

// act is one thing the agent does for a workload's database.
type act string

const (
	actFence        act = "fence"         // stop the server at once (immediate shutdown)
	actTakeLease    act = "take-lease"    // take (or adopt) the primary lease
	actInitDB       act = "initdb"        // create the first primary's data directory
	actRestore      act = "restore"       // build the data directory from the region's repository
	actServePrimary act = "serve-primary" // start as primary, or apply its settings
	actPromote      act = "promote"       // end recovery of the running standby
	actDemote       act = "demote"        // stop cleanly, let go of the lease, report the checkpoint
	actSeed         act = "seed"          // a base backup from the primary
	actRejoin       act = "rejoin"        // pg_rewind, else a new base backup
	actFollow       act = "follow"        // run as a standby of the primary
	actRetire       act = "retire"        // stop and set the data aside: no database here any more
)

// plan is what nodeDecision decides: the acts to take in order (each
// assumes the ones before it succeeded), or none, with why.
type plan struct {
	Acts []act
	Why  string
}

func do(why string, acts ...act) plan { return plan{Acts: acts, Why: why} }

// nodeDecision is the agent's safety logic as a pure function: given what
// it observes locally and the workload's state, what this node must do.
//
// The rules it keeps: a server runs as a primary only on the node the
// state names, while that node holds the primary lease and its region is
// not fenced; a node that is not named primary stops writing at once; a
// node that ran as a primary is rewound (or reseeded) before it follows
// another, unless it was demoted cleanly by the switchover that named the
// current primary; an empty data directory is never bootstrapped in place
// of a primary that had data.
func nodeDecision(me lifeline.NodeID, t *lifeline.Topology, w *lifeline.Workload, st lifeline.WorkloadState, l local) plan {
	role := t.RoleIn(w, st, me)
	switch {
	case role == lifeline.RoleNone:
		if l.Running || l.Initialized {
			return do(fmt.Sprintf("region %s holds no database of %s now", me.Region, w.Name), actRetire)
		}
		return do("no database on this node")
	case st.Primary == "":
		return do("the state names no primary")
	case role != lifeline.RolePrimary:
		return standbyDecision(me, st, l)
	}
	// This node is named primary.
	if st.IsFenced(me.Region) {
		if l.Running && l.RunningAs == lifeline.RolePrimary {
			return do(fmt.Sprintf("region %s is fenced", me.Region), actFence)
		}
		return do(fmt.Sprintf("region %s is fenced: not taking the primary lease", me.Region))
	}
	if st.Demote == me.String() {
		return do("a switchover asked this primary to stop writes", actDemote)
	}
	var acts []act
	if !l.LeaseValid {
		if l.Running && l.RunningAs == lifeline.RolePrimary {
			acts = append(acts, actFence)
		}
		acts = append(acts, actTakeLease)
	}
	switch {
	case !l.Initialized && st.Restore != nil && st.Restore.Node == me.String():
		return do("named primary, to be restored from the region's repository", append(acts, actRestore, actServePrimary)...)
	case !l.Initialized && st.Epoch == 1:
		return do("the workload's first primary", append(acts, actInitDB, actServePrimary)...)
	case !l.Initialized:
		// A promoted primary always has data; an empty one here means the
		// node lost its disk.
		return do(fmt.Sprintf("named primary (epoch %d) but the data directory is missing: never bootstrapping an empty database in place of one that had data", st.Epoch))
	case l.Running && l.RunningAs != lifeline.RolePrimary:
		return do("named primary while running as a standby", append(acts, actPromote)...)
	}
	return do("primary", append(acts, actServePrimary)...)
}

func standbyDecision(me lifeline.NodeID, st lifeline.WorkloadState, l local) plan {
	if l.Running && l.RunningAs == lifeline.RolePrimary {
		// Another node is primary now: this one must stop writing at once,
		// and may hold WAL the new primary never saw.
		return do(st.Primary+" is primary now", actFence, actRejoin, actFollow)
	}
	var acts []act
	if l.LeaseHeld {
		acts = append(acts, actFence) // lets go of the lease
	}
	switch {
	case !l.Initialized:
		return do("no data yet: seeding from the primary", append(acts, actSeed, actFollow)...)
	case !l.Running && l.WasPrimary && !demotedInto(me, st, l.Demoted):
		return do("ran as a primary: rewinding before following "+st.Primary, append(acts, actRejoin, actFollow)...)
	}
	return do("standby of "+st.Primary, append(acts, actFollow)...)
}

// demotedInto reports whether this node's clean demotion is the one the
// current primary was promoted after: its WAL then ends where the new
// primary's timeline begins, and it follows without a rewind.
func demotedInto(me lifeline.NodeID, st lifeline.WorkloadState, d *lifeline.Demotion) bool {
	return d != nil && d.Node == me.String() && d.Epoch == st.Epoch-1
}
