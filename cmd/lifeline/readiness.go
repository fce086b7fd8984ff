package main

import (
	"context"
	"fmt"
	"os"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/readiness"
	"github.com/lifeline-dr/lifeline/store"
)

// checkReady evaluates region's readiness to take w over now (from this
// host, which in a local topology is every node's) and refuses when it is
// NOT READY.
func checkReady(ctx context.Context, t *lifeline.Topology, s *store.Store, w *lifeline.Workload, region string) error {
	r := &readiness.Runner{T: t, S: s}
	if t.Mode == lifeline.ModeLocal {
		bin, _ := os.Executable()
		r.Probe = readiness.LocalProbe(bin)
	}
	recs, err := r.Check(ctx, w)
	if err != nil {
		return fmt.Errorf("readiness of %s: %w", region, err)
	}
	for _, rec := range recs {
		if rec.Region == region {
			return controller.NotReady(rec)
		}
	}
	return nil
}
