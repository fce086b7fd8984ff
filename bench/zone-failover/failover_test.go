// Package zonefailover measures zone failover: five runs of "kill the
// primary's zone under a steady writer" on the warm-standby example with
// default settings. For each run: RTO (from the SIGKILL of the primary's
// node — agent, etcd member and PostgreSQL at once — to the first
// acknowledged write through the writer endpoint after the outage began)
// and acknowledged writes lost. The writer inserts one row every 10 ms.
//
// The peer is Patroni with its default settings (ttl 30, loop_wait 10,
// retry_timeout 10, synchronous_mode on), three nodes on etcd, measured by
// ../shared/peers/bench_patroni_failover.sh in the same run.
//
//	go test ./bench/zone-failover -run XXX -bench . -benchtime 1x -v -timeout 30m
//
// BENCH_RUNS (default 5) sets the runs; BENCH_PEERS=0 skips Patroni.
//
// BenchmarkZoneFailoverCut is the cut variant: the primary's zone is
// partitioned away (`link cut NODE` on the namespace topology, where every
// packet between it and the other hosts is dropped), not killed, under the
// same writer through the writer endpoint; three runs (BENCH_RUNS), each
// ending with the heal and the old primary back as a synchronous standby.
// RTO counts from the cut. It needs root (network namespaces).
//
//	go test ./bench/zone-failover -run XXX -bench Cut -benchtime 1x -v -timeout 30m
package zonefailover

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/bench"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

func BenchmarkZoneFailover(b *testing.B) {
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	for i := 0; i < b.N; i++ {
		u := topotest.Start(b, topotest.Example(b, "warm-standby"), filepath.Join(testenv.Dir(b), "data"))
		rtos, lost := lifeline(b, u, runs, kill)
		sort.Float64s(rtos)
		fmt.Printf("\n== Lifeline zone failover, warm-standby example, default settings (lease-ttl 3s, check-interval 500ms), %d runs\n", runs)
		fmt.Printf("RTO (s)            min %7.3f  median %7.3f  max %7.3f   raw=%v\n", rtos[0], median(rtos), rtos[len(rtos)-1], rtos)
		fmt.Printf("acked writes lost  total %d   raw=%v\n", sum(lost), lost)
		b.ReportMetric(median(rtos), "rto-median-s")
		if os.Getenv("BENCH_PEERS") != "0" {
			patroni(b, runs, median(rtos))
		}
	}
}

func BenchmarkZoneFailoverCut(b *testing.B) {
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	for i := 0; i < b.N; i++ {
		u := topotest.StartNetns(b, topotest.Example(b, "warm-standby"), filepath.Join(testenv.Dir(b), "data"))
		rtos, lost := lifeline(b, u, runs, cut)
		sort.Float64s(rtos)
		fmt.Printf("\n== Lifeline zone failover, the primary's zone cut off (network namespaces, packets dropped), warm-standby example, default settings, %d runs\n", runs)
		fmt.Printf("RTO (s)            min %7.3f  median %7.3f  max %7.3f   raw=%v\n", rtos[0], median(rtos), rtos[len(rtos)-1], rtos)
		fmt.Printf("acked writes lost  total %d   raw=%v\n", sum(lost), lost)
		b.ReportMetric(median(rtos), "rto-median-s")
		b.ReportMetric(rtos[len(rtos)-1], "rto-max-s")
	}
}

// A fault takes a node away; its undo brings it back.
type fault struct {
	name     string
	do, undo []string // lifeline arguments; the node is appended
}

var (
	kill = fault{name: "killed", do: []string{"node", "kill"}, undo: []string{"node", "start"}}
	cut  = fault{name: "cut off", do: []string{"link", "cut"}, undo: []string{"link", "heal"}}
)

func lifeline(b *testing.B, u *topotest.Up, runs int, f fault) ([]float64, []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var rtos []float64
	var lost []int
	for run := 1; run <= runs; run++ {
		w := u.WaitHealthy(b, 2*time.Minute).Workloads[0]
		old := primary(w)
		load, err := gameday.StartLoad(ctx, u.DSN(w.Writer), 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(5*time.Second + time.Duration(rand.IntN(1000))*time.Millisecond)
		killed := time.Now()
		if out, err := u.Lifeline(append(f.do, name(old))...); err != nil {
			b.Fatalf("%s: %v\n%s", f.name, err, out)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		err = load.WaitRecovered(wctx, killed, 30)
		wcancel()
		res := load.Stop()
		if err != nil {
			b.Fatalf("run %d: %v", run, err)
		}
		rto, ok := res.Recovery(killed)
		if !ok {
			b.Fatalf("run %d: no outage seen by the writer", run)
		}
		np := waitNewPrimary(b, u, name(old))
		missing, err := gameday.Missing(ctx, u.NodeDSN(np), res.Acked)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("run %d: %s %s; %s took over; RTO %.3fs; %d acknowledged, %d lost; %s\n", run, f.name, name(old), name(np), rto.Seconds(), len(res.Acked), len(missing), breakdown(b, u, killed))
		rtos = append(rtos, rto.Seconds())
		lost = append(lost, len(missing))
		if out, err := u.Lifeline(append(f.undo, name(old))...); err != nil {
			b.Fatalf("undo: %v\n%s", err, out)
		}
	}
	return rtos, lost
}

// breakdown splits a failover's time from the last runbook: until the
// controller saw the lease gone, then each step.
func breakdown(b *testing.B, u *topotest.Up, killed time.Time) string {
	out, err := u.Lifeline("runbooks", "--json")
	if err != nil {
		return ""
	}
	var rbs []struct {
		Started time.Time         `json:"started"`
		Params  map[string]string `json:"params"`
		Steps   []struct {
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		} `json:"steps"`
	}
	if json.Unmarshal([]byte(out), &rbs) != nil || len(rbs) == 0 {
		return ""
	}
	rb := rbs[len(rbs)-1]
	lost, _ := time.Parse(time.RFC3339Nano, rb.Params["lost_at"])
	parts := []string{fmt.Sprintf("lease gone +%.2fs, runbook +%.2fs", lost.Sub(killed).Seconds(), rb.Started.Sub(killed).Seconds())}
	for _, st := range rb.Steps {
		parts = append(parts, fmt.Sprintf("%s %.2fs", st.Name, st.Seconds))
	}
	return strings.Join(parts, ", ")
}

func waitNewPrimary(b *testing.B, u *topotest.Up, old string) status.Node {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		w := u.Status(b).Workloads[0]
		if p := primary(w); p.Healthy && name(p) != old {
			return p
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatal("no new primary")
	return status.Node{}
}

var summaryRe = regexp.MustCompile(`(?m)^(rto_s|lost_acked)\s+min\s+([0-9.]+)\s+median\s+([0-9.]+)\s+max\s+([0-9.]+)`)

func patroni(b *testing.B, runs int, ours float64) {
	script := bench.PeerScript("bench_patroni_failover.sh")
	if script == "" {
		fmt.Println("peer: ../shared/peers/bench_patroni_failover.sh not found; skipped")
		return
	}
	fmt.Println("\n== peer: Patroni, default settings, synchronous_mode on (bench_patroni_failover.sh default sync)")
	out, err := bench.RunPeer(context.Background(), script, testenv.Dir(b), 20*time.Minute, nil, "default", "sync", strconv.Itoa(runs))
	if err != nil {
		fmt.Printf("peer failed: %v (install: apt-get install patroni etcd-server python3-psycopg2)\n%s\n", err, tail(string(out), 15))
		return
	}
	m := summaryRe.FindAllStringSubmatch(string(out), -1)
	for _, g := range m {
		fmt.Printf("%-18s min %s  median %s  max %s\n", g[1], g[2], g[3], g[4])
	}
	for _, g := range m {
		if g[1] == "rto_s" {
			p, _ := strconv.ParseFloat(g[3], 64)
			fmt.Printf("\nmedian RTO: Lifeline %.3fs, Patroni %.3fs: Lifeline recovers %.1fx faster\n", ours, p, p/ours)
		}
	}
	if len(m) == 0 {
		fmt.Println(tail(string(out), 20))
	}
}

func primary(w status.Workload) status.Node {
	for _, n := range w.Nodes {
		if n.Role == "primary" {
			return n
		}
	}
	return status.Node{}
}

func name(n status.Node) string { return n.Region + "/" + n.Zone }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sum(v []int) int {
	t := 0
	for _, x := range v {
		t += x
	}
	return t
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
