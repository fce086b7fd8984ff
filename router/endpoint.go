package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// HoldNew is how long a new connection to an endpoint waits for a target
// when there is none (a failover under way) before it is refused with an
// error that says why. Long enough to ride out a zone failover (about 4 s)
// without an error; short enough that a client waiting on a region
// failover's approval hears why within seconds instead of hanging.
const HoldNew = 6 * time.Second

// endpoint is a TCP address whose connections are forwarded to a target
// that changes over time (the writer's primary, the reader's standby).
// New connections go to the current target, waiting up to wait for one
// when there is none, then get a PostgreSQL error that says why; open
// connections whose target may no longer be used are closed, so no client
// keeps talking to a fenced primary or a standby that fell behind.
type endpoint struct {
	wait     time.Duration
	workload string

	mu      sync.Mutex
	why     string // why there is no target, for the refusal
	target  string
	allowed map[string]bool // targets open connections may keep
	changed chan struct{}   // closed and replaced on every target change
	conns   map[net.Conn]string
}

func newEndpoint(wait time.Duration, workload string) *endpoint {
	return &endpoint{wait: wait, workload: workload, changed: make(chan struct{}), conns: map[net.Conn]string{}, allowed: map[string]bool{}}
}

// explain sets what a refused client is told while there is no target.
func (e *endpoint) explain(why string) {
	e.mu.Lock()
	e.why = why
	e.mu.Unlock()
}

// set makes target where new connections go and closes the open ones
// whose target is neither it nor one of keep. It reports whether the
// target changed.
func (e *endpoint) set(target string, keep ...string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.allowed = map[string]bool{}
	if target != "" {
		e.allowed[target] = true
	}
	for _, k := range keep {
		e.allowed[k] = true
	}
	for c, to := range e.conns {
		if !e.allowed[to] {
			c.Close()
		}
	}
	if target == e.target {
		return false
	}
	e.target = target
	close(e.changed)
	e.changed = make(chan struct{})
	return true
}

// Target is where new connections go now ("" when nowhere).
func (e *endpoint) Target() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.target
}

// current returns the target, waiting up to e.wait for one to appear.
func (e *endpoint) current(ctx context.Context) string {
	deadline := time.NewTimer(e.wait)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		target, changed := e.target, e.changed
		e.mu.Unlock()
		if target != "" {
			return target
		}
		select {
		case <-changed:
		case <-deadline.C:
			return ""
		case <-ctx.Done():
			return ""
		}
	}
}

// serve accepts connections until l is closed, then closes every one.
func (e *endpoint) serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				e.closeAll()
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.forward(ctx, c)
		}()
	}
}

func (e *endpoint) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		c.Close()
	}
}

func (e *endpoint) forward(ctx context.Context, client net.Conn) {
	defer client.Close()
	target := e.current(ctx)
	if target == "" {
		e.mu.Lock()
		why := e.why
		e.mu.Unlock()
		if why == "" {
			why = "no database to connect to"
		}
		refuse(client, fmt.Sprintf("lifeline: %s: %s (waited %s)", e.workload, why, e.wait))
		return
	}
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	e.mu.Lock()
	if !e.allowed[target] {
		e.mu.Unlock()
		return // the target changed while we dialed
	}
	e.conns[client] = target
	e.conns[server] = target
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.conns, client)
		delete(e.conns, server)
		e.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// refuse answers a PostgreSQL client with an error instead of a server:
// it reads the startup packet (declining TLS or GSS encryption first) and
// sends a FATAL ErrorResponse, SQLSTATE 57P03 (cannot_connect_now), so
// that psql and drivers show msg rather than a bare closed connection.
func refuse(c net.Conn, msg string) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	for range 3 {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n, code := binary.BigEndian.Uint32(hdr[:4]), binary.BigEndian.Uint32(hdr[4:])
		if n < 8 || n > 10000 {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(n-8)); err != nil {
			return
		}
		if code == 80877103 || code == 80877104 { // SSLRequest, GSSENCRequest
			if _, err := c.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		break
	}
	var body []byte
	for _, f := range [][2]string{{"S", "FATAL"}, {"V", "FATAL"}, {"C", "57P03"}, {"M", msg}} {
		body = append(body, f[0][0])
		body = append(body, f[1]...)
		body = append(body, 0)
	}
	body = append(body, 0)
	out := append([]byte{'E', 0, 0, 0, 0}, body...)
	binary.BigEndian.PutUint32(out[1:5], uint32(4+len(body)))
	_, _ = c.Write(out)
}
