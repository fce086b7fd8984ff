package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
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

	// Observer, when set, counts the records that cannot be decoded.
	Observer Observer

	mu    sync.Mutex
	state lifeline.WorkloadState
	seen  bool
	lease *lifeline.LeaseRecord
	// bad says which record cannot be decoded, by kind (state, lease).
	bad map[string]string
}

// NewWriter returns the writer endpoint of a workload.
func NewWriter(t *lifeline.Topology, w *lifeline.Workload, s *store.Store, log *slog.Logger) *Writer {
	return &Writer{
		endpoint: newEndpoint(HoldNew, w.Name),
		t:        t, w: w, s: s, log: log.With("writer", w.Name),
		listen: WriterAddress(t, w), bad: map[string]string{},
	}
}

// Undecodable returns the records the writer cannot decode, by kind
// (state, lease), with the error. While the state cannot be decoded the
// writer keeps the last one it read (the lease still decides where writes
// go); while the lease cannot be decoded no node holds it and writes are
// held, and refused clients are told why.
func (wr *Writer) Undecodable() map[string]string {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return maps.Clone(wr.bad)
}

// decode decodes a record of kind into v, keeping the error in wr.bad
// (logged and counted on its first sighting) when it cannot.
func (wr *Writer) decode(kind, key string, b []byte, v any) bool {
	err := json.Unmarshal(b, v)
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if err == nil {
		delete(wr.bad, kind)
		return true
	}
	if _, seen := wr.bad[kind]; !seen {
		wr.log.Error("a record cannot be decoded", "record", kind, "key", key, "err", err)
		if wr.Observer != nil {
			wr.Observer.Undecodable(kind)
		}
	}
	wr.bad[kind] = fmt.Sprintf("the %s record at %s cannot be decoded: %v", kind, key, err)
	return false
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
	stateKey, leaseKey := keys.State(wr.w.Name), keys.Lease(wr.w.Name)
	go wr.watch(ctx, stateKey, func(b []byte) {
		var st lifeline.WorkloadState
		if b == nil || !wr.decode("state", stateKey, b, &st) {
			return // keep the last state read
		}
		wr.mu.Lock()
		wr.state, wr.seen = st, true
		wr.mu.Unlock()
	})
	go wr.watch(ctx, leaseKey, func(b []byte) {
		var l *lifeline.LeaseRecord
		if b != nil {
			l = &lifeline.LeaseRecord{}
			if !wr.decode("lease", leaseKey, b, l) {
				l = nil // no holder known: writes are held
			}
		}
		wr.mu.Lock()
		if b == nil {
			delete(wr.bad, "lease") // no lease: nothing left undecodable
		}
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
	case wr.bad["lease"] != "":
		why = wr.bad["lease"]
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
