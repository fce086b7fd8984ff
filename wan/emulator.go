package wan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Rule cuts traffic. With B set, it cuts every route between A and B (each a
// region, a node "region/zone" or "witness"); with B empty it isolates A
// from everything.
type Rule struct {
	A string `json:"a"`
	B string `json:"b,omitempty"`
}

func (r Rule) String() string {
	if r.B == "" {
		return "isolate " + r.A
	}
	return r.A + " <-> " + r.B
}

func (r Rule) matches(from, to string) bool {
	in := func(id, pat string) bool { return id != "" && (id == pat || regionOf(id) == pat) }
	if r.B == "" {
		return in(from, r.A) || in(to, r.A)
	}
	return (in(from, r.A) && in(to, r.B)) || (in(from, r.B) && in(to, r.A))
}

// Emulator runs a local topology's routes: it adds the cross-region latency
// to every byte in each direction and cuts routes on demand. A cut behaves
// like a partition, not a refusal: bytes stop flowing and new connections
// hang; when the cut heals, connections that spanned it are closed, as they
// would have timed out.
type Emulator struct {
	log    *slog.Logger
	routes []Route
	sites  map[string]string

	latency atomic.Int64 // one-way, nanoseconds
	// delays are extra latencies between parties (link latency A B +D),
	// replaced whole on every change: read for every chunk without a lock.
	delays atomic.Pointer[[]Delay]

	mu        sync.Mutex
	rules     []Rule
	conns     map[*conn]struct{}
	listeners []net.Listener
	wg        sync.WaitGroup
	closed    bool
}

// New prepares the routes of a topology; Start listens.
func New(t *lifeline.Topology, log *slog.Logger) *Emulator {
	e := &Emulator{log: log.With("subsystem", "wan"), routes: Plan(t), sites: peerSenders(t), conns: map[*conn]struct{}{}}
	e.latency.Store(int64(t.Links.CrossRegion.Latency))
	return e
}

// Routes lists the routes in listen order.
func (e *Emulator) Routes() []Route {
	rs := append([]Route(nil), e.routes...)
	sortRoutes(rs)
	return rs
}

// Start listens on every route. It fails, listening on none, when an
// address is taken (another topology on the same addresses).
func (e *Emulator) Start(ctx context.Context) error {
	var lc net.ListenConfig
	for _, r := range e.routes {
		l, err := lc.Listen(ctx, "tcp", r.Listen)
		if err != nil {
			e.Close()
			return fmt.Errorf("wan route %s -> %s: %w", r.Listen, r.Target, err)
		}
		e.mu.Lock()
		e.listeners = append(e.listeners, l)
		e.mu.Unlock()
		e.wg.Add(1)
		go e.accept(l, r)
	}
	e.log.Info("wan links up", "routes", len(e.routes), "latency", time.Duration(e.latency.Load()))
	return nil
}

// Close stops listening and closes every connection.
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	for _, l := range e.listeners {
		l.Close()
	}
	for c := range e.conns {
		c.close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// SetLatency changes the one-way cross-region latency.
func (e *Emulator) SetLatency(d time.Duration) { e.latency.Store(int64(d)) }

// Latency is the one-way cross-region latency.
func (e *Emulator) Latency() time.Duration { return time.Duration(e.latency.Load()) }

// Delay is an extra one-way latency on every route between A and B, on
// top of the cross-region latency (`lifeline link latency A B +50ms`).
type Delay struct {
	Rule
	Extra time.Duration `json:"extra"`
}

// SetDelay sets the extra latency between A and B; 0 removes it. It
// applies at once to every chunk still to be sent.
func (e *Emulator) SetDelay(r Rule, extra time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ds []Delay
	if p := e.delays.Load(); p != nil {
		for _, d := range *p {
			if d.Rule != r {
				ds = append(ds, d)
			}
		}
	}
	if extra > 0 {
		ds = append(ds, Delay{Rule: r, Extra: extra})
	}
	e.delays.Store(&ds)
	e.log.Warn("link delay", "rule", r.String(), "extra", extra)
}

// Delays lists the extra latencies in force.
func (e *Emulator) Delays() []Delay {
	if p := e.delays.Load(); p != nil {
		return append([]Delay(nil), *p...)
	}
	return nil
}

// extra is the extra latency of a connection: the largest that applies.
func (e *Emulator) extra(c *conn) time.Duration {
	p := e.delays.Load()
	if p == nil {
		return 0
	}
	var max time.Duration
	for _, d := range *p {
		if d.Extra > max && d.matches(c.from, c.to) {
			max = d.Extra
		}
	}
	return max
}

// Cut adds a rule; connections it covers stop flowing at once.
func (e *Emulator) Cut(r Rule) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.rules {
		if x == r {
			return
		}
	}
	e.rules = append(e.rules, r)
	for c := range e.conns {
		if e.blockedLocked(c.from, c.to) {
			c.blocked.Store(true)
		}
	}
	e.log.Warn("link cut", "rule", r.String())
}

// Heal removes a rule (all rules when r is zero); connections that were
// cut and no longer are get closed.
func (e *Emulator) Heal(r Rule) {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.rules[:0]
	for _, x := range e.rules {
		if r != (Rule{}) && x != r {
			kept = append(kept, x)
		}
	}
	e.rules = kept
	for c := range e.conns {
		if c.blocked.Load() && !e.blockedLocked(c.from, c.to) {
			c.close()
		}
	}
	e.log.Info("link healed", "rule", r.String())
}

// Rules lists the cuts in force.
func (e *Emulator) Rules() []Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Rule(nil), e.rules...)
}

func (e *Emulator) blockedLocked(from, to string) bool {
	for _, r := range e.rules {
		if r.matches(from, to) {
			return true
		}
	}
	return false
}

func (e *Emulator) accept(l net.Listener, r Route) {
	defer e.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.log.Warn("accept", "route", r.Listen, "err", err)
			}
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serve(r, c)
		}()
	}
}

type conn struct {
	from, to string
	client   net.Conn
	server   net.Conn
	blocked  atomic.Bool
	done     chan struct{}
	once     sync.Once
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

func (e *Emulator) serve(r Route, client net.Conn) {
	c := &conn{from: r.From, to: r.To, client: client, done: make(chan struct{})}
	var head []byte
	if r.Kind == KindEtcdPeer {
		head, c.from = e.peekSender(client)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		client.Close()
		return
	}
	e.conns[c] = struct{}{}
	c.blocked.Store(e.blockedLocked(c.from, c.to))
	e.mu.Unlock()
	defer func() {
		c.close()
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	}()
	if c.blocked.Load() {
		<-c.done // a partition: the connection hangs until healed or closed
		return
	}
	server, err := net.DialTimeout("tcp", r.Target, 5*time.Second)
	if err != nil {
		return
	}
	e.mu.Lock()
	c.server = server
	select {
	case <-c.done:
		server.Close()
	default:
	}
	e.mu.Unlock()
	var delay time.Duration
	if r.CrossRegion {
		delay = -1 // read the current latency for every chunk
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.pipe(c, server, io.MultiReader(bytes.NewReader(head), client), delay) }()
	go func() { defer wg.Done(); e.pipe(c, client, server, delay) }()
	wg.Wait()
}

// peekSender learns which site an etcd peer connection comes from, from
// what it sends first: over TLS, the server name of its ClientHello (each
// member names itself there, see certs.PeerDomain); in plain HTTP, the
// X-PeerURLs header of its first request. It returns the bytes it read, to
// be sent on.
func (e *Emulator) peekSender(c net.Conn) ([]byte, string) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var buf bytes.Buffer
	br := bufio.NewReaderSize(io.TeeReader(c, &buf), 1)
	if first, err := br.Peek(1); err == nil && first[0] == recordTypeHandshake {
		name := clientHelloServerName(br)
		return buf.Bytes(), e.sites[name]
	}
	from := ""
	for buf.Len() < 64<<10 {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-PeerURLs") {
			for _, u := range strings.Split(strings.TrimSpace(v), ",") {
				_, addr, _ := strings.Cut(u, "://")
				if s, ok := e.sites[addr]; ok {
					from = s
				}
			}
		}
	}
	return buf.Bytes(), from
}

// recordTypeHandshake starts every TLS connection (the ClientHello).
const recordTypeHandshake = 0x16

// clientHelloServerName reads a TLS ClientHello from r and returns its
// server name ("" when it has none or is not one). crypto/tls parses it:
// the handshake stops as soon as the hello has been read.
func clientHelloServerName(r io.Reader) string {
	var name string
	stop := errors.New("hello read")
	_ = tls.Server(helloConn{r: r}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			name = h.ServerName
			return nil, stop
		},
	}).Handshake()
	return name
}

// helloConn is a read-only net.Conn over what a client sent: writes (the
// alert tls sends when the handshake is stopped) go nowhere.
type helloConn struct {
	net.Conn
	r io.Reader
}

func (h helloConn) Read(p []byte) (int, error)       { return h.r.Read(p) }
func (h helloConn) Write(p []byte) (int, error)      { return len(p), nil }
func (h helloConn) Close() error                     { return nil }
func (h helloConn) SetDeadline(time.Time) error      { return nil }
func (h helloConn) SetReadDeadline(time.Time) error  { return nil }
func (h helloConn) SetWriteDeadline(time.Time) error { return nil }
func (h helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (h helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, holding every chunk for the link's latency. Chunks
// are in flight concurrently, so throughput is bounded by the window, not
// by the latency (as on a real long link).
func (e *Emulator) pipe(c *conn, dst net.Conn, src io.Reader, delay time.Duration) {
	ch := make(chan chunk, 256)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				d := delay
				if d < 0 {
					d = time.Duration(e.latency.Load())
				}
				d += e.extra(c)
				select {
				case ch <- chunk{buf[:n], time.Now().Add(d)}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for ck := range ch {
		if wait := time.Until(ck.at); wait > 0 {
			select {
			case <-time.After(wait):
			case <-c.done:
				return
			}
		}
		if c.blocked.Load() {
			<-c.done
			return
		}
		if _, err := dst.Write(ck.data); err != nil {
			c.close()
			return
		}
	}
	// src ended: pass the half-close on so the other side sees EOF.
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
