package router_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/store"
)

func report(vantage string, up bool, streak int) router.HealthReport {
	return router.HealthReport{Target: "t", Vantage: vantage, Up: up, Streak: streak}
}

func TestJudge(t *testing.T) {
	s := router.HealthSettings{Fails: 3, Passes: 2, Quorum: 2}
	tests := []struct {
		name    string
		wasUp   bool
		reports []router.HealthReport
		want    router.Verdict
	}{
		{"all up", true, []router.HealthReport{report("a", true, 3), report("b", true, 3), report("c", true, 1)},
			router.Verdict{Target: "t", Up: true, Live: 3, UpVotes: 2}},
		{"one of three sees it down: stays up", true, []router.HealthReport{report("a", false, 3), report("b", true, 3), report("c", true, 3)},
			router.Verdict{Target: "t", Up: true, Live: 3, DownVotes: 1, UpVotes: 2}},
		{"two of three down, not yet for Fails checks: stays up", true, []router.HealthReport{report("a", false, 3), report("b", false, 2), report("c", true, 3)},
			router.Verdict{Target: "t", Up: true, Live: 3, DownVotes: 1, UpVotes: 1}},
		{"two of three down for Fails checks: down", true, []router.HealthReport{report("a", false, 3), report("b", false, 3), report("c", true, 3)},
			router.Verdict{Target: "t", Up: false, Live: 3, DownVotes: 2, UpVotes: 1}},
		{"the only live vantage point: cannot take it out (quorum 2)", true, []router.HealthReport{report("a", false, 3)},
			router.Verdict{Target: "t", Up: true, Live: 1, DownVotes: 1}},
		{"two live, both down: down", true, []router.HealthReport{report("a", false, 3), report("b", false, 3)},
			router.Verdict{Target: "t", Up: false, Live: 2, DownVotes: 2}},
		{"two live, split: keeps its state (up)", true, []router.HealthReport{report("a", false, 3), report("b", true, 3)},
			router.Verdict{Target: "t", Up: true, Live: 2, DownVotes: 1, UpVotes: 1}},
		{"two live, split: keeps its state (down)", false, []router.HealthReport{report("a", false, 3), report("b", true, 3)},
			router.Verdict{Target: "t", Up: false, Live: 2, DownVotes: 1, UpVotes: 1}},
		{"five live, two down: up", true, []router.HealthReport{report("a", false, 9), report("b", false, 9), report("c", true, 1), report("d", true, 1), report("e", true, 1)},
			router.Verdict{Target: "t", Up: true, Live: 5, DownVotes: 2}},
		{"five live, three down: down", true, []router.HealthReport{report("a", false, 9), report("b", false, 9), report("c", false, 3), report("d", true, 1), report("e", true, 1)},
			router.Verdict{Target: "t", Up: false, Live: 5, DownVotes: 3}},
		{"down, majority up for Passes checks: up", false, []router.HealthReport{report("a", true, 2), report("b", true, 2), report("c", false, 3)},
			router.Verdict{Target: "t", Up: true, Live: 3, DownVotes: 1, UpVotes: 2}},
		{"down, majority up but too recently: stays down", false, []router.HealthReport{report("a", true, 2), report("b", true, 1), report("c", false, 3)},
			router.Verdict{Target: "t", Up: false, Live: 3, DownVotes: 1, UpVotes: 1}},
		{"down, one vantage point alone sees it up: stays down", false, []router.HealthReport{report("a", true, 5)},
			router.Verdict{Target: "t", Up: false, Live: 1, UpVotes: 1}},
		{"no reports: keeps its state", false, nil, router.Verdict{Up: false}},
		{"a vantage point counts once", true, []router.HealthReport{report("a", false, 3), report("a", false, 3), report("b", true, 3)},
			router.Verdict{Target: "t", Up: true, Live: 2, DownVotes: 1, UpVotes: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := router.Judge(tt.wasUp, tt.reports, s)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Judge (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("quorum 1 for a single vantage point", func(t *testing.T) {
		got := router.Judge(true, []router.HealthReport{report("a", false, 3)}, router.HealthSettings{Fails: 3, Quorum: 1})
		if got.Up {
			t.Errorf("got %+v, want down", got)
		}
	})
}

func TestJudgeAll(t *testing.T) {
	s := router.HealthSettings{Fails: 2, Passes: 2, Quorum: 2}
	reports := []router.HealthReport{
		{Target: "x", Vantage: "a", Up: false, Streak: 2}, {Target: "x", Vantage: "b", Up: false, Streak: 2},
		{Target: "y", Vantage: "a", Up: true, Streak: 1},
	}
	got := router.JudgeAll(map[string]bool{"x": true, "gone": false}, reports, s)
	want := map[string]router.Verdict{
		"x":    {Target: "x", Up: false, Live: 2, DownVotes: 2},
		"y":    {Target: "y", Up: true, Live: 1},
		"gone": {Target: "gone", Up: false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JudgeAll (-want +got):\n%s", diff)
	}
}

func TestHealthSettings_WithDefaults(t *testing.T) {
	got := router.HealthSettings{}.WithDefaults()
	want := router.HealthSettings{Interval: 2 * time.Second, Timeout: time.Second, Fails: 3, Passes: 2, Quorum: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer ok.Close()
	closed := closedAddr(t)
	host := ok.Listener.Addr().String()
	tests := []struct {
		name   string
		target router.Target
		up     bool
	}{
		{"http 200", router.Target{Kind: router.CheckHTTP, Address: host, Path: "/healthz"}, true},
		{"http 302 counts as up", router.Target{Kind: router.CheckHTTP, Address: host, Path: "moved"}, true},
		{"http 503", router.Target{Kind: router.CheckHTTP, Address: host, Path: "/broken"}, false},
		{"http timeout", router.Target{Kind: router.CheckHTTP, Address: host, Path: "/slow"}, false},
		{"http refused", router.Target{Kind: router.CheckHTTP, Address: closed, Path: "/"}, false},
		{"tcp open", router.Target{Kind: router.CheckTCP, Address: host}, true},
		{"tcp refused", router.Target{Kind: router.CheckTCP, Address: closed}, false},
		{"unknown kind", router.Target{Kind: "icmp", Address: host}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := router.Probe(context.Background(), nil, tt.target, 100*time.Millisecond)
			if (err == nil) != tt.up {
				t.Errorf("Probe = %v, want up=%v", err, tt.up)
			}
		})
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// connect opens a store on a fresh embedded etcd with a cluster of its own.
func connect(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Connect(testenv.Etcd(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealth_VantagePoints runs three real checkers against a real HTTP
// target through etcd: one vantage point that sees the target down (its
// path to it is cut) does not take it out; a second one does; the target
// comes back when they see it again; a stopped checker's results vanish.
func TestHealth_VantagePoints(t *testing.T) {
	t.Parallel()
	s := connect(t)
	settings := router.HealthSettings{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Fails: 2, Passes: 2}
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	live := router.Target{Name: "orders/eu-west/entry", Kind: router.CheckHTTP, Address: target.Listener.Addr().String(), Path: "/healthz"}
	cut := live
	cut.Address = closedAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	checkers := map[string]*router.Checker{}
	stops := map[string]func(){}
	for _, v := range []string{"eu-west", "eu-central", "witness"} {
		c := router.NewChecker(s, v, settings, quiet)
		c.SetTargets([]router.Target{live})
		cctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.Run(cctx) }()
		checkers[v] = c
		stops[v] = func() { stop(); <-done }
		t.Cleanup(stops[v])
	}
	mon := router.NewMonitor(s, settings, quiet)
	go mon.Run(ctx)
	verdict := func() router.Verdict { return mon.Verdicts()[live.Name] }
	waitFor(t, "three vantage points see the target up", 10*time.Second, func() bool {
		v := verdict()
		return v.Up && v.UpVotes == 3
	})

	// A report that cannot be decoded is shown and its vantage point
	// counts as silent until a good report replaces it.
	garbage := s.Keys().Health(live.Name, "elsewhere")
	if _, err := s.Client().Put(ctx, garbage, "{"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the undecodable report shown", 10*time.Second, func() bool { return mon.Undecodable()[garbage] != "" })
	if v := verdict(); !v.Up || v.UpVotes != 3 {
		t.Errorf("an undecodable report changed the verdict: %+v", v)
	}
	if _, err := s.Client().Delete(ctx, garbage); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted report's error gone", 10*time.Second, func() bool { return len(mon.Undecodable()) == 0 })

	checkers["eu-central"].SetTargets([]router.Target{cut})
	waitFor(t, "eu-central to report the target down", 10*time.Second, func() bool { return verdict().DownVotes == 1 })
	time.Sleep(10 * settings.Interval)
	if v := verdict(); !v.Up {
		t.Fatalf("one vantage point took the target out: %+v", v)
	}

	checkers["witness"].SetTargets([]router.Target{cut})
	waitFor(t, "a majority to take the target out", 10*time.Second, func() bool { return !mon.Up(live.Name) })

	checkers["witness"].SetTargets([]router.Target{live})
	waitFor(t, "the target to come back", 10*time.Second, func() bool { return mon.Up(live.Name) })

	key := s.Keys().Health(live.Name, "eu-west")
	stops["eu-west"]()
	waitFor(t, "the stopped checker's result to vanish", 10*time.Second, func() bool {
		resp, err := s.Client().Get(context.Background(), key)
		return err == nil && len(resp.Kvs) == 0
	})
	if v := verdict(); v.Live != 2 {
		t.Errorf("live vantage points %d, want 2", v.Live)
	}
	checkers["witness"].SetTargets(nil)
	waitFor(t, "a removed target's result to vanish", 10*time.Second, func() bool { return verdict().Live == 1 })
	// With one vantage point left, even a down report cannot take it out.
	checkers["eu-central"].SetTargets([]router.Target{cut})
	time.Sleep(10 * settings.Interval)
	if !mon.Up(live.Name) {
		t.Errorf("the last vantage point alone took the target out")
	}
}
