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
// or demoted server. A new connection waits (up to 30s) for a primary
// during a failover.
type Writer struct {
	*endpoint
	t      *lifeline.Topology
	w      *lifeline.Workload
	s      *store.Store
	listen string
	log    *slog.Logger

	mu      sync.Mutex
	primary lifeline.PrimaryRecord
	lease   *lifeline.LeaseRecord
}

// NewWriter returns the writer endpoint of a workload.
func NewWriter(t *lifeline.Topology, w *lifeline.Workload, s *store.Store, log *slog.Logger) *Writer {
	return &Writer{
		endpoint: newEndpoint(30 * time.Second),
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
	go wr.watch(ctx, keys.Primary(wr.w.Name), func(b []byte) {
		var rec lifeline.PrimaryRecord
		if b != nil {
			_ = json.Unmarshal(b, &rec)
		}
		wr.mu.Lock()
		wr.primary = rec
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
	target := ""
	if l := wr.lease; l != nil && l.Node == wr.primary.Node && l.Epoch == wr.primary.Epoch {
		if id, err := lifeline.ParseNodeID(l.Node); err == nil {
			target = net.JoinHostPort(wr.t.Address(id), strconv.Itoa(wr.w.Database.Port))
		}
	}
	wr.mu.Unlock()
	old := wr.Target()
	if wr.set(target) {
		wr.log.Warn("writer target changed", "from", old, "to", target)
	}
}
