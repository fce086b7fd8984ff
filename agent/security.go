package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/store"
	"github.com/lifeline-dr/lifeline/wan"
)

// Security is one process's identity in a topology, on this machine: the
// certificate it shows etcd members and PostgreSQL servers, and the
// authority it checks them against.
//
// A distributed topology always runs with mutual TLS. A local one does when
// its data directory holds a certificate authority, which `lifeline up`
// makes unless told --insecure (to measure what TLS costs).
type Security struct {
	t        *lifeline.Topology
	dataDir  string
	identity string
	files    *certs.Files // nil: plain connections
}

// LoadSecurity finds identity's certificate (certs.NodeName(id),
// certs.Witness, certs.Router, certs.Operator) under dataDir.
func LoadSecurity(t *lifeline.Topology, dataDir, identity string) (*Security, error) {
	s := &Security{t: t, dataDir: dataDir, identity: identity}
	dir := certs.Dir(dataDir)
	if !certs.HasAuthority(dir) {
		if t.Mode == lifeline.ModeDistributed {
			return nil, fmt.Errorf("%s holds no certificate authority: a distributed topology runs with mutual TLS only "+
				"(lifeline certs init, then lifeline certs issue -f SPEC, and copy each host its files)", dir)
		}
		return s, nil
	}
	f, err := certs.Find(dir, identity)
	if err != nil {
		return nil, err
	}
	s.files = &f
	return s, nil
}

// TLS reports whether connections use TLS.
func (s *Security) TLS() bool { return s.files != nil }

func (s *Security) scheme() string {
	if s.files != nil {
		return "https"
	}
	return "http"
}

// ClientURLs lists the etcd members' client URLs, at their own addresses.
func (s *Security) ClientURLs() []string {
	t := s.t
	if !t.Control.Embedded() {
		return t.Control.Endpoints
	}
	var urls []string
	for _, site := range t.Sites() {
		urls = append(urls, s.clientURL(site))
	}
	return urls
}

// ConnectStore opens the control store with this identity's certificate.
// With from set, connections to other sites' members take that node's WAN
// routes (a local topology); each member's certificate is still checked
// against the member's own address.
func (s *Security) ConnectStore(from *lifeline.NodeID, opts ...store.Option) (*store.Store, error) {
	return s.connect(s.ClientURLs(), from, opts...)
}

func (s *Security) connect(urls []string, from *lifeline.NodeID, opts ...store.Option) (*store.Store, error) {
	if s.files != nil {
		cfg, err := s.files.Client("")
		if err != nil {
			return nil, err
		}
		opts = append(opts, store.WithTLS(cfg))
	}
	if from != nil && s.t.RoutedWAN() {
		d := wan.NewDialer(s.t, from.String())
		opts = append(opts, store.WithDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "tcp", d.Address(addr))
		}))
	}
	return store.Connect(urls, s.t.Name, opts...)
}

// clientURL is a site's member's client URL.
func (s *Security) clientURL(site lifeline.Site) string {
	return s.scheme() + "://" + net.JoinHostPort(site.Address, strconv.Itoa(s.t.Control.ClientPort))
}

// memberTLS is the TLS of the etcd member this identity runs.
func (s *Security) memberTLS() *store.MemberTLS {
	if s.files == nil {
		return nil
	}
	m := &store.MemberTLS{CA: s.files.CA, Cert: s.files.Cert, Key: s.files.Key}
	if s.t.RoutedWAN() {
		// One machine on loopback: every connection comes from 127.0.0.1,
		// and the WAN emulator learns a peer connection's sender from the
		// server name. (In network namespaces, as on real hosts, each
		// member connects from its own address and is checked by it.)
		m.SkipSourceCheck = true
		for _, site := range s.t.Sites() {
			if s.identity == siteIdentity(site) {
				m.PeerServerName = certs.PeerServerName(site.Name)
			}
		}
	}
	return m
}

func siteIdentity(site lifeline.Site) string {
	if site.Name == lifeline.WitnessSite {
		return certs.Witness
	}
	return certs.NodeName(site.Node)
}

// tlsFiles are this identity's files for PostgreSQL, nil without TLS.
func (s *Security) tlsFiles() *postgres.TLSFiles {
	if s.files == nil {
		return nil
	}
	return &postgres.TLSFiles{CA: s.files.CA, Cert: s.files.Cert, Key: s.files.Key}
}

// DatabaseClient is how this identity connects to a workload's databases
// as their superuser: with the password the spec names, or else with its
// certificate.
func (s *Security) DatabaseClient(w *lifeline.Workload) (postgres.Client, error) {
	c := postgres.Client{User: w.Database.Superuser, TLS: s.tlsFiles()}
	if w.Database.Password.Set() {
		pw, err := w.Database.Password.Resolve()
		if err != nil {
			return c, fmt.Errorf("database password of %s: %w", w.Name, err)
		}
		c.Password = pw
	}
	return c, nil
}

// AppRole is the database role of a workload's services.
func AppRole(w *lifeline.Workload) string { return w.AppRole() }

// appPassword is the services' role's password when the workload has
// passwords: derived from the superuser's, so that every agent knows it
// without storing it, and whoever knows it learns nothing of the
// superuser's.
func appPassword(superuserPassword string, w *lifeline.Workload) string {
	m := hmac.New(sha256.New, []byte(superuserPassword))
	m.Write([]byte("lifeline services' role " + AppRole(w)))
	return hex.EncodeToString(m.Sum(nil))
}

// serviceDSN is how a workload's services reach its writer or reader
// endpoint (port): as the workload's own role, over TLS checked against
// the authority, with the services' certificate or password.
func (s *Security) serviceDSN(w *lifeline.Workload, port int) (string, error) {
	c := postgres.Client{User: AppRole(w)}
	if s.files != nil {
		c.TLS = &postgres.TLSFiles{CA: s.files.CA}
		if f, err := certs.Find(certs.Dir(s.dataDir), certs.AppName(w.Name)); err == nil {
			c.TLS.Cert, c.TLS.Key = f.Cert, f.Key
		}
	}
	dsn := c.Conninfo(s.t.Router.Address, port, "", "postgres")
	if w.Database.Password.Set() {
		pw, err := w.Database.Password.Resolve()
		if err != nil {
			return "", fmt.Errorf("database password of %s: %w", w.Name, err)
		}
		dsn += " password=" + appPassword(pw, w)
	}
	return dsn, nil
}
