package store

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// MemberConfig places one embedded etcd member.
type MemberConfig struct {
	Name string
	Dir  string
	// ClientURL and PeerURL are where this member listens.
	ClientURL string
	PeerURL   string
	// AdvertisePeerURL is what other members dial (a WAN link in a local
	// topology); defaults to PeerURL.
	AdvertisePeerURL string
	// Cluster maps every member's name to its advertised peer URL.
	Cluster map[string]string
	Token   string
	// LogFile receives etcd's own log (warnings and errors).
	LogFile string
	// TLS, when set, serves clients and peers over mutual TLS (the URLs
	// are then https://); nil serves plain http://.
	TLS *MemberTLS
}

// Member is an embedded etcd member.
type Member struct {
	etcd  *embed.Etcd
	close sync.Once
}

// StartMember starts an embedded member. It returns once the member has
// joined a quorum, or with ctx's error. A member that has data in Dir
// restarts from it; the initial cluster is used only on first start.
func StartMember(ctx context.Context, c MemberConfig) (*Member, error) {
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.Dir
	client, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: client url: %w", c.Name, err)
	}
	peer, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: peer url: %w", c.Name, err)
	}
	adv := peer
	if c.AdvertisePeerURL != "" {
		if adv, err = url.Parse(c.AdvertisePeerURL); err != nil {
			return nil, fmt.Errorf("etcd member %s: advertise url: %w", c.Name, err)
		}
	}
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*adv}
	names := make([]string, 0, len(c.Cluster))
	for n := range c.Cluster {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + c.Cluster[n]
	}
	cfg.InitialCluster = strings.Join(parts, ",")
	cfg.InitialClusterToken = c.Token
	cfg.ClusterState = embed.ClusterStateFlagNew
	// Heartbeat and election sized for WAN round trips of tens of ms:
	// a leader is replaced about a second after it is lost.
	cfg.TickMs = 100
	cfg.ElectionMs = 1000
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.QuotaBackendBytes = 512 << 20
	if c.TLS != nil {
		c.TLS.apply(cfg)
	}
	cfg.LogLevel = "warn"
	cfg.Logger = "zap"
	if c.LogFile != "" {
		cfg.LogOutputs = []string{c.LogFile}
	} else {
		cfg.LogOutputs = []string{"stderr"}
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", c.Name, err)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", c.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &Member{etcd: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd member %s: %w", c.Name, err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd member %s: no quorum yet: %w", c.Name, ctx.Err())
	}
}

// Err reports a fatal error of the running member.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Close stops the member, handing leadership over first when it leads.
func (m *Member) Close() {
	m.close.Do(func() {
		done := make(chan struct{})
		go func() {
			m.etcd.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	})
}
