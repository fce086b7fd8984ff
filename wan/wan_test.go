package wan_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/wan"
)

func topology(t *testing.T, net string) *lifeline.Topology {
	t.Helper()
	src := strings.NewReplacer("127.0.1.", net+".1", "127.0.2.", net+".2", "127.0.3.1", net+".31").Replace(`name: shop
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
links: {cross-region: {latency: 30ms}}
workloads:
  - {name: db, strategy: pilot-light, objectives: {rpo: 1s, rto: 1m}, active: west}
`)
	top, err := spec.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestPlan(t *testing.T) {
	top := topology(t, "127.0.0")
	routes := wan.Plan(top)
	listen := map[string]bool{}
	kinds := map[wan.Kind]int{}
	for _, r := range routes {
		if listen[r.Listen] {
			t.Errorf("two routes listen on %s", r.Listen)
		}
		listen[r.Listen] = true
		kinds[r.Kind]++
		if r.Kind == wan.KindPostgres && !r.CrossRegion {
			t.Errorf("in-region postgres route %+v", r)
		}
	}
	// 3 sites' peers; etcd clients: west/a reaches 2, west/b 3, east/a 2;
	// postgres: west/* reach east/a (2), east/a reaches west/a and west/b (2).
	want := map[wan.Kind]int{wan.KindEtcdPeer: 3, wan.KindEtcdClient: 7, wan.KindPostgres: 4}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%s routes = %d, want %d", k, kinds[k], n)
		}
	}
	d := wan.NewDialer(top, "east/a")
	if got := d.Address("127.0.0.11:5432"); got == "127.0.0.11:5432" {
		t.Errorf("east/a dials west/a's postgres directly")
	}
	if got := wan.NewDialer(top, "west/b").Address("127.0.0.11:5432"); got != "127.0.0.11:5432" {
		t.Errorf("west/b dials west/a's postgres through %s, want directly", got)
	}
}

// echo serves a line-echo server on addr until the test ends.
func echo(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return 0, err
	}
	if _, err := r.ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func TestEmulator_LatencyCutHeal(t *testing.T) {
	sub := testenv.Subnet(t)
	top := topology(t, sub)
	// Stand in for east/a's postgres.
	echo(t, sub+".21:5432")
	e := wan.New(top, slog.New(slog.DiscardHandler))
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	addr := wan.NewDialer(top, "west/a").Address(sub + ".21:5432")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	rtt, err := roundTrip(c, r, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rtt < 60*time.Millisecond {
		t.Errorf("round trip %v: the 30ms one-way latency was not applied both ways", rtt)
	}

	e.Cut(wan.Rule{A: "west", B: "east"})
	if _, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatal("a byte crossed a cut link")
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, bufio.NewReader(c2), 300*time.Millisecond); err == nil {
		t.Fatal("a new connection crossed a cut link")
	}
	// Cutting another pair leaves this one alone.
	e.Heal(wan.Rule{A: "west", B: "east"})
	e.Cut(wan.Rule{A: "east", B: "witness"})
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := roundTrip(c3, bufio.NewReader(c3), 5*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	// Isolating a node cuts its routes too.
	e.Cut(wan.Rule{A: "west/a"})
	if _, err := roundTrip(c3, bufio.NewReader(c3), 300*time.Millisecond); err == nil {
		t.Fatal("a byte left an isolated node")
	}
}

// cutPeers runs the emulator with an echo server standing in for west/a's
// etcd peer port, and east cut from west. It returns the topology, its
// sites and the address of west's peer route.
func cutPeers(t *testing.T) (*lifeline.Topology, []lifeline.Site, string) {
	sub := testenv.Subnet(t)
	top := topology(t, sub)
	echo(t, sub+".11:2380")
	e := wan.New(top, slog.New(slog.DiscardHandler))
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	site := top.Sites()
	e.Cut(wan.Rule{A: "east", B: "west"})
	return top, site, wan.PeerAddress(top, site[0])
}

func TestEmulator_PeerSender(t *testing.T) {
	top, site, peerWest := cutPeers(t)

	send := func(from lifeline.Site) error {
		c, err := net.Dial("tcp", peerWest)
		if err != nil {
			return err
		}
		defer c.Close()
		req := "GET /raft/stream/msgappv2/1 HTTP/1.1\r\nHost: x\r\nX-PeerURLs: http://" + wan.PeerAddress(top, from) + "\r\n\r\n"
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
	if err := send(site[1]); err == nil {
		t.Error("east's member reached west's member across a cut")
	}
	if err := send(site[2]); err != nil {
		t.Errorf("the witness could not reach west's member: %v", err)
	}
}

// TestEmulator_PeerSenderTLS: over TLS the emulator tells a peer
// connection's sender from the server name of its ClientHello, so that a
// cut between regions stops their members' traffic and only theirs.
func TestEmulator_PeerSenderTLS(t *testing.T) {
	_, site, peerWest := cutPeers(t)

	// The stand-in echoes the hello back, which fails the handshake at
	// once: only a cut makes it time out.
	send := func(from lifeline.Site) error {
		c, err := net.Dial("tcp", peerWest)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		return tls.Client(c, &tls.Config{ServerName: certs.PeerServerName(from.Name), InsecureSkipVerify: true}).Handshake()
	}
	var ne net.Error
	if err := send(site[1]); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("east's member across a cut: %v, want a timeout", err)
	}
	if err := send(site[2]); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the witness could not reach west's member: %v", err)
	}
}
