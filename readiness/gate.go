package readiness

import (
	"context"
	"fmt"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
)

// Gate evaluates region's readiness to take w over now and returns the
// refusal (controller.NotReady) when it is NOT READY: the check an
// operator's failover or approval passes before it begins, unless forced.
func (r *Runner) Gate(ctx context.Context, w *lifeline.Workload, region string) error {
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
