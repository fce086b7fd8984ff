package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/status"
)

func newController() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Act on the controller (the agent that leads failovers)",
	}
	cmd.AddCommand(newControllerResign())
	return cmd
}

func newControllerResign() *cobra.Command {
	var dataDir string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "resign [--data-dir DIR]",
		Short: "Ask the controller leader to step down, e.g. before maintenance of its node; another agent takes over",
		Long: `Ask the controller leader to step down. It does once it runs no runbook,
and campaigns again behind the other candidates; the next candidate leads.
The command waits for the new leader and prints it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), wait+5*time.Second)
			defer cancel()
			old, err := status.ControllerLeader(ctx, s)
			if err != nil {
				return err
			}
			if old == "" {
				return errors.New("no controller leads right now (an election is under way?)")
			}
			if _, err := s.Client().Put(ctx, s.Keys().Resign("controller"), old); err != nil {
				return fmt.Errorf("ask %s to resign: %w", old, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "asked the controller leader %s to step down\n", old)
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				now, err := status.ControllerLeader(ctx, s)
				if err == nil && now != "" && now != old {
					fmt.Fprintf(cmd.OutOrStdout(), "controller leader: %s (was %s)\n", now, old)
					return nil
				}
			}
			return fmt.Errorf("%s still leads after %s (it steps down once its runbook ends; it leads again if it is the only candidate)", old, wait)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the new leader")
	return cmd
}
