// Package replicationlag measures replication lag on a local topology under
// load: pgbench on the primary with 20 ms emulated cross-region latency
// (each way); median and p99 lag, in bytes and ms, of the in-region
// synchronous standby and of the cross-region standby; and pgbench's TPS
// with and without waiting for the synchronous standby. All of it twice in
// the same run: with mutual TLS on every connection (the default: pgbench's
// own, replication) and on a topology made with --insecure, to give TLS's
// cost in TPS. The peer figure is
// ../shared/peers/bench_repl_lag.sh (plain streaming replication, primary
// and async standby on one loopback address, same pgbench settings).
//
//	go test ./bench/replication-lag -run XXX -bench . -benchtime 1x -v
//
// BENCH_DURATION (default 30s) sets each pgbench run; BENCH_PEERS=0 skips the peer.
package replicationlag

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/bench"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/postgres"
)

const spec = `name: lagbench
regions:
  - {name: eu-west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: eu-central, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
links: {cross-region: {latency: 20ms}}
workloads:
  - name: bench
    strategy: pilot-light
    objectives: {rpo: 1s, rto: 1m}
    active: eu-west
    database: {sync: "ANY 1", parameters: {shared_buffers: 256MB, max_wal_size: 2GB}}
`

type sample struct{ bytes, ms []float64 }

func BenchmarkReplicationLag(b *testing.B) {
	duration := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BENCH_DURATION")); err == nil {
		duration = d
	}
	for i := 0; i < b.N; i++ {
		secure := run(b, duration, "mutual TLS")
		plain := run(b, duration, "no TLS", "--insecure")
		fmt.Printf("\n== cost of TLS (pgbench -c 4 -j 2 -T %s; TLS on pgbench's connections and on replication)\n", duration)
		fmt.Printf("%-40s %10s %10s %8s\n", "", "TLS", "no TLS", "TLS/no")
		fmt.Printf("%-40s %10.1f %10.1f %7.1f%%\n", "TPS with the synchronous standby", secure.sync, plain.sync, 100*secure.sync/plain.sync)
		fmt.Printf("%-40s %10.1f %10.1f %7.1f%%\n", "TPS with synchronous_commit = local", secure.local, plain.local, 100*secure.local/plain.local)
		b.ReportMetric(100*secure.sync/plain.sync, "tls-%-of-plain-sync")
		b.ReportMetric(100*secure.local/plain.local, "tls-%-of-plain-local")
	}
	if os.Getenv("BENCH_PEERS") != "0" {
		peer(b, duration)
	}
}

type tpsPair struct{ sync, local float64 }

func run(b *testing.B, duration time.Duration, label string, upArgs ...string) tpsPair {
	u := topotest.Start(b, topotest.Spec(b, spec), filepath.Join(testenv.Dir(b), "data"), upArgs...)
	rep := u.WaitHealthy(b, time.Minute)
	roles := topotest.ByRole(rep.Workloads[0])
	primary := roles["primary"][0]
	bin, err := postgres.FindBin()
	if err != nil {
		b.Fatal(err)
	}
	pgbench := func(env []string, args ...string) string {
		cmd := exec.Command(filepath.Join(bin, "pgbench"), append(args, "-h", primary.Address, "-p", fmt.Sprint(primary.Port), "-U", "postgres", "postgres")...)
		cmd.Env = append(append(os.Environ(), u.PGEnv()...), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pgbench(nil, "-i", "-q", "-s", "20")

	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, u.NodeDSN(primary))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	samples := map[string]*sample{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		time.Sleep(time.Second) // skip pgbench's set-up (its VACUUM, stale lag values)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rows, err := conn.Query(ctx, `SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
				coalesce(extract(epoch FROM replay_lag) * 1000, 0)::float8 FROM pg_stat_replication`)
			if err != nil {
				continue
			}
			for rows.Next() {
				var name string
				var by, ms float64
				if rows.Scan(&name, &by, &ms) == nil {
					if samples[name] == nil {
						samples[name] = &sample{}
					}
					samples[name].bytes = append(samples[name].bytes, by)
					samples[name].ms = append(samples[name].ms, ms)
				}
			}
			rows.Close()
		}
	}()
	secs := fmt.Sprint(int(duration.Seconds()))
	withSync := tps(b, pgbench(nil, "-c", "4", "-j", "2", "-T", secs))
	cancel()
	wg.Wait()
	withoutSync := tps(b, pgbench([]string{"PGOPTIONS=-c synchronous_commit=local"}, "-c", "4", "-j", "2", "-T", secs))

	fmt.Printf("\n== Lifeline replication lag (%s): pgbench -s 20 -c 4 -j 2 -T %s, cross-region latency 20ms each way\n", label, secs)
	fmt.Printf("%-34s %12s %12s %10s %10s %8s\n", "standby", "median B", "p99 B", "median ms", "p99 ms", "samples")
	names := make([]string, 0, len(samples))
	for n := range samples {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := samples[n]
		sort.Float64s(s.bytes)
		sort.Float64s(s.ms)
		label := n + " (cross-region, async)"
		if strings.HasPrefix(n, "eu_west") {
			label = n + " (in-region, sync)"
		}
		fmt.Printf("%-34s %12.0f %12.0f %10.1f %10.1f %8d\n", label,
			bench.Percentile(s.bytes, 50), bench.Percentile(s.bytes, 99), bench.Percentile(s.ms, 50), bench.Percentile(s.ms, 99), len(s.bytes))
	}
	fmt.Printf("pgbench TPS with the synchronous standby:           %8.1f\n", withSync)
	fmt.Printf("pgbench TPS without (synchronous_commit = local):   %8.1f  (sync costs %.0f%%)\n", withoutSync, 100*(1-withSync/withoutSync))
	u.Stop()
	return tpsPair{withSync, withoutSync}
}

// peer runs the peer script with the same pgbench settings.
func peer(b *testing.B, duration time.Duration) {
	secs := fmt.Sprint(int(duration.Seconds()))
	script := bench.PeerScript("bench_repl_lag.sh")
	if script == "" {
		fmt.Println("peer: ../shared/peers/bench_repl_lag.sh not found; skipped")
		return
	}
	fmt.Println("\n== peer: plain streaming replication (bench_repl_lag.sh), same pgbench settings, no emulated latency")
	out, err := bench.RunPeer(context.Background(), script, testenv.Dir(b), 10*time.Minute,
		[]string{"SCALE=20", "CLIENTS=4", "DURATION=" + secs})
	if err != nil {
		fmt.Printf("peer failed: %v\n%s\n", err, tail(string(out), 20))
		return
	}
	fmt.Println(tail(string(out), 16))
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func tps(b *testing.B, out string) float64 {
	m := tpsRe.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no tps in pgbench output:\n%s", out)
	}
	var v float64
	fmt.Sscan(m[1], &v)
	return v
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
