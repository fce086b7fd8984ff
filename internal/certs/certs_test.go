package certs_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/spec"
)

func TestAuthority(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	ca, err := certs.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.Init(dir, "again"); err == nil {
		t.Error("Init replaced an authority")
	}
	id := certs.Identity{Name: "node-west-a", CommonName: "node:west/a", IPs: []net.IP{net.ParseIP("127.0.1.1")}}
	if issued, err := ca.Ensure(id); err != nil || !issued {
		t.Fatalf("first Ensure: issued %v, %v", issued, err)
	}
	if issued, err := ca.Ensure(id); err != nil || issued {
		t.Errorf("Ensure of a current certificate: issued %v, %v", issued, err)
	}
	id.IPs = []net.IP{net.ParseIP("127.0.1.9")}
	if issued, err := ca.Ensure(id); err != nil || !issued {
		t.Errorf("Ensure after the address changed: issued %v, %v", issued, err)
	}
	f, err := certs.Find(dir, id.Name)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{f.Key: 0o600, filepath.Join(dir, "ca.key"): 0o600, dir: 0o711 | os.ModeDir} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: %v %v, want mode %v", path, st.Mode(), err, want)
		}
	}
	// The certificate verifies against the authority for its address and
	// as a server and a client.
	read := func(p string) *x509.Certificate {
		b, _ := os.ReadFile(p)
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pool := x509.NewCertPool()
	pool.AddCert(read(f.CA))
	leaf := read(f.Cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.1.9", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.1.1"}); err == nil {
		t.Error("the certificate still verifies for its old address")
	}
	if _, err := f.Client(""); err != nil {
		t.Error(err)
	}
}

func TestIdentities(t *testing.T) {
	top, err := spec.Parse("t.yaml", []byte(`name: shop
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
workloads:
  - {name: db, strategy: pilot-light, objectives: {rpo: 1s, rto: 1m}, active: west}
`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := certs.Identities(top)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]certs.Identity{}
	for _, id := range ids {
		byName[id.Name] = id
	}
	for _, name := range []string{"node-west-a", "node-west-b", "node-east-a", certs.Witness, certs.Router, certs.Operator, "app-db"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no identity %s in %v", name, ids)
		}
	}
	// Sites' members name themselves to the WAN emulator; every node's
	// server answers for the router's address (the endpoints pass TLS on).
	if a := byName["node-west-a"]; len(a.DNSNames) != 1 || len(a.IPs) != 2 || !a.IPs[1].Equal(net.ParseIP("127.0.3.1")) {
		t.Errorf("node-west-a = %+v", a)
	}
	if b := byName["node-west-b"]; len(b.DNSNames) != 0 {
		t.Errorf("node-west-b hosts no member, has %v", b.DNSNames)
	}
	if op := byName[certs.Operator]; len(op.IPs)+len(op.DNSNames) != 0 {
		t.Errorf("the operator serves nothing, has %+v", op)
	}
}
