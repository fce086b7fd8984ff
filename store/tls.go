package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// WithTLS makes the client speak TLS with cfg: its certificate, and the
// authority members are checked against. Endpoints then use https://.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithDialer makes the client reach a member's address through dial (a WAN
// route, in a local topology) while it still checks the member's
// certificate against the address itself.
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}

// apply sets the options that every client of the store shares.
func (o *options) apply(cfg *clientv3.Config) {
	cfg.TLS = o.tls
	if o.dial != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(o.dial))
	}
}

// ClientTo opens a client to one member, with the store's certificate and
// dialer: for the calls that must reach a given member (moving the leader).
// The caller closes it.
func (s *Store) ClientTo(endpoint string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	s.opts.apply(&cfg)
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("control store %s: %w", endpoint, err)
	}
	return cli, nil
}

// MemberTLS is an embedded member's TLS: its certificate serves clients and
// peers, and both must present a certificate of the same authority.
type MemberTLS struct {
	CA, Cert, Key string
	// PeerServerName, when set, is sent as the TLS server name of the
	// connections this member opens to its peers, and checked in their
	// certificates instead of their addresses (a local topology names the
	// sending member there; see certs.PeerDomain).
	PeerServerName string
	// SkipSourceCheck stops etcd from requiring that a client's or peer's
	// certificate hold the address it connects from: on one machine every
	// connection comes from 127.0.0.1.
	SkipSourceCheck bool
}

func (m *MemberTLS) apply(cfg *embed.Config) {
	info := transport.TLSInfo{
		CertFile: m.Cert, KeyFile: m.Key, TrustedCAFile: m.CA,
		ClientCertAuth: true, SkipClientSANVerify: m.SkipSourceCheck,
	}
	cfg.ClientTLSInfo = info
	info.ServerName = m.PeerServerName
	cfg.PeerTLSInfo = info
}
