package agent

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/netns"
	"github.com/lifeline-dr/lifeline/postgres"
)

// postgresConfig is the configuration of this node's PostgreSQL for a
// workload. It fails when a password the spec names cannot be read: the
// node then reports the error instead of running without it.
//
// Who may connect: with TLS (the default), only over TLS and only from the
// topology's addresses, authenticated with scram-sha-256 when the spec sets
// passwords, else with a certificate of the topology's authority whose name
// pg_ident maps to the role (nodes to the superuser and the replication
// user, the operator to the superuser, the workload's services to their
// own role). Without TLS (a local topology made with --insecure), the
// topology's loopback addresses are trusted when there is no password.
func (a *Agent) postgresConfig(w *lifeline.Workload, nodeDir string) (postgres.Config, error) {
	t := a.cfg.Topology
	params := map[string]string{}
	if t.Mode == lifeline.ModeLocal {
		for k, v := range SmallParameters {
			params[k] = v
		}
	}
	for k, v := range w.Database.Parameters {
		params[k] = v
	}
	cfg := postgres.Config{
		Name:            fmt.Sprintf("%s@%s", w.Name, a.cfg.Node),
		BinDir:          a.cfg.PGBin,
		Dir:             filepath.Join(nodeDir, w.Name),
		Owner:           a.cfg.Owner,
		Address:         t.Address(a.cfg.Node),
		Port:            w.Database.Port,
		Superuser:       w.Database.Superuser,
		ReplicationUser: w.Database.ReplicationUser,
		AppRole:         AppRole(w),
		Parameters:      params,
		Logger:          a.log,
		TLS:             a.sec.tlsFiles(),
		ServerName: func(host string, port int) string {
			h, _, err := net.SplitHostPort(a.dialer.Target(net.JoinHostPort(host, strconv.Itoa(port))))
			if err != nil {
				return host
			}
			return h
		},
	}
	if w.Database.Password.Set() {
		var err error
		if cfg.Password, err = w.Database.Password.Resolve(); err != nil {
			return cfg, fmt.Errorf("database password: %w", err)
		}
		if cfg.ReplicationPassword, err = w.Database.ReplicationPassword.Resolve(); err != nil {
			return cfg, fmt.Errorf("database replication-password: %w", err)
		}
		cfg.AppPassword = appPassword(cfg.Password, w)
	}
	switch {
	case cfg.TLS != nil:
		cfg.Allow = topologyAddresses(t)
		cfg.CertRoles = map[string][]string{
			"/^node:":                   {w.Database.Superuser, w.Database.ReplicationUser},
			certs.Operator:              {w.Database.Superuser},
			certs.AppCommonName(w.Name): {cfg.AppRole},
		}
	case cfg.Password != "":
		cfg.Allow = []string{"0.0.0.0/0", "::/0"}
		if t.Mode == lifeline.ModeLocal {
			cfg.Allow = []string{"127.0.0.0/8"}
		}
	default:
		// A local topology made without TLS and passwords: trust its own
		// addresses, and 127.0.0.1, the source of connections between
		// loopback addresses on one machine.
		cfg.Trust = []string{"127.0.0.1"}
		if t.Isolation == lifeline.IsolationNetns {
			cfg.Trust = append(cfg.Trust, netns.HostAddress)
		}
		for _, id := range t.Nodes() {
			cfg.Trust = append(cfg.Trust, t.Address(id))
		}
		a.log.Warn("no TLS and no database password: trusting the topology's loopback addresses", "workload", w.Name)
	}
	if cfg.TLS != nil && a.cfg.Owner != nil {
		// PostgreSQL reads the key as its own user: its server's, and its
		// replication connections' client certificate.
		f := certs.Files{Cert: cfg.TLS.Cert, Key: cfg.TLS.Key}
		if err := f.Chown(int(a.cfg.Owner.UID), int(a.cfg.Owner.GID)); err != nil {
			return cfg, fmt.Errorf("give the node's certificate to %s: %w", a.cfg.Owner.Name, err)
		}
	}
	return cfg, nil
}

// topologyAddresses are the addresses PostgreSQL accepts connections from:
// every node, the witness, the router (whose endpoints pass clients'
// connections on) and, in a local topology, 127.0.0.1, where connections
// between loopback addresses come from, and in a namespace topology the
// machine's own address toward the namespaces.
func topologyAddresses(t *lifeline.Topology) []string {
	var addrs []string
	seen := map[string]bool{}
	add := func(a string) {
		ip := net.ParseIP(a)
		if ip == nil || ip.IsUnspecified() || seen[ip.String()] {
			return
		}
		seen[ip.String()] = true
		addrs = append(addrs, ip.String())
	}
	if t.Mode == lifeline.ModeLocal {
		add("127.0.0.1")
	}
	if t.Isolation == lifeline.IsolationNetns {
		// The machine that runs the namespaces (its operator, its tests).
		add(netns.HostAddress)
	}
	for _, id := range t.Nodes() {
		add(t.Address(id))
	}
	if t.Witness != nil {
		add(t.Witness.Address)
	}
	add(t.Router.Address)
	return addrs
}
