package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/examples"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/spec"
)

const defaultDataDir = ".lifeline"

func newUp() *cobra.Command {
	var file, dataDir, isolation string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "up -f SPEC [--data-dir DIR] [--isolation loopback|netns|auto]",
		Short: "Build (or resume) a local topology on this machine and run it until Ctrl-C",
		Long: `Runs every node of the spec on this machine, each a host of its own (a network
namespace as root, else a loopback address; see --isolation): the witness, one
agent per node (each with its PostgreSQL), the router, the WAN links.
Ctrl-C (or lifeline down) stops everything cleanly; up again on the same
data directory resumes without re-initialising. Every connection between them
(etcd, PostgreSQL) uses mutual TLS, with an authority and certificates made in
the data directory (certs/).

--isolation netns (root) puts every host in a network namespace of its own
with its spec address: one bridge per region, a routed core between them,
and the machine reaching every address; link cut drops packets there, so
every protocol is cut alike, and the cross-region latency delays every
packet between regions. --isolation loopback puts every host on a loopback
address and routes what crosses regions through user-space links. The
default, auto, takes netns where it can be used (as root on Linux) and
loopback otherwise, with a notice; a data directory keeps the isolation it
was built with.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file, err := specOrDefault(cmd, file, dataDir)
			if err != nil {
				return err
			}
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
			out := cmd.OutOrStdout()
			return local.Up(ctx, t, local.Options{SpecFile: file, DataDir: dataDir, Out: out, Logger: log, Insecure: insecure, Isolation: isolation,
				Prepare: func(dir string) error {
					// One self-signed pair for every agent, before they start.
					_, err := api.EnsureSelfSigned(dir, api.Hosts(t))
					return err
				},
				Ready: func(ctx context.Context, dir string) error {
					sec, err := agent.LoadSecurity(t, dir, certs.Operator)
					if err != nil {
						return err
					}
					s, err := sec.ConnectStore(nil)
					if err != nil {
						return err
					}
					defer s.Close()
					tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					made, err := api.EnsureAdminToken(tctx, s, dir)
					if err != nil {
						return fmt.Errorf("the API's admin token: %w", err)
					}
					if made {
						fmt.Fprintf(out, "API token %s (approver) in %s\n", api.AdminTokenName, api.AdminTokenPath(dir))
					}
					eps := api.APIEndpoints(t)
					fmt.Fprintf(out, "dashboard and API: %s (and every agent's; trust %s)\n", eps[0], api.TrustFile(dir))
					return nil
				}})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file (default: ./lifeline.yaml, else the embedded warm-standby example)")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the topology keeps its data")
	cmd.Flags().StringVar(&isolation, "isolation", "", "how hosts are kept apart: auto (the default: netns where it can be used, else loopback), netns (a network namespace each; needs root), loopback (addresses of this machine); a data directory keeps its own")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "no TLS on a new data directory: plain etcd and PostgreSQL connections (to measure what TLS costs)")
	return cmd
}

// specOrDefault returns the spec to run: the one given, ./lifeline.yaml, or
// the embedded default written into the data directory so that agents read
// the same file.
func specOrDefault(cmd *cobra.Command, file, dataDir string) (string, error) {
	if cmd.Flags().Changed("file") {
		return file, nil
	}
	if _, err := os.Stat(file); err == nil {
		return file, nil
	}
	b, err := examples.Read(examples.Default)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, "spec.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "no %s here: running the embedded default (examples/%s), copied to %s\n", file, examples.Default, path)
	return path, nil
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
