package certs

import (
	"fmt"
	"net"

	"github.com/lifeline-dr/lifeline"
)

// Names of the identities of a topology.
const (
	Witness  = "witness"
	Router   = "router"
	Operator = "operator"
)

// NodeName is the file name of a node's certificate.
func NodeName(id lifeline.NodeID) string { return "node-" + id.Region + "-" + id.Zone }

// NodeCommonName is a node's name in its certificate.
func NodeCommonName(id lifeline.NodeID) string { return "node:" + id.String() }

// AppName is the file name of the certificate of a workload's services.
func AppName(workload string) string { return "app-" + workload }

// AppCommonName is a workload's services' name in their certificate.
func AppCommonName(workload string) string { return "app:" + workload }

// PeerDomain: in a local topology every etcd member sends its own site's
// name under it (eu-west.peer.lifeline.invalid) as the TLS server name of
// the connections it opens to the others. The WAN emulator, which cannot
// read the encrypted traffic, learns from it which member a connection
// comes from; every member's certificate holds the wildcard
// *.peer.lifeline.invalid for it. (.invalid never resolves.)
const PeerDomain = "peer.lifeline.invalid"

// PeerServerName is what a site's member sends as its server name.
func PeerServerName(site string) string { return site + "." + PeerDomain }

// Identities lists every identity a topology needs: each node (etcd member
// or client, PostgreSQL server and replication client), the witness, the
// router, the operator, and each workload's services.
func Identities(t *lifeline.Topology) ([]Identity, error) {
	local := t.Mode == lifeline.ModeLocal
	var peer []string
	if local && t.Control.Embedded() {
		peer = []string{"*." + PeerDomain}
	}
	// PostgreSQL clients reach the servers through the writer and reader
	// endpoints too, which pass TLS through: the servers answer for the
	// router's address as well.
	var router []net.IP
	if ip := net.ParseIP(t.Router.Address); ip != nil && !ip.IsUnspecified() {
		router = []net.IP{ip}
	}
	var ids []Identity
	for _, id := range t.Nodes() {
		ip := net.ParseIP(t.Address(id))
		if ip == nil {
			return nil, fmt.Errorf("node %s: address %q is not an IP address", id, t.Address(id))
		}
		n := Identity{Name: NodeName(id), CommonName: NodeCommonName(id), IPs: appendIP([]net.IP{ip}, router...)}
		if _, site := t.SiteOf(id); site {
			n.DNSNames = peer
		}
		ids = append(ids, n)
	}
	if t.Witness != nil {
		ip := net.ParseIP(t.Witness.Address)
		if ip == nil {
			return nil, fmt.Errorf("witness: address %q is not an IP address", t.Witness.Address)
		}
		ids = append(ids, Identity{Name: Witness, CommonName: Witness, IPs: []net.IP{ip}, DNSNames: peer})
	}
	ids = append(ids, Identity{Name: Router, CommonName: Router}, Identity{Name: Operator, CommonName: Operator})
	for _, w := range t.Workloads {
		ids = append(ids, Identity{Name: AppName(w.Name), CommonName: AppCommonName(w.Name)})
	}
	return ids, nil
}

func appendIP(ips []net.IP, more ...net.IP) []net.IP {
	for _, m := range more {
		dup := false
		for _, ip := range ips {
			dup = dup || ip.Equal(m)
		}
		if !dup {
			ips = append(ips, m)
		}
	}
	return ips
}

// EnsureTopology makes dir's authority if there is none and issues every
// identity of t that lacks a current certificate. It returns the names
// issued.
func EnsureTopology(dir string, t *lifeline.Topology) ([]string, error) {
	a, err := Open(dir)
	if err != nil {
		if !HasAuthority(dir) {
			a, err = Init(dir, t.Name)
		}
		if err != nil {
			return nil, err
		}
	}
	ids, err := Identities(t)
	if err != nil {
		return nil, err
	}
	var issued []string
	for _, id := range ids {
		did, err := a.Ensure(id)
		if err != nil {
			return issued, err
		}
		if did {
			issued = append(issued, id.Name)
		}
	}
	return issued, nil
}
