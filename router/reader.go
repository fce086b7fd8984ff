package router

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// ReadChoice is where a workload's read-only connections go.
type ReadChoice struct {
	// Node and Addr (host:port) of the target; empty when there is none
	// (no primary known).
	Node string
	Addr string
	// Standby is false when the target is the primary (no standby is fit).
	Standby bool
	// Fit are the addresses of every fit standby, nearest first: a
	// connection already open to one of them may stay.
	Fit []string
}

// PickReader chooses where read-only connections go: the nearest fit
// standby, else the primary while its agent reports it serving, else
// nowhere. Nearest means in the home region (where this router runs; the
// active region when home is empty) first, then the other regions in spec order, zones in spec
// order inside a region. A standby is fit when its agent reports it
// healthy, running, in recovery, streaming and not fenced, and the
// primary's report shows it connected with a replay lag within the
// workload's RPO (with an RPO of 0: no lag at all, in seconds or bytes).
// A standby the primary does not report on (the primary is down, or the
// standby is disconnected) has an unknown lag and is not fit. PickReader
// is pure.
func PickReader(t *lifeline.Topology, w *lifeline.Workload, home string, state lifeline.WorkloadState, reports map[string]lifeline.NodeStatus) ReadChoice {
	var out ReadChoice
	if home == "" {
		home = state.Active
	}
	replicas := map[string]lifeline.ReplicaStatus{}
	if p, ok := reports[state.Primary]; ok && state.Primary != "" {
		for _, r := range p.Replicas {
			replicas[r.Name] = r
		}
	}
	nodes := t.DatabaseNodesIn(state)
	ordered := make([]lifeline.NodeID, 0, len(nodes))
	for _, id := range nodes {
		if id.Region == home {
			ordered = append(ordered, id)
		}
	}
	for _, id := range nodes {
		if id.Region != home {
			ordered = append(ordered, id)
		}
	}
	for _, id := range ordered {
		if id.String() == state.Primary {
			continue
		}
		st, ok := reports[id.String()]
		if !ok || !st.Healthy || !st.Running || !st.InRecovery || !st.Streaming || st.Fenced {
			continue
		}
		r, ok := replicas[id.Slug()]
		if !ok || !r.Connected || !withinRPO(r, w.Objectives.RPO) {
			continue
		}
		addr := net.JoinHostPort(t.Address(id), strconv.Itoa(w.Database.Port))
		if out.Addr == "" {
			out.Node, out.Addr, out.Standby = id.String(), addr, true
		}
		out.Fit = append(out.Fit, addr)
	}
	// The primary only while its agent says it serves: reads never go to
	// a node that is down.
	if p, ok := reports[state.Primary]; out.Addr == "" && ok && p.Healthy && p.Running && !p.InRecovery && !p.Fenced {
		if id, err := lifeline.ParseNodeID(state.Primary); err == nil && t.Address(id) != "" {
			out.Node = state.Primary
			out.Addr = net.JoinHostPort(t.Address(id), strconv.Itoa(w.Database.Port))
		}
	}
	return out
}

func withinRPO(r lifeline.ReplicaStatus, rpo time.Duration) bool {
	if rpo <= 0 {
		return r.ReplayLag == 0 && r.LagBytes == 0
	}
	return r.ReplayLag >= 0 && r.ReplayLag <= rpo.Seconds()
}

// Reader is a workload's reader endpoint: a TCP address that leads to the
// nearest standby whose replication lag is within the workload's RPO, or
// to the primary when no standby is. It re-reads the agents' reports every
// Refresh; a connection to a standby that stops being fit (it fell behind,
// or stopped streaming) is closed, so no client keeps reading data older
// than the RPO for longer than Refresh plus the agents' report interval.
type Reader struct {
	t      *lifeline.Topology
	w      *lifeline.Workload
	s      *store.Store
	listen string
	home   string
	view   *store.StateView
	log    *slog.Logger
	// Refresh is how often the reports are read. Default: the topology's
	// check interval, the rate at which agents report.
	Refresh time.Duration
	*endpoint
}

// NewReader returns the reader endpoint of a workload listening on listen,
// preferring standbys in the home region ("" for the active region).
func NewReader(t *lifeline.Topology, w *lifeline.Workload, s *store.Store, listen, home string, log *slog.Logger) *Reader {
	refresh := t.Control.CheckInterval
	if refresh <= 0 {
		refresh = 500 * time.Millisecond
	}
	return &Reader{
		t: t, w: w, s: s, listen: listen, home: home, view: s.View(w.Name), log: log.With("reader", w.Name),
		Refresh:  refresh,
		endpoint: newEndpoint(HoldNew, w.Name),
	}
}

// Run serves until ctx ends.
func (rd *Reader) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", rd.listen)
	if err != nil {
		return fmt.Errorf("reader endpoint of %s: %w", rd.w.Name, err)
	}
	rd.log.Info("reader endpoint listening", "addr", l.Addr().String(), "home", rd.home)
	go rd.follow(ctx)
	return rd.serve(ctx, l)
}

// follow re-reads the primary record and the reports every Refresh.
func (rd *Reader) follow(ctx context.Context) {
	tick := time.NewTicker(rd.Refresh)
	defer tick.Stop()
	for {
		if err := rd.refresh(ctx); err != nil && ctx.Err() == nil {
			rd.log.Debug("reader refresh", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (rd *Reader) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(rd.Refresh, time.Second))
	defer cancel()
	// Serializable reads: a slightly stale view only delays a switch by
	// one refresh, and the reader keeps working from a member cut off
	// from the quorum.
	state, ok, err := rd.view.Read(ctx, clientv3.WithSerializable())
	if !ok {
		return err // never seen a state: no target
	}
	reports, err := rd.s.Statuses(ctx, rd.w.Name, clientv3.WithSerializable())
	if err != nil {
		return err
	}
	byNode := make(map[string]lifeline.NodeStatus, len(reports))
	for _, r := range reports {
		byNode[r.Node] = r
	}
	rd.retarget(PickReader(rd.t, rd.w, rd.home, state, byNode))
	return err
}

// retarget switches new connections to the choice and closes the open
// ones whose target is neither the choice nor a fit standby.
func (rd *Reader) retarget(c ReadChoice) {
	if c.Addr == "" {
		rd.explain("no standby within the RPO and no primary serving")
	}
	old := rd.Target()
	if rd.set(c.Addr, c.Fit...) {
		rd.log.Info("reader target changed", "from", old, "to", c.Addr, "node", c.Node, "standby", c.Standby)
	}
}
