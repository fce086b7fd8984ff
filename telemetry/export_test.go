package telemetry

import (
	"time"

	"github.com/lifeline-dr/lifeline/status"
)

// RingForTest exposes the ring buffer to the tests.
type RingForTest struct{ r *ring }

func NewRingForTest(n int) RingForTest { return RingForTest{newRing("w", "n", n)} }

func (r RingForTest) Add(t int64, seconds float64, bytes int64) { r.r.add(t, seconds, bytes) }

func (r RingForTest) Since(t int64) []Point { return r.r.since(t) }

// LagForTest runs the sampler's lag computation on facts.
func (s *Sampler) LagForTest(facts map[string]status.Facts, rep *status.Report, now time.Time) []Lag {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started.IsZero() {
		s.started = now
	}
	return s.lagLocked(facts, rep, now)
}
