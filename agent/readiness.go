package agent

import (
	"context"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/notify"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/readiness"
	"github.com/lifeline-dr/lifeline/store"
)

// readiness is the runner the controller leader evaluates readiness with.
// In a local topology every node is on this machine, so the services'
// commands and the ports a failover needs can be checked from here.
func (a *Agent) readiness(s *store.Store) *readiness.Runner {
	t := a.cfg.Topology
	r := &readiness.Runner{T: t, S: s, Notify: &notify.Webhooks{Hooks: t.Alerts.Webhooks}, Every: readiness.DefaultEvery,
		Log: a.log.With("subsystem", "readiness")}
	if t.Mode == lifeline.ModeLocal {
		r.Probe = readiness.LocalProbe(a.binary())
	}
	return r
}

// serverFacts caches what a server says about its version and the
// settings a promotion depends on: they change only with a restart
// (postmaster settings; data_checksums is fixed at initdb), so they are
// read again when the server's process changes, and otherwise every
// serverFactsEvery, which only bounds a stale answer. Reading them with
// every report would open a second connection every check interval.
type serverFacts struct {
	mu       sync.Mutex
	pid      int
	read     time.Time
	version  int
	settings map[string]string
}

const serverFactsEvery = time.Minute

// get returns the server's version and promotion settings, reading them
// when the cache is stale; a failed read returns what was cached.
func (f *serverFacts) get(ctx context.Context, pg *postgres.Instance) (int, map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pid := pg.PID()
	if pid == f.pid && time.Since(f.read) < serverFactsEvery && f.version != 0 {
		return f.version, f.settings
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, s, err := pg.Settings(qctx, lifeline.PromotionSettings)
	if err != nil {
		return f.version, f.settings
	}
	f.pid, f.read, f.version, f.settings = pid, time.Now(), v, s
	return v, s
}
