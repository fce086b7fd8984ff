package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNS settings' defaults.
const (
	// DefaultDNSUDPSize is the EDNS0 payload size the server advertises and
	// answers within: 1232 bytes fits an IPv6 packet without fragmentation
	// (the DNS flag day 2020 value).
	DefaultDNSUDPSize = 1232
	// DefaultDNSInfraTTL is the TTL of the SOA, NS and glue records: they
	// change only when the router moves.
	DefaultDNSInfraTTL = 5 * time.Minute
)

// DNSSettings configure the authoritative DNS server.
type DNSSettings struct {
	// Addr is where the server listens, on UDP and TCP (host:port). Port 0
	// picks a port that is free on both.
	Addr string
	// NS are the addresses answered for the zones' name server,
	// ns.<zone>. Default: the host of Addr.
	NS []netip.Addr
	// UDPSize is the largest UDP answer when the client advertises more
	// with EDNS0 (without EDNS0 answers fit 512 bytes). Default 1232.
	UDPSize int
	// InfraTTL is the TTL of SOA, NS and glue records. Default 5m. The SOA
	// minimum (the negative-caching TTL) is the zone's lowest routing TTL.
	InfraTTL time.Duration
	// Rand draws for the weighted policy; math/rand/v2's IntN when nil.
	Rand func(n int) int
	// Observer, when set, is told of every answer.
	Observer Observer
}

// DNS is the authoritative server for every workload's routing hostname.
// The zone of a hostname is its parent domain ("orders.shop.internal" is
// served in "shop.internal."). In a zone it answers:
//   - A for a workload's hostname with the addresses of the region its
//     policy chooses for the client, with the route's TTL (ANY is answered
//     like A);
//   - SOA and NS at the apex, and A for ns.<zone> (glue);
//   - NODATA (NOERROR, no answer, SOA in authority) for other types of
//     existing names, NXDOMAIN with the SOA for names that do not exist.
//
// Outside its zones it answers REFUSED, for opcodes other than QUERY
// NOTIMP, for EDNS versions other than 0 BADVERS, and for packets it cannot
// parse FORMERR (too short to carry a header: no answer). The client of a
// latency or geolocation policy is the EDNS0 client subnet when the query
// carries one, else the query's source address.
type DNS struct {
	src RouteSource
	cfg DNSSettings
	log *slog.Logger

	udp, tcp *dns.Server
	pc       net.PacketConn
	ln       net.Listener
}

var _ dns.Handler = (*DNS)(nil)

// NewDNS returns a server answering from src.
func NewDNS(src RouteSource, cfg DNSSettings, log *slog.Logger) *DNS {
	if cfg.UDPSize <= 0 {
		cfg.UDPSize = DefaultDNSUDPSize
	}
	cfg.UDPSize = min(max(cfg.UDPSize, dns.MinMsgSize), dns.MaxMsgSize)
	if cfg.InfraTTL <= 0 {
		cfg.InfraTTL = DefaultDNSInfraTTL
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.IntN
	}
	if len(cfg.NS) == 0 {
		if host, _, err := net.SplitHostPort(cfg.Addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
				cfg.NS = []netip.Addr{a}
			}
		}
	}
	return &DNS{src: src, cfg: cfg, log: log.With("subsystem", "dns")}
}

// Listen binds the UDP and TCP sockets.
func (d *DNS) Listen() error {
	host, port, err := net.SplitHostPort(d.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dns %s: %w", d.cfg.Addr, err)
	}
	for range 20 {
		pc, err := net.ListenPacket("udp", d.cfg.Addr)
		if err != nil {
			return fmt.Errorf("dns %s: %w", d.cfg.Addr, err)
		}
		addr := d.cfg.Addr
		if port == "0" {
			addr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			if port == "0" {
				continue // the UDP port is taken on TCP: try another
			}
			return fmt.Errorf("dns %s: %w", d.cfg.Addr, err)
		}
		d.pc, d.ln = pc, ln
		return nil
	}
	return fmt.Errorf("dns %s: no port free on both UDP and TCP", d.cfg.Addr)
}

// Addr is the address the server listens on (after Listen).
func (d *DNS) Addr() string {
	if d.pc == nil {
		return d.cfg.Addr
	}
	return d.pc.LocalAddr().String()
}

// Run listens (unless Listen was called) and serves until ctx ends.
func (d *DNS) Run(ctx context.Context) error {
	if d.pc == nil {
		if err := d.Listen(); err != nil {
			return err
		}
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	servers := []*dns.Server{}
	d.tcp = &dns.Server{Listener: d.ln, Handler: d, MsgAcceptFunc: acceptMsg, NotifyStartedFunc: notify,
		ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	servers = append(servers, d.tcp)
	udp, own := d.pc.(*net.UDPConn)
	if own {
		// On an unspecified address, an answer must leave from the
		// address its query came to: miekg/dns's server reads each
		// packet's control messages for that.
		own = !d.pc.LocalAddr().(*net.UDPAddr).AddrPort().Addr().IsUnspecified()
	}
	if own {
		started <- struct{}{}
	} else {
		d.udp = &dns.Server{PacketConn: d.pc, Handler: d, UDPSize: dns.MaxMsgSize, MsgAcceptFunc: acceptMsg, NotifyStartedFunc: notify}
		servers = append(servers, d.udp)
	}
	errs := make(chan error, 2)
	for _, srv := range servers {
		go func() { errs <- srv.ActivateAndServe() }()
	}
	d.log.Info("dns listening", "addr", d.Addr())
	for range 2 {
		select {
		case <-started:
		case err := <-errs:
			d.pc.Close()
			d.ln.Close()
			return fmt.Errorf("dns %s: %w", d.Addr(), err)
		}
	}
	var wg sync.WaitGroup
	if own {
		for range max(2, runtime.GOMAXPROCS(0)) {
			wg.Go(func() { d.serveUDP(udp) })
		}
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("dns %s: %w", d.Addr(), err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if d.udp != nil {
		_ = d.udp.ShutdownContext(sctx)
	} else {
		d.pc.Close()
	}
	_ = d.tcp.ShutdownContext(sctx)
	wg.Wait()
	return err
}

// serveUDP answers queries on the UDP socket until it closes: read, answer,
// write, with buffers reused. Run on a few goroutines, it costs about a
// third less per query than miekg/dns's server, which starts a goroutine,
// moves the read deadline and reads the control messages for each packet.
func (d *DNS) serveUDP(conn *net.UDPConn) {
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, 4<<10)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Debug("dns read", "err", err)
			continue
		}
		if b := d.reply(in[:n], from.Addr(), true, out[:0]); b != nil {
			if _, err := conn.WriteToUDPAddrPort(b, from); err != nil {
				d.log.Debug("dns write", "client", from, "err", err)
			}
		}
	}
}

// acceptMsg is miekg/dns's default filter, except that NOTIFY (which this
// server does not implement) is refused as not implemented up front.
func acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	if int(dh.Bits>>11)&0xF == dns.OpcodeNotify {
		if dh.Bits&(1<<15) != 0 {
			return dns.MsgIgnore
		}
		return dns.MsgRejectNotImplemented
	}
	return dns.DefaultMsgAcceptFunc(dh)
}

// ServeDNS answers one query.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var client netip.Addr
	udp := false
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		client, udp = a.AddrPort().Addr(), true
	case *net.TCPAddr:
		client = a.AddrPort().Addr()
	}
	m := d.Answer(req, client, udp)
	if err := w.WriteMsg(m); err != nil {
		d.log.Debug("dns write", "err", err)
	}
}

// Reply answers a raw query the way the server does (filter, unpack,
// answer, pack): nil means no answer is sent. The server answers UDP
// queries with it (on a specific address), and TCP ones with the same
// steps inside miekg/dns.
func (d *DNS) Reply(raw []byte, client netip.Addr, udp bool) []byte {
	return d.reply(raw, client, udp, nil)
}

// reply is Reply packing into buf when it is large enough.
func (d *DNS) reply(raw []byte, client netip.Addr, udp bool, buf []byte) []byte {
	if len(raw) < 12 {
		return nil // too short for a header: drop, as the server does
	}
	dh := dns.Header{
		Id: binary.BigEndian.Uint16(raw), Bits: binary.BigEndian.Uint16(raw[2:]),
		Qdcount: binary.BigEndian.Uint16(raw[4:]), Ancount: binary.BigEndian.Uint16(raw[6:]),
		Nscount: binary.BigEndian.Uint16(raw[8:]), Arcount: binary.BigEndian.Uint16(raw[10:]),
	}
	var m *dns.Msg
	action := acceptMsg(dh)
	switch action {
	case dns.MsgIgnore:
		return nil
	case dns.MsgReject, dns.MsgRejectNotImplemented:
		m = errorReply(dh, action)
	default:
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			m = errorReply(dh, dns.MsgReject)
		} else {
			m = d.Answer(req, client, udp)
			action = dns.MsgAccept // observed by Answer
		}
	}
	if action != dns.MsgAccept && d.cfg.Observer != nil {
		d.cfg.Observer.DNSAnswer(answerLabel(m, ""))
	}
	b, err := m.PackBuffer(buf)
	if err != nil {
		return nil
	}
	return b
}

func errorReply(dh dns.Header, action dns.MsgAcceptAction) *dns.Msg {
	m := new(dns.Msg)
	m.Id = dh.Id
	m.Response = true
	m.Rcode = dns.RcodeFormatError
	if action == dns.MsgRejectNotImplemented {
		m.Opcode = int(dh.Bits>>11) & 0xF
		m.Rcode = dns.RcodeNotImplemented
	}
	return m
}

// Answer builds the answer to a parsed query from client (the query's
// source address; udp says whether it came over UDP, which bounds the
// answer's size). It never fails: every problem is an rcode.
func (d *DNS) Answer(req *dns.Msg, client netip.Addr, udp bool) *dns.Msg {
	m, region := d.answer(req, client, udp)
	if d.cfg.Observer != nil {
		d.cfg.Observer.DNSAnswer(answerLabel(m, region))
	}
	return m
}

// answer is Answer; region is the region an A query was answered with.
func (d *DNS) answer(req *dns.Msg, client netip.Addr, udp bool) (m *dns.Msg, region string) {
	m = new(dns.Msg)
	m.SetReply(req)
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m, ""
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, ""
	}
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
	}
	scope := -1 // ECS scope to echo; -1: no ECS in the query
	var ecs *dns.EDNS0_SUBNET
	if opt := req.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			m.SetEdns0(uint16(d.cfg.UDPSize), false)
			m.Rcode = dns.RcodeBadVers
			return m, ""
		}
		if udp {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), d.cfg.UDPSize)
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = e
				scope = 0
				client = netip.Addr{}
				if a, ok := netip.AddrFromSlice(e.Address); ok && e.SourceNetmask > 0 {
					a = a.Unmap()
					if p, err := a.Prefix(int(e.SourceNetmask)); err == nil {
						client = p.Addr()
					}
				}
			}
		}
	}
	q := req.Question[0]
	name := canonical(q.Name)
	var route *compiled
	var z *zone
	if rs := d.src.Routes(); rs != nil {
		if route = rs.lookup(name); route != nil {
			z = route.zone
		} else {
			z = rs.zoneOf(name)
		}
	}
	switch {
	case z == nil || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY):
		m.Rcode = dns.RcodeRefused
	case route != nil && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
		m.Authoritative = true
		dec := route.Choose(client, d.cfg.Rand)
		if dec.Index >= 0 {
			m.Answer = route.a[dec.Index]
			region = route.Regions[dec.Index].Name
		}
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{d.soa(z)} // a region without IPv4 addresses: NODATA
		}
		if scope == 0 && ecs.SourceNetmask > 0 && (route.Policy.Kind == PolicyLatency || route.Policy.Kind == PolicyGeolocation) {
			scope = int(ecs.SourceNetmask)
		}
	case name == z.apex && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeNS || q.Qtype == dns.TypeANY):
		m.Authoritative = true
		if q.Qtype != dns.TypeNS {
			m.Answer = append(m.Answer, d.soa(z))
		}
		if q.Qtype != dns.TypeSOA {
			m.Answer = append(m.Answer, d.nsRR(z))
			m.Extra = append(m.Extra, d.glue(z)...)
		}
	case name == z.ns && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
		m.Authoritative = true
		m.Answer = d.glue(z)
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{d.soa(z)}
		}
	case route != nil || name == z.apex || name == z.ns || z.nonTerminal(name):
		m.Authoritative = true // NODATA
		m.Ns = []dns.RR{d.soa(z)}
	default:
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{d.soa(z)}
	}
	if req.IsEdns0() != nil {
		m.SetEdns0(uint16(d.cfg.UDPSize), false)
		if ecs != nil {
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
				Code: dns.EDNS0SUBNET, Family: ecs.Family, SourceNetmask: ecs.SourceNetmask,
				SourceScope: uint8(max(scope, 0)), Address: ecs.Address,
			})
		}
	}
	m.Truncate(size)
	return m, region
}

func (d *DNS) soa(z *zone) dns.RR {
	ttl := min(z.minTTL, ttlSeconds(d.cfg.InfraTTL))
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: z.apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:  z.ns, Mbox: "hostmaster." + z.apex, Serial: z.serial,
		// Refresh, retry and expire matter only to secondaries; the
		// values are RFC 1912's recommendations.
		Refresh: 3600, Retry: 600, Expire: 1209600, Minttl: ttl,
	}
}

func (d *DNS) nsRR(z *zone) dns.RR {
	return &dns.NS{Hdr: dns.RR_Header{Name: z.apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttlSeconds(d.cfg.InfraTTL)}, Ns: z.ns}
}

func (d *DNS) glue(z *zone) []dns.RR {
	var rrs []dns.RR
	for _, a := range d.cfg.NS {
		if a = a.Unmap(); a.Is4() {
			ip := a.As4()
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: z.ns, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttlSeconds(d.cfg.InfraTTL)}, A: net.IP(ip[:])})
		}
	}
	return rrs
}
