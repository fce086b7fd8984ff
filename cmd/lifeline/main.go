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
	root.AddCommand(newValidate(), newUp(), newDown(), newStatus(), newAgent(), newWitness(), newNode(), newLink(), newRouter(), newRunbooks(), newExampleApp(), newWALPush(), newWALFetch(), newBackup(), newRestore(), newRouting())
	return root
}
