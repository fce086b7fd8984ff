// Package certs makes and finds the certificates of a topology's mutual
// TLS: one certificate authority, and a certificate per identity (each
// node, the witness, the router, the operator, each workload's services).
//
// Layout, under a data directory:
//
//	certs/ca.crt           the authority's certificate (every process trusts it)
//	certs/ca.key           its key: only where certificates are issued
//	certs/<name>.crt/.key  one identity: node-<region>-<zone>, witness, router, operator, app-<workload>
//
// Keys are ECDSA P-256 in PKCS #8, mode 0600; the directory is 0711 (it can
// be entered, not listed). Certificates name their holder in the common
// name (node:<region>/<zone>, witness, router, operator, app:<workload>),
// which PostgreSQL's certificate authentication maps to database roles, and
// the addresses they serve in their IP SANs.
package certs

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
	"slices"
	"time"
)

// Dir is where a data directory keeps its certificates.
func Dir(dataDir string) string { return filepath.Join(dataDir, "certs") }

const (
	caName = "ca"
	// caValidity and leafValidity: the authority outlives many renewals of
	// the certificates it signs; `lifeline up` renews a local topology's
	// certificates a month before they expire.
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 2 * 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// ErrNoAuthority is returned when a directory holds no certificate authority.
var ErrNoAuthority = errors.New("no certificate authority")

// Identity is one holder of a certificate.
type Identity struct {
	// Name is the files' base name (node-eu-west-a).
	Name string
	// CommonName names the holder (node:eu-west/a).
	CommonName string
	// IPs and DNSNames are what the holder serves as; empty for a
	// client-only identity.
	IPs      []net.IP
	DNSNames []string
}

// Authority signs certificates.
type Authority struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Init makes a new certificate authority in dir. It refuses to replace one:
// every certificate it signed would stop working.
func Init(dir, name string) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, caName+".crt")); err == nil {
		return nil, fmt.Errorf("a certificate authority already exists in %s", dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Lifeline CA " + name, Organization: []string{"Lifeline"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("make the certificate authority: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := write(dir, caName, der, key); err != nil {
		return nil, err
	}
	return &Authority{dir: dir, cert: cert, key: key}, nil
}

// Open loads the certificate authority of dir, key included.
func Open(dir string) (*Authority, error) {
	cert, err := readCert(filepath.Join(dir, caName+".crt"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (run lifeline certs init)", dir, ErrNoAuthority)
	}
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(dir, caName+".key"))
	if err != nil {
		return nil, fmt.Errorf("certificate authority of %s: %w", dir, err)
	}
	return &Authority{dir: dir, cert: cert, key: key}, nil
}

// Issue writes a certificate and key for id into the authority's directory.
func (a *Authority) Issue(id Identity) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.CommonName, Organization: []string{"Lifeline"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every identity is a client (etcd, PostgreSQL); those with
		// addresses serve too (etcd members, PostgreSQL servers).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses: id.IPs,
		DNSNames:    id.DNSNames,
	}
	if len(id.IPs)+len(id.DNSNames) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return fmt.Errorf("issue %s: %w", id.Name, err)
	}
	return write(a.dir, id.Name, der, key)
}

// Ensure issues id's certificate unless a current one exists: signed by
// this authority, for the same names and addresses, valid for another month.
func (a *Authority) Ensure(id Identity) (issued bool, err error) {
	have, err := readCert(filepath.Join(a.dir, id.Name+".crt"))
	if err == nil && have.CheckSignatureFrom(a.cert) == nil && have.Subject.CommonName == id.CommonName &&
		time.Until(have.NotAfter) > renewBefore && sameIPs(have.IPAddresses, id.IPs) && slices.Equal(have.DNSNames, id.DNSNames) {
		if _, err := os.Stat(filepath.Join(a.dir, id.Name+".key")); err == nil {
			return false, nil
		}
	}
	return true, a.Issue(id)
}

func sameIPs(a, b []net.IP) bool {
	return slices.EqualFunc(a, b, func(x, y net.IP) bool { return x.Equal(y) })
}

// Files are one identity's certificate and key, with the authority's
// certificate that every peer is checked against.
type Files struct {
	CA, Cert, Key string
}

// Find returns the files of an identity in dir, or an error naming what is
// missing.
func Find(dir, name string) (Files, error) {
	f := Files{CA: filepath.Join(dir, caName+".crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	for _, p := range []string{f.CA, f.Cert, f.Key} {
		if _, err := os.Stat(p); err != nil {
			return f, fmt.Errorf("certificate of %s: %w (issue it with lifeline certs issue)", name, err)
		}
	}
	return f, nil
}

// HasAuthority reports whether dir holds an authority's certificate (its
// key may be elsewhere).
func HasAuthority(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, caName+".crt"))
	return err == nil
}

// Client is the TLS configuration of a client presenting these files and
// checking the server against the authority. serverName, when not empty,
// is the name the server's certificate must hold (otherwise the address
// dialed).
func (f Files) Client(serverName string) (*tls.Config, error) {
	pair, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

func (f Files) load() (tls.Certificate, *x509.CertPool, error) {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load %s: %w", f.Cert, err)
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return tls.Certificate{}, nil, fmt.Errorf("load %s: no certificate in it", f.CA)
	}
	return pair, pool, nil
}

// Chown gives the key (and certificate) to another OS user, who must read
// them: PostgreSQL's, for its server and its replication connections.
func (f Files) Chown(uid, gid int) error {
	for _, p := range []string{f.Cert, f.Key} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func write(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: a certificate without its key is never left behind.
	if err := writeFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFile replaces path atomically with a file of the given mode.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not a PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", path)
	}
	return ec, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
