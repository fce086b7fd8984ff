// Command lifeline is the one binary of Lifeline: the operator's CLI, the
// per-node agent, the witness, the router and PostgreSQL's archive commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/store"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "lifeline:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "lifeline",
		Short:         "Disaster recovery for PostgreSQL-backed services across zones and regions",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newValidate(), newUp(), newDown(), newStatus(), newAgent(), newWitness(), newNode(), newLink(), newRouter(), newRunbooks(), newController(), newExampleApp(), newWALPush(), newWALFetch(), newBackup(), newRestore(), newRouting(), newCerts(),
		newApprove(), newReject(), newFailover(), newSwitchover(), newFailback(), newAlarms(), newGameday(), newDemo(), newToken(), newPlan())
	// The commands that change something go through an agent's API with
	// a token: --token, else $LIFELINE_TOKEN, else the admin token `up`
	// left in the data directory.
	root.PersistentFlags().String("token", "", "API token (default: $"+api.TokenEnv+", else DATA/api/admin.token)")
	root.PersistentFlags().String("ca", "", "a PEM certificate to trust the API with, besides the data directory's")
	return root
}

// openStore loads the topology that `up` recorded in a data directory and
// connects to its control store, as commands run from another terminal do.
func openStore(dataDir string) (*lifeline.Topology, *store.Store, error) {
	t, err := local.LoadTopology(dataDir)
	if err != nil {
		return nil, nil, err
	}
	sec, err := agent.LoadSecurity(t, dataDir, certs.Operator)
	if err != nil {
		return nil, nil, err
	}
	s, err := sec.ConnectStore(nil, store.RequireLeader())
	if err != nil {
		return nil, nil, err
	}
	return t, s, nil
}
