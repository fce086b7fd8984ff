package controller

import (
	"fmt"

	"github.com/lifeline-dr/lifeline"
)

// NotReady is the refusal of a failover to a standby region whose
// readiness checks fail (readiness.Evaluate), nil when none that matters
// does. The witness check is left out: an operator's failover, or one an
// approver approves, needs no quorum. Like CheckFailover's, --force
// overrides it.
func NotReady(r lifeline.Readiness) error {
	var reasons []string
	for _, c := range r.Failing() {
		if c.Name == "witness" {
			continue
		}
		reasons = append(reasons, fmt.Sprintf("%s is NOT READY: %s: %s", r.Region, c.Name, c.Detail))
	}
	if len(reasons) == 0 {
		return nil
	}
	return &Refusal{Reasons: reasons}
}
