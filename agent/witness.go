package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lifeline-dr/lifeline"
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
	m, err := StartMember(ctx, t, *site, filepath.Join(WitnessDir(dataDir), "etcd"))
	if err != nil {
		return err
	}
	defer m.Close()
	log.Info("witness running", "address", site.Address)
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.Err():
		return fmt.Errorf("witness etcd member: %w", err)
	}
}
