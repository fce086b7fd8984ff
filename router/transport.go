package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Transport is the front doors' transport for the common case: an
// idempotent request without a body and without a protocol upgrade (GET,
// HEAD, OPTIONS, DELETE). It writes the request and reads the answer on
// the calling goroutine over a pooled HTTP/1.1 connection, where
// http.Transport hands each request to two goroutines per connection and
// back: on a busy front door the handoffs cost more than the proxying.
// Everything else (bodies, upgrades, non-idempotent methods) goes through
// http.Transport, which handles 100-continue, early answers to uploads and
// the replay rules.
type h1Transport struct {
	dialer            net.Dialer
	maxIdle           int
	idleTimeout       time.Duration
	respHeaderTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*h1Conn // LIFO per host:port
}

type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	reused bool
	idleAt time.Time
}

// fast reports whether h1Transport may carry the request.
func (t *h1Transport) fast(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete:
	default:
		return false
	}
	_, upgrade := req.Header["Upgrade"]
	return !upgrade && req.URL.Scheme == "http"
}

var aLongTimeAgo = time.Unix(1, 0)

// errStale is a pooled connection the server had closed.
var errStale = errors.New("pooled connection closed by the server")

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		pc, err := t.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(pc, req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		// A pooled connection may have been closed by the server while
		// idle: the request (idempotent, without a body) is sent again
		// on a new one.
		if !pc.reused || req.Context().Err() != nil || !errors.Is(err, errStale) {
			return nil, err
		}
	}
}

func (t *h1Transport) exchange(pc *h1Conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(aLongTimeAgo) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		return nil, stale(pc, err)
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, stale(pc, err)
	}
	if t.respHeaderTimeout > 0 {
		pc.c.SetReadDeadline(time.Now().Add(t.respHeaderTimeout))
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, stale(pc, err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx informational answers precede the real one.
		_ = resp.Body.Close()
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		return nil, fmt.Errorf("upstream switched protocols without being asked to")
	}
	if t.respHeaderTimeout > 0 {
		pc.c.SetReadDeadline(time.Time{})
	}
	keep := !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1)
	resp.Body = &h1Body{rc: resp.Body, t: t, pc: pc, stop: stop, keep: keep}
	return resp, nil
}

// stale marks an error on a reused connection before any answer as the
// server having closed it.
func stale(pc *h1Conn, err error) error {
	if pc.reused && pc.br.Buffered() == 0 {
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) && !ne.Timeout() || errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("%w: %w", errStale, err)
		}
	}
	return err
}

// h1Body returns the connection to the pool once the body was read to its
// end, and closes it otherwise.
type h1Body struct {
	rc   io.ReadCloser
	t    *h1Transport
	pc   *h1Conn
	stop func() bool
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(b.rc == http.NoBody)
	}
	return nil
}

func (b *h1Body) finish(complete bool) {
	b.done = true
	_ = b.rc.Close()
	// stop is false when the context's end already poisoned the
	// connection's deadline.
	if b.stop() && complete && b.keep {
		b.t.put(b.pc)
		return
	}
	b.pc.c.Close()
}

func (t *h1Transport) get(ctx context.Context, addr string) (*h1Conn, error) {
	now := time.Now()
	t.mu.Lock()
	for {
		list := t.idle[addr]
		if len(list) == 0 {
			break
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		if now.Sub(pc.idleAt) < t.idleTimeout {
			t.mu.Unlock()
			pc.reused = true
			return pc, nil
		}
		pc.c.Close()
	}
	t.mu.Unlock()
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &h1Conn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10), addr: addr}, nil
}

func (t *h1Transport) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 {
		pc.c.Close() // the server sent more than one answer
		return
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*h1Conn{}
	}
	if len(t.idle[pc.addr]) < t.maxIdle {
		t.idle[pc.addr] = append(t.idle[pc.addr], pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.c.Close()
}

// CloseIdleConnections closes every pooled connection.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.c.Close()
		}
	}
}
