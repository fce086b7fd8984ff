package telemetry

// RingForTest exposes the ring buffer to the tests.
type RingForTest struct{ r *ring }

func NewRingForTest(n int) RingForTest { return RingForTest{newRing("w", "n", n)} }

func (r RingForTest) Add(t int64, seconds float64, bytes int64) { r.r.add(t, seconds, bytes) }

func (r RingForTest) Since(t int64) []Point { return r.r.since(t) }
