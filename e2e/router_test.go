package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

// resolve asks the router's DNS server for the workload's hostname.
func resolve(t *testing.T, w status.Workload, host string) []string {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	r, _, err := c.Exchange(m, w.DNS)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func waitAnswer(t *testing.T, w status.Workload, host, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := resolve(t, w, host)
		if len(got) == 1 && got[0] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s resolves to %v after %v, want %s", host, got, timeout, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// router: real DNS answers follow the health of the active region's
// front door as the vantage points see it; HTTP through the global entry
// point keeps succeeding while a service instance dies; a routing change
// that would switch every region off is refused with the rule's name.
func router(t *testing.T, u *topotest.Up) {
	w := u.WaitHealthy(t, time.Minute).Workloads[0]
	const host = "orders.shop.internal"
	west, central := "", ""
	for _, n := range w.Nodes {
		switch {
		case n.Region == "eu-west" && n.Zone == "a":
			west = n.Address
		case n.Region == "eu-central" && n.Zone == "a":
			central = n.Address
		}
	}
	waitAnswer(t, w, host, west, 30*time.Second)

	t.Run("HTTP keeps succeeding while an instance dies", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		ok, failed := 0, []string{}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, "http://"+w.HTTP+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					failed = append(failed, err.Error())
				} else {
					if resp.StatusCode == http.StatusOK {
						ok++
					} else {
						failed = append(failed, resp.Status)
					}
					resp.Body.Close()
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(2 * time.Second)
		lifeline(t, u, "node", "kill", "eu-west/b") // a sync standby and one api instance
		time.Sleep(4 * time.Second)
		cancel()
		wg.Wait()
		if len(failed) > 0 || ok == 0 {
			t.Errorf("%d requests succeeded, %d failed: %v", ok, len(failed), failed)
		}
		lifeline(t, u, "node", "start", "eu-west/b")
	})

	t.Run("a routing change that turns every region off is refused", func(t *testing.T) {
		out, err := u.Lifeline("routing", "set", "eu-west=off")
		if err != nil {
			t.Fatalf("eu-west off: %v\n%s", err, out)
		}
		waitAnswer(t, w, host, central, 15*time.Second)
		out, err = u.Lifeline("routing", "set", "eu-central=off")
		if err == nil || !strings.Contains(out, `rule "at-least-one-region-on"`) {
			t.Errorf("switching the last region off: err=%v\n%s", err, out)
		}
		if out, err := u.Lifeline("routing", "set", "eu-west=on"); err != nil {
			t.Fatalf("eu-west on: %v\n%s", err, out)
		}
		waitAnswer(t, w, host, west, 15*time.Second)
	})

	t.Run("DNS flips when the active region's front door fails its checks, and back", func(t *testing.T) {
		killed := time.Now()
		for _, z := range []string{"a", "b", "c"} {
			lifeline(t, u, "node", "kill", "eu-west/"+z)
		}
		waitAnswer(t, w, host, central, time.Minute)
		t.Logf("DNS answered eu-central %.1fs after eu-west was lost", time.Since(killed).Seconds())
		for _, z := range []string{"a", "b", "c"} {
			lifeline(t, u, "node", "start", "eu-west/"+z)
		}
		waitAnswer(t, w, host, west, 2*time.Minute)
	})

	if u.Netns {
		// Through the user-space links of loopback a cut does not stop the
		// health probes; with namespaces it drops every packet.
		t.Run("DNS follows a cut of the active region, and its heal", func(t *testing.T) {
			dnsFollowsRegionCut(t, u, w, host, "eu-west", west, central)
		})
	}
}

// dnsFollowsRegionCut partitions the active region away from every other
// host: the vantage points outside it can no longer reach its front door,
// so DNS answers the other region; after the heal, the active region again.
func dnsFollowsRegionCut(t *testing.T, u *topotest.Up, w status.Workload, host, region, activeEntry, otherEntry string) {
	cut := time.Now()
	lifeline(t, u, "link", "cut", region)
	waitAnswer(t, w, host, otherEntry, time.Minute)
	t.Logf("DNS answered %s %.1fs after %s was cut off", otherEntry, time.Since(cut).Seconds(), region)
	lifeline(t, u, "link", "heal")
	waitAnswer(t, w, host, activeEntry, 2*time.Minute)
}
