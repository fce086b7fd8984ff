package agent

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/install"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/store"
)

// workloadRunner reconciles one workload's database on this node with the
// workload's stored state: observe (local facts, the state, the lease) →
// decide (nodeDecision, pure) → act.
//
// Safety rules it keeps (nodeDecision states them): the server runs as a
// primary only while this node is named primary by the state and holds the
// primary lease; a node that is not named primary never starts without
// standby.signal; a node that ran as primary is rewound (or reseeded)
// before it follows another, unless a switchover demoted it cleanly.
type workloadRunner struct {
	a     *Agent
	w     *lifeline.Workload
	pg    *postgres.Instance
	log   *slog.Logger
	me    lifeline.NodeID
	lease *primaryLease

	wake       chan struct{}
	report     chan struct{}
	configured string            // the settings last written, to reload only on change
	archive    map[string]string // archive settings for every role; restore_command for standbys
	restoreCmd string
	// archiveOff, while it exists, makes restore_command answer "not
	// archived" at once, without starting wal-fetch: for the moments of a
	// failover when the archive has nothing to add and each lookup would
	// delay the promotion or the switch to the new timeline. A file, not
	// a configuration reload, so it applies to the very next lookup.
	archiveOff string
	offNow     bool   // archiveOff exists
	fetchCmd   string // restore_command of a restore (backup-restore's failover)
	recovering string // restore_command while a restored primary recovers
	// archiveErr is why archiving could not be set up, reported with
	// every status (set before the loops start, read-only after).
	archiveErr error
	// standbySlots: this standby holds slots for the other nodes, so that
	// they can stream from it the moment it is named primary (cascading
	// through its promotion) instead of retrying until it creates them.
	standbySlots bool
	// following is the primary this standby last followed, and repointed
	// when it last changed to another one.
	following postgres.Upstream
	repointed time.Time

	// timelines caches what the archive said about timelines after this
	// standby's, refreshed in the background, so that a promotion need
	// not ask it on the way.
	timelines timelineCheck
	// facts caches the server's version and promotion settings, reported
	// for the readiness checks.
	facts serverFacts

	mu        sync.Mutex
	seen      *store.Watched // what the state watch last saw, until a reconcile takes it
	seenAt    time.Time
	streamed  time.Time // when the last report found this standby streaming
	state     lifeline.WorkloadState
	stateRev  int64
	why       string        // the last decision's reason, for the report
	progress  string        // what a long act (a restore) is doing, for the report
	fenced    string        // why the server was fenced; "" when not
	runningAs lifeline.Role // what the running server was started or promoted as
	readyAt   int64         // the epoch for which replication user and slots are in place

	// received and receivedSince are the last report's received position
	// and the first report that showed it (NodeStatus.ReceiveSince).
	received      string
	receivedSince time.Time
}

// SmallParameters size PostgreSQL for a local topology, where every node
// shares one machine: a six-node topology must fit next to everything else.
var SmallParameters = map[string]string{
	"shared_buffers":       "32MB",
	"max_connections":      "40",
	"max_worker_processes": "4",
	"work_mem":             "2MB",
}

func (a *Agent) newWorkloadRunner(w *lifeline.Workload, cfg postgres.Config) *workloadRunner {
	log := a.log.With("workload", w.Name)
	r := &workloadRunner{
		a: a, w: w, me: a.cfg.Node, log: log,
		pg:     postgres.New(cfg),
		wake:   make(chan struct{}, 1),
		report: make(chan struct{}, 1),
	}
	r.lease = &primaryLease{r: r}
	return r
}

// prepareArchive writes the configuration that archive_command and
// restore_command read and makes the region's repository writable by
// PostgreSQL's OS user. Without it the server runs without archiving.
func (r *workloadRunner) prepareArchive() error {
	bin, err := install.Binary(r.a.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("install the binary for archive_command: %w", err)
	}
	url := backup.RepoURL(r.w, r.me.Region, r.a.cfg.DataDir)
	if err := backup.PrepareFileRepo(url, r.w.Name, r.a.cfg.Owner); err != nil {
		return err
	}
	key, err := backup.Key(r.w)
	if err != nil {
		return err
	}
	conf := filepath.Join(r.pg.Config().Dir, "archive.json")
	if err := os.MkdirAll(r.pg.Config().Dir, 0o700); err != nil {
		return err
	}
	if err := backup.WriteArchiveConfig(conf, backup.ArchiveConfig{URL: url, Workload: r.w.Name, Key: hex.EncodeToString(key)}, r.a.cfg.Owner); err != nil {
		return err
	}
	if err := r.a.cfg.Owner.Chown(r.pg.Config().Dir); err != nil {
		return err
	}
	r.archive = map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("%s wal-push --config %s %%p", bin, conf),
		"archive_timeout": fmt.Sprintf("%ds", int(ArchiveTimeout(r.w).Seconds())),
	}
	r.archiveOff = filepath.Join(r.pg.Config().Dir, "archive-off")
	if err := os.Remove(r.archiveOff); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	r.offNow = false
	r.restoreCmd = fmt.Sprintf("test ! -e %s && %s wal-fetch --standby --config %s %%f %%p", r.archiveOff, bin, conf)
	r.fetchCmd = fmt.Sprintf("%s wal-fetch --config %s %%f %%p", bin, conf)
	return nil
}

// ArchiveTimeout bounds how old the newest archived WAL can be on a quiet
// database: half the RPO, between 10s and 60s. It is what bounds the data
// a backup-restore failover loses.
func ArchiveTimeout(w *lifeline.Workload) time.Duration {
	if w.Objectives.RPO <= 0 {
		return time.Minute
	}
	return min(max(w.Objectives.RPO/2, 10*time.Second), time.Minute)
}

// settings adds archiving to a role's settings.
func (r *workloadRunner) settings(s postgres.Settings) postgres.Settings {
	if r.archive == nil {
		return s
	}
	s.Extra = map[string]string{}
	for k, v := range r.archive {
		s.Extra[k] = v
	}
	if r.recovering != "" {
		// A restored primary recovering from its region's repository.
		s.Extra["restore_command"] = r.recovering
	} else if s.Upstream != nil && !r.offNow {
		// While archive lookups are off for a while, none is configured:
		// each one, even the shell that only finds them off, is a process
		// the startup process waits for, several times in a switch of
		// timeline. (The switch file covers the moments a reload would be
		// too late for.)
		s.Extra["restore_command"] = r.restoreCmd
	}
	return s
}

func (r *workloadRunner) run(ctx context.Context) {
	if err := r.prepareArchive(); err != nil {
		r.archiveErr = err
		r.log.Error("WAL archiving is off", "err", err)
	}
	go r.watchState(ctx)
	go r.lease.hold(ctx)
	go r.publishLoop(ctx)
	tick := time.NewTicker(r.a.cfg.Topology.Control.CheckInterval)
	defer tick.Stop()
	for {
		if err := r.reconcile(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile", "err", err)
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
			if r.fenceReason() == "" {
				r.log.Error("postgres exited", "log", r.pg.LogFile())
			}
		}
	}
}

// publishLoop reports every check interval, and at once when asked: the
// reports are what a failover waits on.
func (r *workloadRunner) publishLoop(ctx context.Context) {
	tick := time.NewTicker(r.a.cfg.Topology.Control.CheckInterval)
	defer tick.Stop()
	for {
		if err := r.publish(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("report status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.report:
		}
	}
}

func (r *workloadRunner) reportNow() {
	select {
	case r.report <- struct{}{}:
	default:
	}
}

func (r *workloadRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// watchState wakes the loop when the workload's state or the primary
// lease changes, and leaves what it saw for the reconcile it wakes.
func (r *workloadRunner) watchState(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.a.store.WatchState(ctx, r.w.Name, func(st store.Watched) {
			r.mu.Lock()
			r.seen, r.seenAt = &st, time.Now()
			r.mu.Unlock()
			r.poke()
		})
		if ctx.Err() == nil {
			r.log.Debug("watch state", "err", err)
			time.Sleep(time.Second)
		}
	}
}

// fence stops the server at once: it must not accept another write.
func (r *workloadRunner) fence(reason string) {
	r.mu.Lock()
	r.fenced = reason
	r.mu.Unlock()
	if !r.pg.Running() {
		return
	}
	r.log.Error("fencing: stopping postgres now", "reason", reason)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.pg.Kill(ctx); err != nil {
		r.log.Error("fence", "err", err)
	}
	r.setRole("")
	r.poke()
}

func (r *workloadRunner) role() lifeline.Role {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runningAs
}

func (r *workloadRunner) setRole(role lifeline.Role) {
	r.mu.Lock()
	r.runningAs = role
	r.mu.Unlock()
}

// setProgress says what a long act is doing ("" when done).
func (r *workloadRunner) setProgress(p string) {
	r.mu.Lock()
	r.progress = p
	r.mu.Unlock()
}

func (r *workloadRunner) readyEpoch() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readyAt
}

func (r *workloadRunner) fenceReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fenced
}

// readState reads the workload's state; the first agent to find none
// records the spec's initial state.
//
// The read is served by the nearest etcd member without a quorum round
// trip: a stale state is harmless, because taking the lease compares the
// state's revision, and a standby that follows a stale primary just does
// not stream until the next read.
//
// A reconcile the state watch woke takes what the watch saw instead
// (seen: nil otherwise), lease key included.
func (r *workloadRunner) readState(ctx context.Context) (st lifeline.WorkloadState, rev int64, seen *store.Watched, err error) {
	t := r.a.cfg.Topology
	if w := r.takeSeen(); w != nil && w.StateRev != 0 {
		return w.State, w.StateRev, w, nil
	}
	st, rev, found, err := r.a.store.State(ctx, r.w.Name, clientv3.WithSerializable())
	if err != nil || found {
		return st, rev, nil, err
	}
	st, rev, err = r.a.store.InitState(ctx, r.w.Name, t.InitialState(r.w, time.Now()))
	return st, rev, nil, err
}

// takeSeen returns what the watch saw last, once, if it saw it within a
// check interval: the reconcile it woke then needs no read of its own
// (the watch's member is as current as a read's). A reconcile on the clock
// reads, so that a watch that has gone quiet cannot hold a stale state.
func (r *workloadRunner) takeSeen() *store.Watched {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.seen
	r.seen = nil
	if st == nil || time.Since(r.seenAt) > r.a.cfg.Topology.Control.CheckInterval {
		return nil
	}
	return st
}

// currentState is the state the last reconcile acted on.
func (r *workloadRunner) currentState() lifeline.WorkloadState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// reconcile is one round of observe → decide → act.
func (r *workloadRunner) reconcile(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, rev, seen, err := r.readState(cctx)
	cancel()
	if err != nil {
		return err
	}
	r.mu.Lock()
	last := r.state
	r.mu.Unlock()
	if st.Epoch < last.Epoch || (st.Epoch == last.Epoch && rev < r.stateRev) {
		// Epochs and revisions only grow: a member that lags (one just back
		// from a partition) answered. Acting on it could make the primary
		// fence itself, so the leader says.
		stale := st.Epoch
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var found bool
		st, rev, found, err = r.a.store.State(cctx, r.w.Name)
		cancel()
		if err == nil && !found {
			err = store.ErrNoState
		}
		if err != nil {
			return fmt.Errorf("state: a member answered with epoch %d after epoch %d: %w", stale, last.Epoch, err)
		}
		seen = nil
	}
	if err := st.Validate(r.a.cfg.Topology); err != nil {
		return err
	}
	r.mu.Lock()
	r.state, r.stateRev = st, rev
	r.mu.Unlock()
	l := r.observe(ctx, st)
	p := nodeDecision(r.me, r.a.cfg.Topology, r.w, st, l)
	r.mu.Lock()
	changed := r.why != p.Why
	r.why = p.Why
	r.mu.Unlock()
	if changed {
		r.log.Info("decision", "acts", p.Acts, "why", p.Why)
	}
	var newer <-chan bool
	if slices.Contains(p.Acts, actPromote) {
		// About to promote: learn about the archive's timelines while the
		// lease is taken, not after (both cross the network).
		c := make(chan bool, 1)
		go func() { c <- r.archiveHasNewerTimeline(ctx, true) }()
		newer = c
	}
	for _, a := range p.Acts {
		if err := r.act(ctx, a, st, rev, seen, newer); err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

// observe gathers what nodeDecision needs to know about this node.
func (r *workloadRunner) observe(ctx context.Context, st lifeline.WorkloadState) local {
	now := time.Now()
	l := local{
		Initialized: r.pg.Initialized(),
		Running:     r.pg.Running(),
		RunningAs:   r.role(),
		LeaseValid:  r.lease.valid(now, st.Epoch),
		LeaseHeld:   r.lease.valid(now, r.lease.epochHeld()),
		Demoted:     r.demotion(),
	}
	if !l.Running {
		l.RunningAs = ""
	}
	if l.Initialized && !l.Running {
		// A data directory that cannot say what it was (damaged control
		// file) goes the same way as a former primary: rewind, else reseed.
		was, err := r.pg.WasPrimary(ctx)
		if err != nil {
			r.log.Error("cannot read the data directory's state", "err", err)
		}
		l.WasPrimary = was || err != nil
	}
	return l
}

// act carries out one act of the decision.
func (r *workloadRunner) act(ctx context.Context, a act, st lifeline.WorkloadState, rev int64, seen *store.Watched, newer <-chan bool) error {
	t := r.a.cfg.Topology
	primary, _ := st.PrimaryNode()
	switch a {
	case actFence:
		r.fence(r.why)
		r.lease.drop()
	case actTakeLease:
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := r.lease.acquire(cctx, st, rev, seen)
		cancel()
		if err != nil {
			return fmt.Errorf("primary lease: %w", err)
		}
		r.log.Info("holding the primary lease", "epoch", st.Epoch)
		// Serving again (a switchover that stopped): a clean demotion
		// recorded before no longer describes this data directory.
		r.clearDemotion()
		r.mu.Lock()
		r.fenced = ""
		r.mu.Unlock()
	case actInitDB:
		return r.pg.InitDB(ctx)
	case actRestore:
		return r.restore(ctx, st)
	case actPromote:
		if err := r.promote(ctx, r.primarySettings(ctx), newer); err != nil {
			return err
		}
		return r.ready(ctx, st)
	case actServePrimary:
		if err := r.apply(ctx, r.primarySettings(ctx), lifeline.RolePrimary); err != nil {
			return err
		}
		return r.ready(ctx, st)
	case actDemote:
		return r.demote(ctx, st)
	case actSeed:
		if !r.primaryReady(ctx, primary) {
			return fmt.Errorf("waiting for primary %s before seeding", primary)
		}
		return r.seed(ctx, r.upstream(primary))
	case actRejoin:
		if !r.primaryReady(ctx, primary) {
			return fmt.Errorf("waiting for primary %s before rejoining", primary)
		}
		return r.rejoin(ctx, st, r.upstream(primary))
	case actFollow:
		return r.follow(ctx, st, primary)
	case actRetire:
		return r.retire(ctx)
	default:
		return fmt.Errorf("unknown act %q", a)
	}
	_ = t
	return nil
}

// primarySettings are this node's settings as primary.
func (r *workloadRunner) primarySettings(ctx context.Context) postgres.Settings {
	return r.settings(postgres.Settings{AppName: r.me.Slug(), SyncStandbyNames: r.syncNames(ctx)})
}

// ready makes sure a primary has the replication user and a slot for
// every other database node, once per epoch.
func (r *workloadRunner) ready(ctx context.Context, st lifeline.WorkloadState) error {
	if r.readyEpoch() == st.Epoch {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	pst, err := r.pg.Status(qctx)
	cancel()
	if err == nil && pst.InRecovery {
		return nil // a restored primary still recovering: the next round
	}
	r.recovering = "" // recovered: the next apply drops its restore_command
	if err := r.pg.EnsureRoles(ctx); err != nil {
		return err
	}
	if err := r.pg.EnsureSlots(ctx, r.otherSlots(st)); err != nil {
		return err
	}
	r.mu.Lock()
	r.readyAt = st.Epoch
	r.mu.Unlock()
	r.reportNow()
	return nil
}

// upstream is how this node streams from the primary.
func (r *workloadRunner) upstream(primary lifeline.NodeID) postgres.Upstream {
	host, port := r.a.dialer.HostPort(r.a.cfg.Topology.Address(primary), r.w.Database.Port)
	return postgres.Upstream{Host: host, Port: port, Slot: r.me.Slug()}
}

// promote turns the running standby into the primary. The lease is held.
// The synchronous standbys are named before the promotion, so that no
// commit is acknowledged by this server alone, and standby.signal is left
// for PostgreSQL to remove: it ends recovery on a new timeline.
func (r *workloadRunner) promote(ctx context.Context, settings postgres.Settings, newerTimeline <-chan bool) error {
	r.log.Warn("promoting to primary")
	start := time.Now()
	var pre postgres.Settings
	if err := json.Unmarshal([]byte(r.configured), &pre); err != nil || pre.Upstream == nil {
		return fmt.Errorf("promote: the running server's settings are unknown: %v", err)
	}
	// PostgreSQL picks the timeline after the newest whose history it
	// finds. The archive's histories beyond this node's are copied into
	// pg_wal first, where it finds them without archive lookups (one
	// process each, on the failover's path). Failing that, the lookups
	// stay on where restore_command is configured.
	off := true
	if newerTimeline != nil && <-newerTimeline {
		if err := r.fetchHistories(ctx); err != nil {
			r.log.Error("could not copy the archive's newer timelines into pg_wal", "err", err)
			off = false
		}
	}
	r.setArchiveOff(off)
	defer r.setArchiveOff(false)
	if pre.SyncStandbyNames == "" && settings.SyncStandbyNames != "" {
		// A standby configured by an older version: name them before the
		// promotion (otherwise no reload is needed: a standby runs with
		// the names it would use as primary).
		pre.SyncStandbyNames = settings.SyncStandbyNames
		if err := r.pg.WriteConfig(pre); err != nil {
			return err
		}
		if err := r.pg.Reload(); err != nil {
			return err
		}
		b, _ := json.Marshal(pre)
		r.configured = string(b)
	}
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := r.pg.Promote(pctx); err != nil {
		return err
	}
	r.setRole(lifeline.RolePrimary)
	r.log.Warn("promoted", "seconds", time.Since(start).Seconds())
	return r.apply(ctx, settings, lifeline.RolePrimary)
}

// fetchHistories copies the archive's history files of the timelines after
// the newest this node knows into its pg_wal.
func (r *workloadRunner) fetchHistories(ctx context.Context) error {
	tli, err := r.pg.KnownTimeline()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	repo, err := backup.OpenRegion(cctx, r.w, r.me.Region, r.a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer repo.Close()
	paths, err := repo.FetchHistoriesAfter(cctx, tli, filepath.Join(r.pg.DataDir(), "pg_wal"))
	for _, p := range paths {
		if cerr := r.a.cfg.Owner.Chown(p); cerr != nil && err == nil {
			err = cerr
		}
	}
	if len(paths) > 0 {
		r.log.Warn("copied the archive's newer timelines into pg_wal before promoting", "files", len(paths))
	}
	return err
}

// setArchiveOff turns restore_command's archive lookups off or back on.
func (r *workloadRunner) setArchiveOff(off bool) {
	if r.archiveOff == "" || off == r.offNow {
		return
	}
	var err error
	if off {
		err = os.WriteFile(r.archiveOff, nil, 0o644)
	} else if err = os.Remove(r.archiveOff); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		r.log.Warn("archive lookups", "off", off, "err", err)
		return
	}
	r.offNow = off
}

// repointWindow is how long a repointed standby streams without archive
// lookups: long enough to follow the new primary onto its
// timeline, short enough that a standby that needs the archive (its WAL
// gone from the new primary) gets it back soon.
const repointWindow = 10 * time.Second

// streamWindow is how long a standby that was streaming goes without
// archive lookups once its stream stops. Its primary keeps a slot for it,
// so streaming brings everything it lacks; when the primary is lost, the
// archive has nothing the standby lacks either (the primary archives after
// it sends). Meanwhile PostgreSQL asks the archive for the next segment and
// for newer timelines on every retry, one process each, and a promotion
// or a repoint waits for the lookup under way. A standby that needs the
// archive (its slot lost, or its primary's WAL gone) gets it back after
// this long.
const streamWindow = 30 * time.Second

func (r *workloadRunner) streamedWithin(d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.streamed.IsZero() && time.Since(r.streamed) < d
}

// archiveHasNewerTimeline reports whether the region's archive holds a
// timeline after this standby's own, or cannot tell: the promotion then
// copies the archive's newer histories into pg_wal (or, failing that,
// keeps the archive lookups on) so that PostgreSQL picks a timeline nobody
// used.
//
// With cached true, a result the background check found within the last
// timelineCheckFresh for a timeline at least as new as the one pg_wal
// knows now is taken as it is: only a promotion makes a new timeline, and
// this one is the only one under way (the controller runs one failover at
// a time).
func (r *workloadRunner) archiveHasNewerTimeline(ctx context.Context, cached bool) bool {
	if r.archive == nil {
		return false // no archive, no restore_command
	}
	tli, err := r.pg.KnownTimeline()
	if err != nil {
		return true
	}
	if cached {
		if newer, ok := r.timelines.get(tli); ok {
			return newer
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if st, err := r.pg.Status(cctx); err == nil && st.Timeline > int64(tli) {
		tli = uint32(st.Timeline)
	}
	repo, err := backup.OpenRegion(cctx, r.w, r.me.Region, r.a.cfg.DataDir)
	if err != nil {
		return true
	}
	defer repo.Close()
	newer, err := repo.TimelineAfter(cctx, tli)
	if err != nil {
		r.log.Warn("cannot read the archive's timelines; a promotion would keep restore_command", "err", err)
		return true
	}
	r.timelines.set(tli, newer)
	return newer
}

// timelineCheckFresh is how long a background look at the archive's
// timelines stands in for a look at promotion time.
const timelineCheckFresh = 10 * time.Second

type timelineCheck struct {
	mu      sync.Mutex
	at      time.Time
	tli     uint32
	newer   bool
	running bool
}

func (c *timelineCheck) get(known uint32) (newer, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > timelineCheckFresh || c.tli < known {
		return false, false
	}
	return c.newer, true
}

func (c *timelineCheck) set(tli uint32, newer bool) {
	c.mu.Lock()
	c.at, c.tli, c.newer = time.Now(), tli, newer
	c.mu.Unlock()
}

// refreshTimelines looks at the archive's timelines in the background when
// the last look is getting old.
func (r *workloadRunner) refreshTimelines(ctx context.Context) {
	c := &r.timelines
	c.mu.Lock()
	due := !c.running && time.Since(c.at) > timelineCheckFresh/2
	c.running = c.running || due
	c.mu.Unlock()
	if !due || r.archive == nil {
		return
	}
	go func() {
		defer func() { c.mu.Lock(); c.running = false; c.mu.Unlock() }()
		r.archiveHasNewerTimeline(ctx, false)
	}()
}

// syncNames is synchronous_standby_names for this primary. With RPO 0 every
// in-region standby is listed, alive or not: writes wait rather than risk
// an acknowledged write that exists on one node only. With an RPO above 0,
// standbys whose agents are gone are left out, so writes go on without them.
func (r *workloadRunner) syncNames(ctx context.Context) string {
	t := r.a.cfg.Topology
	cands := t.SyncCandidatesIn(r.w, r.currentState(), r.me)
	var names []string
	var reports map[string]lifeline.NodeStatus
	if r.w.Objectives.RPO > 0 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		reports, _ = r.a.store.Statuses(cctx, r.w.Name, clientv3.WithSerializable())
		cancel()
	}
	for _, id := range cands {
		if reports != nil {
			if st, ok := reports[id.String()]; !ok || !st.Running {
				continue
			}
		}
		names = append(names, id.Slug())
	}
	if reports != nil && len(names) == 0 {
		// Keep the rule, not an empty list, until some report is in:
		// reports==nil also when the store could not be read.
		if len(reports) == 0 {
			for _, id := range cands {
				names = append(names, id.Slug())
			}
		}
	}
	return postgres.SyncStandbyNames(r.w.Database.Sync, names)
}

// follow runs the server as a standby of the primary.
func (r *workloadRunner) follow(ctx context.Context, st lifeline.WorkloadState, primary lifeline.NodeID) error {
	t := r.a.cfg.Topology
	up := r.upstream(primary)
	r.mu.Lock()
	r.fenced = ""
	r.mu.Unlock()
	if r.following != (postgres.Upstream{}) && r.following != up {
		r.repointed = time.Now()
	}
	r.following = up
	// Just repointed after a failover, or streaming until a moment ago:
	// stream from the primary alone. With archive lookups, each retry also
	// asks the archive, one process per file, and that delays a promotion,
	// the switch to a new timeline and, with RPO 0, the first commit a
	// standby acknowledges.
	r.setArchiveOff(time.Since(r.repointed) < repointWindow || r.streamedWithin(streamWindow))
	// The synchronous standbys it would have as primary, named ahead (no
	// effect on a standby): a promotion then needs no reload first.
	// Every candidate is named, alive or not: a dead one acknowledges
	// nothing, so the rule is as strict as the primary's own.
	var peers []string
	for _, id := range t.SyncCandidatesIn(r.w, st, r.me) {
		peers = append(peers, id.Slug())
	}
	settings := r.settings(postgres.Settings{AppName: r.me.Slug(), Upstream: &up,
		SyncStandbyNames: postgres.SyncStandbyNames(r.w.Database.Sync, peers)})
	if err := r.apply(ctx, settings, lifeline.RoleStandby); err != nil {
		return err
	}
	if r.pg.Running() {
		r.refreshTimelines(ctx)
	}
	if !r.standbySlots {
		// Best effort: a failover works without them, a little slower.
		if err := r.pg.EnsureSlots(ctx, r.otherSlots(st)); err != nil {
			r.log.Debug("standby slots", "err", err)
		} else {
			r.standbySlots = true
		}
	}
	return nil
}

// otherSlots names a replication slot for every other node that may hold
// a database (any node may, after a backup-restore failover).
func (r *workloadRunner) otherSlots(lifeline.WorkloadState) []string {
	var slots []string
	for _, id := range r.a.cfg.Topology.Nodes() {
		if id != r.me {
			slots = append(slots, id.Slug())
		}
	}
	return slots
}

func (r *workloadRunner) seed(ctx context.Context, up postgres.Upstream) error {
	r.configured, r.standbySlots = "", false
	bctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	return r.pg.BaseBackup(bctx, up)
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
func (r *workloadRunner) apply(ctx context.Context, s postgres.Settings, role lifeline.Role) error {
	b, _ := json.Marshal(s)
	changed := string(b) != r.configured
	if changed {
		if err := r.pg.WriteConfig(s); err != nil {
			return err
		}
		r.configured = string(b)
	}
	if !r.pg.Running() {
		if role == lifeline.RolePrimary {
			// The lease may have been let go of since the caller looked
			// (the fence stops the server right after): start a primary
			// only on a lease held now. The role is set before the start,
			// so that the lease's holder fences this server should the
			// lease go while it starts.
			if !r.lease.valid(time.Now(), r.lease.epochHeld()) {
				return errors.New("not starting as primary: the primary lease was let go of")
			}
			r.setRole(role)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		if err := r.pg.Start(sctx); err != nil {
			return err
		}
		r.setRole(role)
		return nil
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
	r.mu.Lock()
	state := r.state
	fenced, progress := r.fenced, r.progress
	r.mu.Unlock()
	role := t.RoleIn(r.w, state, r.me)
	if state.Primary == "" || (role == lifeline.RoleNone && !r.pg.Running()) {
		return nil // no database here: nothing to report
	}
	st := lifeline.NodeStatus{
		Node:        r.me.String(),
		Workload:    r.w.Name,
		Address:     t.Address(r.me),
		Port:        r.w.Database.Port,
		AgentPID:    os.Getpid(),
		PostgresPID: r.pg.PID(),
		Running:     r.pg.Running(),
		Fenced:      fenced != "",
		Reported:    time.Now().UTC(),
	}
	st.Role = role
	switch {
	case fenced != "":
		st.Error = "fenced: " + fenced
	case st.PostgresPID != 0:
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pst, err := r.pg.Status(qctx)
		cancel()
		if err != nil {
			st.Error = err.Error()
			break
		}
		st.InRecovery = pst.InRecovery
		st.SpareLease = int64(r.lease.spareID())
		st.Streaming = pst.Upstream == "streaming"
		if pst.InRecovery && st.Streaming {
			r.mu.Lock()
			r.streamed = st.Reported
			r.mu.Unlock()
		}
		st.LSN = pst.LSN.String()
		st.Timeline = pst.Timeline
		st.Replicas = pst.Replicas
		st.ServerVersion, st.Settings = r.facts.get(ctx, r.pg)
		if pst.InRecovery {
			st.ReceiveLSN = pst.ReceiveLSN.String()
			r.mu.Lock()
			if st.ReceiveLSN != r.received {
				r.received, r.receivedSince = st.ReceiveLSN, st.Reported
			}
			st.ReceiveSince = r.receivedSince
			r.mu.Unlock()
		}
		if st.Role == lifeline.RolePrimary {
			st.Healthy = !pst.InRecovery && r.readyEpoch() == state.Epoch && r.lease.valid(time.Now(), state.Epoch)
			if pst.InRecovery && progress != "" {
				st.Error = progress
			}
		} else {
			st.Healthy = pst.InRecovery && st.Streaming
			if !st.Healthy {
				st.Error = "not streaming from the primary"
			}
		}
	case progress != "":
		st.Error = progress
	case !r.pg.Initialized():
		st.Error = "not seeded yet"
	default:
		st.Error = "postgres is not running"
		if r.why != "" {
			st.Error += ": " + r.why
		}
	}
	if r.archiveErr != nil {
		st.ArchiveError = r.archiveErr.Error()
		if st.Error == "" {
			st.Error = "WAL archiving is off: " + st.ArchiveError
		}
	}
	return r.a.report(ctx, st)
}
