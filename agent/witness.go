package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/router"
)

// RunWitness runs the witness site's etcd member until ctx ends. The witness
// holds no data of any workload; it only votes, so that losing either
// region leaves a quorum.
func RunWitness(ctx context.Context, t *lifeline.Topology, dataDir string, log *slog.Logger) error {
	var site *lifeline.Site
	for _, s := range t.Sites() {
		if s.Name == lifeline.WitnessSite {
			site = &s
		}
	}
	if site == nil {
		return fmt.Errorf("the spec declares no witness")
	}
	if !t.Control.Embedded() {
		return fmt.Errorf("the spec uses an external etcd; the witness has nothing to run")
	}
	sec, err := LoadSecurity(t, dataDir, certs.Witness)
	if err != nil {
		return err
	}
	m, err := StartMember(ctx, t, sec, *site, filepath.Join(WitnessDir(dataDir), "etcd"))
	if err != nil {
		return err
	}
	defer m.Close()
	log.Info("witness running", "address", site.Address, "tls", sec.TLS())
	// The witness is a vantage point of the health checks too.
	s, err := sec.connect([]string{sec.clientURL(*site)}, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := router.RunChecker(cctx, t, s, site.Name, log); err != nil && cctx.Err() == nil {
			log.Error("health checker", "err", err)
		}
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.Err():
		return fmt.Errorf("witness etcd member: %w", err)
	}
}
