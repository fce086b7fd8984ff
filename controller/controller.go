// Package controller is the brain that runs in the leader among the agents:
// it watches every workload's primary lease and the agents' reports, decides
// (Decide, a pure function) when a failover is needed, and runs the
// failover as a runbook. Leadership is an etcd election; everything the
// controller writes is guarded by it.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/lifeline-dr/lifeline"
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
	// Backups runs scheduled backups; nil runs none.
	Backups *Backups
	Logger  *slog.Logger
}

// Controller campaigns for leadership and, while it leads, acts.
type Controller struct {
	cfg Config
	log *slog.Logger
	t   *lifeline.Topology
	s   *store.Store

	mu        sync.Mutex
	running   map[string]bool      // workloads with a runbook in this process
	missing   map[string]time.Time // when the lease was first seen missing
	sawExpiry map[string]bool      // the lease key was deleted, and not put since
	poke      chan struct{}        // wakes the leader's loop when a lease expires
	lastTry   map[string]time.Time
	decisions map[string]Decision
	// lastPlacement is when the leader last checked whether it should
	// leave a primary's node (only the lead loop touches it).
	lastPlacement time.Time
}

// New returns a controller.
func New(cfg Config) *Controller {
	return &Controller{
		cfg: cfg, log: cfg.Logger.With("subsystem", "controller"), t: cfg.Topology, s: cfg.Store,
		running: map[string]bool{}, missing: map[string]time.Time{}, sawExpiry: map[string]bool{},
		lastTry: map[string]time.Time{}, decisions: map[string]Decision{},
		poke: make(chan struct{}, 1),
	}
}

// Run campaigns until ctx ends; while leader it reconciles.
func (c *Controller) Run(ctx context.Context) {
	ttl := int(c.t.Control.LeaseTTL / time.Second)
	// Every candidate watches the leases, so that one elected after an
	// expiry (its leader died with the primary's zone) knows the lease
	// expired and need not wait a TTL to be sure.
	go c.watchLeases(ctx)
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(c.s.Client(), concurrency.WithTTL(max(ttl, 2)), concurrency.WithContext(ctx))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		el := concurrency.NewElection(sess, c.s.Keys().Election("controller"))
		if err := el.Campaign(ctx, c.cfg.Name); err != nil {
			sess.Close()
			sleep(ctx, time.Second)
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

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *Controller) lead(ctx context.Context, el *concurrency.Election) {
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	engine := runbook.NewEngine(c.s, c.cfg.Name, guard, c.log, c.zoneFailover())
	c.mu.Lock()
	c.missing = map[string]time.Time{}
	c.mu.Unlock()

	// Leading ends when ctx does or when asked to step down: either way the
	// goroutines started here stop first.
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	if open, err := engine.Unfinished(ctx); err == nil {
		for _, rb := range open {
			c.log.Warn("resuming runbook", "id", rb.ID, "kind", rb.Kind)
			wg.Add(1)
			go func() { defer wg.Done(); c.runRunbook(ctx, engine, rb) }()
		}
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		c.schedule(ctx)
	}()
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
		rec, _, _, err := c.s.Primary(ctx, c.t.Workloads[i].Name, clientv3.WithSerializable())
		if err != nil {
			return false
		}
		hosts[rec.Node] = true
	}
	if !hosts[c.cfg.Name] {
		return false
	}
	resp, err := c.s.Client().Get(ctx, c.s.Keys().Election("controller")+"/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return false
	}
	for _, kv := range resp.Kvs {
		if other := string(kv.Value); other != c.cfg.Name && !hosts[other] {
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
	for _, running := range c.running {
		if running {
			return true
		}
	}
	return false
}

// askedToResign reports whether an operator asked this leader to step down
// (`lifeline controller resign`), and clears the request. A leader running
// a runbook finishes it first: a handover mid-runbook is for crashes.
func (c *Controller) askedToResign(ctx context.Context) bool {
	key := c.s.Keys().Resign("controller")
	resp, err := c.s.Client().Get(ctx, key, clientv3.WithSerializable())
	if err != nil || len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != c.cfg.Name {
		return false
	}
	if c.busy() {
		return false
	}
	_, _ = c.s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.Value(key), "=", c.cfg.Name)).
		Then(clientv3.OpDelete(key)).
		Commit()
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
		sleep(ctx, 500*time.Millisecond)
	}
}

func (c *Controller) evaluate(ctx context.Context, engine *runbook.Engine, w *lifeline.Workload, wg *sync.WaitGroup) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	in, err := c.input(qctx, w)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("cannot read the workload's state; deciding nothing", "workload", w.Name, "err", err)
		}
		return
	}
	d := Decide(in)
	c.mu.Lock()
	prev := c.decisions[w.Name]
	c.decisions[w.Name] = d
	busy := c.running[w.Name] || time.Since(c.lastTry[w.Name]) < 10*time.Second
	c.mu.Unlock()
	if d != prev && d.Action != None || (prev.Action != None && d.Action == None) {
		c.log.Warn("decision", "workload", w.Name, "action", d.Action, "reason", d.Reason)
	}
	if d.Action != ZoneFailover || busy {
		return
	}
	c.mu.Lock()
	c.running[w.Name] = true
	c.lastTry[w.Name] = time.Now()
	c.mu.Unlock()
	lostAt := in.Now.Add(-in.LeaseMissing)
	rb, err := engine.Start(ctx, w.Name, string(ZoneFailover), map[string]string{
		"from": in.Primary.Node, "epoch": itoa(in.Primary.Epoch), "lost_at": lostAt.UTC().Format(time.RFC3339Nano),
		"reason": d.Reason,
	})
	if err != nil {
		c.log.Warn("start failover", "workload", w.Name, "err", err)
		c.mu.Lock()
		c.running[w.Name] = false
		c.mu.Unlock()
		return
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.runRunbook(ctx, engine, rb) }()
}

func (c *Controller) runRunbook(ctx context.Context, engine *runbook.Engine, rb *runbook.Runbook) {
	defer func() {
		c.mu.Lock()
		c.running[rb.Workload] = false
		c.mu.Unlock()
	}()
	c.mu.Lock()
	c.running[rb.Workload] = true
	c.mu.Unlock()
	if err := engine.Run(ctx, rb); err != nil {
		c.log.Error("runbook", "id", rb.ID, "err", err)
		return
	}
	c.recordFailover(ctx, rb)
}

// input gathers a decision's input from the store.
func (c *Controller) input(ctx context.Context, w *lifeline.Workload) (Input, error) {
	in := Input{Topology: c.t, Workload: w, Now: time.Now()}
	keys := c.s.Keys()
	// One serializable read of everything: a stale view can at worst start
	// a runbook whose steps find nothing to do; the writes that matter are
	// compare-and-swaps.
	resp, err := c.s.Client().Txn(ctx).Then(
		clientv3.OpGet(keys.Primary(w.Name), clientv3.WithSerializable()),
		clientv3.OpGet(keys.Lease(w.Name), clientv3.WithSerializable()),
		clientv3.OpGet(keys.Lock(w.Name), clientv3.WithSerializable()),
		clientv3.OpGet(keys.StatusPrefix(w.Name), clientv3.WithPrefix(), clientv3.WithSerializable()),
	).Commit()
	if err != nil {
		return in, err
	}
	// A record that does not decode is an error, never "no record": a
	// primary record read as absent looks like a workload not bootstrapped,
	// and a lease read as absent like a lost primary.
	r := resp.Responses
	if kvs := r[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, &in.Primary); err != nil {
			return in, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
		}
	}
	if kvs := r[1].GetResponseRange().Kvs; len(kvs) > 0 {
		var l lifeline.LeaseRecord
		if err := json.Unmarshal(kvs[0].Value, &l); err != nil {
			return in, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
		}
		in.Lease = &l
	}
	in.Locked = len(r[2].GetResponseRange().Kvs) > 0
	in.Reports = map[string]lifeline.NodeStatus{}
	for _, kv := range r[3].GetResponseRange().Kvs {
		var st lifeline.NodeStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return in, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		in.Reports[st.Node] = st
	}
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
