package telemetry

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/store"
)

// Defaults of a Sampler.
const (
	// DefaultEvery is how often the snapshot is refreshed: often enough
	// for a dashboard to follow a failover, rare enough that a dozen
	// reads per agent per second stay small next to the agents' reports.
	DefaultEvery = time.Second
	// HistoryWindow and HistoryStep: an hour of lag per standby, one point
	// per 10 s (the highest lag seen in those 10 s, so a spike is kept).
	HistoryWindow = time.Hour
	HistoryStep   = 10 * time.Second
	// RunbooksKept is how many recent runbooks a snapshot carries.
	RunbooksKept = 20
)

// Snapshot is the cluster as of one refresh.
type Snapshot struct {
	At time.Time `json:"at"`
	// Error is why the last refresh failed ("" when it did not); the
	// rest is then as of At, the last refresh that succeeded.
	Error    string                  `json:"error,omitempty"`
	Status   *status.Report          `json:"status"`
	Lag      []Lag                   `json:"lag"`
	Routing  []router.RegionControl  `json:"routing"`
	Alarms   []lifeline.Alarm        `json:"alarms"`
	Runbooks []runbook.Runbook       `json:"runbooks"`
	Health   []store.HealthResult    `json:"health"`
	Rejoins  []lifeline.RejoinRecord `json:"rejoins,omitempty"`
	// Counts of every runbook by workload, kind and state, and of
	// failovers (changes of primary) by workload and kind.
	RunbookCounts  []Count `json:"-"`
	FailoverCounts []Count `json:"-"`
	// Steps holds every stored runbook's finished steps (for the step
	// duration histograms).
	Steps []StepTiming `json:"-"`
}

// Count is a number of things by labels.
type Count struct {
	Workload, Kind, State string
	N                     int
}

// StepTiming is one finished step of a stored runbook.
type StepTiming struct {
	Kind, Step, State string
	Seconds           float64
}

// Lag is one standby's replication lag.
type Lag struct {
	Workload   string  `json:"workload"`
	Node       string  `json:"node"`
	Role       string  `json:"role"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	RPOSeconds float64 `json:"rpo_seconds"`
	// Connected: the primary sees it streaming; Reporting: its agent
	// reports.
	Connected bool `json:"connected"`
	Reporting bool `json:"reporting"`
}

// Point is one step of lag history: the highest lag seen in it.
type Point struct {
	T       int64   `json:"t"` // Unix seconds, the step's start
	Seconds float64 `json:"s"`
	Bytes   int64   `json:"b"`
}

// Series is one standby's lag history.
type Series struct {
	Workload   string  `json:"workload"`
	Node       string  `json:"node"`
	RPOSeconds float64 `json:"rpo_seconds"`
	Points     []Point `json:"points"`
}

// Sampler refreshes the snapshot until its context ends. Safe for
// concurrent use.
type Sampler struct {
	T     *lifeline.Topology
	S     *store.Store
	Every time.Duration
	Log   *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu      sync.Mutex
	snap    Snapshot
	have    bool
	started time.Time
	seen    map[string]standbyMemory // by workload/node
	hist    map[string]*ring         // by workload/node
	rpo     map[string]float64
	subs    map[chan struct{}]struct{}
	slow    time.Time // when runbooks were last read
}

type standbyMemory struct {
	caughtUp time.Time // last seen connected (less its replay lag)
	lsn      lifeline.LSN
}

func (s *Sampler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run refreshes every Every until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = DefaultEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*every)
		err := s.Refresh(cctx)
		cancel()
		if err != nil && ctx.Err() == nil && s.Log != nil {
			s.Log.Debug("telemetry: refresh", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Snapshot is the latest snapshot; ok is false before the first refresh
// that succeeded.
func (s *Sampler) Snapshot() (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, s.have
}

// Subscribe returns a channel that receives a signal after every refresh
// (dropped when the reader is behind), and a function that ends it.
func (s *Sampler) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.subs == nil {
		s.subs = map[chan struct{}]struct{}{}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// History is every standby's lag history since since.
func (s *Sampler) History(since time.Time) []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.hist))
	for k := range s.hist {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Series, 0, len(keys))
	for _, k := range keys {
		r := s.hist[k]
		sr := Series{Workload: r.workload, Node: r.node, RPOSeconds: s.rpo[r.workload], Points: r.since(since.Unix())}
		out = append(out, sr)
	}
	return out
}

// Refresh reads the cluster once and replaces the snapshot; on an error
// the last snapshot stays, marked with the error.
func (s *Sampler) Refresh(ctx context.Context) error {
	now := s.now()
	snap, facts, err := s.read(ctx, now)
	s.mu.Lock()
	if err != nil {
		s.snap.Error = err.Error()
		s.mu.Unlock()
		s.notify()
		return err
	}
	if s.started.IsZero() {
		s.started = now
	}
	snap.Lag = s.lagLocked(facts, snap.Status, now)
	s.recordLocked(snap.Lag, now)
	if snap.Runbooks == nil && s.have {
		// Not read this time (see read): keep the last ones.
		snap.Runbooks, snap.RunbookCounts, snap.Steps = s.snap.Runbooks, s.snap.RunbookCounts, s.snap.Steps
	}
	s.snap, s.have = snap, true
	s.mu.Unlock()
	s.notify()
	return nil
}

func (s *Sampler) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// read gathers one snapshot. Runbooks, which only grow, are read every
// fifth refresh, or when a workload names one in progress.
func (s *Sampler) read(ctx context.Context, now time.Time) (Snapshot, map[string]status.Facts, error) {
	snap := Snapshot{At: now.UTC(), Status: &status.Report{Name: s.T.Name}}
	leader, err := status.ControllerLeader(ctx, s.S)
	if err != nil {
		return snap, nil, err
	}
	snap.Status.Controller = leader
	facts := map[string]status.Facts{}
	busy := false
	for i := range s.T.Workloads {
		w := &s.T.Workloads[i]
		f, err := status.Read(ctx, s.S, w.Name)
		if err != nil {
			return snap, nil, err
		}
		facts[w.Name] = f
		snap.Status.Workloads = append(snap.Status.Workloads, status.Build(s.T, w, f))
		busy = busy || f.State.Runbook != ""
		for _, fo := range f.Failovers {
			snap.FailoverCounts = addCount(snap.FailoverCounts, Count{Workload: w.Name, Kind: fo.Kind})
		}
		alarms, err := s.S.Alarms(ctx, w.Name)
		if err != nil {
			return snap, nil, err
		}
		snap.Alarms = append(snap.Alarms, alarms...)
		rejoins, err := s.S.Rejoins(ctx, w.Name)
		if err != nil {
			return snap, nil, err
		}
		for _, r := range rejoins {
			snap.Rejoins = append(snap.Rejoins, r)
		}
	}
	if snap.Routing, err = router.Show(ctx, s.S, s.T); err != nil {
		return snap, nil, err
	}
	health, err := store.List[store.HealthResult](ctx, s.S, s.S.Keys().HealthPrefix())
	if err != nil {
		return snap, nil, err
	}
	for _, h := range health {
		snap.Health = append(snap.Health, h)
	}
	sort.Slice(snap.Health, func(i, j int) bool {
		if snap.Health[i].Target != snap.Health[j].Target {
			return snap.Health[i].Target < snap.Health[j].Target
		}
		return snap.Health[i].Vantage < snap.Health[j].Vantage
	})
	s.mu.Lock()
	readRunbooks := busy || !s.have || now.Sub(s.slow) >= 5*max(s.Every, DefaultEvery) || s.runningLocked()
	if readRunbooks {
		s.slow = now
	}
	s.mu.Unlock()
	if readRunbooks {
		all, err := runbook.List(ctx, s.S)
		if err != nil {
			return snap, nil, err
		}
		for _, rb := range all {
			snap.RunbookCounts = addCount(snap.RunbookCounts, Count{Workload: rb.Workload, Kind: rb.Kind, State: string(rb.State)})
			for _, st := range rb.Steps {
				if st.State == runbook.Succeeded || st.State == runbook.Skipped || st.State == runbook.Failed {
					snap.Steps = append(snap.Steps, StepTiming{Kind: rb.Kind, Step: st.Name, State: string(st.State), Seconds: st.Seconds})
				}
			}
		}
		// Newest first.
		for i := len(all) - 1; i >= 0 && len(snap.Runbooks) < RunbooksKept; i-- {
			snap.Runbooks = append(snap.Runbooks, all[i])
		}
		if snap.Runbooks == nil {
			snap.Runbooks = []runbook.Runbook{}
		}
	}
	return snap, facts, nil
}

// runningLocked: the last snapshot showed a runbook still running (its
// end must show up at once).
func (s *Sampler) runningLocked() bool {
	for _, rb := range s.snap.Runbooks {
		if rb.State == runbook.Running {
			return true
		}
	}
	return false
}

func addCount(cs []Count, c Count) []Count {
	for i := range cs {
		if cs[i].Workload == c.Workload && cs[i].Kind == c.Kind && cs[i].State == c.State {
			cs[i].N++
			return cs
		}
	}
	c.N = 1
	return append(cs, c)
}

// lagLocked computes each standby's lag (see the package comment).
func (s *Sampler) lagLocked(facts map[string]status.Facts, rep *status.Report, now time.Time) []Lag {
	if s.seen == nil {
		s.seen = map[string]standbyMemory{}
		s.rpo = map[string]float64{}
	}
	var out []Lag
	for _, wr := range rep.Workloads {
		w, err := s.T.Workload(wr.Name)
		if err != nil {
			continue
		}
		f := facts[wr.Name]
		s.rpo[w.Name] = w.Objectives.RPO.Seconds()
		primary := f.Reports[f.State.Primary]
		primaryLSN, _ := lifeline.ParseLSN(primary.LSN)
		replicas := map[string]lifeline.ReplicaStatus{}
		for _, r := range primary.Replicas {
			replicas[r.Name] = r
		}
		for _, n := range wr.Nodes {
			if n.Role == string(lifeline.RolePrimary) || n.Role == string(lifeline.RoleNone) {
				continue
			}
			id := lifeline.NodeID{Region: n.Region, Zone: n.Zone}
			key := w.Name + "/" + id.String()
			mem, known := s.seen[key]
			if !known {
				mem.caughtUp = s.started
			}
			l := Lag{Workload: w.Name, Node: id.String(), Role: n.Role, RPOSeconds: w.Objectives.RPO.Seconds()}
			report, reporting := f.Reports[id.String()]
			l.Reporting = reporting
			if reporting {
				if lsn, err := lifeline.ParseLSN(report.LSN); err == nil {
					mem.lsn = lsn
				}
				if rl, err := lifeline.ParseLSN(report.ReceiveLSN); err == nil && rl > mem.lsn {
					mem.lsn = rl
				}
			}
			if r, ok := replicas[id.Slug()]; ok && r.Connected {
				l.Connected = true
				l.Bytes, l.Seconds = r.LagBytes, r.ReplayLag
				mem.caughtUp = now.Add(-time.Duration(r.ReplayLag * float64(time.Second)))
			} else {
				l.Seconds = max(now.Sub(mem.caughtUp).Seconds(), 0)
				if primaryLSN > 0 && mem.lsn > 0 && primaryLSN > mem.lsn {
					l.Bytes = primaryLSN.Sub(mem.lsn)
				}
			}
			s.seen[key] = mem
			out = append(out, l)
		}
	}
	return out
}

func (s *Sampler) recordLocked(lags []Lag, now time.Time) {
	if s.hist == nil {
		s.hist = map[string]*ring{}
	}
	for _, l := range lags {
		key := l.Workload + "/" + l.Node
		r := s.hist[key]
		if r == nil {
			r = newRing(l.Workload, l.Node, int(HistoryWindow/HistoryStep))
			s.hist[key] = r
		}
		r.add(now.Unix()/int64(HistoryStep/time.Second)*int64(HistoryStep/time.Second), l.Seconds, l.Bytes)
	}
}

// ring keeps the last n steps of one standby's lag.
type ring struct {
	workload, node string
	points         []Point
	next           int
	full           bool
}

func newRing(workload, node string, n int) *ring {
	return &ring{workload: workload, node: node, points: make([]Point, n)}
}

// add records a sample in the step that starts at t (the highest wins).
func (r *ring) add(t int64, seconds float64, bytes int64) {
	last := (r.next - 1 + len(r.points)) % len(r.points)
	if (r.next > 0 || r.full) && r.points[last].T == t {
		p := &r.points[last]
		p.Seconds, p.Bytes = max(p.Seconds, seconds), max(p.Bytes, bytes)
		return
	}
	r.points[r.next] = Point{T: t, Seconds: seconds, Bytes: bytes}
	r.next++
	if r.next == len(r.points) {
		r.next, r.full = 0, true
	}
}

// since lists the points from t on, oldest first.
func (r *ring) since(t int64) []Point {
	var out []Point
	n, start := r.next, 0
	if r.full {
		n, start = len(r.points), r.next
	}
	for i := 0; i < n; i++ {
		p := r.points[(start+i)%len(r.points)]
		if p.T >= t {
			out = append(out, p)
		}
	}
	if out == nil {
		out = []Point{}
	}
	return out
}
