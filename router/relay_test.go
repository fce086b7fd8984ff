package router_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/http/httpguts"

	"github.com/lifeline-dr/lifeline/router"
)

// rawConn is a client connection that speaks HTTP/1.x by hand, to send
// what net/http's client would not (HTTP/1.0, pipelining, Expect).
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read reads one answer to a request with the given method, body included.
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the front door closed the connection (nothing
// more to read).
func (r *rawConn) closed() bool {
	r.t.Helper()
	b, err := r.br.ReadByte()
	if err == nil {
		r.t.Errorf("unexpected byte %q after the answer", b)
		return false
	}
	return err == io.EOF || strings.Contains(err.Error(), "reset")
}

// echo is an instance that describes the request it got: method, URI,
// header fields (sorted), body size and SHA-256, trailers.
func echo(t testing.TB) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var fields []string
		for k, vv := range r.Header {
			fields = append(fields, k+"="+strings.Join(vv, "|"))
		}
		sort.Strings(fields)
		var trailers []string
		for k, vv := range r.Trailer {
			trailers = append(trailers, k+"="+strings.Join(vv, "|"))
		}
		sort.Strings(trailers)
		fmt.Fprintf(w, "%s %s\nhost=%s\nlength=%d te=%v\n%s\nbody=%d %x\ntrailers=%s\n", r.Method, r.RequestURI, r.Host, r.ContentLength, r.TransferEncoding,
			strings.Join(fields, "\n"), len(body), sha256.Sum256(body), strings.Join(trailers, ","))
	}))
	t.Cleanup(s.Close)
	return s
}

// rawBackend is an instance that answers each request with what answer
// writes on the connection (after the request and its body were read):
// for answers net/http's server would not send.
func rawBackend(t testing.TB, answer func(req *http.Request, c net.Conn, br *bufio.Reader) bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !answer(req, c, br) {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestRegional_HTTP10(t *testing.T) {
	inst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			io.WriteString(w, "part1;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2;")
			return
		}
		fmt.Fprintf(w, "%s %s host=%q", r.Proto, r.URL.Path, r.Host)
	}))
	defer inst.Close()
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(inst))

	t.Run("no keep-alive", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET /a HTTP/1.0\r\n\r\n")
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "HTTP/1.1 /a") {
			t.Errorf("answer %d %q", resp.StatusCode, body)
		}
		if !resp.Close {
			t.Errorf("answer to an HTTP/1.0 request without keep-alive: connection not closing")
		}
		if !c.closed() {
			t.Errorf("connection still open")
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		for i := range 3 {
			c.send(fmt.Sprintf("GET /%d HTTP/1.0\r\nConnection: keep-alive\r\nHost: orders\r\n\r\n", i))
			resp, body := c.read("GET")
			if resp.StatusCode != 200 || body != fmt.Sprintf("HTTP/1.1 /%d host=%q", i, "orders") || resp.Header.Get("Connection") != "keep-alive" {
				t.Errorf("request %d: %d %q, Connection %q", i, resp.StatusCode, body, resp.Header.Get("Connection"))
			}
		}
	})
	t.Run("body of unknown length", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := c.read("GET")
		if body != "part1;part2;" || len(resp.TransferEncoding) > 0 || !resp.Close {
			t.Errorf("answer %q, transfer encoding %v, close %v: want the body ended by the connection's end", body, resp.TransferEncoding, resp.Close)
		}
	})
}

func TestRegional_Pipelining(t *testing.T) {
	e := echo(t)
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(e))
	c := dialRaw(t, r.Addr())
	// Three requests in one write, one with a body, then a HEAD.
	c.send("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /4 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for i, m := range []string{"GET", "POST", "GET", "HEAD", "GET"} {
		resp, body := c.read(m)
		want := fmt.Sprintf("%s /%d\n", m, i+1)
		if m == "HEAD" {
			if resp.StatusCode != 200 || body != "" {
				t.Errorf("HEAD: %d %q", resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(body, want) {
			t.Errorf("answer %d: %d %q, want it to start %q", i+1, resp.StatusCode, body, want)
		}
		if i == 1 && !strings.Contains(body, fmt.Sprintf("body=5 %x", sha256.Sum256([]byte("hello")))) {
			t.Errorf("POST body not relayed: %q", body)
		}
		if i == 4 && !resp.Close {
			t.Errorf("answer to Connection: close does not say it closes")
		}
	}
	if !c.closed() {
		t.Errorf("connection open after Connection: close")
	}
}

func TestRegional_RequestBodies(t *testing.T) {
	e := echo(t)
	r := startRegional(t, router.FrontDoorSettings{RetryBodyLimit: 1 << 10}, hostOf(e))
	sum := func(b []byte) string { return fmt.Sprintf("body=%d %x", len(b), sha256.Sum256(b)) }
	small := []byte("a small body")
	big := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // streamed: above RetryBodyLimit

	for _, tt := range []struct {
		name string
		body []byte
	}{{"buffered", small}, {"streamed", big}} {
		t.Run("content-length "+tt.name, func(t *testing.T) {
			resp, err := http.Post("http://"+r.Addr()+"/up", "application/octet-stream", bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), sum(tt.body)) || !strings.Contains(string(b), "length="+strconv.Itoa(len(tt.body))) {
				t.Errorf("instance saw %q, want %s", b, sum(tt.body))
			}
		})
	}
	t.Run("chunked with trailers", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: abc\r\n\r\n")
		resp, body := c.read("PUT")
		if resp.StatusCode != 200 || !strings.Contains(body, sum([]byte("hello world"))) || !strings.Contains(body, "te=[chunked]") || !strings.Contains(body, "trailers=X-Sum=abc") {
			t.Errorf("instance saw %q", body)
		}
	})
	t.Run("empty POST", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		if resp, body := c.read("POST"); resp.StatusCode != 200 || !strings.Contains(body, "length=0") {
			t.Errorf("instance saw %q", body)
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		for _, n := range []int{len(small), 4 << 10} { // buffered, streamed
			c := dialRaw(t, r.Addr())
			body := bytes.Repeat([]byte("x"), n)
			c.send(fmt.Sprintf("POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", n))
			line, err := c.br.ReadString('\n')
			if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
				t.Fatalf("%d bytes: got %q, %v before the body, want 100 Continue", n, line, err)
			}
			if blank, _ := c.br.ReadString('\n'); blank != "\r\n" {
				t.Fatalf("after 100 Continue: %q", blank)
			}
			c.send(string(body))
			resp, got := c.read("POST")
			if resp.StatusCode != 200 || !strings.Contains(got, sum(body)) || strings.Contains(got, "Expect=") {
				t.Errorf("%d bytes: instance saw %q (want the body, and no Expect)", n, got)
			}
		}
	})
	t.Run("unknown expectation", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("POST /x HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx")
		if resp, _ := c.read("POST"); resp.StatusCode != http.StatusExpectationFailed {
			t.Errorf("status %d, want 417", resp.StatusCode)
		}
	})
	t.Run("unsupported transfer coding", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
		if resp, _ := c.read("POST"); resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("status %d, want 501", resp.StatusCode)
		}
	})
	t.Run("chunked and Content-Length", func(t *testing.T) {
		// RFC 9112 6.3: Transfer-Encoding wins; the length is not passed on.
		c := dialRaw(t, r.Addr())
		c.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
		resp, body := c.read("POST")
		if resp.StatusCode != 200 || !strings.Contains(body, sum([]byte("abc"))) || strings.Contains(body, "Content-Length=") {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
	})
}

// TestRegional_POSTOnClosedPooledConnection: the instance closes idle
// connections quickly; a POST (which the relay may not send twice) must
// not be sent on a pooled connection that was closed meanwhile.
func TestRegional_POSTOnClosedPooledConnection(t *testing.T) {
	e := httptest.NewUnstartedServer(echo(t).Config.Handler)
	e.Config.IdleTimeout = 50 * time.Millisecond
	e.Start()
	defer e.Close()
	r := startRegional(t, router.FrontDoorSettings{FailDuration: time.Nanosecond}, hostOf(e))
	for i := range 4 {
		resp, err := http.Post("http://"+r.Addr()+"/p", "text/plain", strings.NewReader("pay"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("POST %d: status %d", i, resp.StatusCode)
		}
		time.Sleep(150 * time.Millisecond) // the instance closes the pooled connection
	}
}

func TestRegional_HopByHopFields(t *testing.T) {
	var seen atomic.Value
	inst := rawBackend(t, func(req *http.Request, c net.Conn, _ *bufio.Reader) bool {
		seen.Store(req.Header.Clone())
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"+
			"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\nok")
		return true
	})
	r := startRegional(t, router.FrontDoorSettings{}, inst)
	c := dialRaw(t, r.Addr())
	c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\nProxy-Authorization: Basic eA==\r\n" +
		"Proxy-Connection: keep-alive\r\nTe: trailers, deflate\r\nUpgrade: foo\r\nTrailer: X-T\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n" +
		"Forwarded: for=6.6.6.6\r\nX-End-To-End: kept\r\n\r\n")
	resp, body := c.read("GET")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("client got the upstream's hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("end-to-end field lost: %v", resp.Header)
	}
	h := seen.Load().(http.Header)
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade", "Trailer", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v, ok := h[k]; ok {
			t.Errorf("instance got %s: %q", k, v)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("X-End-To-End") != "kept" || h.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("instance got Te %q, X-End-To-End %q, X-Forwarded-For %q", h.Get("Te"), h.Get("X-End-To-End"), h.Get("X-Forwarded-For"))
	}
}

func TestRegional_AnswersFromUpstream(t *testing.T) {
	inst := rawBackend(t, func(req *http.Request, c net.Conn, _ *bufio.Reader) bool {
		switch req.URL.Path {
		case "/trailers":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n4\r\ndata\r\n0\r\nX-Checksum: 42\r\n\r\n")
		case "/http10": // an HTTP/1.0 instance: the body ends with the connection
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nold school")
			return false
		case "/hints":
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmain")
		case "/unasked-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			return false
		case "/garbage":
			io.WriteString(c, "HTTP/1.1 abc\r\n\r\n")
			return false
		case "/short":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
			return false
		case "/304":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nEtag: \"x\"\r\n\r\n")
		}
		return true
	})
	r := startRegional(t, router.FrontDoorSettings{}, inst)
	base := "http://" + r.Addr()

	t.Run("trailers", func(t *testing.T) {
		resp, body := get(t, http.DefaultClient, base+"/trailers")
		if body != "data" || resp.Trailer.Get("X-Checksum") != "42" {
			t.Errorf("body %q trailers %v", body, resp.Trailer)
		}
	})
	t.Run("HTTP/1.0 instance", func(t *testing.T) {
		for range 2 {
			resp, body := get(t, http.DefaultClient, base+"/http10")
			if resp.StatusCode != 200 || body != "old school" {
				t.Errorf("%d %q", resp.StatusCode, body)
			}
		}
	})
	t.Run("early hints", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
		hints, _ := c.read("GET")
		resp, body := c.read("GET")
		if hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") == "" || resp.StatusCode != 200 || body != "main" {
			t.Errorf("got %d %v, then %d %q", hints.StatusCode, hints.Header, resp.StatusCode, body)
		}
	})
	t.Run("304 keeps its fields", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n")
		for range 2 {
			resp, body := c.read("GET")
			if resp.StatusCode != 304 || body != "" || resp.Header.Get("Content-Length") != "1234" || resp.Header.Get("Etag") != `"x"` {
				t.Errorf("%d %q %v", resp.StatusCode, body, resp.Header)
			}
		}
	})
	for _, path := range []string{"/unasked-101", "/garbage"} {
		t.Run(path[1:], func(t *testing.T) {
			if resp, _ := get(t, http.DefaultClient, base+path); resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
		})
	}
	t.Run("body cut short", func(t *testing.T) {
		resp, err := http.Get(base + "/short")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a body cut short upstream reached the client whole")
		}
	})
}

// upgrader is an instance that switches to a protocol that echoes in upper
// case when asked for "echo", and answers 200 otherwise.
func upgrader(t testing.TB, answerProto string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "no upgrade")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + answerProto + "\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(line))
			brw.Flush()
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRegional_Upgrade(t *testing.T) {
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(upgrader(t, "echo")))
	t.Run("relayed", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		// The first line of the new protocol comes with the request.
		c.send("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
			t.Fatalf("answer %v, %v", resp, err)
		}
		for i, want := range []string{"HELLO\n", "AGAIN\n"} {
			got, err := c.br.ReadString('\n')
			if err != nil || got != want {
				t.Fatalf("got %q, %v; want %q", got, err, want)
			}
			if i == 0 {
				c.send("again\n")
			}
		}
		c.c.(*net.TCPConn).CloseWrite()
		if !c.closed() {
			t.Errorf("tunnel open after the client closed")
		}
	})
	t.Run("not switched", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "no upgrade" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("switched to another protocol", func(t *testing.T) {
		r := startRegional(t, router.FrontDoorSettings{}, hostOf(upgrader(t, "other")))
		c := dialRaw(t, r.Addr())
		c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		if resp, _ := c.read("GET"); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", resp.StatusCode)
		}
	})
	t.Run("drain cuts tunnels", func(t *testing.T) {
		r := router.NewRegional("eu-west", router.FrontDoorSettings{Addr: "127.0.0.1:0", DrainTimeout: 5 * time.Second}, quiet)
		r.SetInstances([]string{hostOf(upgrader(t, "echo"))})
		if err := r.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- r.Run(ctx) }()
		c := dialRaw(t, r.Addr())
		c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != 101 {
			t.Fatalf("%v %v", resp, err)
		}
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return with a tunnel open")
		}
		if !c.closed() {
			t.Errorf("tunnel still open after the front door stopped")
		}
	})
}

func TestRegional_Timeouts(t *testing.T) {
	block := make(chan struct{})
	var cancelled atomic.Int64
	inst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	}))
	defer inst.Close()
	defer close(block) // before inst.Close: a handler whose body was not read never sees its context end
	cfg := router.FrontDoorSettings{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, ResponseHeaderTimeout: 300 * time.Millisecond}
	r := startRegional(t, cfg, hostOf(inst))

	t.Run("header too slow", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET / HTTP/1.1\r\nHost: x\r\n") // and never the end
		if !c.closed() {
			t.Errorf("connection open")
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("GET " + router.DefaultHealthPath + " HTTP/1.1\r\nHost: x\r\n\r\n")
		c.read("GET")
		if !c.closed() {
			t.Errorf("idle connection open")
		}
	})
	t.Run("body stalls", func(t *testing.T) {
		c := dialRaw(t, r.Addr())
		c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
		if !c.closed() {
			t.Errorf("connection open")
		}
	})
	t.Run("answer too slow", func(t *testing.T) {
		if resp, _ := get(t, http.DefaultClient, "http://"+r.Addr()+"/"); resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
	})
	t.Run("client hangs up", func(t *testing.T) {
		r := startRegional(t, router.FrontDoorSettings{}, hostOf(inst))
		before := cancelled.Load()
		c := dialRaw(t, r.Addr())
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		c.c.Close()
		deadline := time.Now().Add(10 * time.Second)
		for cancelled.Load() == before {
			if time.Now().After(deadline) {
				t.Fatal("the instance never saw its request cancelled after the client hung up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestRegional_LocalAnswers(t *testing.T) {
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(echo(t)))
	for _, tt := range []struct {
		name, req string
		code      int
	}{
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", http.StatusNotImplemented},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"health HEAD", "HEAD " + router.DefaultHealthPath + " HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"absolute form", "GET http://orders.shop.internal/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", 200},
		{"too many Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, r.Addr())
			c.send(tt.req)
			m, _, _ := strings.Cut(tt.req, " ")
			resp, body := c.read(m)
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, tt.code, body)
			}
			if tt.name == "absolute form" && !strings.HasPrefix(body, "GET /abs?q=1\nhost=orders.shop.internal\n") {
				t.Errorf("instance saw %q", body)
			}
		})
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FuzzFrontDoor sends raw bytes to a regional front door over a real
// connection: whatever comes in, the answer starts with an HTTP/1.1 status
// line (or there is none), nothing panics (the relay recovers and logs an
// error), and the door keeps serving.
func FuzzFrontDoor(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b HTTP/1.0\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, X-A\r\nUpgrade: echo\r\nX-A: 1\r\n\r\nhi\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET http://h/p HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"\x00\x01\x02 nonsense\r\n\r\n",
		"GET " + router.DefaultHealthPath + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	inst := echo(f)
	r := router.NewRegional("eu-west", router.FrontDoorSettings{Addr: "127.0.0.1:0", ReadHeaderTimeout: time.Second}, log)
	r.SetInstances([]string{hostOf(inst)})
	run(f, r.Listen, r.Run)
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c)
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("reading the answers: %v", err)
		}
		if len(out) > 0 && (len(out) < 13 || !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) || !isDigits(out[9:12])) {
			t.Fatalf("answer does not start with a status line: %q", out[:min(len(out), 80)])
		}
		if l := logs.String(); l != "" {
			t.Fatalf("front door logged an error: %s", l)
		}
		resp, err := http.Get("http://" + r.Addr() + router.DefaultHealthPath)
		if err != nil {
			t.Fatalf("front door no longer serving: %v", err)
		}
		resp.Body.Close()
	})
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// BenchmarkRegionalRelay measures the front door's work per request over
// real loopback connections, allocations included, with a minimal client
// and instance in this process: one connection (latency), and 64 in
// parallel, where cpu-µs/op is the whole process's CPU time per request
// (the door's, the client's and the instance's).
func BenchmarkRegionalRelay(b *testing.B) {
	inst := rawBackend(b, func(_ *http.Request, c net.Conn, _ *bufio.Reader) bool {
		_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"ok\":true,\"service\":\"orders\"}")
		return err == nil
	})
	r := startRegional(b, router.FrontDoorSettings{Addr: "127.0.0.1:0"}, inst)
	req := []byte("GET /bench HTTP/1.1\r\nHost: orders.shop.internal\r\nUser-Agent: lifeline-bench\r\n\r\n")
	client := func(b *testing.B, next func() bool) {
		c, err := net.Dial("tcp", r.Addr())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
				b.Error(resp.StatusCode, err)
				return
			}
		}
	}
	b.Run("conns=1", func(b *testing.B) {
		b.ReportAllocs()
		client(b, b.Loop)
	})
	b.Run("conns=64", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32) // 64 clients on two CPUs
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) { client(b, pb.Next) })
		b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	})
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// FuzzPlainAnswer holds the relay's own parsing of plain answers to the
// standard library: whatever it takes as plain, http.ReadResponse reads
// with the same status, length, header size and fields, and with nothing
// that concerns the connection.
func FuzzPlainAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"ok\":true}",
		"HTTP/1.1 404 Not Found\r\ncontent-length:  0 \r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\tb\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
	} {
		f.Add([]byte(seed))
	}
	hop := []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, length, fields, size, ok := router.PlainAnswer(b)
		if !ok {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(b), len(b)+16)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("plain answer %q refused by net/http: %v", b, err)
		}
		if resp.StatusCode != code || resp.ContentLength != length || resp.Close || len(resp.TransferEncoding) > 0 || resp.ProtoMinor != 1 {
			t.Fatalf("%q: plain %d, length %d; net/http %d, length %d, close %v, %v", b, code, length, resp.StatusCode, resp.ContentLength, resp.Close, resp.TransferEncoding)
		}
		if consumed := len(b) - br.Buffered(); consumed != size {
			t.Fatalf("%q: plain header of %d bytes, net/http read %d", b, size, consumed)
		}
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(slices.Clip(fields), "\r\n"...)))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("%q: plain fields %q do not parse: %v", b, fields, err)
		}
		if diff := cmp.Diff(resp.Header, http.Header(h)); diff != "" {
			t.Fatalf("%q: fields differ (-net/http +plain):\n%s", b, diff)
		}
		for _, k := range hop {
			if _, ok := resp.Header[k]; ok {
				t.Fatalf("%q: plain answer with %s", b, k)
			}
		}
	})
}

// FuzzPlainRequest holds the relay's own parsing of plain requests to the
// standard library: whatever it takes as plain, http.ReadRequest reads the
// same way (method, target, path and query, Host, fields, no body, keep-
// alive, header size), and it carries nothing the relay would have to
// remove or answer itself.
func FuzzPlainRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /bench HTTP/1.1\r\nHost: orders.shop.internal\r\nUser-Agent: lifeline-bench\r\n\r\n",
		"HEAD /a?b=c&d HTTP/1.1\r\nhost:  x:8080 \r\nAccept: */*\r\nAccept: text/html\r\n\r\n",
		"GET /%41 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	skip := []string{"Content-Length", "Transfer-Encoding", "Expect", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Pragma"}
	f.Fuzz(func(t *testing.T, b []byte) {
		method, target, host, fields, size, ok := router.PlainRequest(b)
		if !ok {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(b), len(b)+16)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("plain request %q refused by net/http: %v", b, err)
		}
		path, query, _ := strings.Cut(string(target), "?")
		if req.Method != method || req.RequestURI != string(target) || req.URL.Path != path || req.URL.RawQuery != query || req.Host != string(host) ||
			req.ContentLength != 0 || req.Body != http.NoBody || req.Close || req.ProtoMajor != 1 || req.ProtoMinor != 1 || len(req.TransferEncoding) > 0 {
			t.Fatalf("%q: plain %s %q host %q; net/http %s %q (path %q query %q) host %q, length %d, close %v", b, method, target, host,
				req.Method, req.RequestURI, req.URL.Path, req.URL.RawQuery, req.Host, req.ContentLength, req.Close)
		}
		if !httpguts.ValidHostHeader(req.Host) {
			t.Fatalf("%q: plain request with an invalid Host %q", b, req.Host)
		}
		if consumed := len(b) - br.Buffered(); consumed != size {
			t.Fatalf("%q: plain header of %d bytes, net/http read %d", b, size, consumed)
		}
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(slices.Clip(fields), "\r\n"...)))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("%q: plain fields %q do not parse: %v", b, fields, err)
		}
		delete(h, "Host")
		if diff := cmp.Diff(req.Header, http.Header(h), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%q: fields differ (-net/http +plain):\n%s", b, diff)
		}
		for _, k := range skip {
			if _, ok := req.Header[k]; ok {
				t.Fatalf("%q: plain request with %s", b, k)
			}
		}
	})
}
