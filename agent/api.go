package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/metrics"
	"github.com/lifeline-dr/lifeline/sidecopy"
	"github.com/lifeline-dr/lifeline/store"
	"github.com/lifeline-dr/lifeline/telemetry"
	"github.com/lifeline-dr/lifeline/web"
)

// serveAPI runs the node's operator surface until ctx ends: the HTTP API,
// the dashboard and /metrics over HTTPS on the node's address at the API
// port. Its control-store client is its own and requires a leader, as an
// operator's commands do: a request reaching an agent cut off from the
// quorum fails at once instead of hanging.
func (a *Agent) serveAPI(ctx context.Context) error {
	t := a.cfg.Topology
	pair, err := api.ServerPair(a.cfg.DataDir, t, a.cfg.Node)
	if err != nil {
		return fmt.Errorf("api certificate: %w", err)
	}
	tlsConfig, err := pair.ServerTLS()
	if err != nil {
		return fmt.Errorf("api certificate: %w", err)
	}
	addr := net.JoinHostPort(t.Address(a.cfg.Node), strconv.Itoa(t.API.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s, err := a.sec.ConnectStore(&a.cfg.Node, store.RequireLeader(), store.SkipSilentMembers(t.Control.CheckInterval, a.log))
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	log := a.log.With("subsystem", "api")
	sampler := &telemetry.Sampler{T: t, S: s, Log: log}
	tokens := &api.TokenCache{S: s, Log: log}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&metrics.Cluster{Src: sampler}, &metrics.Archive{T: t, Node: a.cfg.Node, Connect: a.connect})
	backups := &controller.Backups{T: t, S: s, DataDir: a.cfg.DataDir, PGBin: a.cfg.PGBin, Owner: a.cfg.Owner, HostPort: a.dialer.HostPort, Log: log,
		Client: a.sec.DatabaseClient}
	srv := api.New(api.Config{
		T: t, S: s, Node: a.cfg.Node.String(), DataDir: a.cfg.DataDir, Tokens: tokens, Sampler: sampler, Backups: backups,
		Sides:   &sidecopy.Runner{B: backups, Host: t.Address(a.cfg.Node), Parameters: SmallParameters},
		Metrics: reg, Assets: web.Handler(), Log: log, Ready: a.readiness(s).Gate,
	})
	go sampler.Run(ctx)
	go tokens.Run(ctx)
	log.Info("api serving", "url", "https://"+addr)
	err = api.Serve(ctx, ln, tlsConfig, srv, log)
	// Side copies made through the API end with the agent.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if cerr := srv.Close(cctx); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
