package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// h1Transport keeps the front door's HTTP/1.1 connections to its upstreams
// (service instances, or regions' front doors for the global entry point).
// The relay writes a request and reads the answer on the client
// connection's own goroutine, over a connection it takes from here and
// gives back once the answer was read to its end: http.Transport would
// hand each request to two goroutines per connection and back, which on a
// busy front door costs more than the proxying.
type h1Transport struct {
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*h1Conn // LIFO per host:port
}

// h1Conn is one connection to an upstream.
type h1Conn struct {
	c      net.Conn
	raw    syscall.RawConn // for the liveness check; nil when unsupported
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	reused bool
	idleAt time.Time
	// rdl is the read deadline in force (zero: none). The relay sets a
	// short one lazily (see patience) and remembers it here, so that a
	// busy connection pays for a deadline change about twice a second
	// rather than twice a request.
	rdl time.Time
}

// aLongTimeAgo, as a deadline, makes blocked reads return at once.
var aLongTimeAgo = time.Unix(1, 0)

// errStale is a pooled connection the server had closed.
var errStale = errors.New("pooled connection closed by the server")

// get returns an idle connection to addr, or a new one. Connections idle
// longer than idleTimeout (at now) are closed on the way.
func (t *h1Transport) get(ctx context.Context, addr string, now time.Time) (*h1Conn, error) {
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
	pc := &h1Conn{c: c, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10), addr: addr}
	if sc, ok := c.(syscall.Conn); ok {
		pc.raw, _ = sc.SyscallConn()
	}
	return pc, nil
}

// put makes a connection whose answer was read to its end available again,
// idle since now (the request's start will do: idle timeouts are long).
func (t *h1Transport) put(pc *h1Conn, now time.Time) {
	if pc.br.Buffered() > 0 {
		pc.c.Close() // the server sent more than one answer
		return
	}
	pc.idleAt = now
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

// closeIdle closes the idle connections to addr: after one of them turned
// out closed by the server, the others likely are too (it restarted, or
// its idle timeout caught them all).
func (t *h1Transport) closeIdle(addr string) {
	t.mu.Lock()
	list := t.idle[addr]
	delete(t.idle, addr)
	t.mu.Unlock()
	for _, pc := range list {
		pc.c.Close()
	}
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

// alive reports whether an idle connection is still open: a server that
// closed it while it sat in the pool has left an EOF to read. The relay
// asks before it sends a request that could not be sent again (a POST, a
// streamed body), so that such a request is not lost on a connection that
// was dead before it was written. It costs one non-blocking syscall.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	if pc.raw == nil {
		return true
	}
	var buf [1]byte
	ok := false
	err := pc.raw.Read(func(fd uintptr) bool {
		// EOF (0 bytes), bytes nobody asked for, or an error: not alive.
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR
		return true
	})
	return ok && err == nil
}

// flushAndWait sends what is buffered and waits until there is something
// to read (or the read deadline passes). A read right after sending a
// request finds nothing (the upstream has not answered yet) and costs a
// syscall that returns EAGAIN before the wait: a tenth of the front door's
// CPU per request on some virtual machines. Sending from within
// RawConn.Read, after it has cleared the connection's readiness and
// before it waits, skips that read without missing the answer: an answer
// that arrives during or after the send marks the connection readable
// again. (An upstream sends nothing unasked, so nothing unread can be
// waiting from before; a client can, which is why the client side keeps
// its read.)
func (pc *h1Conn) flushAndWait() error {
	if pc.raw == nil {
		return pc.bw.Flush()
	}
	var werr error
	sent := false
	err := pc.raw.Read(func(uintptr) bool {
		if sent {
			return true
		}
		sent = true
		werr = pc.bw.Flush()
		return werr != nil
	})
	if werr != nil {
		return werr
	}
	if !sent {
		// RawConn.Read failed before calling back (the connection is
		// closed): send the usual way for the error.
		return pc.bw.Flush()
	}
	_ = err // a deadline or a closed connection: the read that follows reports it
	return nil
}

// stale reports whether err, met on a reused connection before any byte
// of an answer, means that the server had closed the connection.
func stale(pc *h1Conn, err error) bool {
	if !pc.reused || pc.br.Buffered() > 0 {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && !ne.Timeout()
}

// upstreamError is a failure of the upstream side of an exchange, with
// whether anything was sent (retryable decides with it).
type upstreamError struct {
	op  string // "dial", "write", "read"
	err error
}

func (e *upstreamError) Error() string { return fmt.Sprintf("upstream %s: %v", e.op, e.err) }
func (e *upstreamError) Unwrap() error { return e.err }
