package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/postgres"
)

// workloadRunner reconciles one workload's database on this node with the
// control store's word on who the primary is.
type workloadRunner struct {
	a   *Agent
	w   *lifeline.Workload
	pg  *postgres.Instance
	log *slog.Logger
	me  lifeline.NodeID

	primary    lifeline.PrimaryRecord
	wake       chan struct{}
	configured string // the settings last written, to reload only on change
	roleReady  bool   // replication user and slots are in place
}

// SmallParameters size PostgreSQL for a local topology, where every node
// shares one machine: a six-node topology must fit next to everything else.
var SmallParameters = map[string]string{
	"shared_buffers":       "32MB",
	"max_connections":      "40",
	"max_worker_processes": "4",
	"work_mem":             "2MB",
}

func (a *Agent) newWorkloadRunner(w *lifeline.Workload, nodeDir string) *workloadRunner {
	t := a.cfg.Topology
	params := map[string]string{}
	if t.Mode == lifeline.ModeLocal {
		for k, v := range SmallParameters {
			params[k] = v
		}
	}
	for k, v := range w.Database.Parameters {
		params[k] = v
	}
	cfg := postgres.Config{
		Name:            fmt.Sprintf("%s@%s", w.Name, a.cfg.Node),
		BinDir:          a.cfg.PGBin,
		Dir:             filepath.Join(nodeDir, w.Name),
		Owner:           a.cfg.Owner,
		Address:         t.Address(a.cfg.Node),
		Port:            w.Database.Port,
		Superuser:       w.Database.Superuser,
		ReplicationUser: w.Database.ReplicationUser,
		Parameters:      params,
		Logger:          a.log,
	}
	log := a.log.With("workload", w.Name)
	if w.Database.Password.Set() {
		var err error
		if cfg.Password, err = w.Database.Password.Resolve(); err == nil {
			cfg.ReplicationPassword, err = w.Database.ReplicationPassword.Resolve()
		}
		if err != nil {
			log.Error("database password", "err", err)
		}
		cfg.Allow = []string{"0.0.0.0/0", "::/0"}
		if t.Mode == lifeline.ModeLocal {
			cfg.Allow = []string{"127.0.0.0/8"}
		}
	} else {
		// Only a local topology gets here (spec validation): trust its own
		// addresses, and 127.0.0.1, the source of connections between
		// loopback addresses on one machine.
		cfg.Trust = []string{"127.0.0.1"}
		for _, id := range t.Nodes() {
			cfg.Trust = append(cfg.Trust, t.Address(id))
		}
		log.Warn("no database password in the spec: trusting the topology's loopback addresses without one")
	}
	return &workloadRunner{
		a: a, w: w, me: a.cfg.Node, log: log,
		pg:   postgres.New(cfg),
		wake: make(chan struct{}, 1),
	}
}

func (r *workloadRunner) run(ctx context.Context) {
	go r.watchPrimary(ctx)
	interval := r.a.cfg.Topology.Control.CheckInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := r.reconcile(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile", "err", err)
		}
		if err := r.publish(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("report status", "err", err)
		}
		// A server that exits wakes the loop, which restarts it if its
		// role still calls for it.
		var exited <-chan struct{}
		if r.pg.Running() {
			exited = r.pg.Exited()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.wake:
		case <-exited:
			r.log.Error("postgres exited", "log", r.pg.LogFile())
		}
	}
}

func (r *workloadRunner) watchPrimary(ctx context.Context) {
	key := r.a.store.Keys().Primary(r.w.Name)
	for ctx.Err() == nil {
		err := r.a.store.WatchKey(ctx, key, func([]byte) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		})
		if ctx.Err() == nil {
			r.log.Debug("watch primary", "err", err)
			time.Sleep(time.Second)
		}
	}
}

// primaryRecord reads who the primary is; the first agent to ask records
// the spec's initial primary.
func (r *workloadRunner) primaryRecord(ctx context.Context) (lifeline.PrimaryRecord, error) {
	t := r.a.cfg.Topology
	rec, _, found, err := r.a.store.Primary(ctx, r.w.Name)
	if err != nil || found {
		return rec, err
	}
	init := lifeline.PrimaryRecord{Node: t.InitialPrimary(r.w).String(), Epoch: 1, Since: time.Now().UTC()}
	if _, err := r.a.store.Create(ctx, r.a.store.Keys().Primary(r.w.Name), init); err != nil {
		return rec, err
	}
	rec, _, _, err = r.a.store.Primary(ctx, r.w.Name)
	return rec, err
}

func (r *workloadRunner) reconcile(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rec, err := r.primaryRecord(cctx)
	cancel()
	if err != nil {
		return err
	}
	r.primary = rec
	primary, err := lifeline.ParseNodeID(rec.Node)
	if err != nil {
		return fmt.Errorf("primary record: %w", err)
	}
	if primary == r.me {
		return r.reconcilePrimary(ctx, rec)
	}
	return r.reconcileStandby(ctx, primary)
}

func (r *workloadRunner) reconcilePrimary(ctx context.Context, rec lifeline.PrimaryRecord) error {
	t := r.a.cfg.Topology
	if !r.pg.Initialized() {
		if rec.Epoch != 1 {
			// A promoted primary always has data; an empty one here means
			// the node lost its disk. Never bootstrap an empty database in
			// place of a primary that had data.
			return fmt.Errorf("this node is primary (epoch %d) but has no data directory", rec.Epoch)
		}
		if err := r.pg.InitDB(ctx); err != nil {
			return err
		}
	}
	var names []string
	for _, id := range t.SyncCandidates(r.w, r.me) {
		names = append(names, id.Slug())
	}
	settings := postgres.Settings{
		AppName:          r.me.Slug(),
		SyncStandbyNames: postgres.SyncStandbyNames(r.w.Database.Sync, names),
	}
	if err := r.apply(ctx, settings); err != nil {
		return err
	}
	if !r.roleReady {
		if err := r.pg.EnsureReplicationUser(ctx); err != nil {
			return err
		}
		var slots []string
		for _, id := range t.DatabaseNodes(r.w) {
			if id != r.me {
				slots = append(slots, id.Slug())
			}
		}
		if err := r.pg.EnsureSlots(ctx, slots); err != nil {
			return err
		}
		r.roleReady = true
	}
	return nil
}

func (r *workloadRunner) reconcileStandby(ctx context.Context, primary lifeline.NodeID) error {
	t := r.a.cfg.Topology
	host, port := r.a.dialer.HostPort(t.Address(primary), r.w.Database.Port)
	up := postgres.Upstream{Host: host, Port: port, Slot: r.me.Slug()}
	if !r.pg.Initialized() {
		if !r.primaryReady(ctx, primary) {
			return fmt.Errorf("waiting for primary %s before seeding", primary)
		}
		bctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		if err := r.pg.BaseBackup(bctx, up); err != nil {
			return err
		}
	}
	return r.apply(ctx, postgres.Settings{AppName: r.me.Slug(), Upstream: &up})
}

// primaryReady reports whether the primary's agent says it serves writes.
func (r *workloadRunner) primaryReady(ctx context.Context, primary lifeline.NodeID) bool {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var st lifeline.NodeStatus
	_, found, err := r.a.store.Get(cctx, r.a.store.Keys().Status(r.w.Name, primary.String()), &st)
	return err == nil && found && st.Healthy && st.Role == lifeline.RolePrimary && !st.InRecovery
}

// apply writes the settings, starting the server or reloading it when they changed.
func (r *workloadRunner) apply(ctx context.Context, s postgres.Settings) error {
	b, _ := json.Marshal(s)
	changed := string(b) != r.configured
	if changed {
		if err := r.pg.WriteConfig(s); err != nil {
			return err
		}
		r.configured = string(b)
	}
	if !r.pg.Running() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		return r.pg.Start(sctx)
	}
	if changed {
		r.log.Info("configuration changed; reloading")
		return r.pg.Reload()
	}
	return nil
}

// publish reports the database's state to the control store.
func (r *workloadRunner) publish(ctx context.Context) error {
	t := r.a.cfg.Topology
	st := lifeline.NodeStatus{
		Node:        r.me.String(),
		Workload:    r.w.Name,
		Address:     t.Address(r.me),
		Port:        r.w.Database.Port,
		AgentPID:    os.Getpid(),
		PostgresPID: r.pg.PID(),
		Reported:    time.Now().UTC(),
	}
	if primary, err := lifeline.ParseNodeID(r.primary.Node); err == nil {
		st.Role = t.RoleOf(r.w, primary, r.me)
	}
	if st.PostgresPID != 0 {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pst, err := r.pg.Status(qctx)
		cancel()
		if err != nil {
			st.Error = err.Error()
		} else {
			st.InRecovery = pst.InRecovery
			st.LSN = pst.LSN.String()
			st.Timeline = pst.Timeline
			st.Replicas = pst.Replicas
			if pst.InRecovery {
				st.ReceiveLSN = pst.ReceiveLSN.String()
			}
			switch st.Role {
			case lifeline.RolePrimary:
				st.Healthy = !pst.InRecovery && r.roleReady
			default:
				st.Healthy = pst.InRecovery && pst.Upstream == "streaming"
				if !st.Healthy {
					st.Error = "not streaming from the primary"
				}
			}
		}
	} else if !r.pg.Initialized() {
		st.Error = "not seeded yet"
	} else {
		st.Error = "postgres is not running"
	}
	return r.a.report(ctx, st)
}
