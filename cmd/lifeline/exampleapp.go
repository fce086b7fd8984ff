package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/examples/app"
)

func newExampleApp() *cobra.Command {
	var cfg app.Config
	cmd := &cobra.Command{
		Use:   "example-app --listen ADDR",
		Short: "Run the example service the example specs use (HTTP; writes go to the writer endpoint)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Database == "" {
				cfg.Database = os.Getenv("LIFELINE_DATABASE")
			}
			if cfg.Reader == "" {
				cfg.Reader = os.Getenv("LIFELINE_DATABASE_READER")
			}
			cfg.Instance = os.Getenv("LIFELINE_INSTANCE")
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			return app.Run(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&cfg.Database, "database", "", "connection string (default $LIFELINE_DATABASE, set by the agent to the writer endpoint)")
	cmd.Flags().StringVar(&cfg.Reader, "reader", "", "connection string for reads (default $LIFELINE_DATABASE_READER, the reader endpoint)")
	return cmd
}
