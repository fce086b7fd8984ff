package controller

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// Config is what the controller needs from the agent that hosts it.
type Config struct {
	Topology *lifeline.Topology
	Store    *store.Store
	// Name is the hosting node, used as the leader's identity.
	Name string
	// Connect opens a superuser connection to a node's database.
	Connect func(ctx context.Context, w *lifeline.Workload, node lifeline.NodeID) (*pgx.Conn, error)
	// DialURL maps a URL of another site's etcd member to the address this
	// node reaches it through.
	DialURL func(url string) string
	// Routing switches regions on and off for the runbooks.
	Routing Routing
	// ProbeInstance and ProbeEntry check a service instance and a
	// workload's public entry point (see Env).
	ProbeInstance func(ctx context.Context, inst compute.Instance) error
	ProbeEntry    func(ctx context.Context, w *lifeline.Workload) error
	Notify        Notifier
	// Backups runs scheduled backups; nil runs none.
	Backups *Backups
	// Readiness evaluates, while this controller leads, whether each
	// standby region can take over (readiness.Runner); nil: never.
	Readiness Runner
	Logger    *slog.Logger
}

// Runner is a loop the leader runs until its leadership ends.
type Runner interface {
	Run(ctx context.Context)
}

// Controller campaigns for leadership and, while it leads, acts.
type Controller struct {
	cfg Config
	log *slog.Logger
	t   *lifeline.Topology
	s   *store.Store

	mu        sync.Mutex
	running   map[string]string    // workload → the runbook this process runs
	missing   map[string]time.Time // when the lease was first seen missing
	sawExpiry map[string]bool      // the lease key was deleted, and not put since
	poke      chan struct{}        // wakes the leader's loop when a lease expires
	lastTry   map[string]time.Time
	decisions map[string]Decision
	// lastPrimary is the last report of each workload's primary, for the
	// evidence of a region failover (its report vanishes with the region).
	lastPrimary map[string]lifeline.NodeStatus
	// lastPlacement is when the leader last checked whether it should
	// leave a primary's node (only the lead loop touches it).
	lastPlacement time.Time
}

// New returns a controller.
func New(cfg Config) *Controller {
	return &Controller{
		cfg: cfg, log: cfg.Logger.With("subsystem", "controller"), t: cfg.Topology, s: cfg.Store,
		running: map[string]string{}, missing: map[string]time.Time{}, sawExpiry: map[string]bool{},
		lastTry: map[string]time.Time{}, decisions: map[string]Decision{}, lastPrimary: map[string]lifeline.NodeStatus{},
		poke: make(chan struct{}, 1),
	}
}

// Env is the environment runbook steps run in under this controller.
func (c *Controller) Env() *Env {
	return &Env{
		T: c.t, S: c.s, Connect: c.cfg.Connect, Routing: c.cfg.Routing,
		ProbeInstance: c.cfg.ProbeInstance, ProbeEntry: c.cfg.ProbeEntry, Notify: c.cfg.Notify,
		Now: time.Now, Sleep: realSleep, Log: c.log, Leader: c.cfg.Name,
	}
}

// Run campaigns until ctx ends; while leader it reconciles.
func (c *Controller) Run(ctx context.Context) {
	ttl := int(c.t.Control.LeaseTTL / time.Second)
	// Every candidate watches the leases, so that one elected after an
	// expiry (its leader died with the primary's zone) knows the lease
	// expired and need not wait a TTL to be sure.
	go c.watchLeases(ctx)
	// Every candidate keeps the primaries' last reports, for the evidence.
	go c.followPrimaries(ctx)
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(c.s.Client(), concurrency.WithTTL(max(ttl, 2)), concurrency.WithContext(ctx))
		if err != nil {
			realSleep(ctx, time.Second)
			continue
		}
		el := concurrency.NewElection(sess, c.s.Keys().Election("controller"))
		if err := el.Campaign(ctx, c.cfg.Name); err != nil {
			sess.Close()
			realSleep(ctx, time.Second)
			continue
		}
		c.log.Info("leading the controller")
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
				c.log.Warn("controller leadership lost")
			case <-lctx.Done():
			}
			cancel()
		}()
		c.lead(lctx, el)
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		sess.Close()
	}
}

func (c *Controller) lead(ctx context.Context, el *concurrency.Election) {
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	env := c.Env()
	engine := runbook.NewEngine(c.s, c.cfg.Name, guard, c.log, Catalog{Env: env})
	c.mu.Lock()
	c.missing = map[string]time.Time{}
	c.mu.Unlock()

	// Leading ends when ctx does or when asked to step down: either way the
	// goroutines started here stop first.
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()

	wg.Add(1)
	go func() {
		defer wg.Done()
		c.schedule(ctx)
	}()
	if c.cfg.Readiness != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cfg.Readiness.Run(ctx)
		}()
	}
	tick := time.NewTicker(c.t.Control.CheckInterval)
	defer tick.Stop()
	lastPlace := time.Time{}
	for {
		for i := range c.t.Workloads {
			c.evaluate(ctx, engine, &c.t.Workloads[i], &wg)
		}
		if time.Since(lastPlace) > 5*time.Second {
			// Off the loop: asking a dead member for its status blocks.
			lastPlace = time.Now()
			wg.Add(1)
			go func() { defer wg.Done(); c.placeEtcdLeader(ctx) }()
		}
		if c.askedToResign(ctx) || c.leavePrimary(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.poke:
		}
	}
}

// leavePrimary reports whether this leader should step down because its
// node hosts a primary (and another candidate can lead): losing that node
// would then cost a controller election on top of the lease's expiry,
// which delays the failover it must run. Checked once a runbook is done,
// like askedToResign, and only every few seconds.
func (c *Controller) leavePrimary(ctx context.Context) bool {
	if time.Since(c.lastPlacement) < 5*time.Second {
		return false
	}
	c.lastPlacement = time.Now()
	if c.busy() {
		return false
	}
	hosts := map[string]bool{} // nodes hosting a primary
	for i := range c.t.Workloads {
		st, _, _, err := c.s.State(ctx, c.t.Workloads[i].Name, clientv3.WithSerializable())
		if err != nil {
			return false
		}
		hosts[st.Primary] = true
	}
	if !hosts[c.cfg.Name] {
		return false
	}
	candidates, err := c.s.Candidates(ctx, "controller", clientv3.WithSerializable())
	if err != nil {
		return false
	}
	for _, other := range candidates {
		if other != c.cfg.Name && !hosts[other] {
			c.log.Info("stepping down as controller leader: this node hosts a primary", "candidate", other)
			return true
		}
	}
	return false // every candidate hosts a primary: stay
}

// busy reports whether this controller runs a runbook.
func (c *Controller) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.running) > 0
}

// askedToResign reports whether an operator asked this leader to step down
// (`lifeline controller resign`), and clears the request. A leader running
// a runbook finishes it first: a handover mid-runbook is for crashes.
func (c *Controller) askedToResign(ctx context.Context) bool {
	key := c.s.Keys().Resign("controller")
	if asked, found, err := c.s.GetString(ctx, key, clientv3.WithSerializable()); err != nil || !found || asked != c.cfg.Name {
		return false
	}
	if c.busy() {
		return false
	}
	_, _ = c.s.DeleteIfValue(ctx, key, c.cfg.Name)
	c.log.Warn("stepping down as controller leader, as asked")
	return true
}

// watchLeases records which primary leases expired (and were not taken
// again since) and wakes the leader's loop the moment one expires.
func (c *Controller) watchLeases(ctx context.Context) {
	prefix := c.s.Keys().Root() + "workloads/"
	for ctx.Err() == nil {
		for wr := range c.s.Client().Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix()) {
			for _, ev := range wr.Events {
				key := string(ev.Kv.Key)
				if !strings.HasSuffix(key, "/lease") {
					continue
				}
				w := strings.TrimSuffix(strings.TrimPrefix(key, prefix), "/lease")
				c.mu.Lock()
				if ev.Type == clientv3.EventTypePut {
					delete(c.sawExpiry, w)
					c.mu.Unlock()
					continue
				}
				c.sawExpiry[w] = true
				c.mu.Unlock()
				c.log.Warn("primary lease gone", "workload", w)
				select {
				case c.poke <- struct{}{}:
				default:
				}
			}
		}
		realSleep(ctx, 500*time.Millisecond)
	}
}

// followPrimaries keeps each workload's primary's latest report, every
// few check intervals, so that the evidence of a region's loss can say
// where the primary last was even after its report vanished.
func (c *Controller) followPrimaries(ctx context.Context) {
	tick := time.NewTicker(2 * c.t.Control.CheckInterval)
	defer tick.Stop()
	for {
		for i := range c.t.Workloads {
			w := c.t.Workloads[i].Name
			qctx, cancel := context.WithTimeout(ctx, c.t.Control.CheckInterval*2)
			st, _, found, err := c.s.State(qctx, w, clientv3.WithSerializable())
			var rep lifeline.NodeStatus
			var ok bool
			if err == nil && found {
				rep, ok, err = c.s.Status(qctx, w, st.Primary, clientv3.WithSerializable())
			}
			cancel()
			if err == nil && ok && rep.Role == lifeline.RolePrimary {
				c.mu.Lock()
				c.lastPrimary[w] = rep
				c.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// evaluate is one round of observe → decide → act for a workload.
func (c *Controller) evaluate(ctx context.Context, engine *runbook.Engine, w *lifeline.Workload, wg *sync.WaitGroup) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	in, err := c.observe(qctx, w)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("cannot read the workload's state; deciding nothing", "workload", w.Name, "err", err)
		}
		return
	}
	// A runbook in the state that this process does not run: one an
	// operator began, or one a previous leader left: run it.
	if id := in.State.Runbook; id != "" {
		c.mu.Lock()
		mine := c.running[w.Name] == id
		c.mu.Unlock()
		if !mine {
			rb, err := runbook.Get(qctx, c.s, id)
			if err != nil {
				c.log.Warn("the workload's runbook cannot be read", "workload", w.Name, "runbook", id, "err", err)
				return
			}
			if rb.State == runbook.Running {
				c.log.Warn("resuming runbook", "id", rb.ID, "kind", rb.Kind)
			}
			c.run(ctx, engine, rb, wg)
			return
		}
	}
	d := Decide(in)
	c.mu.Lock()
	prev := c.decisions[w.Name]
	c.decisions[w.Name] = d
	_, running := c.running[w.Name]
	// A kind of runbook that just failed is not started again at once
	// (another kind may be: a zone failover that found no standby is
	// followed by the region's).
	busy := running || time.Since(c.lastTry[w.Name+"/"+string(d.Action)]) < 10*time.Second
	lastPrimary := c.lastPrimary[w.Name]
	c.mu.Unlock()
	if d != prev && d.Action != None || (prev.Action != None && d.Action == None) {
		c.log.Warn("decision", "workload", w.Name, "action", d.Action, "reason", d.Reason)
	}
	if d.Action == None || busy {
		return
	}
	c.mu.Lock()
	c.lastTry[w.Name+"/"+string(d.Action)] = time.Now()
	c.mu.Unlock()
	lostAt := in.Now.Add(-in.LeaseMissing)
	req := runbook.Request{Workload: w.Name, Kind: string(d.Action), Reason: d.Reason, Actor: "controller " + c.cfg.Name,
		Params: map[string]string{"from": in.State.Primary, "epoch": itoa(in.State.Epoch), "lost_at": lostAt.UTC().Format(time.RFC3339Nano), "reason": d.Reason}}
	if d.Action == ZoneFailover && lastPrimary.Node == in.State.Primary {
		if set := SyncSet(lastPrimary); set != nil {
			req.Params["sync_set"] = strings.Join(names(set), ",")
		}
	}
	if d.Action == RegionFailover {
		req.Params["from_region"], req.Params["to_region"] = d.From, d.To
		down := RegionDown(c.t, w, in.State, d.From, in.Reports, in.Health, in.Now)
		ev := BuildEvidence(c.t, w, in.State, d.From, lastPrimary, in.Reports, down, in.Now)
		if !w.Strategy.StandbyDatabase() {
			ev.Copy = c.copyRecord(qctx, w.Name, d.To)
		}
		req.Evidence = &ev
	}
	rb, err := engine.Start(ctx, req)
	if err != nil {
		c.log.Warn("start runbook", "workload", w.Name, "kind", d.Action, "err", err)
		return
	}
	c.run(ctx, engine, rb, wg)
}

// copyRecord is the state of a region's copy of the backups, nil when unknown.
func (c *Controller) copyRecord(ctx context.Context, workload, region string) *lifeline.CopyRecord {
	var rec lifeline.CopyRecord
	if _, found, err := c.s.Get(ctx, c.s.Keys().BackupState(workload, "copy-"+region), &rec); err != nil || !found {
		return nil
	}
	return &rec
}

// run runs a runbook in the background, once per process.
func (c *Controller) run(ctx context.Context, engine *runbook.Engine, rb *runbook.Runbook, wg *sync.WaitGroup) {
	c.mu.Lock()
	if _, ok := c.running[rb.Workload]; ok {
		c.mu.Unlock()
		return
	}
	c.running[rb.Workload] = rb.ID
	c.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.running, rb.Workload)
			c.mu.Unlock()
		}()
		if err := engine.Run(ctx, rb); err != nil {
			c.log.Error("runbook", "id", rb.ID, "err", err)
			return
		}
		c.recordFailover(ctx, rb)
	}()
}

// observe gathers a decision's input from the store: one serializable read
// of the state, lease, reports and health results. A stale view can at
// worst start a runbook whose steps find nothing to do; the writes that
// matter are compare-and-swaps.
func (c *Controller) observe(ctx context.Context, w *lifeline.Workload) (Input, error) {
	in := Input{Topology: c.t, Workload: w, Now: time.Now()}
	snap, err := c.s.ReadSnapshot(ctx, w.Name, clientv3.WithSerializable())
	if err != nil {
		return in, err
	}
	in.State, in.HasState, in.Lease, in.Reports, in.Health = snap.State, snap.HasState, snap.Lease, snap.Reports, snap.Health
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.Lease != nil {
		delete(c.missing, w.Name)
		delete(c.sawExpiry, w.Name)
		return in, nil
	}
	first, ok := c.missing[w.Name]
	if !ok {
		first = in.Now
		c.missing[w.Name] = first
	}
	in.LeaseMissing = in.Now.Sub(first)
	in.Grace = c.t.Control.LeaseTTL
	if c.sawExpiry[w.Name] {
		in.Grace = 0
	}
	return in, nil
}

// recordFailover keeps the history `lifeline status` shows.
func (c *Controller) recordFailover(ctx context.Context, rb *runbook.Runbook) {
	started := rb.Created
	if t, err := time.Parse(time.RFC3339Nano, rb.Params["lost_at"]); err == nil {
		started = t
	}
	rec := lifeline.FailoverRecord{
		ID: rb.ID, Kind: rb.Kind, From: rb.Params["from"], To: rb.Params["to"],
		Started: started, Finished: rb.Finished, Seconds: rb.Finished.Sub(started).Seconds(),
	}
	if err := c.s.Put(ctx, c.s.Keys().FailoverPrefix(rb.Workload)+rb.ID, rec); err != nil {
		c.log.Warn("record failover", "err", err)
	}
}
