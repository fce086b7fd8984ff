package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// or demoted server.
type Writer struct {
	t      *lifeline.Topology
	w      *lifeline.Workload
	s      *store.Store
	listen string
	log    *slog.Logger
	// Wait is how long a new connection waits for a primary when there is
	// none (during a failover) before it is closed.
	Wait time.Duration

	mu      sync.Mutex
	primary lifeline.PrimaryRecord
	lease   *lifeline.LeaseRecord
	target  string
	changed chan struct{} // closed and replaced on every target change
	conns   map[net.Conn]string
}

// NewWriter returns the writer endpoint of a workload.
func NewWriter(t *lifeline.Topology, w *lifeline.Workload, s *store.Store, log *slog.Logger) *Writer {
	return &Writer{
		t: t, w: w, s: s, log: log.With("writer", w.Name),
		listen:  WriterAddress(t, w),
		Wait:    30 * time.Second,
		changed: make(chan struct{}),
		conns:   map[net.Conn]string{},
	}
}

// WriterAddress is where a workload's writer endpoint listens.
func WriterAddress(t *lifeline.Topology, w *lifeline.Workload) string {
	return net.JoinHostPort(t.Router.Address, strconv.Itoa(w.Routing.WriterPort))
}

// Target is where connections go now ("" when there is no primary).
func (wr *Writer) Target() string {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.target
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
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				wr.closeAll()
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wr.serve(ctx, c)
		}()
	}
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
	defer wr.mu.Unlock()
	target := ""
	if l := wr.lease; l != nil && l.Node == wr.primary.Node && l.Epoch == wr.primary.Epoch {
		if id, err := lifeline.ParseNodeID(l.Node); err == nil {
			target = net.JoinHostPort(wr.t.Address(id), strconv.Itoa(wr.w.Database.Port))
		}
	}
	if target == wr.target {
		return
	}
	wr.log.Warn("writer target changed", "from", wr.target, "to", target)
	wr.target = target
	for c, to := range wr.conns {
		if to != target {
			c.Close()
		}
	}
	close(wr.changed)
	wr.changed = make(chan struct{})
}

func (wr *Writer) closeAll() {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	for c := range wr.conns {
		c.Close()
	}
}

// current returns the target, waiting up to Wait for one to appear.
func (wr *Writer) current(ctx context.Context) string {
	deadline := time.NewTimer(wr.Wait)
	defer deadline.Stop()
	for {
		wr.mu.Lock()
		target, changed := wr.target, wr.changed
		wr.mu.Unlock()
		if target != "" {
			return target
		}
		select {
		case <-changed:
		case <-deadline.C:
			return ""
		case <-ctx.Done():
			return ""
		}
	}
}

func (wr *Writer) serve(ctx context.Context, client net.Conn) {
	defer client.Close()
	target := wr.current(ctx)
	if target == "" {
		return
	}
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	wr.mu.Lock()
	if wr.target != target {
		wr.mu.Unlock()
		return // the primary changed while we dialed
	}
	wr.conns[client] = target
	wr.conns[server] = target
	wr.mu.Unlock()
	defer func() {
		wr.mu.Lock()
		delete(wr.conns, client)
		delete(wr.conns, server)
		wr.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}
