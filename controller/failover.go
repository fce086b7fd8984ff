package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

// zoneFailover is the runbook that replaces a lost primary with a standby
// of its own region: fence → pick → promote → repoint → verify.
func (c *Controller) zoneFailover() runbook.Kind {
	return runbook.Kind{Name: string(ZoneFailover), Steps: []runbook.Action{
		&step{name: "fence", c: c, check: c.fenced, do: c.waitFenced},
		&step{name: "pick", c: c, check: has("to"), do: c.pick},
		&step{name: "promote", c: c, pre: c.canPromote, check: c.promoted, do: c.promote},
		&step{name: "repoint", c: c, check: has("repointed"), do: c.repoint},
		&step{name: "verify", c: c, check: has("verified"), do: c.verify},
	}}
}

// step adapts functions to runbook.Action.
type step struct {
	name  string
	c     *Controller
	pre   func(context.Context, *runbook.Runbook) error
	check func(context.Context, *runbook.Runbook) (bool, error)
	do    func(context.Context, *runbook.Runbook) (string, error)
}

func (s *step) Name() string { return s.name }

func (s *step) Pre(ctx context.Context, rb *runbook.Runbook) error {
	if s.pre == nil {
		return nil
	}
	return s.pre(ctx, rb)
}

func (s *step) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	return s.check(ctx, rb)
}

func (s *step) Do(ctx context.Context, rb *runbook.Runbook) (string, error) { return s.do(ctx, rb) }

func has(param string) func(context.Context, *runbook.Runbook) (bool, error) {
	return func(_ context.Context, rb *runbook.Runbook) (bool, error) { return rb.Params[param] != "", nil }
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (c *Controller) workload(rb *runbook.Runbook) (*lifeline.Workload, error) {
	return c.t.Workload(rb.Workload)
}

// fenced: the old primary's lease is gone. Its agent stops its server
// before the lease can expire (or died, and its server with it), so no
// write is accepted there any more.
//
// The read may be served by the nearest member (serializable): the promote
// step's transaction requires the lease gone, so a stale answer here can
// only make that transaction fail, never promote next to a live primary.
func (c *Controller) fenced(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	resp, err := c.s.Client().Get(ctx, c.s.Keys().Lease(rb.Workload), clientv3.WithCountOnly(), clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	return resp.Count == 0, nil
}

func (c *Controller) waitFenced(ctx context.Context, rb *runbook.Runbook) (string, error) {
	deadline := time.Now().Add(c.t.Control.LeaseTTL + time.Second)
	for time.Now().Before(deadline) {
		if ok, err := c.fenced(ctx, rb); err == nil && ok {
			return "", nil
		}
		sleep(ctx, c.t.Control.CheckInterval/2)
	}
	return "", errors.New("the primary holds its lease again: it is alive, no failover")
}

// reports reads the agents' reports from the nearest member: a report a
// moment old is as good as the newest (they are written every check
// interval), and positions that matter are final once nothing streams.
func (c *Controller) reports(ctx context.Context, w string) (map[string]lifeline.NodeStatus, error) {
	m, err := c.s.Statuses(ctx, w, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	out := make(map[string]lifeline.NodeStatus, len(m))
	for _, st := range m {
		out[st.Node] = st
	}
	return out, nil
}

// pick waits until the candidates' WAL positions are final (none streams
// any more), then takes the most advanced.
func (c *Controller) pick(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := c.workload(rb)
	if err != nil {
		return "", err
	}
	from, err := lifeline.ParseNodeID(rb.Params["from"])
	if err != nil {
		return "", err
	}
	// The first reports are read meanwhile: both reads may cross regions.
	type read struct {
		reports map[string]lifeline.NodeStatus
		err     error
	}
	first := make(chan read, 1)
	go func() {
		r, err := c.reports(ctx, w.Name)
		first <- read{r, err}
	}()
	// A leader that died after naming the new primary may not have saved
	// its pick (progress is written in the background): the record is the
	// truth, and picking again could name another node. (A stale read
	// here only means picking again: promote's transaction then refuses.)
	rec, _, _, err := c.s.Primary(ctx, w.Name, clientv3.WithSerializable())
	if err != nil {
		return "", err
	}
	if rec.Epoch == c.newEpoch(rb) && rec.Node != from.String() {
		rb.Params["to"] = rec.Node
		return fmt.Sprintf("%s, named primary by the previous controller leader", rec.Node), nil
	}
	deadline := time.Now().Add(c.t.Control.LeaseTTL + 2*time.Second)
	stalls := stalledStreams{}
	for attempt := 0; ; attempt++ {
		var reports map[string]lifeline.NodeStatus
		if attempt == 0 {
			r := <-first
			reports, err = r.reports, r.err
		} else {
			reports, err = c.reports(ctx, w.Name)
		}
		if err != nil {
			return "", err
		}
		reports = stalls.settle(reports, 2*c.t.Control.CheckInterval)
		to, lsn, err := Pick(c.t, w, from, reports, time.Now())
		if err == nil {
			rb.Params["to"], rb.Params["to_lsn"] = to.String(), lsn.String()
			return fmt.Sprintf("%s at %s (%s)", to, lsn, positions(c.t, w, from, reports)), nil
		}
		if !errors.Is(err, ErrStillStreaming) || time.Now().After(deadline) {
			return "", err
		}
		sleep(ctx, c.t.Control.CheckInterval/2)
	}
}

func positions(t *lifeline.Topology, w *lifeline.Workload, from lifeline.NodeID, reports map[string]lifeline.NodeStatus) string {
	var parts []string
	for _, id := range t.DatabaseNodes(w) {
		if id.Region == from.Region && id != from {
			st := reports[id.String()]
			parts = append(parts, fmt.Sprintf("%s received %s", id, orNone(st.ReceiveLSN)))
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

func (c *Controller) newEpoch(rb *runbook.Runbook) int64 {
	e, _ := strconv.ParseInt(rb.Params["epoch"], 10, 64)
	return e + 1
}

func (c *Controller) canPromote(ctx context.Context, rb *runbook.Runbook) error {
	reports, err := c.reports(ctx, rb.Workload)
	if err != nil {
		return err
	}
	st, ok := reports[rb.Params["to"]]
	if !ok || time.Since(st.Reported) > c.t.Control.LeaseTTL || !st.Running {
		return fmt.Errorf("%s is not running any more", rb.Params["to"])
	}
	return nil
}

// promoted: the record names the chosen node and its agent reports a
// primary that is out of recovery (or promote saw it so).
//
// Both reads may be served by the nearest member. A member that lags can
// only answer "not yet" where the leader would say "yes" (an epoch's record
// is written once, and a report of a promoted server stays true): promote
// then finds the record written, or its transaction fails and it reads
// again from the leader.
func (c *Controller) promoted(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	if rb.Params["promoted"] != "" {
		return true, nil
	}
	rec, _, _, err := c.s.Primary(ctx, rb.Workload, clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	if rb.Params["to"] == "" || rec.Node != rb.Params["to"] || rec.Epoch != c.newEpoch(rb) {
		return false, nil
	}
	reports, err := c.reports(ctx, rb.Workload)
	if err != nil {
		return false, err
	}
	st := reports[rec.Node]
	return st.Running && !st.InRecovery && st.Reported.After(rec.Since), nil
}

// promote names the chosen node primary, in a transaction that requires
// the record unchanged and the old lease gone, then waits for its agent to
// take the lease and promote its server.
//
// The record is read from the nearest member first, which saves a round
// trip to the leader on the failover's path; if that member lags, the
// transaction's comparison fails, and the record is read again from the
// leader before giving up.
func (c *Controller) promote(ctx context.Context, rb *runbook.Runbook) (string, error) {
	want := lifeline.PrimaryRecord{Node: rb.Params["to"], Epoch: c.newEpoch(rb), Since: time.Now().UTC()}
	// The chosen node's spare lease, read meanwhile: the primary lease is
	// handed over bound to it.
	spareRead := make(chan clientv3.LeaseID, 1)
	go func() {
		reports, err := c.reports(ctx, rb.Workload)
		if err != nil {
			spareRead <- 0
			return
		}
		spareRead <- clientv3.LeaseID(reports[want.Node].SpareLease)
	}()
	spare := sync.OnceValue(func() clientv3.LeaseID { return <-spareRead })
	for attempt := 0; ; attempt++ {
		var opts []clientv3.OpOption
		if attempt == 0 {
			opts = append(opts, clientv3.WithSerializable())
		}
		rec, rev, _, err := c.s.Primary(ctx, rb.Workload, opts...)
		if err != nil {
			return "", err
		}
		written := rec.Node == want.Node && rec.Epoch == want.Epoch // before a crash: only the wait is left
		if !written && rec.Node == rb.Params["from"] && rec.Epoch == want.Epoch-1 {
			if written, err = c.namePrimary(ctx, rb, want, rev, spare()); err != nil {
				return "", err
			}
		}
		if written {
			break
		}
		if attempt > 0 {
			if rec.Node == rb.Params["from"] {
				return "", errors.New("the primary record or lease changed (the old primary may be back), or this controller no longer leads")
			}
			return "", fmt.Errorf("the primary record changed to %s (epoch %d)", rec.Node, rec.Epoch)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := c.promoted(ctx, rb); err == nil && ok {
			// Kept, so that the check after this step does not ask a
			// member that lags behind the one that answered here.
			rb.Params["promoted"] = "true"
			return fmt.Sprintf("%s is primary, epoch %d", want.Node, want.Epoch), nil
		}
		sleep(ctx, c.t.Control.CheckInterval/4)
	}
	return "", fmt.Errorf("%s did not report itself primary within 90s", want.Node)
}

// namePrimary writes the new record if the record is still at revision rev
// and the old lease is gone. With the chosen node's spare lease, the lease
// key goes in the same transaction, bound to it: the node promotes without
// a write of its own, and the key vanishes with that node if it dies before
// it promotes.
func (c *Controller) namePrimary(ctx context.Context, rb *runbook.Runbook, want lifeline.PrimaryRecord, rev int64, spare clientv3.LeaseID) (bool, error) {
	keys := c.s.Keys()
	b, _ := json.Marshal(want)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(keys.Primary(rb.Workload)), "=", rev),
		clientv3.Compare(clientv3.CreateRevision(keys.Lease(rb.Workload)), "=", 0),
	}
	if g, ok := runbook.Guard(ctx); ok {
		cmps = append(cmps, g)
	}
	ops := []clientv3.Op{clientv3.OpPut(keys.Primary(rb.Workload), string(b))}
	if spare != 0 {
		lease, _ := json.Marshal(lifeline.LeaseRecord{Node: want.Node, Epoch: want.Epoch})
		handoff := append(ops, clientv3.OpPut(keys.Lease(rb.Workload), string(lease), clientv3.WithLease(spare)))
		resp, err := c.s.Client().Txn(ctx).If(cmps...).Then(handoff...).Commit()
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			if err != nil {
				return false, err
			}
			return resp.Succeeded, nil
		}
		// Its spare lease expired: the node takes the lease itself.
	}
	resp, err := c.s.Client().Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// repoint waits (bounded) for the live standbys to stream from the new
// primary; their agents repoint themselves when the record changes. A node
// that is down is not waited for: it rejoins when it returns.
func (c *Controller) repoint(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := c.workload(rb)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	var following, waiting []string
	for {
		following, waiting = nil, nil
		reports, err := c.reports(ctx, w.Name)
		if err != nil {
			return "", err
		}
		for _, id := range c.t.DatabaseNodes(w) {
			name := id.String()
			if name == rb.Params["to"] {
				continue
			}
			st, ok := reports[name]
			switch {
			case !ok || time.Since(st.Reported) > c.t.Control.LeaseTTL:
				continue // down: it rejoins when it returns
			case st.Streaming && st.Reported.After(rb.Updated.Add(-time.Second)):
				following = append(following, name)
			default:
				waiting = append(waiting, name)
			}
		}
		if len(waiting) == 0 || time.Now().After(deadline) {
			break
		}
		sleep(ctx, c.t.Control.CheckInterval/2)
	}
	rb.Params["repointed"] = "true"
	note := "following: " + strings.Join(following, ", ")
	if len(waiting) > 0 {
		note += "; not yet: " + strings.Join(waiting, ", ")
	}
	return note, nil
}

// verify commits a transaction on the new primary: it proves the primary
// takes writes and, with synchronous replication, that a standby acknowledges them.
func (c *Controller) verify(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, err := c.workload(rb)
	if err != nil {
		return "", err
	}
	to, err := lifeline.ParseNodeID(rb.Params["to"])
	if err != nil {
		return "", err
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := c.cfg.Connect(vctx, w, to)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(vctx)
	if err != nil {
		return "", err
	}
	if _, err := tx.Exec(vctx, "SET LOCAL synchronous_commit = on; SELECT txid_current()"); err != nil {
		_ = tx.Rollback(context.Background())
		return "", err
	}
	if err := tx.Commit(vctx); err != nil {
		if vctx.Err() != nil {
			return "", fmt.Errorf("a commit on %s waited 30s for a synchronous standby: none of %s is up (with RPO 0 writes wait rather than risk loss)",
				to, strings.Join(slugs(c.t.SyncCandidates(w, to)), ", "))
		}
		return "", err
	}
	rb.Params["verified"] = "true"
	return fmt.Sprintf("a commit on %s took %s", to, time.Since(start).Round(time.Millisecond)), nil
}

func slugs(ids []lifeline.NodeID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// stalledStreams tells a stream that stalled from one that still brings
// WAL. Once the old primary's lease is gone it is fenced, so nothing new
// can come; but a standby cut off from it (a partition: nothing closes the
// connection) reports "streaming" until wal_receiver_timeout. A standby
// whose received position has not moved across reports spanning `after`
// has everything it will get: its position is final.
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
			if st.Reported.Sub(seen.since) >= after {
				st.Streaming = false
			}
		}
		out[name] = st
	}
	return out
}
