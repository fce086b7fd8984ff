package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/metrics"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/store"
)

func newAgent() *cobra.Command {
	var file, dataDir, node, osUser string
	cmd := &cobra.Command{
		Use:   "agent --node REGION/ZONE -f SPEC [--data-dir DIR]",
		Short: "Run the agent of one node: its PostgreSQL and, on a site's first node, an etcd member",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := spec.Load(file)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := local.ApplyIsolation(t); err != nil {
				return err
			}
			id, err := lifeline.ParseNodeID(node)
			if err != nil {
				return err
			}
			bin, err := postgres.FindBin()
			if err != nil {
				return err
			}
			owner, err := postgres.ResolveOwner(osUser)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			a, err := agent.New(agent.Config{Topology: t, Node: id, DataDir: dataDir, PGBin: bin, Owner: owner, Logger: log})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the node keeps its data")
	cmd.Flags().StringVar(&node, "node", "", "this node, as REGION/ZONE")
	cmd.Flags().StringVar(&osUser, "os-user", postgres.DefaultOSUser, "the OS user PostgreSQL runs as when the agent runs as root")
	_ = cmd.MarkFlagRequired("node")
	return cmd
}

func newWitness() *cobra.Command {
	var file, dataDir string
	cmd := &cobra.Command{
		Use:   "witness -f SPEC [--data-dir DIR]",
		Short: "Run the witness site's etcd member (it only votes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := spec.Load(file)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := local.ApplyIsolation(t); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return agent.RunWitness(cmd.Context(), t, dataDir, log)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the witness keeps its data")
	return cmd
}

func newRouter() *cobra.Command {
	var file, home, dataDir string
	cmd := &cobra.Command{
		Use:   "router -f SPEC [--data-dir DIR]",
		Short: "Serve the workloads' entry points: DNS, HTTP front doors, writer and reader endpoints",
		Long: `Serves the workloads' entry points, and its own Prometheus metrics (requests, errors and
latency of each front door, DNS answers by region) at https://ROUTER-ADDRESS:API-PORT/metrics,
with the data directory's certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := spec.Load(file)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := local.ApplyIsolation(t); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			sec, err := agent.LoadSecurity(t, dataDir, certs.Router)
			if err != nil {
				return err
			}
			s, err := sec.ConnectStore(nil, store.SkipSilentMembers(t.Control.CheckInterval, log))
			if err != nil {
				return err
			}
			defer s.Close()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			observer := metrics.NewRouter(reg)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			metricsDone := make(chan error, 1)
			go func() { metricsDone <- serveRouterMetrics(ctx, t, dataDir, reg, log) }()
			err = router.Run(ctx, t, s, router.Options{Home: home, Observer: observer}, log)
			cancel()
			if merr := <-metricsDone; merr != nil && err == nil {
				log.Error("router metrics", "err", merr)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	cmd.Flags().StringVar(&home, "region", "", "the region this router sits in: the reader endpoint prefers its standbys (default: each workload's active region)")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the router's certificates are (certs/router.crt; api/tls.crt for /metrics, made when missing)")
	return cmd
}

// serveRouterMetrics serves /metrics on the router's address at the API
// port until ctx ends.
func serveRouterMetrics(ctx context.Context, t *lifeline.Topology, dataDir string, reg *prometheus.Registry, log *slog.Logger) error {
	pair, err := api.EnsureSelfSigned(dataDir, api.Hosts(t))
	if err != nil {
		return err
	}
	tlsConfig, err := pair.ServerTLS()
	if err != nil {
		return err
	}
	host := t.Router.Address
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(t.API.Port)))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return api.Serve(ctx, ln, tlsConfig, mux, log)
}
