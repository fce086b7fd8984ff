package router_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/router"
)

// backend is a service instance that says who it is.
func backend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Instance", name)
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		fmt.Fprintf(w, "%s %s %s", name, r.Method, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return s.Listener.Addr().String() }

// startRegional runs a regional front door on a fresh loopback address
// until the test ends.
func startRegional(t testing.TB, cfg router.FrontDoorSettings, instances ...string) *router.Regional {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = testenv.Subnet(t) + ".80:0"
	}
	r := router.NewRegional("eu-west", cfg, quiet)
	r.SetInstances(instances)
	run(t, r.Listen, r.Run)
	return r
}

// run calls listen, then serves with serve until the test ends.
func run(t testing.TB, listen func() error, serve func(context.Context) error) {
	t.Helper()
	if err := listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func get(t testing.TB, c *http.Client, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRegional_RoundRobin(t *testing.T) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(a), hostOf(b), hostOf(c))
	seen := map[string]int{}
	for range 30 {
		resp, _ := get(t, http.DefaultClient, "http://"+r.Addr()+"/")
		seen[resp.Header.Get("X-Instance")]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Errorf("requests per instance %v, want 10 each", seen)
	}
	r.SetInstances([]string{hostOf(c)})
	for range 5 {
		if resp, _ := get(t, http.DefaultClient, "http://"+r.Addr()+"/"); resp.Header.Get("X-Instance") != "c" {
			t.Fatalf("instance %s after SetInstances(c)", resp.Header.Get("X-Instance"))
		}
	}
}

// TestRegional_InstanceKilled keeps GETs going through the front door
// while instances die, one abruptly (its connections cut mid-request), one
// cleanly: not one GET may fail.
func TestRegional_InstanceKilled(t *testing.T) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(a), hostOf(b), hostOf(c))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get("http://" + r.Addr() + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	// Each phase lasts until 50 more GETs got their answer: counts, not
	// durations, so a slow machine takes longer but checks the same.
	more := func(n int64) {
		want := ok.Load() + n
		for deadline := time.Now().Add(time.Minute); ok.Load() < want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				cancel()
				wg.Wait()
				t.Fatalf("GETs stopped getting answers: %d ok, %d failed; first: %v", ok.Load(), failed.Load(), firstErr.Load())
			}
		}
	}
	more(50)
	a.CloseClientConnections() // abrupt: requests in flight are cut
	a.Close()
	more(50)
	b.Close() // clean: requests in flight finish, then the port is closed
	more(50)
	cancel()
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d GETs failed; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if n := r.Healthy(); n != 1 {
		t.Errorf("Healthy() = %d after two instances died, want 1 (the others skipped)", n)
	}
}

func TestRegional_XForwardedFor(t *testing.T) {
	a := backend(t, "a")
	tests := []struct {
		name  string
		trust bool
		sent  string
		want  string
	}{
		{"added", false, "", "127.0.0.1"},
		{"a client's header is replaced", false, "6.6.6.6", "127.0.0.1"},
		{"trusted: appended", true, "10.1.1.1", "10.1.1.1, 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRegional(t, router.FrontDoorSettings{TrustForwarded: tt.trust}, hostOf(a))
			var hdr []string
			if tt.sent != "" {
				hdr = []string{"X-Forwarded-For", tt.sent}
			}
			resp, _ := get(t, http.DefaultClient, "http://"+r.Addr()+"/", hdr...)
			if got := resp.Header.Get("X-Seen-Forwarded-For"); got != tt.want {
				t.Errorf("instance saw X-Forwarded-For %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRegional_HealthEndpoint(t *testing.T) {
	a := backend(t, "a")
	r := startRegional(t, router.FrontDoorSettings{})
	url := "http://" + r.Addr()
	if resp, _ := get(t, http.DefaultClient, url+router.DefaultHealthPath); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health with no instance: %d, want 503", resp.StatusCode)
	}
	if resp, _ := get(t, http.DefaultClient, url+"/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("request with no instance: %d, want 503", resp.StatusCode)
	}
	r.SetInstances([]string{hostOf(a)})
	if resp, _ := get(t, http.DefaultClient, url+router.DefaultHealthPath); resp.StatusCode != http.StatusOK {
		t.Errorf("health with an instance: %d, want 200", resp.StatusCode)
	}
	// What a vantage point runs against the entry point.
	target := router.Target{Name: "x", Kind: router.CheckHTTP, Address: r.Addr(), Path: router.DefaultHealthPath}
	if err := router.Probe(context.Background(), nil, target, time.Second); err != nil {
		t.Errorf("probe: %v", err)
	}
	r.SetInstances(nil)
	if err := router.Probe(context.Background(), nil, target, time.Second); err == nil {
		t.Errorf("probe with no instance: up, want down")
	}
}

// resetter accepts connections, reads a request and closes the connection
// without answering: an instance that dies after the request was sent.
func resetter(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if req, err := http.ReadRequest(br); err == nil {
					io.Copy(io.Discard, req.Body)
					n.Add(1)
				}
			}()
		}
	}()
	return l.Addr().String(), &n
}

func TestRegional_Retries(t *testing.T) {
	good := backend(t, "good")
	broken, brokenSeen := resetter(t)
	dead := closedAddr(t)
	// FailDuration 1ns: a failed instance is not skipped, so that half the
	// requests start on the bad one.
	cfg := router.FrontDoorSettings{FailDuration: time.Nanosecond}
	send := func(r *router.Regional, method, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+r.Addr()+"/", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Run("idempotent with a body: retried after the request was sent", func(t *testing.T) {
		r := startRegional(t, cfg, broken, hostOf(good))
		for i := range 6 {
			body := fmt.Sprintf("put-%d", i)
			if code, got := send(r, http.MethodPut, body); code != 200 || got != "good PUT "+body {
				t.Errorf("PUT %d: %d %q", i, code, got)
			}
		}
		if brokenSeen.Load() == 0 {
			t.Errorf("the broken instance never got a request: the test proves nothing")
		}
	})
	t.Run("not idempotent: not retried after the request was sent", func(t *testing.T) {
		r := startRegional(t, cfg, broken, hostOf(good))
		before := brokenSeen.Load()
		failed := 0
		for range 6 {
			if code, _ := send(r, http.MethodPost, "pay"); code == http.StatusBadGateway {
				failed++
			}
		}
		if sent := int(brokenSeen.Load() - before); failed != sent || failed == 0 {
			t.Errorf("%d POSTs failed, %d reached the broken instance: want equal and > 0 (a POST that was sent is never sent twice)", failed, sent)
		}
	})
	t.Run("any method: retried when the connection could not be opened", func(t *testing.T) {
		r := startRegional(t, cfg, dead, hostOf(good))
		for range 6 {
			if code, got := send(r, http.MethodPost, "pay"); code != 200 || got != "good POST pay" {
				t.Errorf("POST: %d %q", code, got)
			}
		}
	})
	t.Run("every instance dead: 502", func(t *testing.T) {
		r := startRegional(t, cfg, dead, closedAddr(t))
		if code, _ := send(r, http.MethodGet, ""); code != http.StatusBadGateway {
			t.Errorf("status %d, want 502", code)
		}
	})
}

// TestRegional_BadInput sends what a broken or hostile client sends: the
// front door answers with an error and keeps serving.
func TestRegional_BadInput(t *testing.T) {
	a := backend(t, "a")
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(a))
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return "write: " + err.Error()
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	big := strings.Repeat("x", 40<<10)
	tests := []struct {
		name string
		req  string
		want string
	}{
		{"oversized header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: "+strings.Repeat("y", 100)+"\r\n", 400) + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"oversized URL", "GET /" + big + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"garbage", "\x00\x01\x02 nonsense\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"bad version", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version"},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request: missing required Host header"},
		{"bad chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "HTTP/1.1 502 Bad Gateway"},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "HTTP/1.1 400 Bad Request"},
		{"upgrade to a bad protocol", "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: \x7f\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"good", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := raw(tt.req); got != tt.want {
				t.Errorf("status line %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("random bytes", func(t *testing.T) {
		rnd := rand.New(rand.NewPCG(1, 1))
		for range 200 {
			b := make([]byte, rnd.IntN(2000))
			for i := range b {
				b[i] = byte(rnd.IntN(256))
			}
			if rnd.IntN(2) == 0 { // a plausible start, then garbage
				b = append([]byte("GET / HTTP/1.1\r\nHost: x\r\n"), b...)
			}
			c, err := net.Dial("tcp", r.Addr())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(100 * time.Millisecond))
			c.Write(b)
			io.Copy(io.Discard, c)
			c.Close()
		}
		if got := raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); got != "HTTP/1.1 200 OK" {
			t.Errorf("after random bytes: %q", got)
		}
	})
}

// TestRegional_Drain shuts down with a request in flight: it completes,
// and new connections are refused.
func TestRegional_Drain(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
		io.WriteString(w, "done")
	}))
	defer slow.Close()
	r := router.NewRegional("eu-west", router.FrontDoorSettings{Addr: testenv.Subnet(t) + ".80:0", DrainTimeout: 5 * time.Second}, quiet)
	r.SetInstances([]string{hostOf(slow)})
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + r.Addr() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), err}
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	res := <-got
	if res.err != nil || res.body != "done" {
		t.Errorf("request in flight during shutdown: %q, %v", res.body, res.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if c, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting connections after shutdown")
	}
}

func TestRegional_DrainDeadline(t *testing.T) {
	block := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(block)
	r := router.NewRegional("eu-west", router.FrontDoorSettings{Addr: testenv.Subnet(t) + ".80:0", DrainTimeout: 200 * time.Millisecond}, quiet)
	r.SetInstances([]string{hostOf(stuck)})
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	go http.Get("http://" + r.Addr() + "/")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-stopped:
		if err == nil {
			t.Errorf("Run returned nil, want the drain deadline's error")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("shutdown took %s with a 200ms drain deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain deadline")
	}
}

// twoRegions runs a front door per region, each over one instance, and a
// global entry point over them.
func twoRegions(t *testing.T) (*router.RouteTable, *router.Global, router.Route) {
	t.Helper()
	west := startRegional(t, router.FrontDoorSettings{TrustForwarded: true}, hostOf(backend(t, "west")))
	central := startRegional(t, router.FrontDoorSettings{TrustForwarded: true}, hostOf(backend(t, "central")))
	route := router.Route{
		Workload: "orders", Hostname: "orders.shop.internal", TTL: 5 * time.Second,
		Policy: router.Policy{Kind: router.PolicyFailover}, Active: "eu-west",
		Regions: []router.RegionState{
			{Name: "eu-west", Entry: west.Addr(), Healthy: true, On: true},
			{Name: "eu-central", Entry: central.Addr(), Healthy: true, On: true},
		},
	}
	table := router.NewRouteTable()
	table.Update([]router.Route{route})
	g := router.NewGlobal(table, router.FrontDoorSettings{Addr: testenv.Subnet(t) + ".81:0"}, quiet)
	run(t, g.Listen, g.Run)
	return table, g, route
}

func globalGet(t *testing.T, g *router.Global, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.Addr()+"/", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.Fields(string(b) + " -")[0]
}

func TestGlobal_FollowsPolicy(t *testing.T) {
	table, g, route := twoRegions(t)
	if code, who := globalGet(t, g, "orders.shop.internal"); code != 200 || who != "west" {
		t.Fatalf("healthy: %d from %s, want west", code, who)
	}
	if code, who := globalGet(t, g, "ORDERS.shop.internal:8080"); code != 200 || who != "west" {
		t.Errorf("host with case and port: %d from %s, want west", code, who)
	}
	route.Regions[0].Healthy = false
	table.Update([]router.Route{route})
	if code, who := globalGet(t, g, "orders.shop.internal"); code != 200 || who != "central" {
		t.Errorf("west unhealthy: %d from %s, want central", code, who)
	}
	route.Regions[0].Healthy = true
	route.Regions[1].On = true
	route.Regions[0].On = false
	table.Update([]router.Route{route})
	if code, who := globalGet(t, g, "orders.shop.internal"); code != 200 || who != "central" {
		t.Errorf("west switched off: %d from %s, want central", code, who)
	}
	if code, _ := globalGet(t, g, "payments.shop.internal"); code != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", code)
	}
}

// TestGlobal_RegionUnreachable: the route still says west is healthy (the
// health checks have not noticed yet) but its front door is gone: requests
// go to central without failing.
func TestGlobal_RegionUnreachable(t *testing.T) {
	table, g, route := twoRegions(t)
	route.Regions[0].Entry = closedAddr(t)
	table.Update([]router.Route{route})
	for range 5 {
		if code, who := globalGet(t, g, "orders.shop.internal"); code != 200 || who != "central" {
			t.Errorf("west unreachable: %d from %s, want central", code, who)
		}
	}
}

func TestGlobal_ClientAddressPolicy(t *testing.T) {
	table, g, route := twoRegions(t)
	route.Policy = router.Policy{Kind: router.PolicyGeolocation, Geo: []router.GeoRule{{Subnet: netip.MustParsePrefix("127.0.0.0/8"), Region: "eu-central"}}}
	table.Update([]router.Route{route})
	if code, who := globalGet(t, g, "orders.shop.internal"); code != 200 || who != "central" {
		t.Errorf("127/8 assigned to central: %d from %s", code, who)
	}
}

// TestRegional_UpstreamAnswers sends the answers an instance may give
// through the front door, several times each so that pooled connections
// are reused after each kind.
func TestRegional_UpstreamAnswers(t *testing.T) {
	big := strings.Repeat("0123456789", 100_000)
	inst := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "after hints")
		case "/slow":
			io.WriteString(w, "first;")
			w.(http.Flusher).Flush()
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		default:
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
		}
	}))
	inst.Config.IdleTimeout = 100 * time.Millisecond // closes pooled connections behind the door's back
	inst.Start()
	defer inst.Close()
	r := startRegional(t, router.FrontDoorSettings{}, hostOf(inst))
	base := "http://" + r.Addr()
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/a?b=c&d", 200, "GET /a?b=c&d"},
		{"DELETE", "/x", 200, "DELETE /x"},
		{"OPTIONS", "/x", 200, "OPTIONS /x"},
		{"GET", "/chunked", 200, "part0;part1;part2;"},
		{"GET", "/204", 204, ""},
		{"GET", "/304", 304, ""},
		{"GET", "/close", 200, "bye"},
		{"GET", "/big", 200, big},
		{"HEAD", "/big", 200, ""},
		{"GET", "/hints", 200, "after hints"},
	}
	for round := range 3 {
		for _, tt := range tests {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("round %d %s %s: %v", round, tt.method, tt.path, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tt.code || string(b) != tt.body {
				t.Errorf("round %d %s %s: %d, %d bytes, %v; want %d, %d bytes", round, tt.method, tt.path, resp.StatusCode, len(b), err, tt.code, len(tt.body))
			}
			if tt.method == "HEAD" && resp.ContentLength != int64(len(big)) {
				t.Errorf("HEAD: Content-Length %d, want %d", resp.ContentLength, len(big))
			}
		}
		time.Sleep(150 * time.Millisecond) // the instance closes the idle connections
	}
	t.Run("client goes away mid-body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/slow", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		io.ReadFull(resp.Body, buf)
		cancel()
		resp.Body.Close()
		for range 5 {
			if resp, body := get(t, http.DefaultClient, base+"/after"); resp.StatusCode != 200 || body != "GET /after" {
				t.Errorf("after a cancelled request: %d %q", resp.StatusCode, body)
			}
		}
	})
}
