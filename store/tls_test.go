package store_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/store"
)

// startTLSCluster starts three members that serve clients and peers over
// mutual TLS, with certificates of a fresh authority.
func startTLSCluster(t *testing.T) (dir string, clientURLs, peerURLs []string) {
	t.Helper()
	dir = testenv.Dir(t)
	sub := testenv.Subnet(t)
	ca, err := certs.Init(certs.Dir(dir), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range append(memberNames, certs.Operator) {
		id := certs.Identity{Name: name, CommonName: name}
		if name != certs.Operator {
			id.IPs = []net.IP{net.ParseIP(fmt.Sprintf("%s.%d", sub, i+1))}
		}
		if err := ca.Issue(id); err != nil {
			t.Fatal(err)
		}
	}
	_, clientURLs, peerURLs = startMembers(t, dir, sub, "https", func(name string) *store.MemberTLS {
		f, err := certs.Find(certs.Dir(dir), name)
		if err != nil {
			t.Fatal(err)
		}
		return &store.MemberTLS{CA: f.CA, Cert: f.Cert, Key: f.Key, SkipSourceCheck: true}
	})
	return dir, clientURLs, peerURLs
}

// TestMember_MutualTLS: members answer clients with a certificate of their
// authority, and refuse plain http://, clients without a certificate and
// certificates of another authority, on the client and the peer port alike.
func TestMember_MutualTLS(t *testing.T) {
	dir, clientURLs, peerURLs := startTLSCluster(t)
	op, err := certs.Find(certs.Dir(dir), certs.Operator)
	if err != nil {
		t.Fatal(err)
	}
	good, err := op.Client("")
	if err != nil {
		t.Fatal(err)
	}

	s, err := store.Connect(clientURLs, "shop", store.WithTLS(good))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Put(ctx, s.Keys().Root()+"x", "with a certificate"); err != nil {
		t.Fatalf("a client with a certificate of the authority: %v", err)
	}

	// Another authority, with a certificate for the same name.
	otherDir := filepath.Join(testenv.Dir(t), "other")
	other, err := certs.Init(otherDir, "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Issue(certs.Identity{Name: certs.Operator, CommonName: certs.Operator}); err != nil {
		t.Fatal(err)
	}
	foreign, err := certs.Find(otherDir, certs.Operator)
	if err != nil {
		t.Fatal(err)
	}
	foreignCfg, err := foreign.Client("")
	if err != nil {
		t.Fatal(err)
	}
	// The client trusts the members' authority; only its own certificate is foreign.
	foreignCfg.RootCAs = good.RootCAs
	noCert := good.Clone()
	noCert.Certificates = nil

	for _, u := range append(append([]string{}, clientURLs[:1]...), peerURLs[:1]...) {
		t.Run(strings.TrimPrefix(u, "https://"), func(t *testing.T) {
			if body, err := get(u+"/version", good); err != nil || !strings.Contains(body, "etcd") {
				t.Fatalf("with a certificate: %q, %v", body, err)
			}
			for _, c := range []struct {
				name string
				url  string
				cfg  *tls.Config
			}{
				{"plain http", strings.Replace(u, "https://", "http://", 1), nil},
				{"no certificate", u, noCert},
				{"another authority", u, foreignCfg},
			} {
				body, err := get(c.url+"/version", c.cfg)
				if err == nil && strings.Contains(body, "etcdserver") {
					t.Errorf("%s: served %q", c.name, body)
				}
			}
		})
	}

	// And through the client library: a request without a certificate
	// gets nowhere.
	for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "another authority": foreignCfg} {
		bad, err := store.Connect(clientURLs, "shop", store.WithTLS(cfg))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = bad.Put(cctx, bad.Keys().Root()+"x", name)
		cancel()
		bad.Close()
		if err == nil {
			t.Errorf("%s: the write was accepted", name)
		}
	}
	plain, err := store.Connect([]string{strings.Replace(clientURLs[0], "https://", "http://", 1)}, "shop")
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if err := plain.Put(cctx, plain.Keys().Root()+"x", "plain"); err == nil {
		t.Error("plain http://: the write was accepted")
	}
	plain.Close()
}

// get fetches url with cfg (nil: plain HTTP) and returns the body.
func get(url string, cfg *tls.Config) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
