package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
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

// door is what the regional and the global front doors share: the server,
// the reverse proxy, and the retrying transport.
type door struct {
	cfg       FrontDoorSettings
	log       *slog.Logger
	transport *http.Transport
	fast      *h1Transport
	proxy     *httputil.ReverseProxy
	srv       *http.Server
	ln        net.Listener

	// pick chooses where a request goes, never exclude (the upstream that
	// just failed it) unless there is nothing else; nil when nowhere.
	pick func(r *http.Request, exclude *upstream) *upstream
	// find returns the upstream of an address a request was sent to.
	find func(addr string) *upstream
	// health answers the health endpoint: whether the door can serve.
	health func() bool
	// route handles a request before proxying; false when it answered.
	route func(w http.ResponseWriter, r *http.Request) bool
}

func newDoor(cfg FrontDoorSettings, log *slog.Logger) *door {
	cfg = cfg.WithDefaults()
	d := &door{cfg: cfg, log: log}
	d.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// Pass the client's Accept-Encoding through untouched.
		DisableCompression: true,
	}
	d.fast = &h1Transport{
		dialer:            net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:           cfg.MaxIdleConnsPerHost,
		idleTimeout:       d.transport.IdleConnTimeout,
		respHeaderTimeout: cfg.ResponseHeaderTimeout,
	}
	d.proxy = &httputil.ReverseProxy{
		Rewrite:      d.rewrite,
		Transport:    roundTripper(d.roundTrip),
		BufferPool:   bufferPool,
		ErrorHandler: d.proxyError,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	d.srv = &http.Server{
		Handler:           d,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return d
}

// ServeHTTP proxies one request, or answers the health endpoint.
func (d *door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == d.cfg.HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Cache-Control", "no-store")
		if d.health() {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "ok\n")
		} else {
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		}
		return
	}
	if d.route != nil && !d.route(w, r) {
		return
	}
	d.proxy.ServeHTTP(w, r)
}

func (d *door) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = ""
	if u := d.pick(pr.In, nil); u != nil {
		out.URL.Host = u.addr
	}
	// X-Forwarded-For: the client's address, after what earlier proxies
	// said when they are trusted.
	if ap, err := netip.ParseAddrPort(pr.In.RemoteAddr); err == nil {
		ip := ap.Addr().Unmap().String()
		if prior := pr.In.Header["X-Forwarded-For"]; d.cfg.TrustForwarded && len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out.Header["X-Forwarded-For"] = []string{ip}
	}
	// Buffer a small body, so that the request can be sent again to
	// another instance (retryable says when that is allowed).
	if n := pr.In.ContentLength; n > 0 && n <= d.cfg.RetryBodyLimit && out.Body != nil {
		buf := make([]byte, n)
		read, err := io.ReadFull(out.Body, buf)
		if err != nil {
			out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(buf[:read]), errReader{err}))
			return
		}
		out.Body = io.NopCloser(bytes.NewReader(buf))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// idempotent methods may be repeated (RFC 9110, 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends a request to the upstream rewrite chose and, when the
// connection fails and the request may be repeated, to others.
func (d *door) roundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == "" {
		return nil, errNoUpstream
	}
	up := d.find(req.URL.Host)
	resp, err := d.send(req)
	for attempt := 1; err != nil; attempt++ {
		if req.Context().Err() != nil {
			return nil, err // the client went away
		}
		up.failedUntil.Store(time.Now().Add(d.cfg.FailDuration).UnixNano())
		if attempt >= d.cfg.Attempts || !retryable(req, err) {
			return nil, err
		}
		next := d.pick(req, up)
		if next == nil || next == up {
			return nil, err
		}
		d.log.Debug("retrying on another upstream", "from", up.addr, "to", next.addr, "err", err)
		up = next
		r2 := *req
		u := *req.URL
		u.Host = next.addr
		r2.URL = &u
		if req.GetBody != nil {
			if r2.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, err = d.send(&r2)
	}
	return resp, nil
}

func (d *door) send(req *http.Request) (*http.Response, error) {
	if d.fast.fast(req) {
		return d.fast.RoundTrip(req)
	}
	return d.transport.RoundTrip(req)
}

// retryable says whether a failed request may be sent again: when nothing
// was sent (the connection could not be opened), or when it is idempotent;
// in both cases only with no body or one that can be replayed.
func retryable(req *http.Request, err error) bool {
	if req.Body != nil && req.GetBody == nil {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return idempotent(req.Method)
}

func (d *door) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case errors.Is(err, errNoUpstream):
		status = http.StatusServiceUnavailable
	case r.Context().Err() != nil:
		return // the client is gone: nobody to answer
	case errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	}
	d.log.Debug("proxy", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	w.WriteHeader(status)
}

// Listen binds the front door's address.
func (d *door) Listen() error {
	if d.ln != nil {
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

// Run serves until ctx ends, then drains: it stops accepting, lets the
// requests in flight finish for up to DrainTimeout, and cuts the rest.
func (d *door) Run(ctx context.Context) error {
	if err := d.Listen(); err != nil {
		return err
	}
	d.log.Info("front door listening", "addr", d.Addr())
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(d.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("front door %s: %w", d.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
	defer cancel()
	err := d.srv.Shutdown(sctx)
	if err != nil {
		d.log.Warn("front door drain deadline passed; cutting the remaining requests", "addr", d.Addr())
		d.srv.Close()
		err = fmt.Errorf("front door %s: drain: %w", d.Addr(), err)
	}
	<-errc
	d.transport.CloseIdleConnections()
	d.fast.CloseIdleConnections()
	return err
}

// bufferPool lends the proxy its copy buffers: a free list in a channel
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

var _ http.Handler = (*Regional)(nil)

// NewRegional returns the front door of a region with no instance yet.
func NewRegional(region string, cfg FrontDoorSettings, log *slog.Logger) *Regional {
	r := &Regional{region: region}
	r.door = newDoor(cfg, log.With("subsystem", "front-door", "region", region))
	r.pool.Store(&instancePool{byAddr: map[string]*upstream{}})
	r.door.pick = r.pick
	r.door.find = func(addr string) *upstream {
		if u := r.pool.Load().byAddr[addr]; u != nil {
			return u
		}
		return &upstream{addr: addr} // removed meanwhile
	}
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
func (r *Regional) pick(_ *http.Request, exclude *upstream) *upstream {
	list := r.pool.Load().list
	n := uint64(len(list))
	if n == 0 {
		return nil
	}
	now := time.Now().UnixNano()
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

var _ http.Handler = (*Global)(nil)

// NewGlobal returns the global entry point answering from src.
func NewGlobal(src RouteSource, cfg FrontDoorSettings, log *slog.Logger) *Global {
	g := &Global{src: src, rnd: rand.IntN}
	g.door = newDoor(cfg, log.With("subsystem", "global-entry"))
	g.door.pick = g.pick
	g.door.find = g.upstream
	g.door.health = func() bool { rs := src.Routes(); return rs != nil && len(rs.byHost) > 0 }
	g.door.route = func(w http.ResponseWriter, r *http.Request) bool {
		if g.lookup(r) == nil {
			http.Error(w, "no workload is served under this host name", http.StatusNotFound)
			return false
		}
		return true
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
func (g *Global) pick(r *http.Request, exclude *upstream) *upstream {
	c := g.lookup(r)
	if c == nil {
		return nil
	}
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr()
	}
	regions := c.Regions
	now := time.Now().UnixNano()
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
