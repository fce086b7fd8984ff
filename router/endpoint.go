package router

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// endpoint is a TCP address whose connections are forwarded to a target
// that changes over time (the writer's primary, the reader's standby).
// New connections go to the current target, waiting up to wait for one
// when there is none; open connections whose target may no longer be used
// are closed, so no client keeps talking to a fenced primary or a standby
// that fell behind.
type endpoint struct {
	wait time.Duration

	mu      sync.Mutex
	target  string
	allowed map[string]bool // targets open connections may keep
	changed chan struct{}   // closed and replaced on every target change
	conns   map[net.Conn]string
}

func newEndpoint(wait time.Duration) *endpoint {
	return &endpoint{wait: wait, changed: make(chan struct{}), conns: map[net.Conn]string{}, allowed: map[string]bool{}}
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
