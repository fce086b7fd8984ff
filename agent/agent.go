package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/notify"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/store"
	"github.com/lifeline-dr/lifeline/wan"
)

// Config is what an agent needs to run one node.
type Config struct {
	Topology *lifeline.Topology
	Node     lifeline.NodeID
	// DataDir is the topology's data directory; the node keeps its state in
	// NodeDir(DataDir, Node).
	DataDir string
	PGBin   string
	Owner   *postgres.Owner
	Logger  *slog.Logger
}

// NodeDir is where a node keeps its etcd member and databases.
func NodeDir(dataDir string, id lifeline.NodeID) string {
	return filepath.Join(dataDir, "nodes", id.Region, id.Zone)
}

// WitnessDir is where the witness keeps its etcd member.
func WitnessDir(dataDir string) string { return filepath.Join(dataDir, "witness") }

// Agent runs one node: its etcd member when the node hosts a site, and one
// PostgreSQL instance per workload that has a database on the node.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	dialer *wan.Dialer
	store  *store.Store
	member *store.Member
	sec    *Security

	mu      sync.Mutex
	session clientv3.LeaseID
}

// New returns an agent for cfg.Node.
func New(cfg Config) (*Agent, error) {
	if _, err := cfg.Topology.Zone(cfg.Node); err != nil {
		return nil, err
	}
	sec, err := LoadSecurity(cfg.Topology, cfg.DataDir, certs.NodeName(cfg.Node))
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.Node.String()),
		dialer: wan.NewDialer(cfg.Topology, cfg.Node.String()),
		sec:    sec,
	}, nil
}

// Run serves until ctx ends, then stops the node's databases cleanly.
func (a *Agent) Run(ctx context.Context) error {
	t := a.cfg.Topology
	dir := NodeDir(a.cfg.DataDir, a.cfg.Node)
	// Others may pass through to the instances' directories (PostgreSQL's
	// OS user), not list it.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	site, hostsSite := t.SiteOf(a.cfg.Node)
	if hostsSite && t.Control.Embedded() {
		m, err := StartMember(ctx, t, a.sec, site, filepath.Join(dir, "etcd"))
		if err != nil {
			return err
		}
		a.member = m
		defer m.Close()
	}
	s, err := a.sec.ConnectStore(&a.cfg.Node, store.SkipSilentMembers(t.Control.CheckInterval, a.log))
	if err != nil {
		return err
	}
	a.store = s
	defer s.Close()
	if err := a.checkTopology(ctx); err != nil {
		return err
	}
	a.log.Info("agent running", "pid", os.Getpid())

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The operator surface failing (its port taken) must not stop
		// the node's database: it is logged, and status lists the API
		// endpoints so that another agent's can be used.
		if err := a.serveAPI(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("operator API stopped", "err", err)
		}
	}()
	var instances []*workloadRunner
	for i := range t.Workloads {
		// Every node runs every workload's runner: which nodes hold a
		// database follows the workload's state (a backup-restore
		// failover builds one in a region that had none).
		w := &t.Workloads[i]
		pgcfg, err := a.postgresConfig(w, dir)
		if err != nil {
			// Reported, not only logged: the node shows the error in
			// status until its agent runs with what it needs.
			a.log.Error("cannot run the database", "workload", w.Name, "err", err)
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.reportBroken(ctx, w, err)
			}()
			continue
		}
		r := a.newWorkloadRunner(w, pgcfg)
		instances = append(instances, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	go a.keepSession(ctx)
	driver := &compute.Driver{Binary: a.binary(), LogDir: filepath.Join(dir, "services"), Log: a.log,
		// A hung instance is restarted after failing its health check for
		// about the time the vantage points need to take it out.
		Check: func(ctx context.Context, inst compute.Instance) error {
			return router.Probe(ctx, nil, router.Target{Name: inst.Name(), Kind: router.CheckHTTP, Address: inst.Addr, Path: inst.Health}, time.Second)
		},
		CheckEvery: 2 * time.Second, FailAfter: 5, StartGrace: 10 * time.Second,
		Env: func(i compute.Instance) []string {
			w, err := t.Workload(i.Workload)
			if err != nil {
				return nil
			}
			writer, err := a.sec.serviceDSN(w, w.Routing.WriterPort)
			if err == nil {
				var reader string
				reader, err = a.sec.serviceDSN(w, w.Routing.ReaderPort)
				if err == nil {
					return []string{"LIFELINE_DATABASE=" + writer, "LIFELINE_DATABASE_READER=" + reader}
				}
			}
			a.log.Error("service instance without a database", "instance", i.Name(), "err", err)
			return nil
		}}
	defer driver.Stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.runServices(ctx, driver)
	}()
	ctl := controller.New(controller.Config{
		Topology: t, Store: s, Name: a.cfg.Node.String(), Connect: a.connect, DialURL: a.dialURL, Logger: a.log,
		Routing: router.Switch{S: s, T: t},
		ProbeInstance: func(ctx context.Context, inst compute.Instance) error {
			return router.Probe(ctx, nil, router.Target{Name: inst.Name(), Kind: router.CheckHTTP, Address: inst.Addr, Path: inst.Health}, time.Second)
		},
		ProbeEntry: func(ctx context.Context, w *lifeline.Workload) error { return router.ProbeEntry(ctx, t, w) },
		Notify:     &notify.Webhooks{Hooks: t.Alerts.Webhooks},
		Backups: &controller.Backups{
			T: t, S: s, DataDir: a.cfg.DataDir, PGBin: a.cfg.PGBin, Owner: a.cfg.Owner, HostPort: a.dialer.HostPort, Log: a.log,
			Client: a.sec.DatabaseClient,
		},
		Readiness: a.readiness(s),
	})
	if hostsSite {
		// A site is a vantage point of the health checks.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := router.RunChecker(ctx, t, s, site.Name, a.log); err != nil && ctx.Err() == nil {
				a.log.Error("health checker", "err", err)
			}
		}()
	}
	// Not in wg: etcd's Campaign resigns with the client's own context when
	// ctx ends, which blocks while there is no quorum; Close ends that.
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		ctl.Run(ctx)
	}()
	defer func() {
		select {
		case <-ctlDone:
		case <-time.After(3 * time.Second):
		}
	}()
	var memberErr <-chan error
	if a.member != nil {
		memberErr = a.member.Err()
	}
	select {
	case <-ctx.Done():
	case err := <-memberErr:
		a.log.Error("etcd member failed", "err", err)
	}
	wg.Wait()
	stopCtx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, r := range instances {
		if err := r.pg.Stop(stopCtx); err != nil {
			a.log.Error("stop postgres", "workload", r.w.Name, "err", err)
		}
	}
	a.revokeSession()
	a.log.Info("agent stopped")
	return nil
}

// binary is this executable, which service commands starting with
// "lifeline" run (the example app).
func (a *Agent) binary() string {
	exe, err := os.Executable()
	if err != nil {
		return "lifeline"
	}
	return exe
}

// runServices keeps this node's service instances as the plan says for
// each workload's active region, as its stored state says.
func (a *Agent) runServices(ctx context.Context, d *compute.Driver) {
	t := a.cfg.Topology
	tick := time.NewTicker(t.Control.CheckInterval * 2)
	defer tick.Stop()
	views := map[string]*store.StateView{}
	for i := range t.Workloads {
		views[t.Workloads[i].Name] = a.store.View(t.Workloads[i].Name)
	}
	for {
		var want []compute.Instance
		complete := true
		for i := range t.Workloads {
			w := &t.Workloads[i]
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, ok, err := views[w.Name].Read(cctx, clientv3.WithSerializable())
			cancel()
			if err != nil {
				a.log.Warn("services: the workload's state cannot be read", "workload", w.Name, "err", err)
			}
			if !ok {
				// Never seen: start nothing for it (never the spec's
				// region), and stop nothing either.
				complete = false
				continue
			}
			want = append(want, compute.On(compute.Plan(t, w, st.Active), a.cfg.Node)...)
		}
		if complete {
			d.Reconcile(ctx, t, want)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// connect opens a superuser connection to a node's database, through this
// node's WAN routes.
func (a *Agent) connect(ctx context.Context, w *lifeline.Workload, id lifeline.NodeID) (*pgx.Conn, error) {
	host, port := a.dialer.HostPort(a.cfg.Topology.Address(id), w.Database.Port)
	client, err := a.sec.DatabaseClient(w)
	if err != nil {
		return nil, err
	}
	cfg, err := client.ConnConfig(host, port, a.cfg.Topology.Address(id), "postgres")
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s@%s: %w", w.Name, id, err)
	}
	return conn, nil
}

// dialURL maps another member's client URL to the one this node uses: the
// same, since the store's dialer takes the WAN routes.
func (a *Agent) dialURL(u string) string { return u }

// StartMember starts the embedded etcd member of a site, with the site's
// certificate when the topology runs with TLS.
func StartMember(ctx context.Context, t *lifeline.Topology, sec *Security, site lifeline.Site, dir string) (*store.Member, error) {
	cluster := map[string]string{}
	for _, s := range t.Sites() {
		cluster[s.Name] = sec.scheme() + "://" + wan.PeerAddress(t, s)
	}
	return store.StartMember(ctx, store.MemberConfig{
		Name:             site.Name,
		Dir:              dir,
		ClientURL:        sec.clientURL(site),
		PeerURL:          sec.scheme() + "://" + net.JoinHostPort(site.Address, strconv.Itoa(t.Control.PeerPort)),
		AdvertisePeerURL: cluster[site.Name],
		Cluster:          cluster,
		Token:            "lifeline-" + t.Name,
		LogFile:          filepath.Join(dir, "..", "etcd.log"),
		TLS:              sec.memberTLS(),
	})
}

// checkTopology records the topology in the control store, or refuses to
// run when the store holds another one.
func (a *Agent) checkTopology(ctx context.Context) error {
	t := a.cfg.Topology
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.store.Create(cctx, a.store.Keys().Topology(), t)
		var have *lifeline.Topology
		var found bool
		if err == nil {
			have, found, err = a.store.Topology(cctx)
		}
		cancel()
		if err == nil && found {
			if have.Fingerprint() != t.Fingerprint() {
				return fmt.Errorf("the control store holds topology %q built from another spec:\n%s\nthis agent's spec:\n%s", have.Name, have.Fingerprint(), t.Fingerprint())
			}
			return nil
		}
		a.log.Info("waiting for the control store", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// keepSession holds the lease that the node's status reports live under:
// when the agent dies, they vanish after LeaseTTL.
//
// Each renewal is a call of its own (KeepAliveOnce), not a message on the
// client's one keepalive stream: a stream that sits on a member behind a
// partition hangs, and it outlives that member's removal from the client's
// rotation (gRPC drains, it does not cut). Every report vanished with the
// session until gRPC's keepalive gave the connection up, 12 s on, and with
// them the standbys the controller could promote.
func (a *Agent) keepSession(ctx context.Context) {
	ttl := a.cfg.Topology.Control.LeaseTTL
	every := a.cfg.Topology.Control.CheckInterval
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := a.store.Client().Grant(gctx, int64(ttl/time.Second))
		cancel()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		a.mu.Lock()
		a.session = resp.ID
		a.mu.Unlock()
		a.renewSession(ctx, resp.ID, time.Now(), ttl, every)
		a.mu.Lock()
		a.session = 0
		a.mu.Unlock()
		if ctx.Err() == nil {
			a.log.Warn("status session lost; renewing")
		}
	}
}

// renewSession renews the lease every interval until etcd no longer has it
// or it must have expired (no renewal for its TTL).
func (a *Agent) renewSession(ctx context.Context, id clientv3.LeaseID, renewed time.Time, ttl, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 2*every)
		err := a.store.Renew(cctx, id)
		cancel()
		switch {
		case errors.Is(err, store.ErrLeaseGone):
			return
		case err == nil:
			renewed = sent
		case time.Since(renewed) >= ttl:
			return
		}
	}
}

func (a *Agent) sessionLease() clientv3.LeaseID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

func (a *Agent) revokeSession() {
	id := a.sessionLease()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = a.store.Client().Revoke(ctx, id)
}

// report publishes a workload's status under the session lease.
func (a *Agent) report(ctx context.Context, st lifeline.NodeStatus) error {
	lease := a.sessionLease()
	if lease == 0 {
		return errors.New("no status session")
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return a.store.Put(cctx, a.store.Keys().Status(st.Workload, st.Node), st, clientv3.WithLease(lease))
}

// reportBroken reports, every check interval until ctx ends, that this
// node cannot run a workload's database and why.
func (a *Agent) reportBroken(ctx context.Context, w *lifeline.Workload, cause error) {
	t := a.cfg.Topology
	tick := time.NewTicker(t.Control.CheckInterval)
	defer tick.Stop()
	for {
		st := lifeline.NodeStatus{
			Node: a.cfg.Node.String(), Workload: w.Name, Address: t.Address(a.cfg.Node), Port: w.Database.Port,
			AgentPID: os.Getpid(), Error: cause.Error(), Reported: time.Now().UTC(),
		}
		if err := a.report(ctx, st); err != nil && ctx.Err() == nil {
			a.log.Debug("report status", "workload", w.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
