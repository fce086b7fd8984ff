// Package regionfailover measures the loss of a whole region, per strategy:
// for each example spec, BENCH_RUNS (default 3) runs of "kill every node of
// the active region at once, under a writer inserting every 10 ms through
// the writer endpoint, 20 ms between regions; approve at once (the
// examples with failover: auto need none)". For each run: the RTO (the
// kill → the first acknowledged write through the writer endpoint), the
// phases from the runbook (detected, approved, fenced, promoted, scaled,
// rerouted), the RPO (acknowledged writes lost and the time they span
// before the kill); then the region is brought back and failed back,
// measured too (the write pause, and the bytes the old region's rejoin
// copied against the data directory's size). Each strategy also runs a
// planned switchover to the other region and back (write pause, writes
// lost). The standby region's standing cost is the service instances it
// runs before the disaster.
//
//	go test ./bench/region-failover -run XXX -bench . -benchtime 1x -v -timeout 60m
//
// BENCH_STRATEGIES (default all four, comma separated) and BENCH_RUNS.
package regionfailover

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/status"
)

type runbookView struct {
	ID       string             `json:"id"`
	Kind     string             `json:"kind"`
	State    string             `json:"state"`
	Started  time.Time          `json:"started"`
	Params   map[string]string  `json:"params"`
	Approval *lifeline.Approval `json:"approval"`
	Steps    []stepView         `json:"steps"`
}

type stepView struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

type result struct {
	rto, lostSpan, failbackPause float64
	lost                         int
	phases                       string
	copied, size                 int64
}

func BenchmarkRegionFailover(b *testing.B) {
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	strategies := []string{"active-active", "warm-standby", "pilot-light", "backup-restore"}
	if s := os.Getenv("BENCH_STRATEGIES"); s != "" {
		strategies = strings.Split(s, ",")
	}
	for i := 0; i < b.N; i++ {
		var table []string
		for _, s := range strategies {
			table = append(table, strategy(b, s, runs))
		}
		fmt.Printf("\n== region failover, %d runs each, 20 ms between regions, approval at once\n", runs)
		fmt.Printf("%-15s %-10s %-10s %-10s %-12s %-12s %-14s %s\n", "strategy", "RTO med", "RTO min", "RTO max", "lost (sum)", "lost span", "failback pause", "standby instances")
		for _, line := range table {
			fmt.Println(line)
		}
	}
}

func strategy(b *testing.B, name string, runs int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	specFile := topotest.Example(b, name)
	top, err := spec.Load(specFile)
	if err != nil {
		b.Fatal(err)
	}
	w := &top.Workloads[0]
	standing := 0
	for _, inst := range compute.Plan(top, w, w.Active) {
		if inst.Node.Region != w.Active {
			standing++
		}
	}
	u := topotest.Start(b, specFile, filepath.Join(testenv.Dir(b), "data-"+name))
	defer u.Stop()
	st := u.WaitHealthy(b, 3*time.Minute).Workloads[0]
	writer := u.DSN(st.Writer)
	home := st.Active
	other := ""
	for _, r := range top.RegionNames() {
		if r != home {
			other = r
			break
		}
	}
	fmt.Printf("\n== %s: %s active, %s standby with %d service instances standing\n", name, home, other, standing)

	if w.Strategy.StandbyDatabase() {
		for _, to := range []string{other, home} {
			pause, lost := switchover(b, ctx, u, writer, to)
			fmt.Printf("switchover to %s: writes paused %.3fs, %d acknowledged writes lost\n", to, pause, lost)
		}
	} else {
		waitCopy(b, u, other)
	}

	var rs []result
	for run := 1; run <= runs; run++ {
		r := regionLoss(b, ctx, u, top, writer, home, other)
		fmt.Printf("run %d: RTO %.3fs; %d acknowledged writes lost spanning %.3fs; %s\n", run, r.rto, r.lost, r.lostSpan, r.phases)
		fmt.Printf("run %d: failback: writes paused %.3fs; the rejoin copied %s of %s (%.1f%%)\n", run, r.failbackPause, mib(r.copied), mib(r.size), 100*float64(r.copied)/float64(max(r.size, 1)))
		rs = append(rs, r)
		if !w.Strategy.StandbyDatabase() && run < runs {
			waitCopy(b, u, other)
		}
	}
	rtos := make([]float64, len(rs))
	lost, span, pause := 0, 0.0, 0.0
	for i, r := range rs {
		rtos[i] = r.rto
		lost += r.lost
		span = max(span, r.lostSpan)
		pause = max(pause, r.failbackPause)
	}
	sort.Float64s(rtos)
	return fmt.Sprintf("%-15s %-10s %-10s %-10s %-12d %-12s %-14s %d", name, secs(median(rtos)), secs(rtos[0]), secs(rtos[len(rtos)-1]), lost,
		secs(span), secs(pause), standing)
}

// regionLoss kills every node of region home at once, approves the
// failover, measures, then brings the region back and fails back.
func regionLoss(b *testing.B, ctx context.Context, u *topotest.Up, top *lifeline.Topology, writer, home, other string) result {
	var r result
	before := ids(b, u)
	load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer load.Stop()
	time.Sleep(5*time.Second + time.Duration(rand.IntN(1000))*time.Millisecond)
	killed := killRegion(b, u, top, home)
	// Approve as soon as the runbook waits (auto: the witness quorum does).
	var rb runbookView
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rb = newest(b, u, before)
		if rb.ID != "" && rb.Kind == "region-failover" {
			if s := step(rb, "await-approval"); s.State == "running" {
				if out, err := u.Lifeline("approve", rb.ID, "--reason", "bench"); err != nil && !strings.Contains(out, "approved already") && !strings.Contains(out, "does not wait") {
					b.Fatalf("approve: %v\n%s", err, out)
				}
			}
			if rb.State != "running" || step(rb, "await-approval").State == "succeeded" {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("no region failover to approve: %+v", rb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	err = load.WaitRecovered(wctx, killed, 20)
	wcancel()
	res := load.Stop()
	if err != nil {
		b.Fatalf("writes did not resume: %v", err)
	}
	rto, _ := res.Recovery(killed)
	r.rto = rto.Seconds()
	deadline = time.Now().Add(5 * time.Minute)
	for rb.State == "running" && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		rb = newest(b, u, before)
	}
	if rb.State != "succeeded" {
		b.Fatalf("the region failover did not succeed: %+v", rb)
	}
	phase := func(name string) string {
		s := step(rb, name)
		if s.Finished.IsZero() {
			return "-"
		}
		return fmt.Sprintf("+%.2fs", s.Finished.Sub(killed).Seconds())
	}
	r.phases = fmt.Sprintf("detected +%.2fs, approved %s, fenced %s, promoted %s, scaled %s, rerouted %s, first write +%.2fs",
		rb.Started.Sub(killed).Seconds(), phase("await-approval"), phase("fence-region"), or(phase("promote"), phase("restore")),
		phase("scale"), phase("reroute"), r.rto)
	w := u.Status(b).Workloads[0]
	p := primary(w)
	missing, err := gameday.Missing(ctx, u.NodeDSN(p), res.Acked)
	if err != nil {
		b.Fatal(err)
	}
	r.lost = len(missing)
	if len(missing) > 0 {
		r.lostSpan = killed.Sub(missing[0].At).Seconds()
	}

	// The region returns; fail back under the writer.
	for _, id := range top.Nodes() {
		if id.Region == home {
			if out, err := u.Lifeline("node", "start", id.String()); err != nil {
				b.Fatalf("start %s: %v\n%s", id, err, out)
			}
		}
	}
	load2, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer load2.Stop()
	time.Sleep(2 * time.Second)
	start := time.Now()
	if out, err := u.Lifeline("failback"); err != nil {
		b.Fatalf("failback: %v\n%s", err, out)
	}
	done := time.Now()
	if err := load2.WaitAcksAfter(ctx, done, 20); err != nil {
		b.Fatal(err)
	}
	res2 := load2.Stop()
	r.failbackPause = res2.MaxPause(start, done).Seconds()
	fb := newest(b, u, before)
	r.copied, _ = strconv.ParseInt(fb.Params["rejoin_bytes_copied"], 10, 64)
	r.size, _ = strconv.ParseInt(fb.Params["rejoin_data_bytes"], 10, 64)
	w = u.WaitHealthy(b, 5*time.Minute).Workloads[0]
	if w.Active != home {
		b.Fatalf("after the failback the active region is %s", w.Active)
	}
	p = primary(w)
	if m, err := gameday.Missing(ctx, u.NodeDSN(p), res2.Acked); err != nil || len(m) > 0 {
		b.Fatalf("the failback lost %d acknowledged writes (%v)", len(m), err)
	}
	return r
}

func switchover(b *testing.B, ctx context.Context, u *topotest.Up, writer, to string) (float64, int) {
	load, err := gameday.StartLoad(ctx, writer, 10*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer load.Stop()
	time.Sleep(2 * time.Second)
	start := time.Now()
	if out, err := u.Lifeline("switchover", "--to", to); err != nil {
		b.Fatalf("switchover: %v\n%s", err, out)
	}
	done := time.Now()
	if err := load.WaitAcksAfter(ctx, done, 20); err != nil {
		b.Fatal(err)
	}
	res := load.Stop()
	p := primary(u.WaitHealthy(b, 2*time.Minute).Workloads[0])
	m, err := gameday.Missing(ctx, u.NodeDSN(p), res.Acked)
	if err != nil {
		b.Fatal(err)
	}
	return res.MaxPause(start, done).Seconds(), len(m)
}

// waitCopy waits until region's copy of the repository holds a base
// backup and is in sync (backup-restore can fail over only then).
func waitCopy(b *testing.B, u *topotest.Up, region string) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		for _, c := range u.Status(b).Workloads[0].Backups.Copies {
			if c.Region == region && c.Backup != "" && c.LagSeconds == 0 {
				return
			}
		}
		time.Sleep(time.Second)
	}
	b.Fatalf("no in-sync copy of the backups in %s", region)
}

func killRegion(b *testing.B, u *topotest.Up, top *lifeline.Topology, region string) time.Time {
	var wg sync.WaitGroup
	at := time.Now()
	for _, id := range top.Nodes() {
		if id.Region != region {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := u.Lifeline("node", "kill", id.String()); err != nil {
				b.Errorf("kill %s: %v\n%s", id, err, out)
			}
		}()
	}
	wg.Wait()
	return at
}

func ids(b *testing.B, u *topotest.Up) map[string]bool {
	out := map[string]bool{}
	for _, r := range runbooks(b, u) {
		out[r.ID] = true
	}
	return out
}

func runbooks(b *testing.B, u *topotest.Up) []runbookView {
	out, err := u.Lifeline("runbooks", "--json")
	if err != nil {
		return nil
	}
	var rbs []runbookView
	_ = json.Unmarshal([]byte(out), &rbs)
	return rbs
}

// newest is the newest runbook not in before.
func newest(b *testing.B, u *topotest.Up, before map[string]bool) runbookView {
	var last runbookView
	for _, r := range runbooks(b, u) {
		if !before[r.ID] {
			last = r
		}
	}
	return last
}

func step(rb runbookView, name string) stepView {
	for _, s := range rb.Steps {
		if s.Name == name {
			return s
		}
	}
	return stepView{}
}

func primary(w status.Workload) status.Node {
	for _, n := range w.Nodes {
		if n.Role == "primary" {
			return n
		}
	}
	return status.Node{}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(f float64) string { return fmt.Sprintf("%.2fs", f) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func or(a, b string) string {
	if a == "-" {
		return b
	}
	return a
}
