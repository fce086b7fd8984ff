package controller

import (
	"time"

	"github.com/lifeline-dr/lifeline"
)

type StalledStreams = stalledStreams

func NewStalledStreams() StalledStreams { return stalledStreams{} }

func (s stalledStreams) Settle(r map[string]lifeline.NodeStatus, after time.Duration) map[string]lifeline.NodeStatus {
	return s.settle(r, after)
}
