package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("pick", func(e *Env) runbook.Action { return &pick{base{e, "pick"}} }) }

// pick chooses the standby to promote: the most advanced of the lost
// primary's region (a zone failover) or of the region failed over to
// (params to_region), once the positions are final (none streams any
// more). With RPO 0 inside the region it waits for the quorum-commit rule.
type pick struct{ base }

func (s *pick) Check(_ context.Context, rb *runbook.Runbook) (bool, error) { return has(rb, "to"), nil }

func (s *pick) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := s.workload(rb)
	if err != nil {
		return "", err
	}
	from, err := lifeline.ParseNodeID(rb.Params["from"])
	if err != nil {
		return "", err
	}
	region := rb.Params["to_region"]
	if region == "" {
		region = from.Region
	}
	// The first reports are read meanwhile: both reads may cross regions.
	type read struct {
		reports map[string]lifeline.NodeStatus
		err     error
	}
	first := make(chan read, 1)
	go func() {
		r, err := s.reports(ctx, w.Name)
		first <- read{r, err}
	}()
	// A leader that died after naming the new primary may not have saved
	// its pick (progress is written in the background): the state is the
	// truth, and picking again could name another node. (A stale read here
	// only means picking again: promote's transaction then refuses.)
	st, _, err := s.state(ctx, w.Name, clientv3.WithSerializable())
	if err != nil {
		return "", err
	}
	if st.Epoch == newEpoch(rb) && st.Primary != from.String() {
		rb.Params["to"] = st.Primary
		return fmt.Sprintf("%s, named primary by the previous controller leader", st.Primary), nil
	}
	// How long positions may take to become final: the lease's expiry
	// and two reports; the quorum-commit rule waits as long as the RTO
	// allows for a silent synchronous standby rather than lose a commit.
	timeout := s.T.Control.LeaseTTL + 2*time.Second
	if region == from.Region && w.Database.Sync != "" {
		timeout = waitFor(w, timeout)
	}
	var syncSet []lifeline.NodeID
	if set, ok := rb.Params["sync_set"]; ok {
		syncSet = []lifeline.NodeID{}
		for _, n := range strings.Split(set, ",") {
			if id, err := lifeline.ParseNodeID(n); err == nil {
				syncSet = append(syncSet, id)
			}
		}
	}
	stalls := stalledStreams{}
	attempt := 0
	var note string
	_, err = s.until(ctx, timeout, s.T.Control.CheckInterval/2, func() (bool, string, error) {
		var reports map[string]lifeline.NodeStatus
		var err error
		if attempt == 0 {
			r := <-first
			reports, err = r.reports, r.err
		} else {
			reports, err = s.reports(ctx, w.Name)
		}
		attempt++
		if err != nil {
			return false, "", err
		}
		reports = stalls.settle(reports, 2*s.T.Control.CheckInterval)
		to, lsn, err := Pick(s.T, w, st, from, region, syncSet, reports, s.Now())
		switch {
		case err == nil:
			rb.Params["to"], rb.Params["to_lsn"] = to.String(), lsn.String()
			note = fmt.Sprintf("%s at %s (%s)", to, lsn, positions(s.T, st, from, region, reports))
			return true, note, nil
		case errors.Is(err, ErrNoQuorum) && !anyReports(s.T, st, region, from, reports, s.Now()):
			// Nothing of the region reports: it is lost with its
			// primary, and waiting helps no one; the region's failover
			// follows.
			return false, "", fmt.Errorf("%w: no node of %s reports", ErrNoCandidate, region)
		case errors.Is(err, ErrStillStreaming) || errors.Is(err, ErrNoQuorum):
			return false, err.Error(), nil
		}
		return false, "", err
	})
	return note, err
}

// anyReports says whether a database node of region (other than from)
// reports freshly.
func anyReports(t *lifeline.Topology, st lifeline.WorkloadState, region string, from lifeline.NodeID, reports map[string]lifeline.NodeStatus, now time.Time) bool {
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == region && id != from && fresh(t, reports[id.String()], now) {
			return true
		}
	}
	return false
}

func positions(t *lifeline.Topology, st lifeline.WorkloadState, from lifeline.NodeID, region string, reports map[string]lifeline.NodeStatus) string {
	var parts []string
	for _, id := range t.DatabaseNodesIn(st) {
		if id.Region == region && id != from {
			r := reports[id.String()]
			parts = append(parts, fmt.Sprintf("%s received %s", id, orNone(r.ReceiveLSN)))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// newEpoch is the epoch the runbook names its new primary at.
func newEpoch(rb *runbook.Runbook) int64 {
	e, _ := strconv.ParseInt(rb.Params["epoch"], 10, 64)
	return e + 1
}

// stalledStreams tells a stream that stalled from one that still brings
// WAL. Once the old primary's lease is gone it is fenced, so nothing new
// can come; but a standby cut off from it (a partition: nothing closes the
// connection) reports "streaming" until wal_receiver_timeout. A standby
// whose received position has not moved across reports spanning `after`
// has everything it will get: its position is final. The span counts from
// the first report this pick saw with that position, or from the earlier
// one the agent names (ReceiveSince): a stream cut off seconds before the
// lease ran out is stalled at the first report.
type stalledStreams map[string]struct {
	lsn   string
	since time.Time // the report that first showed lsn
}

// settle returns the reports with the stalled streams marked as not
// streaming (a copy; the input is not changed).
func (s stalledStreams) settle(reports map[string]lifeline.NodeStatus, after time.Duration) map[string]lifeline.NodeStatus {
	out := make(map[string]lifeline.NodeStatus, len(reports))
	for name, st := range reports {
		if st.Streaming {
			seen, ok := s[name]
			if !ok || seen.lsn != st.ReceiveLSN {
				seen.lsn, seen.since = st.ReceiveLSN, st.Reported
				s[name] = seen
			}
			still := st.Reported.Sub(seen.since)
			if !st.ReceiveSince.IsZero() {
				still = max(still, st.Reported.Sub(st.ReceiveSince))
			}
			if still >= after {
				st.Streaming = false
			}
		}
		out[name] = st
	}
	return out
}
