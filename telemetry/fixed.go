package telemetry

import "time"

// Fixed is a snapshot that never changes, with its lag history: the
// cluster for tests and benchmarks of what reads a Sampler.
type Fixed struct {
	Snap   Snapshot
	Series []Series
}

// Snapshot returns the fixed snapshot.
func (f Fixed) Snapshot() (Snapshot, bool) { return f.Snap, true }

// Subscribe never signals: nothing changes.
func (f Fixed) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

// History returns the fixed series.
func (f Fixed) History(time.Time) []Series { return f.Series }
