package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Front-door defaults.
const (
	// DefaultMaxHeaderBytes bounds a request's headers (HAProxy's default
	// buffer holds 16 KiB). Larger requests get 431.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultReadHeaderTimeout bounds how long a client may take to send
	// its headers (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes client keep-alive connections idle this long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultDrainTimeout is how long a shutdown waits for requests in
	// flight before cutting them.
	DefaultDrainTimeout = 10 * time.Second
	// DefaultAttempts is how many instances one request may be tried on.
	DefaultAttempts = 3
	// DefaultFailDuration is how long an instance that failed a connection
	// is skipped (passive health check), until the active checks decide.
	DefaultFailDuration = 5 * time.Second
	// DefaultRetryBodyLimit is the largest request body that is buffered so
	// that an idempotent request with a body (PUT) can be retried.
	DefaultRetryBodyLimit = 64 << 10
	// DefaultDialTimeout bounds a connection to an instance: on loopback
	// or in a region, a connection that takes longer is a dead instance.
	DefaultDialTimeout = 2 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for an instance's
	// response headers.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultMaxIdleConnsPerHost keeps enough warm connections to each
	// instance for a busy front door (net/http's default, 2, reconnects
	// all the time under load).
	DefaultMaxIdleConnsPerHost = 256
	// DefaultHealthPath is the front door's own health endpoint.
	DefaultHealthPath = "/.lifeline/healthz"
)

// FrontDoorSettings configure an HTTP front door (regional or global).
type FrontDoorSettings struct {
	// Addr is where it listens (host:port).
	Addr string
	// MaxHeaderBytes: requests with larger headers are answered 431.
	// Default 32 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout, IdleTimeout: client connection limits.
	// Defaults 10s and 2m.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// DrainTimeout is how long shutting down waits for requests in flight.
	// Default 10s.
	DrainTimeout time.Duration
	// Attempts is how many instances (regions, for the global entry point)
	// one request may be tried on when a connection fails. Only requests
	// that are safe to repeat are retried, and only when they have no body
	// or one of at most RetryBodyLimit bytes (buffered to be replayed):
	// idempotent ones (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) after any
	// failure, others (POST, PATCH) only when the connection could not be
	// opened, so that nothing was sent. Default 3.
	Attempts int
	// FailDuration is how long an instance that failed is skipped. Default 5s.
	FailDuration time.Duration
	// RetryBodyLimit: see Attempts. Default 64 KiB; negative disables the
	// buffering (only bodiless requests are retried). A buffered body is
	// read whole before the request is forwarded.
	RetryBodyLimit int64
	// DialTimeout and ResponseHeaderTimeout bound the connection to an
	// instance and the wait for its headers. Defaults 2s and 60s.
	DialTimeout, ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections are kept to each
	// instance. Default 256.
	MaxIdleConnsPerHost int
	// HealthPath is answered by the front door itself: 200 while it can
	// serve, 503 when it cannot (no healthy instance). Default
	// /.lifeline/healthz.
	HealthPath string
	// TrustForwarded keeps the X-Forwarded-For a client sent and appends
	// the client's address; otherwise the header is replaced. Set it on a
	// regional front door that only the global entry point reaches.
	TrustForwarded bool
	// Name labels the door in metrics ("global", "WORKLOAD/REGION");
	// Observer, when set, is told of every request answered.
	Name     string
	Observer Observer
}

// WithDefaults fills unset settings.
func (c FrontDoorSettings) WithDefaults() FrontDoorSettings {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	set(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.DrainTimeout, DefaultDrainTimeout)
	set(&c.FailDuration, DefaultFailDuration)
	set(&c.DialTimeout, DefaultDialTimeout)
	set(&c.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	if c.RetryBodyLimit == 0 {
		c.RetryBodyLimit = DefaultRetryBodyLimit
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.HealthPath == "" {
		c.HealthPath = DefaultHealthPath
	}
	return c
}

// errNoUpstream: nothing to send the request to.
var errNoUpstream = errors.New("no healthy upstream")

// upstream is one place requests go: a service instance, or a region's
// front door for the global entry point.
type upstream struct {
	addr        string // host:port
	failedUntil atomic.Int64
}

func (u *upstream) usable(now int64) bool { return u.failedUntil.Load() <= now }

// door is what the regional and the global front doors share: the
// listener, the client connections and the relay that serves them (see
// relay.go), and the connections to the upstreams.
type door struct {
	cfg       FrontDoorSettings
	log       *slog.Logger
	transport *h1Transport
	ln        net.Listener
	// idleSlack is how far the idle deadline may lag: it is moved at most
	// this often.
	idleSlack time.Duration
	// ctx ends at a hard stop: dials in progress give up.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[*clientConn]struct{}
	wg      sync.WaitGroup
	closing atomic.Bool

	// pick chooses where a request goes, never exclude (the upstream that
	// just failed it) unless there is nothing else; nil when nowhere.
	pick func(r *http.Request, client netip.Addr, exclude *upstream, now int64) *upstream
	// health answers the health endpoint: whether the door can serve.
	health func() bool
	// route, when set, refuses a request before it is proxied with a
	// status and a message; 0 to proxy it.
	route func(r *http.Request) (int, string)
}

func newDoor(cfg FrontDoorSettings, log *slog.Logger) *door {
	cfg = cfg.WithDefaults()
	d := &door{cfg: cfg, log: log, conns: map[*clientConn]struct{}{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.idleSlack = min(cfg.IdleTimeout/10, time.Second)
	d.transport = &h1Transport{
		dialer:      net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:     cfg.MaxIdleConnsPerHost,
		idleTimeout: 90 * time.Second,
	}
	return d
}

// idempotent methods may be repeated (RFC 9110, 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Listen binds the front door's address.
func (d *door) Listen() error {
	if d.ln != nil {
		return nil
	}
	if ln := inherited(d.cfg.Addr); ln != nil {
		d.ln = ln
		return nil
	}
	ln, err := net.Listen("tcp", d.cfg.Addr)
	if err != nil {
		return fmt.Errorf("front door %s: %w", d.cfg.Addr, err)
	}
	d.ln = ln
	return nil
}

// Addr is where the door listens (after Listen).
func (d *door) Addr() string {
	if d.ln == nil {
		return d.cfg.Addr
	}
	return d.ln.Addr().String()
}

// Run serves until ctx ends, then drains: it stops accepting, closes idle
// connections, lets the requests in flight finish for up to DrainTimeout
// (their connections close after the answer), then cuts what is left,
// upgraded connections (WebSockets) included.
func (d *door) Run(ctx context.Context) error {
	if err := d.Listen(); err != nil {
		return err
	}
	d.log.Info("front door listening", "addr", d.Addr())
	errc := make(chan error, 1)
	go func() { errc <- d.accept() }()
	select {
	case err := <-errc:
		d.closing.Store(true)
		d.ln.Close()
		d.closeAll()
		d.transport.CloseIdleConnections()
		return fmt.Errorf("front door %s: %w", d.Addr(), err)
	case <-ctx.Done():
	}
	d.closing.Store(true)
	d.ln.Close()
	<-errc
	err := d.drain()
	d.transport.CloseIdleConnections()
	return err
}

// accept serves each new connection on a goroutine of its own until the
// listener closes.
func (d *door) accept() error {
	var delay time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if d.closing.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, or a connection aborted before it
			// was accepted: wait a little and go on, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			d.log.Warn("front door: accept", "addr", d.Addr(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		cc := newClientConn(d, c)
		d.mu.Lock()
		if d.closing.Load() {
			d.mu.Unlock()
			c.Close()
			continue
		}
		d.conns[cc] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go cc.serve()
	}
}

func (d *door) untrack(cc *clientConn) {
	d.mu.Lock()
	delete(d.conns, cc)
	d.mu.Unlock()
	d.wg.Done()
}

// drain waits for the requests in flight, closing connections as they
// fall idle, then closes what is left.
func (d *door) drain() error {
	deadline := time.Now().Add(d.cfg.DrainTimeout)
	wait := time.Millisecond
	for d.closeIdle() > 0 {
		if time.Now().After(deadline) {
			d.log.Warn("front door drain deadline passed; cutting the remaining requests", "addr", d.Addr())
			d.closeAll()
			return fmt.Errorf("front door %s: drain: %w", d.Addr(), context.DeadlineExceeded)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
	d.closeAll() // tunnels
	return nil
}

// closeIdle closes the connections that wait for a request and returns
// how many serve one (or may be about to: a new connection gets
// newStateGrace to send its first).
func (d *door) closeIdle() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	busy := 0
	for cc := range d.conns {
		switch st := cc.state.Load(); {
		case st == stateIdle || st == stateNew && time.Since(cc.created) > newStateGrace:
			if cc.state.CompareAndSwap(st, stateClosed) {
				cc.c.Close()
			} else if cc.state.Load() == stateActive {
				busy++
			}
		case st == stateNew || st == stateActive:
			busy++
		}
	}
	return busy
}

// closeAll cuts every connection, client and upstream, and waits for
// their goroutines.
func (d *door) closeAll() {
	d.cancel()
	d.mu.Lock()
	for cc := range d.conns {
		cc.state.Store(stateClosed)
		cc.c.Close()
		if pc := cc.pc.Load(); pc != nil {
			pc.c.Close()
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// bufferPool lends the relay its copy buffers: a free list in a channel
// costs no allocation per request (a sync.Pool of slices would).
var bufferPool = &chanPool{c: make(chan []byte, 256)}

type chanPool struct{ c chan []byte }

func (p *chanPool) Get() []byte {
	select {
	case b := <-p.c:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p *chanPool) Put(b []byte) {
	select {
	case p.c <- b:
	default:
	}
}

// Regional is a region's HTTP front door: a round-robin load balancer over
// the region's healthy service instances. The vantage points check its
// health endpoint: it answers 503 when no instance is healthy, which takes
// the region out of DNS and of the global entry point.
type Regional struct {
	*door
	region string
	pool   atomic.Pointer[instancePool]
	next   atomic.Uint64
}

type instancePool struct {
	list   []*upstream
	byAddr map[string]*upstream
}

// NewRegional returns the front door of a region with no instance yet.
func NewRegional(region string, cfg FrontDoorSettings, log *slog.Logger) *Regional {
	r := &Regional{region: region}
	r.door = newDoor(cfg, log.With("subsystem", "front-door", "region", region))
	r.pool.Store(&instancePool{byAddr: map[string]*upstream{}})
	r.door.pick = r.pick
	r.door.health = func() bool { return r.Healthy() > 0 }
	return r
}

// SetInstances replaces the healthy instances (host:port each), in the
// order round robin visits them. An instance kept from before keeps its
// passive failure state.
func (r *Regional) SetInstances(addrs []string) {
	old := r.pool.Load()
	p := &instancePool{byAddr: make(map[string]*upstream, len(addrs))}
	for _, a := range addrs {
		if _, dup := p.byAddr[a]; dup {
			continue
		}
		u := old.byAddr[a]
		if u == nil {
			u = &upstream{addr: a}
		}
		p.list = append(p.list, u)
		p.byAddr[a] = u
	}
	r.pool.Store(p)
	for a := range old.byAddr {
		if p.byAddr[a] == nil {
			r.transport.closeIdle(a) // nothing goes there any more
		}
	}
}

// Healthy is how many instances may take requests now: set healthy and not
// skipped after a failure.
func (r *Regional) Healthy() int {
	now := time.Now().UnixNano()
	n := 0
	for _, u := range r.pool.Load().list {
		if u.usable(now) {
			n++
		}
	}
	return n
}

// pick is round robin over the usable instances; when every instance
// recently failed, over all of them (a failure may have been a blip).
func (r *Regional) pick(_ *http.Request, _ netip.Addr, exclude *upstream, now int64) *upstream {
	list := r.pool.Load().list
	n := uint64(len(list))
	if n == 0 {
		return nil
	}
	start := r.next.Add(1)
	for i := range n {
		if u := list[(start+i)%n]; u != exclude && u.usable(now) {
			return u
		}
	}
	for i := range n {
		if u := list[(start+i)%n]; u != exclude {
			return u
		}
	}
	return nil
}

// Global is the workloads' global HTTP entry point: it finds the workload
// by the request's Host (its routing hostname), applies the workload's
// policy to the client's address to choose a region, and proxies to that
// region's front door (RegionState.Entry). When a region's front door
// cannot be reached, the request is retried on the region the policy
// chooses without it.
type Global struct {
	*door
	src       RouteSource
	rnd       func(int) int
	upstreams sync.Map // entry address → *upstream
}

// NewGlobal returns the global entry point answering from src.
func NewGlobal(src RouteSource, cfg FrontDoorSettings, log *slog.Logger) *Global {
	g := &Global{src: src, rnd: rand.IntN}
	g.door = newDoor(cfg, log.With("subsystem", "global-entry"))
	g.door.pick = g.pick
	g.door.health = func() bool { rs := src.Routes(); return rs != nil && len(rs.byHost) > 0 }
	g.door.route = func(r *http.Request) (int, string) {
		if g.lookup(r) == nil {
			return http.StatusNotFound, "no workload is served under this host name\n"
		}
		return 0, ""
	}
	return g
}

func (g *Global) upstream(addr string) *upstream {
	if u, ok := g.upstreams.Load(addr); ok {
		return u.(*upstream)
	}
	u, _ := g.upstreams.LoadOrStore(addr, &upstream{addr: addr})
	return u.(*upstream)
}

func (g *Global) lookup(r *http.Request) *compiled {
	rs := g.src.Routes()
	if rs == nil {
		return nil
	}
	host := r.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	if c := rs.byHost[host]; c != nil {
		return c
	}
	if host == "" {
		return nil
	}
	return rs.lookup(host)
}

// pick applies the route's policy; regions whose front door recently
// failed (or just failed this request) count as unhealthy.
func (g *Global) pick(r *http.Request, client netip.Addr, exclude *upstream, now int64) *upstream {
	c := g.lookup(r)
	if c == nil {
		return nil
	}
	regions := c.Regions
	for i := range regions {
		if regions[i].Entry == "" {
			continue
		}
		if u := g.upstream(regions[i].Entry); u == exclude || !u.usable(now) {
			regions = g.without(c.Regions, exclude, now)
			break
		}
	}
	d := Choose(&c.Policy, c.Active, regions, client, g.rnd)
	if d.Index < 0 || regions[d.Index].Entry == "" {
		return nil
	}
	return g.upstream(regions[d.Index].Entry)
}

func (g *Global) without(regions []RegionState, exclude *upstream, now int64) []RegionState {
	out := append([]RegionState(nil), regions...)
	for i := range out {
		if out[i].Entry == "" {
			out[i].Healthy = false
			continue
		}
		if u := g.upstream(out[i].Entry); u == exclude || !u.usable(now) {
			out[i].Healthy = false
		}
	}
	return out
}
