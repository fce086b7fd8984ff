package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Files in a data directory.
const (
	// Dir holds the API's own files under a data directory.
	Dir = "api"
	// CertFile and KeyFile are the self-signed pair `lifeline up` makes
	// (until the topology has its own certificate authority).
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	// AdminTokenFile holds the token `lifeline up` makes for the local
	// operator (mode 0600).
	AdminTokenFile = "admin.token"
	// AdminTokenName is that token's name.
	AdminTokenName = "local-admin"
)

// CertPair is a certificate and key file pair: where the server's
// certificate comes from. Any pair works (a real CA's, the topology's
// own authority's); SelfSigned makes one.
type CertPair struct {
	Cert, Key string
}

// Loader returns a GetCertificate function that reads the pair again when
// its files change, so that a renewed certificate is served without a
// restart.
func (p CertPair) Loader() (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	var mu sync.Mutex
	var cur *tls.Certificate
	var mod time.Time
	load := func() (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		fi, err := os.Stat(p.Cert)
		if err != nil {
			if cur != nil {
				return cur, nil
			}
			return nil, err
		}
		if cur != nil && fi.ModTime().Equal(mod) {
			return cur, nil
		}
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			if cur != nil {
				return cur, nil
			}
			return nil, fmt.Errorf("load %s: %w", p.Cert, err)
		}
		cur, mod = &c, fi.ModTime()
		return cur, nil
	}
	if _, err := load(); err != nil {
		return nil, err
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return load() }, nil
}

// ServerTLS is the server's TLS configuration over a pair.
func (p CertPair) ServerTLS() (*tls.Config, error) {
	get, err := p.Loader()
	if err != nil {
		return nil, err
	}
	return &tls.Config{GetCertificate: get, MinVersion: tls.VersionTLS12}, nil
}

// SelfSignedPair is where a data directory keeps the self-signed pair.
func SelfSignedPair(dataDir string) CertPair {
	return CertPair{Cert: filepath.Join(dataDir, Dir, CertFile), Key: filepath.Join(dataDir, Dir, KeyFile)}
}

// Hosts lists the addresses a topology's API answers on: every node, the
// router, and the loopback names.
func Hosts(t *lifeline.Topology) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	for _, id := range t.Nodes() {
		hosts = append(hosts, t.Address(id))
	}
	if a := t.Router.Address; a != "" && a != "0.0.0.0" {
		hosts = append(hosts, a)
	}
	return hosts
}

// EnsureSelfSigned makes a self-signed certificate for hosts (IP
// addresses or names) under dataDir unless a pair is there already, and
// returns the pair. The key is ECDSA P-256, mode 0600.
func EnsureSelfSigned(dataDir string, hosts []string) (CertPair, error) {
	p := SelfSignedPair(dataDir)
	if _, err := os.Stat(p.Cert); err == nil {
		if _, err := os.Stat(p.Key); err == nil {
			return p, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.Cert), 0o711); err != nil {
		return p, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return p, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Lifeline API (self-signed)", Organization: []string{"Lifeline"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // it is its own authority: clients trust this file
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return p, fmt.Errorf("make the API's certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return p, err
	}
	// Key first, certificate last: a pair exists exactly when its
	// certificate does.
	if err := writeAtomic(p.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return p, err
	}
	if err := writeAtomic(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return p, err
	}
	return p, nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// CAFiles lists the certificates a client of a data directory's topology
// trusts: the self-signed pair's, and the topology's certificate
// authority (certs/ca.crt) once it has one.
func CAFiles(dataDir string) []string {
	return []string{SelfSignedPair(dataDir).Cert, filepath.Join(dataDir, "certs", "ca.crt")}
}

// ClientTLS is a client's TLS configuration trusting the certificates in
// files (those that exist); extra PEM files (--ca) are added.
func ClientTLS(files ...string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no certificate in it", f)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no certificate to trust the API with (looked for %v; lifeline up makes one, or give --ca)", files)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// NodePair is a node's certificate from the topology's own authority
// (certs/node-REGION-ZONE.crt and .key under the data directory, as
// `lifeline certs` lays them out), when it has one.
func NodePair(dataDir string, id lifeline.NodeID) (CertPair, bool) {
	dir := filepath.Join(dataDir, "certs")
	p := CertPair{Cert: filepath.Join(dir, "node-"+id.Region+"-"+id.Zone+".crt"), Key: filepath.Join(dir, "node-"+id.Region+"-"+id.Zone+".key")}
	for _, f := range []string{p.Cert, p.Key} {
		if _, err := os.Stat(f); err != nil {
			return p, false
		}
	}
	return p, true
}

// ServerPair is the certificate an agent serves the API with: its node's
// from the topology's authority when there is one, else the data
// directory's self-signed pair (made now when missing).
func ServerPair(dataDir string, t *lifeline.Topology, id lifeline.NodeID) (CertPair, error) {
	if p, ok := NodePair(dataDir, id); ok {
		return p, nil
	}
	return EnsureSelfSigned(dataDir, Hosts(t))
}

// TrustFile is the certificate a client of a data directory's topology
// trusts the API with: the topology's authority when it has one, else the
// self-signed pair's.
func TrustFile(dataDir string) string {
	if ca := filepath.Join(dataDir, "certs", "ca.crt"); fileExists(ca) {
		return ca
	}
	return SelfSignedPair(dataDir).Cert
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
