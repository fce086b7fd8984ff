package controller

import (
	"context"
	"time"

	"github.com/lifeline-dr/lifeline"
)

type StalledStreams = stalledStreams

func NewStalledStreams() StalledStreams { return stalledStreams{} }

func (s stalledStreams) Settle(r map[string]lifeline.NodeStatus, after time.Duration) map[string]lifeline.NodeStatus {
	return s.settle(r, after)
}

// ReadInput reads what Decide decides on, as the leader does.
func (c *Controller) ReadInput(ctx context.Context, w *lifeline.Workload) (Input, error) {
	return c.observe(ctx, w)
}
