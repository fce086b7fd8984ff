package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/backup"
)

// wal-push and wal-fetch are PostgreSQL's archive_command and
// restore_command. Their exit status is what PostgreSQL acts on.

func newWALPush() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "wal-push --config FILE PATH",
		Short:  "archive_command: push one WAL file to the repository",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			repo, _, err := backup.ReadArchiveConfig(ctx, config)
			if err == nil {
				defer repo.Close()
				err = repo.PushWAL(ctx, args[0])
			}
			if code := backup.PushExitCode(err); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("wal-push %s: %w", args[0], err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "archive configuration written by the agent")
	return cmd
}

func newWALFetch() *cobra.Command {
	var config string
	var standby bool
	cmd := &cobra.Command{
		Use:    "wal-fetch --config FILE [--standby] NAME PATH",
		Short:  "restore_command: fetch one WAL file from the repository",
		Args:   cobra.ExactArgs(2),
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			repo, cfg, err := backup.ReadArchiveConfig(ctx, config)
			if err == nil {
				defer repo.Close()
				err = repo.FetchWAL(ctx, args[0], args[1])
				if (standby || cfg.Standby) && errors.Is(err, backup.ErrWALGap) {
					// A streaming standby ends archive recovery and streams.
					os.Exit(1)
				}
			}
			switch code := backup.FetchExitCode(err); code {
			case 0:
				return nil
			case 1:
				os.Exit(1) // the end of the archive: PostgreSQL expects silence
			default:
				return &exitError{code: code, err: fmt.Errorf("wal-fetch %s: %w", args[0], err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "archive configuration written by the agent")
	cmd.Flags().BoolVar(&standby, "standby", false, "a streaming standby: a gap in the archive ends archive recovery instead of stopping the server")
	return cmd
}
