package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// Writer is a workload's writer endpoint: a TCP address that always leads
// to the current primary. It forwards only to a node that the primary
// record names and that holds the primary lease; when the lease goes (the
// primary is fenced or dead) or the record names another node, every
// forwarded connection is closed, so no client keeps writing to a fenced
// or demoted server. A new connection waits (up to HoldNew) for a primary
// during a failover, then is refused with an error saying why.
type Writer struct {
	*endpoint
	t      *lifeline.Topology
	w      *lifeline.Workload
	s      *store.Store
	listen string
	log    *slog.Logger

	mu    sync.Mutex
	state lifeline.WorkloadState
	seen  bool
	lease *lifeline.LeaseRecord
}

// NewWriter returns the writer endpoint of a workload.
func NewWriter(t *lifeline.Topology, w *lifeline.Workload, s *store.Store, log *slog.Logger) *Writer {
	return &Writer{
		endpoint: newEndpoint(HoldNew, w.Name),
		t:        t, w: w, s: s, log: log.With("writer", w.Name),
		listen: WriterAddress(t, w),
	}
}

// WriterAddress is where a workload's writer endpoint listens.
func WriterAddress(t *lifeline.Topology, w *lifeline.Workload) string {
	return net.JoinHostPort(t.Router.Address, strconv.Itoa(w.Routing.WriterPort))
}

// Run serves until ctx ends.
func (wr *Writer) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", wr.listen)
	if err != nil {
		return fmt.Errorf("writer endpoint of %s: %w", wr.w.Name, err)
	}
	wr.log.Info("writer endpoint listening", "addr", wr.listen)
	keys := wr.s.Keys()
	go wr.watch(ctx, keys.State(wr.w.Name), func(b []byte) {
		var st lifeline.WorkloadState
		if b == nil {
			return
		}
		if err := json.Unmarshal(b, &st); err != nil {
			wr.log.Error("the workload's state cannot be decoded; keeping the last one", "err", err)
			return
		}
		wr.mu.Lock()
		wr.state, wr.seen = st, true
		wr.mu.Unlock()
	})
	go wr.watch(ctx, keys.Lease(wr.w.Name), func(b []byte) {
		var l *lifeline.LeaseRecord
		if b != nil {
			l = &lifeline.LeaseRecord{}
			if json.Unmarshal(b, l) != nil {
				l = nil
			}
		}
		wr.mu.Lock()
		wr.lease = l
		wr.mu.Unlock()
	})
	return wr.serve(ctx, l)
}

// watch follows one key, recomputing the target after every change.
func (wr *Writer) watch(ctx context.Context, key string, set func([]byte)) {
	for ctx.Err() == nil {
		err := wr.s.WatchKey(ctx, key, func(b []byte) {
			set(b)
			wr.retarget()
		})
		if ctx.Err() == nil {
			wr.log.Debug("watch", "key", key, "err", err)
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// retarget forwards to the primary only while it holds its lease.
func (wr *Writer) retarget() {
	wr.mu.Lock()
	target, why := "", ""
	st := wr.state
	switch l := wr.lease; {
	case !wr.seen:
		why = "the workload's state has not been read yet"
	case l != nil && l.Node == st.Primary && l.Epoch == st.Epoch:
		if id, err := lifeline.ParseNodeID(l.Node); err == nil {
			target = net.JoinHostPort(wr.t.Address(id), strconv.Itoa(wr.w.Database.Port))
		}
	default:
		why = fmt.Sprintf("no primary holds the lease (primary %s, epoch %d, phase %s", orNone(st.Primary), st.Epoch, st.Phase)
		if st.Runbook != "" {
			why += ", runbook " + st.Runbook
		}
		why += ")"
	}
	wr.mu.Unlock()
	wr.explain(why)
	old := wr.Target()
	if wr.set(target) {
		wr.log.Warn("writer target changed", "from", old, "to", target)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
