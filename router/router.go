// Package router is where clients enter: for now each workload's writer
// endpoint, a TCP address that always leads to the current primary and
// never to a fenced or demoted one. It follows the control store by watch.
package router

import (
	"context"
	"log/slog"
	"sync"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// Run serves every workload's endpoints until ctx ends.
func Run(ctx context.Context, t *lifeline.Topology, s *store.Store, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(t.Workloads))
	var wg sync.WaitGroup
	for i := range t.Workloads {
		wr := NewWriter(t, &t.Workloads[i], s, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wr.Run(ctx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
