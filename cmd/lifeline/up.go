package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/spec"
)

const defaultDataDir = ".lifeline"

func newUp() *cobra.Command {
	var file, dataDir string
	cmd := &cobra.Command{
		Use:   "up -f SPEC [--data-dir DIR]",
		Short: "Build (or resume) a local topology on this machine and run it until Ctrl-C",
		Long: `Runs every node of the spec on this machine, each on its own loopback address:
the witness, one agent per node (each with its PostgreSQL), the WAN links.
Ctrl-C (or lifeline down) stops everything cleanly; up again on the same
data directory resumes without re-initialising.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := spec.Load(file)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			// First signal drains (ctx), second aborts.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			go func() {
				<-sigs
				cancel()
				<-sigs
				fmt.Fprintln(os.Stderr, "lifeline: aborted")
				os.Exit(130)
			}()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return local.Up(ctx, t, local.Options{SpecFile: file, DataDir: dataDir, Out: cmd.OutOrStdout(), Logger: log})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the topology keeps its data")
	return cmd
}

func newDown() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "down [--data-dir DIR]",
		Short: "Stop the local topology that lifeline up runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := local.Dial(dataDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			fmt.Fprintln(cmd.OutOrStdout(), "stopping...")
			if err := c.Down(ctx); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stopped")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	return cmd
}
