package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline/store"
)

// Health-check defaults. Detection takes about Interval×Fails after a
// target dies (6s), plus the time for the verdict to reach DNS and the
// clients' resolvers (the routing TTL).
const (
	DefaultHealthInterval = 2 * time.Second
	DefaultHealthTimeout  = time.Second
	DefaultHealthFails    = 3
	DefaultHealthPasses   = 2
	DefaultHealthQuorum   = 2
)

// HealthSettings tune the health checks. The same settings must be given to
// every Checker and to the Monitor: the Monitor counts on the checkers'
// streaks reaching Fails and Passes.
type HealthSettings struct {
	// Interval is how often each vantage point checks each target. Shorter
	// detects sooner and costs a request (or a connection) per target per
	// vantage point per interval. Default 2s.
	Interval time.Duration
	// Timeout is how long one check may take before it counts as failed:
	// the dial plus, for HTTP, the whole response. Keep it well under
	// Interval; a target slower than this is as good as down. Default 1s.
	Timeout time.Duration
	// Fails is how many consecutive failed checks a vantage point needs
	// before it reports a target down. Higher rides out a lost packet or a
	// GC pause; lower detects sooner. Default 3.
	Fails int
	// Passes is how many consecutive successful checks a vantage point
	// needs before it reports a down target up again. Higher avoids
	// sending traffic back to a flapping target. Default 2.
	Passes int
	// Quorum is the fewest vantage points that must agree before a target
	// changes state; a majority of the live vantage points is needed in
	// any case. The default, 2, means one vantage point alone (e.g. one cut
	// off from the others) can never take a target out. Set 1 only when
	// there is a single vantage point.
	Quorum int
}

// WithDefaults fills unset (zero or negative) settings.
func (s HealthSettings) WithDefaults() HealthSettings {
	if s.Interval <= 0 {
		s.Interval = DefaultHealthInterval
	}
	if s.Timeout <= 0 {
		s.Timeout = min(DefaultHealthTimeout, s.Interval)
	}
	if s.Fails <= 0 {
		s.Fails = DefaultHealthFails
	}
	if s.Passes <= 0 {
		s.Passes = DefaultHealthPasses
	}
	if s.Quorum <= 0 {
		s.Quorum = DefaultHealthQuorum
	}
	return s
}

// streakCap is where a vantage point stops counting: beyond it a longer
// streak changes no verdict, so the report does not change and is not
// rewritten.
func (s HealthSettings) streakCap() int { return max(s.Fails, s.Passes) }

// resultTTL is the lease on a vantage point's results: when the checker
// dies, its results vanish after this long (at once when it stops cleanly).
func (s HealthSettings) resultTTL() int64 {
	return max(int64((3*s.Interval+s.Timeout+time.Second-1)/time.Second), 3)
}

// CheckKind is how a target is checked.
type CheckKind string

const (
	// CheckHTTP sends GET Path and expects a 2xx or 3xx status (HAProxy's
	// httpchk rule); redirects are not followed.
	CheckHTTP CheckKind = "http"
	// CheckTCP opens a TCP connection and closes it (databases).
	CheckTCP CheckKind = "tcp"
)

// Target is something to check. Every vantage point checks a target under
// the same Name; its Address may differ per vantage point (a different
// network path to the same thing).
type Target struct {
	// Name identifies the target across vantage points, e.g.
	// "orders/eu-west/entry" or "orders/eu-west/a/postgres". It must not
	// be empty.
	Name    string
	Kind    CheckKind
	Address string // host:port
	// Path is what CheckHTTP requests; "/" when empty.
	Path string
	// Host, when set, is the HTTP Host header (a front door routes by it).
	Host string
	// Interval, when set and shorter, overrides the settings' interval
	// for this target (databases are checked more often: a region is
	// declared down on their checks).
	Interval time.Duration
}

// HealthReport is one vantage point's latest word on one target, as
// published in the control store.
type HealthReport struct {
	Target  string `json:"target"`
	Vantage string `json:"vantage"`
	// Up is the result of the latest check.
	Up bool `json:"up"`
	// Streak counts the consecutive checks with this result, up to
	// max(Fails, Passes).
	Streak int `json:"streak"`
	// Since is when the streak began.
	Since time.Time `json:"since"`
	// Error is why the latest check failed.
	Error string `json:"error,omitempty"`
}

// Probe checks a target once: nil means up. A nil client is one that opens
// a fresh connection per check and does not follow redirects.
func Probe(ctx context.Context, client *http.Client, t Target, timeout time.Duration) error {
	if client == nil {
		client = probeClient
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch t.Kind {
	case CheckTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", t.Address)
		if err != nil {
			return err
		}
		return c.Close()
	case CheckHTTP, "":
		path := t.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Address+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "lifeline-health-check")
		if t.Host != "" {
			req.Host = t.Host
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	default:
		return fmt.Errorf("unknown check kind %q", t.Kind)
	}
}

var probeClient = &http.Client{
	Transport: &http.Transport{
		// A fresh connection per check: a check also proves the target
		// still accepts connections.
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Checker is one vantage point: it checks its targets every interval and
// publishes each result in the control store under its own lease, so that
// when the checker dies its results vanish with it. One runs in each
// region (and ideally at the witness): the Monitor needs several to agree.
type Checker struct {
	vantage  string
	settings HealthSettings
	s        *store.Store
	log      *slog.Logger
	client   *http.Client

	mu      sync.Mutex
	targets map[string]*probe
	run     context.Context // set by Run; probes started before Run wait for it
	lease   clientv3.LeaseID
	gen     int // bumped on every new lease: probes republish
	ready   chan struct{}
}

type probe struct {
	t      Target
	cancel context.CancelFunc
	done   chan struct{}
}

// NewChecker returns the checker of vantage point vantage (a region name,
// or "witness"; no "/").
func NewChecker(s *store.Store, vantage string, settings HealthSettings, log *slog.Logger) *Checker {
	settings = settings.WithDefaults()
	return &Checker{
		vantage: vantage, settings: settings, s: s, log: log.With("subsystem", "health", "vantage", vantage),
		client:  probeClient,
		targets: map[string]*probe{},
		ready:   make(chan struct{}),
	}
}

// SetTargets replaces the targets: new ones are checked from now on,
// removed ones stop being checked and their results are deleted, changed
// ones restart their streak.
func (c *Checker) SetTargets(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[string]Target{}
	for _, t := range targets {
		if t.Name != "" {
			want[t.Name] = t
		}
	}
	replaced := map[string]chan struct{}{}
	for name, p := range c.targets {
		if t, ok := want[name]; !ok || t != p.t {
			p.cancel()
			delete(c.targets, name)
			if !ok && c.run != nil {
				go c.forget(p)
			}
			replaced[name] = p.done
		}
	}
	for name, t := range want {
		if _, ok := c.targets[name]; !ok {
			c.start(t, replaced[name])
		}
	}
}

// start runs a target's check loop once the loop it replaces (if any) has
// stopped, so that an old result never overwrites a new one; c.mu is held.
func (c *Checker) start(t Target, after <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{t: t, cancel: cancel, done: make(chan struct{})}
	c.targets[t.Name] = p
	go func() {
		defer close(p.done)
		if after != nil {
			<-after
		}
		select {
		case <-c.ready:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		run := c.run
		c.mu.Unlock()
		stop := context.AfterFunc(run, cancel)
		defer stop()
		c.loop(ctx, t)
	}()
}

// forget deletes a removed target's result once its loop has stopped.
func (c *Checker) forget(p *probe) {
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), c.settings.Interval)
	defer cancel()
	if _, err := c.s.Client().Delete(ctx, c.s.Keys().Health(p.t.Name, c.vantage)); err != nil {
		c.log.Debug("forget target", "target", p.t.Name, "err", err)
	}
}

// Run checks the targets until ctx ends, then revokes the lease so that
// the results vanish at once.
func (c *Checker) Run(ctx context.Context) error {
	if c.vantage == "" || strings.Contains(c.vantage, "/") {
		return fmt.Errorf("health checker: vantage point %q: want a name without /", c.vantage)
	}
	if err := c.grant(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.run = ctx
	c.mu.Unlock()
	close(c.ready)
	c.log.Info("health checks running", "interval", c.settings.Interval, "timeout", c.settings.Timeout)
	c.keepAlive(ctx)
	c.mu.Lock()
	probes := slicesOf(c.targets)
	lease := c.lease
	c.mu.Unlock()
	for _, p := range probes {
		<-p.done
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.s.Client().Revoke(rctx, lease); err != nil {
		c.log.Debug("revoke results lease", "err", err)
	}
	return nil
}

func slicesOf(m map[string]*probe) []*probe {
	out := make([]*probe, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	return out
}

// grant takes a new lease for the results.
func (c *Checker) grant(ctx context.Context) error {
	resp, err := c.s.Client().Grant(ctx, c.settings.resultTTL())
	if err != nil {
		return fmt.Errorf("health checker %s: lease: %w", c.vantage, err)
	}
	c.mu.Lock()
	c.lease = resp.ID
	c.gen++
	c.mu.Unlock()
	return nil
}

// keepAlive renews the lease until ctx ends; when the lease is lost (the
// control store was out of reach for longer than its TTL) it takes a new
// one and the probes republish under it.
func (c *Checker) keepAlive(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		lease := c.lease
		c.mu.Unlock()
		ch, err := c.s.Client().KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("health results lease lost; taking a new one", "err", err)
		for ctx.Err() == nil {
			if err := c.grant(ctx); err == nil {
				break
			}
			sleep(ctx, c.settings.Interval)
		}
	}
}

// loop checks one target every interval and publishes when the result or
// the streak changes.
func (c *Checker) loop(ctx context.Context, t Target) {
	// Spread the targets' checks over the interval.
	every := c.settings.Interval
	if t.Interval > 0 && t.Interval < every {
		every = t.Interval
	}
	sleep(ctx, rand.N(every))
	tick := time.NewTicker(every)
	defer tick.Stop()
	var cur HealthReport
	published := -1 // the lease generation the current report was written under
	for ctx.Err() == nil {
		err := Probe(ctx, c.client, t, c.settings.Timeout)
		if ctx.Err() != nil {
			return
		}
		next := cur
		next.Target, next.Vantage = t.Name, c.vantage
		switch {
		case cur.Since.IsZero() || (err == nil) != cur.Up:
			next.Up, next.Streak, next.Since = err == nil, 1, time.Now().UTC()
		case cur.Streak < c.settings.streakCap():
			next.Streak++
		}
		next.Error = ""
		if err != nil {
			next.Error = err.Error()
		}
		c.mu.Lock()
		lease, gen := c.lease, c.gen
		c.mu.Unlock()
		if next.Up != cur.Up || next.Streak != cur.Streak || next.Since != cur.Since || published != gen {
			pctx, cancel := context.WithTimeout(ctx, every)
			perr := c.s.Put(pctx, c.s.Keys().Health(t.Name, c.vantage), next, clientv3.WithLease(lease))
			cancel()
			if perr == nil {
				published = gen
			} else if ctx.Err() == nil {
				published = -1 // retry at the next check
				c.log.Debug("publish health", "target", t.Name, "err", perr)
			}
		}
		cur = next
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Verdict is the aggregated state of one target.
type Verdict struct {
	Target string
	Up     bool
	// Live is how many vantage points report on the target; DownVotes and
	// UpVotes how many of them have seen it down for Fails checks, up for
	// Passes checks.
	Live, DownVotes, UpVotes int
}

// Judge decides a target's state from the live vantage points' reports
// (one per vantage point; the control store drops a dead checker's). It is
// pure. A target changes state only when a majority of the live vantage
// points, and at least Quorum of them, agree on the new state for the
// configured number of consecutive checks; otherwise it keeps wasUp. So a
// target nobody reports on keeps its state, and one vantage point alone
// never takes a target out.
func Judge(wasUp bool, reports []HealthReport, s HealthSettings) Verdict {
	s = s.WithDefaults()
	v := Verdict{Up: wasUp}
	seen := map[string]bool{}
	for _, r := range reports {
		if seen[r.Vantage] {
			continue
		}
		seen[r.Vantage] = true
		v.Target = r.Target
		v.Live++
		switch {
		case !r.Up && r.Streak >= s.Fails:
			v.DownVotes++
		case r.Up && r.Streak >= s.Passes:
			v.UpVotes++
		}
	}
	need := max(v.Live/2+1, s.Quorum)
	switch {
	case wasUp && v.DownVotes >= need:
		v.Up = false
	case !wasUp && v.UpVotes >= need:
		v.Up = true
	}
	return v
}

// JudgeAll judges every target that has reports or a previous state.
// prev holds the previous states; a target never judged starts up (fail
// open: traffic is not withheld from something no one has seen fail).
func JudgeAll(prev map[string]bool, reports []HealthReport, s HealthSettings) map[string]Verdict {
	by := map[string][]HealthReport{}
	for _, r := range reports {
		by[r.Target] = append(by[r.Target], r)
	}
	out := make(map[string]Verdict, len(by)+len(prev))
	for name, up := range prev {
		if _, ok := by[name]; !ok {
			out[name] = Verdict{Target: name, Up: up}
		}
	}
	for name, rs := range by {
		wasUp, ok := prev[name]
		if !ok {
			wasUp = true
		}
		v := Judge(wasUp, rs, s)
		v.Target = name
		out[name] = v
	}
	return out
}

// Monitor follows every vantage point's reports in the control store and
// keeps the verdicts. The router runs one; its verdicts feed the route
// table (Healthy of a region's entry point), the front doors (healthy
// instances) and the reader endpoint.
type Monitor struct {
	s        *store.Store
	settings HealthSettings
	log      *slog.Logger
	// OnChange, when set, is called (from Run's goroutine) with every
	// verdict after any target's state changed or a new target appeared.
	OnChange func(map[string]Verdict)

	// Observer, when set, counts the reports that cannot be decoded.
	Observer Observer

	mu          sync.Mutex
	reports     map[string]HealthReport // by key
	undecodable map[string]string       // by key: why its report is not used
	verdicts    map[string]Verdict
}

// NewMonitor returns a monitor judging with settings.
func NewMonitor(s *store.Store, settings HealthSettings, log *slog.Logger) *Monitor {
	return &Monitor{
		s: s, settings: settings.WithDefaults(), log: log.With("subsystem", "health-monitor"),
		reports: map[string]HealthReport{}, undecodable: map[string]string{}, verdicts: map[string]Verdict{},
	}
}

// Undecodable returns the reports that could not be decoded, by key, with
// the error: each is left out of the verdicts (its vantage point counts as
// silent) and was logged as an error and counted by the Observer.
func (m *Monitor) Undecodable() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.undecodable)
}

// keep records the report at key, or why it cannot be used. Called with
// m.mu held.
func (m *Monitor) keep(key string, value []byte) {
	var r HealthReport
	err := json.Unmarshal(value, &r)
	if err == nil {
		m.reports[key] = r
		delete(m.undecodable, key)
		return
	}
	delete(m.reports, key)
	if _, seen := m.undecodable[key]; !seen {
		m.log.Error("a health report cannot be decoded; its vantage point counts as silent", "key", key, "err", err)
		if m.Observer != nil {
			m.Observer.Undecodable("health")
		}
	}
	m.undecodable[key] = err.Error()
}

// Up reports the target's state; true for a target no one reported on.
func (m *Monitor) Up(target string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.verdicts[target]
	return !ok || v.Up
}

// Verdicts returns a copy of every verdict.
func (m *Monitor) Verdicts() map[string]Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.verdicts)
}

// Run follows the reports until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	prefix := m.s.Keys().HealthPrefix()
	for ctx.Err() == nil {
		err := m.follow(ctx, prefix)
		if ctx.Err() != nil {
			break
		}
		m.log.Debug("health watch", "err", err)
		sleep(ctx, 500*time.Millisecond)
	}
	return nil
}

func (m *Monitor) follow(ctx context.Context, prefix string) error {
	resp, err := m.s.Client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.reports = map[string]HealthReport{}
	m.undecodable = map[string]string{}
	for _, kv := range resp.Kvs {
		m.keep(string(kv.Key), kv.Value)
	}
	m.mu.Unlock()
	m.rejudge()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range m.s.Client().Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				delete(m.reports, key)
				delete(m.undecodable, key)
			} else {
				m.keep(key, ev.Kv.Value)
			}
		}
		m.mu.Unlock()
		m.rejudge()
	}
	return errors.New("watch ended")
}

func (m *Monitor) rejudge() {
	m.mu.Lock()
	prev := map[string]bool{}
	for name, v := range m.verdicts {
		prev[name] = v.Up
	}
	reports := make([]HealthReport, 0, len(m.reports))
	for _, r := range m.reports {
		reports = append(reports, r)
	}
	// Deterministic order: the same vantage point never counts twice.
	sort.Slice(reports, func(i, j int) bool { return reports[i].Vantage < reports[j].Vantage })
	next := JudgeAll(prev, reports, m.settings)
	changed := false
	for name, v := range next {
		if old, ok := m.verdicts[name]; !ok || old.Up != v.Up {
			changed = true
			if ok {
				m.log.Warn("target health changed", "target", name, "up", v.Up, "live", v.Live, "down_votes", v.DownVotes, "up_votes", v.UpVotes)
			}
		}
	}
	m.verdicts = next
	fn := m.OnChange
	m.mu.Unlock()
	if changed && fn != nil {
		fn(maps.Clone(next))
	}
}
