package router_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/router"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// ordersRoute is a two-region failover route for orders.shop.internal.
func ordersRoute(westHealthy bool) router.Route {
	return router.Route{
		Workload: "orders", Hostname: "orders.shop.internal", TTL: 5 * time.Second,
		Policy: router.Policy{Kind: router.PolicyFailover}, Active: "eu-west",
		Regions: []router.RegionState{
			{Name: "eu-west", Addrs: addrs("127.0.1.10", "127.0.1.11"), Healthy: westHealthy, On: true},
			{Name: "eu-central", Addrs: addrs("127.0.2.10"), Healthy: true, On: true},
		},
	}
}

// startDNS serves table on a fresh loopback address until the test ends.
func startDNS(t testing.TB, table router.RouteSource, cfg router.DNSSettings) *router.DNS {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = testenv.Subnet(t) + ".53:0"
	}
	d := router.NewDNS(table, cfg, quiet)
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns run: %v", err)
		}
	})
	return d
}

func query(t testing.TB, server, name string, qtype uint16, net string, edit ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	for _, e := range edit {
		e(m)
	}
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return r
}

// summary is the part of an answer the tests compare.
type summary struct {
	Rcode  string
	AA     bool
	Answer []string
	Ns     []string
	Extra  []string
}

func summarize(m *dns.Msg) summary {
	s := summary{Rcode: dns.RcodeToString[m.Rcode], AA: m.Authoritative}
	for _, rr := range m.Answer {
		s.Answer = append(s.Answer, rr.String())
	}
	for _, rr := range m.Ns {
		s.Ns = append(s.Ns, rr.String())
	}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			s.Extra = append(s.Extra, rr.String())
		}
	}
	return s
}

func TestDNS_Answers(t *testing.T) {
	table := router.NewRouteTable()
	table.Now = func() time.Time { return time.Unix(1700000000, 0) }
	table.Update([]router.Route{ordersRoute(true), {
		Workload: "deep", Hostname: "api.eu.shop.internal", TTL: 30 * time.Second, Active: "eu-west",
		Regions: []router.RegionState{{Name: "eu-west", Addrs: addrs("127.0.1.20"), Healthy: true, On: true}},
	}})
	sub := testenv.Subnet(t)
	d := startDNS(t, table, router.DNSSettings{Addr: sub + ".53:0"})
	const serial = "1700000000"
	soa := "shop.internal.\t5\tIN\tSOA\tns.shop.internal. hostmaster.shop.internal. " + serial + " 3600 600 1209600 5"
	soaEU := "eu.shop.internal.\t30\tIN\tSOA\tns.eu.shop.internal. hostmaster.eu.shop.internal. " + serial + " 3600 600 1209600 30"
	glue := "ns.shop.internal.\t300\tIN\tA\t" + sub + ".53"
	tests := []struct {
		name  string
		qname string
		qtype uint16
		want  summary
	}{
		{"A", "orders.shop.internal.", dns.TypeA, summary{Rcode: "NOERROR", AA: true, Answer: []string{
			"orders.shop.internal.\t5\tIN\tA\t127.0.1.10", "orders.shop.internal.\t5\tIN\tA\t127.0.1.11"}}},
		{"A any case", "ORDERS.Shop.Internal.", dns.TypeA, summary{Rcode: "NOERROR", AA: true, Answer: []string{
			"orders.shop.internal.\t5\tIN\tA\t127.0.1.10", "orders.shop.internal.\t5\tIN\tA\t127.0.1.11"}}},
		{"AAAA: NODATA", "orders.shop.internal.", dns.TypeAAAA, summary{Rcode: "NOERROR", AA: true, Ns: []string{soa}}},
		{"SOA", "shop.internal.", dns.TypeSOA, summary{Rcode: "NOERROR", AA: true, Answer: []string{soa}}},
		{"NS with glue", "shop.internal.", dns.TypeNS, summary{Rcode: "NOERROR", AA: true,
			Answer: []string{"shop.internal.\t300\tIN\tNS\tns.shop.internal."}, Extra: []string{glue}}},
		{"glue", "ns.shop.internal.", dns.TypeA, summary{Rcode: "NOERROR", AA: true, Answer: []string{glue}}},
		{"apex A: NODATA", "shop.internal.", dns.TypeA, summary{Rcode: "NOERROR", AA: true, Ns: []string{soa}}},
		{"unknown name: NXDOMAIN", "payments.shop.internal.", dns.TypeA, summary{Rcode: "NXDOMAIN", AA: true, Ns: []string{soa}}},
		{"below the hostname: NXDOMAIN", "x.orders.shop.internal.", dns.TypeA, summary{Rcode: "NXDOMAIN", AA: true, Ns: []string{soa}}},
		{"second zone", "api.eu.shop.internal.", dns.TypeA, summary{Rcode: "NOERROR", AA: true, Answer: []string{"api.eu.shop.internal.\t30\tIN\tA\t127.0.1.20"}}},
		{"second zone's SOA", "eu.shop.internal.", dns.TypeSOA, summary{Rcode: "NOERROR", AA: true, Answer: []string{soaEU}}},
		{"outside: REFUSED", "example.com.", dns.TypeA, summary{Rcode: "REFUSED"}},
		{"parent of the zone: REFUSED", "internal.", dns.TypeSOA, summary{Rcode: "REFUSED"}},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				got := summarize(query(t, d.Addr(), tt.qname, tt.qtype, network))
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			})
		}
	}
	t.Run("empty non-terminal: NODATA", func(t *testing.T) {
		table := router.NewRouteTable()
		table.Update([]router.Route{{Hostname: "a.b.c.shop.internal", TTL: time.Second, Active: "r",
			Regions: []router.RegionState{{Name: "r", Addrs: addrs("127.0.0.9"), Healthy: true, On: true}}}})
		d := startDNS(t, table, router.DNSSettings{})
		got := query(t, d.Addr(), "b.c.shop.internal.", dns.TypeA, "udp")
		if got.Rcode != dns.RcodeSuccess || len(got.Answer) != 0 || len(got.Ns) != 1 {
			t.Errorf("got %s", got)
		}
	})
	t.Run("EDNS version 1: BADVERS", func(t *testing.T) {
		got := query(t, d.Addr(), "orders.shop.internal.", dns.TypeA, "udp", func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
		})
		if got.Rcode != dns.RcodeBadVers {
			t.Errorf("rcode %s, want BADVERS", dns.RcodeToString[got.Rcode])
		}
	})
	t.Run("NOTIFY: NOTIMP", func(t *testing.T) {
		got := query(t, d.Addr(), "shop.internal.", dns.TypeSOA, "udp", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })
		if got.Rcode != dns.RcodeNotImplemented {
			t.Errorf("rcode %s, want NOTIMP", dns.RcodeToString[got.Rcode])
		}
	})
}

// TestDNS_AnswerFlipsWithHealth follows the active region's health: the
// answer moves to the standby region and back, and the SOA serial moves
// forward with each change.
func TestDNS_AnswerFlipsWithHealth(t *testing.T) {
	table := router.NewRouteTable()
	table.Update([]router.Route{ordersRoute(true)})
	d := startDNS(t, table, router.DNSSettings{})
	answer := func() ([]string, uint32) {
		t.Helper()
		var ips []string
		for _, rr := range query(t, d.Addr(), "orders.shop.internal.", dns.TypeA, "udp").Answer {
			ips = append(ips, rr.(*dns.A).A.String())
		}
		soa := query(t, d.Addr(), "shop.internal.", dns.TypeSOA, "udp").Answer[0].(*dns.SOA)
		return ips, soa.Serial
	}
	west, s1 := answer()
	if diff := cmp.Diff([]string{"127.0.1.10", "127.0.1.11"}, west); diff != "" {
		t.Fatalf("healthy: (-want +got):\n%s", diff)
	}
	table.Update([]router.Route{ordersRoute(true)}) // no change: same serial
	if _, s := answer(); s != s1 {
		t.Errorf("serial moved from %d to %d without a change", s1, s)
	}
	table.Update([]router.Route{ordersRoute(false)})
	central, s2 := answer()
	if diff := cmp.Diff([]string{"127.0.2.10"}, central); diff != "" {
		t.Fatalf("active unhealthy: (-want +got):\n%s", diff)
	}
	table.Update([]router.Route{ordersRoute(true)})
	back, s3 := answer()
	if diff := cmp.Diff(west, back); diff != "" {
		t.Fatalf("active healthy again: (-want +got):\n%s", diff)
	}
	if !(s2 > s1 && s3 > s2) {
		t.Errorf("serials %d, %d, %d: want increasing with every change", s1, s2, s3)
	}
}

func TestDNS_ClientSubnet(t *testing.T) {
	route := router.Route{
		Workload: "orders", Hostname: "orders.shop.internal", TTL: 5 * time.Second, Active: "eu-west",
		Policy: router.Policy{Kind: router.PolicyLatency, Latency: []router.LatencyRule{
			{Subnet: netip.MustParsePrefix("127.0.0.0/8"), RTT: map[string]time.Duration{"eu-west": 2 * time.Millisecond, "eu-central": 20 * time.Millisecond}},
			{Subnet: netip.MustParsePrefix("10.2.0.0/16"), RTT: map[string]time.Duration{"eu-west": 20 * time.Millisecond, "eu-central": 2 * time.Millisecond}},
		}},
		Regions: []router.RegionState{
			{Name: "eu-west", Addrs: addrs("127.0.1.10"), Healthy: true, On: true},
			{Name: "eu-central", Addrs: addrs("127.0.2.10"), Healthy: true, On: true},
		},
	}
	table := router.NewRouteTable()
	table.Update([]router.Route{route})
	d := startDNS(t, table, router.DNSSettings{})
	withECS := func(prefix string) func(*dns.Msg) {
		return func(m *dns.Msg) {
			p := netip.MustParsePrefix(prefix)
			m.SetEdns0(1232, false)
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
				SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
		}
	}
	tests := []struct {
		name      string
		edit      []func(*dns.Msg)
		want      string
		wantScope int // -1: no ECS option in the answer
	}{
		{"source address (127/8: west)", nil, "127.0.1.10", -1},
		{"client subnet (10.2/16: central)", []func(*dns.Msg){withECS("10.2.3.0/24")}, "127.0.2.10", 24},
		{"client subnet in no rule: failover order", []func(*dns.Msg){withECS("192.0.2.0/24")}, "127.0.1.10", 24},
		{"client subnet /0: ignored, failover order", []func(*dns.Msg){withECS("0.0.0.0/0")}, "127.0.1.10", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := query(t, d.Addr(), "orders.shop.internal.", dns.TypeA, "udp", tt.edit...)
			if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != tt.want {
				t.Fatalf("answer %v, want %s", m.Answer, tt.want)
			}
			scope := -1
			if opt := m.IsEdns0(); opt != nil {
				for _, o := range opt.Option {
					if e, ok := o.(*dns.EDNS0_SUBNET); ok {
						scope = int(e.SourceScope)
					}
				}
			}
			if scope != tt.wantScope {
				t.Errorf("ECS scope %d, want %d", scope, tt.wantScope)
			}
		})
	}
	t.Run("central unhealthy: subnet falls back to failover order", func(t *testing.T) {
		r := route
		r.Regions = append([]router.RegionState(nil), route.Regions...)
		r.Regions[1].Healthy = false
		table.Update([]router.Route{r})
		m := query(t, d.Addr(), "orders.shop.internal.", dns.TypeA, "udp", withECS("10.2.3.0/24"))
		if got := m.Answer[0].(*dns.A).A.String(); got != "127.0.1.10" {
			t.Errorf("answer %s, want 127.0.1.10", got)
		}
	})
}

func TestDNS_Truncation(t *testing.T) {
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{127, 0, 9, byte(i)}))
	}
	table := router.NewRouteTable()
	table.Update([]router.Route{{Hostname: "big.shop.internal", TTL: time.Second, Active: "r",
		Regions: []router.RegionState{{Name: "r", Addrs: many, Healthy: true, On: true}}}})
	d := startDNS(t, table, router.DNSSettings{})
	udp := query(t, d.Addr(), "big.shop.internal.", dns.TypeA, "udp")
	if !udp.Truncated || len(udp.Answer) >= 100 {
		t.Errorf("UDP without EDNS0: truncated=%v with %d answers, want TC and fewer than 100", udp.Truncated, len(udp.Answer))
	}
	tcp := query(t, d.Addr(), "big.shop.internal.", dns.TypeA, "tcp")
	if tcp.Truncated || len(tcp.Answer) != 100 {
		t.Errorf("TCP: truncated=%v with %d answers, want all 100", tcp.Truncated, len(tcp.Answer))
	}
}

// TestDNS_Dig checks that dig, the tool operators reach for, accepts the
// answers: no warnings about malformed packets, status and sections as
// expected, over UDP and TCP.
func TestDNS_Dig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install -y dnsutils)")
	}
	table := router.NewRouteTable()
	table.Update([]router.Route{ordersRoute(true)})
	d := startDNS(t, table, router.DNSSettings{})
	host, port, _ := net.SplitHostPort(d.Addr())
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"orders.shop.internal", "A"}, []string{"status: NOERROR", "flags: qr aa;", "orders.shop.internal.\t5\tIN\tA\t127.0.1.10"}},
		{[]string{"orders.shop.internal", "A", "+tcp"}, []string{"status: NOERROR", "127.0.1.11"}},
		{[]string{"shop.internal", "SOA"}, []string{"status: NOERROR", "IN\tSOA\tns.shop.internal. hostmaster.shop.internal."}},
		{[]string{"shop.internal", "NS"}, []string{"status: NOERROR", "IN\tNS\tns.shop.internal.", "ADDITIONAL SECTION"}},
		{[]string{"nope.shop.internal", "A"}, []string{"status: NXDOMAIN", "AUTHORITY SECTION", "IN\tSOA"}},
		{[]string{"example.com", "A"}, []string{"status: REFUSED"}},
		{[]string{"orders.shop.internal", "A", "+subnet=10.2.0.0/16"}, []string{"status: NOERROR", "CLIENT-SUBNET: 10.2.0.0/16/0"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"@" + host, "-p", port, "+norec", "+time=2", "+tries=1"}, tt.args...)
			out, err := exec.Command(dig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			for _, w := range append(tt.want, "") {
				if !strings.Contains(string(out), w) {
					t.Errorf("dig output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "WARNING") || strings.Contains(string(out), "malformed") {
				t.Errorf("dig complains:\n%s", out)
			}
		})
	}
}

// TestDNS_Malformed sends packets that are not DNS queries: the server
// answers FORMERR (or NOTIMP) or nothing, and keeps answering good queries.
func TestDNS_Malformed(t *testing.T) {
	table := router.NewRouteTable()
	table.Update([]router.Route{ordersRoute(true)})
	d := startDNS(t, table, router.DNSSettings{})
	good := new(dns.Msg).SetQuestion("orders.shop.internal.", dns.TypeA)
	goodRaw, _ := good.Pack()
	hdr := func(id, bits, qd, an, ns, ar uint16, rest ...byte) []byte {
		b := make([]byte, 12)
		for i, v := range []uint16{id, bits, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], v)
		}
		return append(b, rest...)
	}
	tests := []struct {
		name  string
		raw   []byte
		rcode int // -1: no answer
	}{
		{"empty", []byte{}, -1},
		{"short header", []byte{1, 2, 3}, -1},
		{"header only, one question missing", hdr(7, 0, 1, 0, 0, 0), dns.RcodeFormatError},
		{"no question", hdr(7, 0, 0, 0, 0, 0), dns.RcodeFormatError},
		{"two questions", hdr(7, 0, 2, 0, 0, 0), dns.RcodeFormatError},
		{"a response", hdr(7, 1<<15, 1, 0, 0, 0), -1},
		{"UPDATE opcode", hdr(7, 5<<11, 1, 0, 0, 0), dns.RcodeNotImplemented},
		{"label pointing forward (loop)", hdr(7, 0, 1, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1), dns.RcodeFormatError},
		{"label longer than the packet", hdr(7, 0, 1, 0, 0, 0, 63, 'a'), dns.RcodeFormatError},
		{"truncated good query", goodRaw[:len(goodRaw)-3], dns.RcodeFormatError},
		{"garbage", []byte(strings.Repeat("\xff", 300)), -1},
		{"client subnet of family 3", badECS(), dns.RcodeFormatError},
	}
	conn, err := net.Dial("udp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := conn.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tt.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			conn.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, 65535)
			n, err := conn.Read(buf)
			if tt.rcode < 0 {
				if err == nil {
					t.Errorf("got an answer of %d bytes, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var m dns.Msg
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if m.Rcode != tt.rcode || !m.Response || m.Id != 7 && m.Id != good.Id {
				t.Errorf("rcode %s id %d response %v, want %s", dns.RcodeToString[m.Rcode], m.Id, m.Response, dns.RcodeToString[tt.rcode])
			}
		})
	}
	t.Run("TCP garbage", func(t *testing.T) {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0, 5, 1, 2, 3, 4, 5}) // a 5-byte message: too short
		c.Write([]byte{0xff, 0xff})          // then a length with no body
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.Copy(io.Discard, c)
	})
	t.Run("still answers", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			if m := query(t, d.Addr(), "orders.shop.internal.", dns.TypeA, network); len(m.Answer) != 2 {
				t.Errorf("%s: %v", network, m)
			}
		}
	})
}

// badECS is a query whose client-subnet option has an unknown address family.
func badECS() []byte {
	m := new(dns.Msg).SetQuestion("orders.shop.internal.", dns.TypeA)
	m.Id = 7
	m.SetEdns0(1232, false)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IP{10, 1, 2, 0}})
	b, _ := m.Pack()
	b[len(b)-6] = 3 // family: the first 2 bytes of the option's 7 bytes of data
	return b
}

// FuzzDNSHandler feeds raw bytes through the server's unpack-and-answer
// path: it must never panic, and every answer must parse and match the
// query's ID.
func FuzzDNSHandler(f *testing.F) {
	table := router.NewRouteTable()
	r := ordersRoute(true)
	r.Policy = router.Policy{Kind: router.PolicyGeolocation, Geo: []router.GeoRule{{Subnet: netip.MustParsePrefix("10.0.0.0/8"), Region: "eu-central"}}}
	table.Update([]router.Route{r, {Hostname: "w.a.b.shop.internal", TTL: time.Second, Active: "x",
		Policy:  router.Policy{Kind: router.PolicyWeighted},
		Regions: []router.RegionState{{Name: "x", Addrs: addrs("127.0.0.1"), Healthy: true, On: true, Weight: 1}}}})
	d := router.NewDNS(table, router.DNSSettings{Addr: "127.0.0.1:53"}, quiet)
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"orders.shop.internal.", dns.TypeA, false}, {"orders.shop.internal.", dns.TypeA, true},
		{"shop.internal.", dns.TypeSOA, false}, {"shop.internal.", dns.TypeNS, true},
		{"nope.shop.internal.", dns.TypeA, false}, {"b.shop.internal.", dns.TypeANY, false},
		{"example.com.", dns.TypeMX, true},
	} {
		m := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(4096, true)
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IP{10, 1, 2, 0}})
		}
		b, _ := m.Pack()
		f.Add(b, true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, true)
	client := netip.MustParseAddr("10.9.9.9")
	f.Fuzz(func(t *testing.T, raw []byte, udp bool) {
		out := d.Reply(raw, client, udp)
		if out == nil {
			return
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !m.Response || m.Id != binary.BigEndian.Uint16(raw) {
			t.Fatalf("answer is not a response to the query: %v", m.MsgHdr)
		}
		if udp && len(out) > router.DefaultDNSUDPSize {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
	})
}

// BenchmarkDNSAnswer measures the answering path alone (unpack, policy,
// pack), without sockets.
func BenchmarkDNSAnswer(b *testing.B) {
	table := router.NewRouteTable()
	table.Update([]router.Route{ordersRoute(true)})
	d := router.NewDNS(table, router.DNSSettings{Addr: "127.0.0.1:53"}, quiet)
	q, _ := new(dns.Msg).SetQuestion("orders.shop.internal.", dns.TypeA).Pack()
	client := netip.MustParseAddr("127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		if d.Reply(q, client, true) == nil {
			b.Fatal("no answer")
		}
	}
}
