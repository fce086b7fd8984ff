package router

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The front door's HTTP/1.1 relay. Each client connection is served by one
// goroutine that reads a request (http.ReadRequest, or the strict plain
// path of answer.go), writes it to an upstream over a pooled connection,
// reads the answer (http.ReadResponse, or the plain path) and writes it
// back, then loops for the next request. It does what
// net/http.Server with httputil.ReverseProxy did for the front door, at
// about half the CPU per request: no per-request goroutine, no
// ResponseWriter, no request clone, and read deadlines that are moved
// lazily instead of two to four times a request.

// Client connection states, for the drain.
const (
	stateNew    int32 = iota // accepted, no request yet
	stateIdle                // waiting for the next request
	stateActive              // a request in progress
	stateTunnel              // upgraded: bytes copied both ways
	stateClosed              // closed by the drain
)

// patience is how long the relay waits for an upstream's answer before it
// starts watching the client connection for a hang-up. net/http pays a
// goroutine and an extra read on every request to notice a client that
// went away; a quick answer needs neither, so the relay starts that watch
// only past patience, or when an answer's body streams. The upstream read
// deadline behind it is refreshed at most every patience/2, so the watch
// starts after patience/2 to patience.
const patience = time.Second

// newStateGrace: a connection that has sent no request yet is left to the
// drain this long (a request may be on its way), as net/http does.
const newStateGrace = 5 * time.Second

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// clientConn is one client connection to a front door.
type clientConn struct {
	d       *door
	c       net.Conn
	br      *bufio.Reader // over the clientConn itself (see Read)
	bw      *bufio.Writer
	state   atomic.Int32
	created time.Time
	// pc is the upstream connection in use, for a hard stop and for the
	// hang-up watch.
	pc       atomic.Pointer[h1Conn]
	client   netip.Addr
	clientIP string // as X-Forwarded-For names it; "" when unknown

	// What Read does for br.
	limit    int64 // bytes a request header may still take; -1: no limit
	hitLimit bool
	idle     bool      // keep an idle deadline ahead (see Read)
	refresh  time.Time // when that deadline is next due a move
	stash    byte      // a byte the hang-up watch read
	stashed  bool

	// The request in progress.
	req         *http.Request
	body        reqBody
	bodyDone    bool     // its body was read to its end (or it has none)
	bodyStarted bool     // some of its body was read
	bodyErr     error    // reading its body failed
	expect100   bool     // answer 100 Continue before reading its body
	connTokens  []string // header names its Connection header lists
	upType      string   // the protocol it asks to switch to, if any
	plain       plainAnswer
	plainReq    plainRequest // set while a plain request is served
	preq        http.Request
	purl        url.URL
	start       time.Time
	lastPost    bool
	code        int // the status the request was answered with (0: none)

	// The hang-up watch (see watch).
	watching   bool
	watchDone  chan struct{}
	unwatching atomic.Bool
	gone       atomic.Bool
}

func newClientConn(d *door, c net.Conn) *clientConn {
	cc := &clientConn{d: d, c: c, created: time.Now(), limit: -1, idle: true}
	cc.body.cc = cc
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.client = ta.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cc.client = ap.Addr().Unmap()
	}
	if cc.client.IsValid() {
		cc.clientIP = cc.client.String()
	}
	cc.br = readerPool.Get().(*bufio.Reader)
	cc.br.Reset(cc)
	cc.bw = writerPool.Get().(*bufio.Writer)
	cc.bw.Reset(c)
	return cc
}

// Read is what br reads the connection with. It holds a request's header
// to MaxHeaderBytes (plus net/http's 4 KiB of slack), and keeps a read
// deadline IdleTimeout ahead, moved at most every idleSlack: it bounds an
// idle keep-alive connection and a stalled request body alike, without a
// deadline change per request.
func (cc *clientConn) Read(p []byte) (int, error) {
	if cc.limit >= 0 {
		if cc.limit == 0 {
			cc.hitLimit = true
			return 0, io.EOF
		}
		if int64(len(p)) > cc.limit {
			p = p[:cc.limit]
		}
	}
	if cc.stashed && len(p) > 0 {
		p[0], cc.stashed = cc.stash, false
		if cc.limit > 0 {
			cc.limit--
		}
		return 1, nil
	}
	if cc.idle {
		if now := time.Now(); now.After(cc.refresh) {
			cc.c.SetReadDeadline(now.Add(cc.d.cfg.IdleTimeout))
			cc.refresh = now.Add(cc.d.idleSlack)
		}
	}
	n, err := cc.c.Read(p)
	if cc.limit > 0 {
		cc.limit -= int64(n)
	}
	return n, err
}

// serve serves the connection's requests until it closes.
func (cc *clientConn) serve() {
	defer cc.finish()
	defer func() {
		if r := recover(); r != nil {
			cc.d.log.Error("front door: panic serving a connection", "client", cc.clientIP, "panic", r)
		}
	}()
	from := stateNew
	for {
		if cc.lastPost {
			// RFC 9112 2.2: tolerate the CRLF old clients send after a POST.
			peek, _ := cc.br.Peek(4)
			cc.br.Discard(numLeadingCRorLF(peek))
		}
		if _, err := cc.br.Peek(1); err != nil {
			return
		}
		if !cc.state.CompareAndSwap(from, stateActive) {
			return // the drain closed it
		}
		if !cc.handle() {
			return
		}
		if !cc.state.CompareAndSwap(stateActive, stateIdle) || cc.d.closing.Load() {
			return
		}
		from = stateIdle
	}
}

func (cc *clientConn) finish() {
	cc.unwatch()
	if pc := cc.pc.Swap(nil); pc != nil {
		pc.c.Close()
	}
	cc.c.Close()
	cc.d.untrack(cc)
	cc.br.Reset(nil)
	readerPool.Put(cc.br)
	cc.bw.Reset(nil)
	writerPool.Put(cc.bw)
}

// handle serves one request; false when the connection is to be closed.
func (cc *clientConn) handle() bool {
	d := cc.d
	if b := buffered(cc.br); headerComplete(b) {
		if pr, ok := parsePlainRequest(b); ok && pr.size <= d.cfg.MaxHeaderBytes {
			return cc.handlePlain(pr)
		}
	}
	cc.limit, cc.hitLimit = int64(d.cfg.MaxHeaderBytes)+4096, false
	if !headerComplete(buffered(cc.br)) {
		// The header is not all in: it must be within ReadHeaderTimeout
		// (slowloris). A header that came in one piece needs no deadline.
		cc.c.SetReadDeadline(time.Now().Add(d.cfg.ReadHeaderTimeout))
		cc.idle = false
	}
	req, err := http.ReadRequest(cc.br)
	hitLimit := cc.hitLimit
	cc.limit = -1
	if !cc.idle {
		cc.idle, cc.refresh = true, time.Time{}
	}
	if err != nil {
		cc.requestError(err, hitLimit)
		return false
	}
	// http.ReadRequest validated the header names and values (textproto
	// rejects control characters), the lengths and transfer codings.
	if req.ProtoMajor != 1 {
		cc.statusError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return false
	}
	if req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
		cc.statusError(http.StatusBadRequest, "missing required Host header")
		return false
	}
	if !httpguts.ValidHostHeader(req.Host) {
		cc.statusError(http.StatusBadRequest, "malformed Host header")
		return false
	}
	return cc.serve1(req)
}

// handlePlain serves a plain request (see plainRequest). The request the
// rest of the relay sees is reused from one plain request to the next;
// writeRequest passes the target and the fields on as they came.
func (cc *clientConn) handlePlain(pr plainRequest) bool {
	// pr's slices point into br's buffer, which nothing reads into
	// before the next request (a plain request has no body).
	cc.br.Discard(pr.size)
	path, _, _ := bytes.Cut(pr.target, []byte("?"))
	cc.purl = url.URL{Path: string(path)}
	cc.preq = http.Request{Method: pr.method, URL: &cc.purl, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody, Host: string(pr.host)}
	cc.plainReq = pr
	defer func() { cc.plainReq = plainRequest{} }()
	return cc.serve1(&cc.preq)
}

// serve1 serves one request that was read and checked, and tells the
// observer, if any, how it was answered.
func (cc *clientConn) serve1(req *http.Request) bool {
	o := cc.d.cfg.Observer
	if o == nil {
		return cc.serveRequest(req)
	}
	start := time.Now()
	cc.code = 0
	keep := cc.serveRequest(req)
	if cc.code != 0 {
		o.HTTPRequest(cc.d.cfg.Name, cc.code, time.Since(start))
	}
	return keep
}

func (cc *clientConn) serveRequest(req *http.Request) bool {
	d := cc.d
	cc.req = req
	defer func() { cc.req = nil }()
	cc.lastPost = req.Method == http.MethodPost
	cc.bodyDone = req.Body == http.NoBody
	cc.bodyStarted, cc.bodyErr, cc.expect100 = false, nil, false
	cc.gone.Store(false)
	if e := req.Header["Expect"]; len(e) > 0 {
		if !hasToken(e[0], "100-continue") {
			return cc.respond(req, http.StatusExpectationFailed, "", "", false)
		}
		cc.expect100 = req.ProtoAtLeast(1, 1) && req.ContentLength != 0
	}
	if req.URL.Path == d.cfg.HealthPath && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		if d.health() {
			return cc.respond(req, http.StatusOK, "ok\n", "Cache-Control: no-store\r\n", true)
		}
		return cc.respond(req, http.StatusServiceUnavailable, "no healthy upstream\n", "Cache-Control: no-store\r\n", true)
	}
	if req.Method == http.MethodConnect {
		return cc.respond(req, http.StatusNotImplemented, "CONNECT is not supported\n", "", true)
	}
	if d.route != nil {
		if code, msg := d.route(req); code != 0 {
			return cc.respond(req, code, msg, "", true)
		}
	}
	keep := cc.proxy(req)
	cc.unwatch()
	return keep
}

// requestError answers a request that could not be read, as net/http does.
func (cc *clientConn) requestError(err error, hitLimit bool) {
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	var ne net.Error
	var oe *net.OpError
	switch {
	case hitLimit:
		const publicErr = "431 Request Header Fields Too Large"
		cc.bw.WriteString("HTTP/1.1 " + publicErr + errorHeaders + publicErr)
		cc.closeWriteAndWait()
		return
	case strings.HasPrefix(err.Error(), "unsupported transfer encoding"):
		cc.bw.WriteString("HTTP/1.1 501 Not Implemented" + errorHeaders + "Unsupported transfer encoding")
	case err == io.EOF, errors.As(err, &ne) && ne.Timeout(), errors.As(err, &oe) && oe.Op == "read":
		return // the client left, or kept quiet too long: nobody to answer
	default:
		cc.d.log.Debug("front door: bad request", "client", cc.clientIP, "err", err)
		const publicErr = "400 Bad Request"
		cc.bw.WriteString("HTTP/1.1 " + publicErr + errorHeaders + publicErr)
	}
	cc.bw.Flush()
}

// statusError answers a request that is refused before it is served.
func (cc *clientConn) statusError(code int, text string) {
	msg := strconv.Itoa(code) + " " + http.StatusText(code) + ": " + text
	cc.bw.WriteString("HTTP/1.1 " + msg + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + msg)
	cc.bw.Flush()
}

// closeWriteAndWait sends what is buffered and the end of the stream, and
// waits a little before the connection is closed, so that a client still
// sending (an oversized header) gets the answer rather than a reset.
func (cc *clientConn) closeWriteAndWait() {
	cc.bw.Flush()
	if cw, ok := cc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	time.Sleep(500 * time.Millisecond)
}

// respond answers a request from the front door itself, with a short text
// body (or none). keep false closes the connection after it; so does a
// request body left unread.
func (cc *clientConn) respond(req *http.Request, code int, body, header string, keep bool) bool {
	keep = keep && cc.keepAlive(req)
	bw := cc.bw
	cc.code = code
	writeStatusLine(bw, code)
	bw.WriteString("Date: ")
	bw.Write(time.Now().UTC().AppendFormat(bw.AvailableBuffer(), http.TimeFormat))
	bw.WriteString("\r\n")
	bw.WriteString(header)
	if body != "" {
		bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	}
	writeField(bw, "Content-Length", strconv.Itoa(len(body)))
	cc.writeConnection(req, keep)
	bw.WriteString("\r\n")
	if req.Method != http.MethodHead {
		bw.WriteString(body)
	}
	return bw.Flush() == nil && keep
}

// keepAlive says whether the connection may serve another request after
// this one's answer.
func (cc *clientConn) keepAlive(req *http.Request) bool {
	return !req.Close && cc.bodyDone && cc.bodyErr == nil && !cc.d.closing.Load()
}

func (cc *clientConn) writeConnection(req *http.Request, keep bool) {
	switch {
	case !keep:
		cc.bw.WriteString("Connection: close\r\n")
	case !req.ProtoAtLeast(1, 1):
		cc.bw.WriteString("Connection: keep-alive\r\n")
	}
}

// reqBody reads the request body for the relay: it answers 100 Continue
// first when the client waits for it, and records how the body ended.
type reqBody struct{ cc *clientConn }

func (b *reqBody) Read(p []byte) (int, error) {
	cc := b.cc
	if cc.bodyDone {
		return 0, io.EOF
	}
	if cc.expect100 {
		cc.expect100 = false
		cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := cc.bw.Flush(); err != nil {
			cc.bodyErr = err
			return 0, err
		}
	}
	cc.bodyStarted = true
	n, err := cc.req.Body.Read(p)
	if err == io.EOF {
		cc.bodyDone = true
	} else if err != nil {
		cc.bodyErr = err
	}
	return n, err
}

// proxy relays the request to an upstream and its answer back, trying
// other upstreams when one fails and the request may be sent again.
func (cc *clientConn) proxy(req *http.Request) bool {
	d := cc.d
	upType := ""
	defer func() { cc.upType = "" }()
	if httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") {
		if u := req.Header["Upgrade"]; len(u) > 0 {
			upType = u[0]
		}
		if !printable(upType) {
			d.log.Debug("front door: client asked for an invalid protocol", "protocol", upType)
			return cc.respond(req, http.StatusBadGateway, "", "", true)
		}
	}
	cc.upType = upType
	cc.connTokens = connectionTokens(req.Header["Connection"], cc.connTokens[:0])
	// Buffer a small body, so that the request can be sent again to
	// another upstream (retryable says when that is allowed).
	var body []byte
	if n := req.ContentLength; n > 0 && n <= d.cfg.RetryBodyLimit {
		body = make([]byte, n)
		if _, err := io.ReadFull(&cc.body, body); err != nil {
			d.log.Debug("front door: reading a request body", "client", cc.clientIP, "err", err)
			return false
		}
		cc.bodyDone = true // all Content-Length bytes are in
	}
	start := time.Now()
	cc.start = start
	var last *upstream
	var err error
	for attempt := 1; ; attempt++ {
		up := d.pick(req, cc.client, last, start.UnixNano())
		if up == nil || up == last {
			if last == nil {
				err = errNoUpstream
			}
			break
		}
		var resp *http.Response
		var pc *h1Conn
		resp, pc, err = cc.send(req, up, body, upType, start)
		if err == nil {
			return cc.relay(req, resp, pc, upType)
		}
		if cc.gone.Load() {
			return false // the client hung up: nobody to answer
		}
		if cc.bodyErr != nil {
			// The client's body broke off or was malformed: not the
			// upstream's fault.
			d.log.Debug("front door: reading a request body", "client", cc.clientIP, "err", cc.bodyErr)
			if isNetReadError(cc.bodyErr) {
				return false
			}
			return cc.respond(req, http.StatusBadGateway, "", "", false)
		}
		up.failedUntil.Store(time.Now().Add(d.cfg.FailDuration).UnixNano()) // now: the failure may have taken long
		last = up
		replayable := body != nil || req.ContentLength == 0 || !cc.bodyStarted
		if attempt >= d.cfg.Attempts || !retryable(req.Method, replayable, err) {
			break
		}
		d.log.Debug("retrying on another upstream", "from", up.addr, "err", err)
	}
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case errors.Is(err, errNoUpstream):
		status = http.StatusServiceUnavailable
	case errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	}
	d.log.Debug("proxy", "method", req.Method, "path", req.URL.Path, "status", status, "err", err)
	return cc.respond(req, status, "", "", true)
}

// send writes the request to up and reads its answer's header. A pooled
// connection that the server had closed is replaced by another when the
// request may be sent again; a request that may not is only written on a
// connection that is still open.
func (cc *clientConn) send(req *http.Request, up *upstream, body []byte, upType string, start time.Time) (*http.Response, *h1Conn, error) {
	d := cc.d
	safe := idempotent(req.Method) && (body != nil || req.ContentLength == 0)
	for {
		pc, err := d.transport.get(d.ctx, up.addr, start)
		if err != nil {
			return nil, nil, &upstreamError{op: "dial", err: err}
		}
		if pc.reused && !safe && !pc.alive() {
			pc.c.Close()
			continue
		}
		cc.pc.Store(pc)
		if cc.gone.Load() {
			return nil, nil, errClientGone
		}
		resp, err := cc.exchange(pc, req, body, upType, start)
		if err == nil {
			return resp, pc, nil
		}
		cc.pc.Store(nil)
		pc.c.Close()
		if cc.gone.Load() || cc.bodyErr != nil {
			return nil, nil, err
		}
		if safe && stale(pc, err) {
			d.transport.closeIdle(up.addr)
			continue
		}
		return nil, nil, err
	}
}

var errClientGone = errors.New("client hung up")

// exchange writes the request on pc and reads the answer's header.
func (cc *clientConn) exchange(pc *h1Conn, req *http.Request, body []byte, upType string, start time.Time) (*http.Response, error) {
	if err := cc.writeRequest(pc, req, body, upType); err != nil {
		if cc.bodyErr != nil {
			return nil, err
		}
		if cc.bodyStarted {
			// The upstream stopped reading the body: it may have
			// answered early (413, 401) before closing.
			if resp, rerr := cc.readHeader(pc, req, start); rerr == nil {
				return resp, nil
			}
		}
		return nil, &upstreamError{op: "write", err: err}
	}
	resp, err := cc.readHeader(pc, req, start)
	if err != nil {
		var ue *upstreamError
		if !errors.As(err, &ue) {
			err = &upstreamError{op: "read", err: err}
		}
		return nil, err
	}
	return resp, nil
}

// writeRequest writes the request for the upstream: hop-by-hop fields
// removed (RFC 9110 7.6.1), forwarding fields replaced, and the body framed
// anew.
func (cc *clientConn) writeRequest(pc *h1Conn, req *http.Request, body []byte, upType string) error {
	bw := pc.bw
	if pr := &cc.plainReq; pr.fields != nil {
		// Nothing in it to remove or to frame: the target and the
		// fields go as they came, then X-Forwarded-For.
		bw.WriteString(pr.method)
		bw.WriteByte(' ')
		bw.Write(pr.target)
		bw.WriteString(" HTTP/1.1\r\n")
		bw.Write(pr.fields)
		if cc.clientIP != "" {
			writeField(bw, "X-Forwarded-For", cc.clientIP)
		}
		bw.WriteString("\r\n")
		return nil
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	uri := req.RequestURI
	if uri == "" || uri[0] != '/' && uri != "*" {
		uri = req.URL.RequestURI() // absolute form: the upstream gets the path
	}
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\n")
	host := req.Host
	if host == "" {
		host = pc.addr // an HTTP/1.0 client without Host
	}
	writeField(bw, "Host", host)
	for k, vv := range req.Header {
		if skipRequestField(k) || listed(cc.connTokens, k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	// X-Forwarded-For: the client's address, after what earlier proxies
	// said when they are trusted.
	if cc.clientIP != "" {
		bw.WriteString("X-Forwarded-For: ")
		if prior := req.Header["X-Forwarded-For"]; cc.d.cfg.TrustForwarded && len(prior) > 0 {
			for _, p := range prior {
				bw.WriteString(p)
				bw.WriteString(", ")
			}
		}
		bw.WriteString(cc.clientIP)
		bw.WriteString("\r\n")
	}
	// Tell the upstream that trailers get through when the client said
	// they do (gRPC-Web and the like check).
	if httpguts.HeaderValuesContainsToken(req.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if upType != "" {
		writeField(bw, "Connection", "Upgrade")
		writeField(bw, "Upgrade", upType)
	}
	chunked := false
	switch {
	case body != nil:
		writeField(bw, "Content-Length", strconv.Itoa(len(body)))
	case req.ContentLength > 0:
		writeField(bw, "Content-Length", strconv.FormatInt(req.ContentLength, 10))
	case req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		chunked = true
		if len(req.Trailer) > 0 {
			writeField(bw, "Trailer", strings.Join(keys(req.Trailer), ", "))
		}
	case len(req.Header["Content-Length"]) > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	switch {
	case body != nil:
		bw.Write(body)
	case req.ContentLength != 0:
		if err := cc.copyRequestBody(bw, chunked); err != nil {
			return err
		}
	}
	return nil // readHeader sends what is buffered
}

// copyRequestBody streams the request body to the upstream, sending what
// it has whenever the client has nothing more for the moment.
func (cc *clientConn) copyRequestBody(bw *bufio.Writer, chunked bool) error {
	buf := bufferPool.Get()
	defer bufferPool.Put(buf)
	for {
		n, rerr := cc.body.Read(buf)
		if n > 0 {
			if chunked {
				writeChunk(bw, buf[:n])
			} else {
				bw.Write(buf[:n])
			}
			if cc.br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		writeTrailer(bw, cc.req.Trailer)
		bw.WriteString("\r\n")
	}
	return nil
}

// readHeader reads the answer's header, relaying informational (1xx)
// answers to the client. A plain answer (see plainAnswer) is left in the
// buffer, described in cc.plain, and the response returned is nil. It waits for the whole header under the short
// patience deadline, and past it under ResponseHeaderTimeout while
// watching the client: http.ReadResponse itself never waits on a deadline
// it could not resume from.
func (cc *clientConn) readHeader(pc *h1Conn, req *http.Request, start time.Time) (*http.Response, error) {
	d := cc.d
	wait := min(patience, d.cfg.ResponseHeaderTimeout)
	if pc.rdl.Before(start.Add(wait/2)) || pc.rdl.After(start.Add(wait)) {
		pc.rdl = start.Add(wait)
		pc.c.SetReadDeadline(pc.rdl)
	}
	if pc.bw.Buffered() > 0 {
		if err := pc.flushAndWait(); err != nil {
			return nil, &upstreamError{op: "write", err: err}
		}
	}
	extended := false
	extend := func() {
		extended = true
		pc.rdl = start.Add(d.cfg.ResponseHeaderTimeout)
		pc.c.SetReadDeadline(pc.rdl)
		cc.watch()
	}
	for informational := 0; ; informational++ {
		for !headerComplete(buffered(pc.br)) {
			if pc.br.Buffered() == pc.br.Size() {
				if !extended {
					extend() // a header larger than the buffer: ReadResponse reads on
				}
				break
			}
			if _, err := pc.br.Peek(pc.br.Buffered() + 1); err != nil {
				if cc.gone.Load() {
					return nil, errClientGone
				}
				var ne net.Error
				if extended || !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) >= d.cfg.ResponseHeaderTimeout {
					return nil, err
				}
				extend()
			}
		}
		if req.Method != http.MethodHead && cc.upType == "" {
			if a, ok := parsePlainAnswer(buffered(pc.br)); ok {
				cc.plain = a
				return nil, nil // relayPlain takes it from here
			}
		}
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if informational >= 10 {
			return nil, errors.New("too many informational answers")
		}
		// 103 Early Hints and the like reach HTTP/1.1 clients; 100
		// Continue was the relay's to send.
		if resp.StatusCode != http.StatusContinue && req.ProtoAtLeast(1, 1) {
			writeStatusLine(cc.bw, resp.StatusCode)
			writeHeader(cc.bw, resp.Header, nil, true, false)
			cc.bw.WriteString("\r\n")
			if err := cc.bw.Flush(); err != nil {
				cc.gone.Store(true)
				return nil, errClientGone
			}
		}
	}
}

// relay writes the answer to the client and gives the upstream connection
// back when the answer was read to its end.
func (cc *clientConn) relay(req *http.Request, resp *http.Response, pc *h1Conn, upType string) bool {
	d := cc.d
	if resp == nil {
		return cc.relayPlain(req, pc)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return cc.tunnel(req, resp, pc, upType)
	}
	bw := cc.bw
	hasBody := resp.Body != http.NoBody
	keep := cc.keepAlive(req)
	chunked := false
	if hasBody && resp.ContentLength < 0 {
		if req.ProtoAtLeast(1, 1) {
			chunked = true
		} else {
			keep = false // the end of the connection ends the body
		}
	}
	streaming := hasBody && (resp.ContentLength < 0 || int64(pc.br.Buffered()) < resp.ContentLength)
	if streaming {
		// The body may take long: no deadline, and a client that
		// hangs up cuts the upstream connection.
		if !pc.rdl.IsZero() {
			pc.rdl = time.Time{}
			pc.c.SetReadDeadline(pc.rdl)
		}
		cc.watch()
	}
	cc.code = resp.StatusCode
	writeStatusLine(bw, resp.StatusCode)
	writeHeader(bw, resp.Header, connectionTokens(resp.Header["Connection"], nil), true, hasBody)
	switch {
	case !hasBody:
		// HEAD, 204, 304: the upstream's Content-Length (if any) stays.
	case resp.ContentLength >= 0:
		writeField(bw, "Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			writeField(bw, "Trailer", strings.Join(keys(resp.Trailer), ", "))
		}
	}
	cc.writeConnection(req, keep)
	bw.WriteString("\r\n")
	complete := true // the upstream's answer was read to its end
	var werr error
	switch {
	case !hasBody:
	case !streaming && resp.ContentLength <= int64(bw.Available()):
		_, werr = bw.ReadFrom(resp.Body) // all buffered: no read blocks
	default:
		var rerr error
		rerr, werr = cc.copyBody(resp.Body, pc, chunked, resp.Trailer)
		if rerr != nil {
			complete = false
			keep = false
			if !cc.gone.Load() {
				d.log.Debug("front door: reading an answer's body", "upstream", pc.addr, "err", rerr)
			}
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	cc.unwatch()
	cc.pc.Store(nil)
	if complete && werr == nil && !resp.Close && !cc.gone.Load() {
		d.transport.put(pc, cc.start)
	} else {
		pc.c.Close()
	}
	return keep && werr == nil
}

// relayPlain writes a plain answer to the client: its header's field lines
// as they came, then the body, passed through.
func (cc *clientConn) relayPlain(req *http.Request, pc *h1Conn) bool {
	a := &cc.plain
	bw := cc.bw
	keep := cc.keepAlive(req)
	streaming := int64(pc.br.Buffered()-a.size) < a.length || a.length > int64(bw.Available()-len(a.fields)-64)
	cc.code = a.code
	writeStatusLine(bw, a.code)
	bw.Write(a.fields) // before the Discard: it points into pc.br's buffer
	cc.writeConnection(req, keep)
	bw.WriteString("\r\n")
	pc.br.Discard(a.size)
	complete := true
	var werr error
	if !streaming {
		body, _ := pc.br.Peek(int(a.length))
		bw.Write(body)
		pc.br.Discard(len(body))
	} else {
		if !pc.rdl.IsZero() {
			pc.rdl = time.Time{}
			pc.c.SetReadDeadline(pc.rdl)
		}
		cc.watch()
		body := &io.LimitedReader{R: pc.br, N: a.length}
		var rerr error
		rerr, werr = cc.copyBody(body, pc, false, nil)
		if rerr == nil && body.N > 0 {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil {
			complete, keep = false, false
			if !cc.gone.Load() {
				cc.d.log.Debug("front door: reading an answer's body", "upstream", pc.addr, "err", rerr)
			}
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	cc.unwatch()
	cc.pc.Store(nil)
	if complete && werr == nil && !cc.gone.Load() {
		cc.d.transport.put(pc, cc.start)
	} else {
		pc.c.Close()
	}
	return keep && werr == nil
}

// copyBody streams an answer's body to the client, flushing whenever the
// upstream has nothing more for the moment, and its trailer when chunked.
// It returns the upstream's error and the client's.
func (cc *clientConn) copyBody(body io.Reader, pc *h1Conn, chunked bool, trailer http.Header) (rerr, werr error) {
	bw := cc.bw
	buf := bufferPool.Get()
	defer bufferPool.Put(buf)
	for {
		if pc.br.Buffered() == 0 && bw.Buffered() > 0 {
			if werr = bw.Flush(); werr != nil {
				return errClientGone, werr
			}
		}
		n, err := body.Read(buf)
		if n > 0 {
			if chunked {
				writeChunk(bw, buf[:n])
			} else {
				bw.Write(buf[:n])
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err, nil
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		writeTrailer(bw, trailer)
		bw.WriteString("\r\n")
	}
	return nil, nil
}

// tunnel relays a protocol switch (WebSocket): the 101 answer, then bytes
// both ways until either side closes.
func (cc *clientConn) tunnel(req *http.Request, resp *http.Response, pc *h1Conn, upType string) bool {
	d := cc.d
	cc.unwatch()
	var got string
	if u := resp.Header["Upgrade"]; len(u) > 0 {
		got = u[0]
	}
	if upType == "" || !strings.EqualFold(got, upType) {
		cc.pc.Store(nil)
		pc.c.Close()
		d.log.Debug("front door: upstream switched protocols unasked", "upstream", pc.addr, "asked", upType, "got", got)
		return cc.respond(req, http.StatusBadGateway, "", "", true)
	}
	if !cc.state.CompareAndSwap(stateActive, stateTunnel) {
		return false // a hard stop
	}
	cc.code = resp.StatusCode
	writeStatusLine(cc.bw, resp.StatusCode)
	writeHeader(cc.bw, resp.Header, nil, false, false)
	cc.bw.WriteString("\r\n")
	if cc.bw.Flush() != nil {
		return false
	}
	// A tunnel has no idle limit (WebSockets are quiet for long); the
	// drain cuts it once the requests in flight are done.
	cc.idle = false
	cc.c.SetReadDeadline(time.Time{})
	pc.c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(pc.c, cc.br) // what the client sent after its request, then on
		pc.c.Close()
		cc.c.Close()
	}()
	io.Copy(cc.c, pc.br)
	cc.c.Close()
	pc.c.Close()
	<-done
	return false
}

// watch starts reading the client connection while the relay waits on the
// upstream, so that a client that hangs up ends the exchange (the upstream
// connection is cut, and the upstream sees its request cancelled) instead
// of leaving the upstream to work for nobody. A byte that arrives (a
// pipelined request) is kept for the next read. Only once the request body
// was read: until then the body's reads tell.
func (cc *clientConn) watch() {
	if cc.watching || !cc.bodyDone || cc.stashed {
		return
	}
	cc.watching = true
	// No idle deadline under the watch: a long wait or a long stream is
	// not an idle client. unwatch has the next read set it again.
	cc.c.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	cc.watchDone = done
	go func() {
		defer close(done)
		var b [1]byte
		n, _ := cc.c.Read(b[:])
		if n == 1 {
			cc.stash, cc.stashed = b[0], true
			return
		}
		if cc.unwatching.Load() {
			return // unwatch's deadline, not the client
		}
		cc.gone.Store(true)
		if pc := cc.pc.Load(); pc != nil {
			pc.c.SetReadDeadline(aLongTimeAgo)
		}
	}()
}

// unwatch stops the hang-up watch.
func (cc *clientConn) unwatch() {
	if !cc.watching {
		return
	}
	cc.unwatching.Store(true)
	cc.c.SetReadDeadline(aLongTimeAgo)
	<-cc.watchDone
	cc.unwatching.Store(false)
	cc.watching = false
	cc.refresh = time.Time{} // the next read sets the idle deadline again
}

// retryable says whether a request that failed on one upstream may be sent
// to another: when nothing was sent (the connection could not be opened),
// or when it is idempotent; in both cases only when its body can be sent
// again (none, buffered, or not read yet).
func retryable(method string, replayable bool, err error) bool {
	if !replayable {
		return false
	}
	var ue *upstreamError
	if errors.As(err, &ue) && ue.op == "dial" {
		return true
	}
	return idempotent(method)
}

func isNetReadError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

// skipRequestField: fields the relay does not pass on to the upstream as
// they came. Hop-by-hop fields (RFC 9110 7.6.1) concern one connection;
// the relay writes Host, the framing, X-Forwarded-For, Te and Upgrade
// itself; forwarding fields from the client are not to be trusted (as
// httputil.ReverseProxy's Rewrite mode drops them); Expect is answered by
// the relay, which sends the body right after the header.
func skipRequestField(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Expect",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// hopByHop: the fields of one connection (RFC 9110 7.6.1).
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// connectionTokens appends to dst the field names a Connection header lists
// (those fields are hop-by-hop too), leaving out the usual tokens whose
// fields are removed anyway.
func connectionTokens(values []string, dst []string) []string {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "", strings.EqualFold(tok, "close"), strings.EqualFold(tok, "keep-alive"), strings.EqualFold(tok, "upgrade"):
				continue
			}
			dst = append(dst, tok)
		}
	}
	return dst
}

func listed(tokens []string, k string) bool {
	for _, t := range tokens {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return false
}

// writeHeader writes an answer's fields; hop false writes them all (a 101
// answer keeps its Connection and Upgrade), body drops Content-Length (the
// relay frames the body itself).
func writeHeader(bw *bufio.Writer, h http.Header, tokens []string, hop, body bool) {
	for k, vv := range h {
		if hop && (hopByHop(k) || listed(tokens, k)) || body && k == "Content-Length" {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

func writeChunk(bw *bufio.Writer, p []byte) {
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	bw.WriteString("\r\n")
}

func writeTrailer(bw *bufio.Writer, t http.Header) {
	for k, vv := range t {
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
}

func keys(h http.Header) []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// buffered is what br holds, without reading.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// headerComplete reports whether b holds the end of a message header: an
// empty line (CRLF, or a bare LF as textproto accepts).
func headerComplete(b []byte) bool {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		b = b[i+1:]
		if len(b) > 0 && b[0] == '\n' || len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
			return true
		}
	}
}

func numLeadingCRorLF(v []byte) (n int) {
	for _, b := range v {
		if b != '\r' && b != '\n' {
			break
		}
		n++
	}
	return n
}

// hasToken reports whether the comma-separated list v holds token, in any
// case.
func hasToken(v, token string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(tok), token) {
			return true
		}
	}
	return false
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
