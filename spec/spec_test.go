package spec_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/spec"
)

// base is a valid spec; each case edits one line of it.
const base = `name: shop
control: {etcd: embedded}
regions:
  - name: eu-west
    zones:
      - {name: a, address: 127.0.1.1}
      - {name: b, address: 127.0.1.2}
  - name: eu-central
    zones:
      - {name: a, address: 127.0.2.1}
witness: {address: 127.0.3.1}
links: {cross-region: {latency: 20ms}}
workloads:
  - name: orders
    strategy: warm-standby
    objectives: {rpo: 1s, rto: 30s}
    active: eu-west
    failover: approve
    database: {engine: postgres, sync: "ANY 1", port: 5432}
    backups: {repository: "file://{data}/backups/{region}", full: 24h, retention: 7d}
    services:
      - {name: api, command: [app], health: /healthz, replicas: {active: 2, standby: 1}}
    routing: {hostname: orders.shop.internal, policy: failover, ttl: 5s}
`

// edit replaces the first occurrence of old in base.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestParse_Valid(t *testing.T) {
	top, err := spec.Parse("lifeline.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	w := top.Workloads[0]
	if got, want := w.Strategy, lifeline.WarmStandby; got != want {
		t.Errorf("strategy = %q, want %q", got, want)
	}
	if got, want := w.Objectives.RPO, time.Second; got != want {
		t.Errorf("rpo = %v, want %v", got, want)
	}
	if got, want := w.Backups.Retention, 7*24*time.Hour; got != want {
		t.Errorf("retention = %v, want %v", got, want)
	}
	if got, want := top.Links.CrossRegion.Latency, 20*time.Millisecond; got != want {
		t.Errorf("latency = %v, want %v", got, want)
	}
	if got, want := len(top.Sites()), 3; got != want {
		t.Errorf("sites = %d, want %d", got, want)
	}
}

func TestParse_Defaults(t *testing.T) {
	src := `name: shop
regions:
  - {name: west, zones: [{name: a, address: 127.0.1.1}, {name: b, address: 127.0.1.2}]}
  - {name: east, zones: [{name: a, address: 127.0.2.1}]}
witness: {address: 127.0.3.1}
workloads:
  - {name: db, strategy: pilot-light, objectives: {rpo: 1s, rto: 1m}, active: west}
`
	top, err := spec.Parse("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := top.Workloads[0]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"mode", top.Mode, lifeline.ModeLocal},
		{"lease ttl", top.Control.LeaseTTL, spec.DefaultLeaseTTL},
		{"port", w.Database.Port, 5432},
		{"sync", w.Database.Sync, "ANY 1"},
		{"superuser", w.Database.Superuser, "postgres"},
		{"failover", w.Failover, lifeline.FailoverApprove},
		{"repository", w.Backups.Repository, spec.DefaultRepository},
		{"policy", w.Routing.Policy, "failover"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParse_Errors(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		line int
		want string
	}{
		{"unknown key", edit(t, "    failover: approve\n", "    failover: approve\n    colour: blue\n"), 19, `unknown key "colour" in workload`},
		{"unknown top key", edit(t, "name: shop\n", "name: shop\nregion: x\n"), 2, `unknown key "region"`},
		{"duplicate key", edit(t, "    active: eu-west\n", "    active: eu-west\n    active: eu-central\n"), 18, `already defined`},
		{"bad duration", edit(t, "rpo: 1s", "rpo: 1parsec"), 16, `bad duration "1parsec"`},
		{"rpo 0 across regions", edit(t, "rpo: 1s", "rpo: 0s"), 16, `objectives.rpo 0 cannot hold when region eu-west is lost`},
		{"unknown alerts key", edit(t, "name: shop\n", "name: shop\nalerts: {webhooks: [{url: http://127.0.0.1:9/x, sekret: env:X}]}\n"), 2, `unknown key "sekret" in webhook`},
		{"bad region-down-after", edit(t, "control: {etcd: embedded}", "control: {etcd: embedded, region-down-after: soon}"), 2, `bad duration "soon"`},
		{"negative duration", edit(t, "rto: 30s", "rto: -5s"), 16, `must not be negative`},
		{"bad retention", edit(t, "retention: 7d", "retention: forever"), 20, `backups.retention "forever"`},
		{"duplicate region", edit(t, "  - name: eu-central\n", "  - name: eu-west\n"), 8, `region "eu-west" is declared twice`},
		{"duplicate zone", edit(t, "{name: b, address: 127.0.1.2}", "{name: a, address: 127.0.1.2}"), 7, `zone "a" is declared twice`},
		{"duplicate workload", edit(t, "    routing: {hostname: orders.shop.internal, policy: failover, ttl: 5s}\n",
			"    routing: {hostname: orders.shop.internal, policy: failover, ttl: 5s}\n  - {name: orders, strategy: pilot-light, objectives: {rpo: 1s, rto: 1m}, active: eu-west, database: {port: 5433}}\n"), 24, `workload "orders" is declared twice`},
		{"address outside loopback", edit(t, "address: 127.0.2.1", "address: 10.1.2.3"), 10, `outside 127.0.0.0/8`},
		{"address not an ip", edit(t, "address: 127.0.2.1", "address: db.example.com"), 10, `not an IP address`},
		{"address used twice", edit(t, "address: 127.0.2.1", "address: 127.0.1.1"), 10, `already used by eu-west/a`},
		{"witness outside loopback", edit(t, "witness: {address: 127.0.3.1}", "witness: {address: 192.168.1.1}"), 11, `outside 127.0.0.0/8`},
		{"unknown active region", edit(t, "active: eu-west", "active: us-east"), 17, `active region "us-east" is not declared`},
		{"unknown strategy", edit(t, "strategy: warm-standby", "strategy: hot-standby"), 15, `strategy "hot-standby": want one of backup-restore, pilot-light, warm-standby, active-active`},
		{"auto without witness", strings.NewReplacer("control: {etcd: embedded}", "control: {etcd: {endpoints: [http://127.0.0.1:2379]}}",
			"witness: {address: 127.0.3.1}\n", "", "failover: approve", "failover: auto").Replace(base), 17, `failover: auto needs a witness quorum`},
		{"bad failover", edit(t, "failover: approve", "failover: yolo"), 18, `failover "yolo"`},
		{"pilot light with standby replicas", edit(t, "strategy: warm-standby", "strategy: pilot-light"), 22, `pilot-light runs no service instances`},
		{"sync without second zone", edit(t, "      - {name: b, address: 127.0.1.2}\n", ""), 18, `database sync "ANY 1"`},
		{"bad sync", edit(t, `sync: "ANY 1"`, `sync: "FIRST 1"`), 19, `database sync "FIRST 1"`},
		{"bad secret", edit(t, "port: 5432}", "port: 5432, password: hunter2, replication-password: env:R}"), 19, `want env:NAME or file:PATH`},
		{"one region only", edit(t, "  - name: eu-central\n    zones:\n      - {name: a, address: 127.0.2.1}\n", ""), 12, `needs a second region`},
		{"bad name", edit(t, "name: shop", "name: Shop!"), 1, `name "Shop!"`},
		{"bad port", edit(t, "port: 5432", "port: 99999"), 19, `port 99999`},
		{"bad policy", edit(t, "policy: failover", "policy: random"), 23, `routing policy "random"`},
		{"bad etcd", edit(t, "control: {etcd: embedded}", "control: {etcd: external}"), 2, `etcd: want "embedded"`},
		{"type error", edit(t, "port: 5432", "port: many"), 19, `"many" is not a whole number`},
		{"distributed without passwords", strings.NewReplacer("name: shop\n", "name: shop\nmode: distributed\n",
			"links: {cross-region: {latency: 20ms}}\n", "").Replace(base), 19, `mode: distributed needs database password`},
		{"repository without region", edit(t, `"file://{data}/backups/{region}"`, `"file:///backups"`), 20, `needs {region}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := spec.Parse("lifeline.yaml", []byte(c.src))
			var errs spec.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want spec.Errors", err)
			}
			for _, e := range errs {
				if e.Line == c.line && strings.Contains(e.Msg, c.want) {
					if !strings.HasPrefix(e.Error(), "lifeline.yaml:") {
						t.Errorf("error %q does not start with the file name", e)
					}
					return
				}
			}
			t.Errorf("want an error at line %d containing %q; got:\n%v", c.line, c.want, err)
		})
	}
}

func TestParse_Examples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	seen := map[lifeline.Strategy]bool{}
	for _, f := range files {
		top, err := spec.Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, w := range top.Workloads {
			seen[w.Strategy] = true
		}
	}
	for _, s := range lifeline.Strategies {
		if !seen[s] {
			t.Errorf("no example for strategy %s", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	for _, name := range []string{"../examples/warm-standby.yaml", "../examples/backup-restore.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("name: [\n"))
	f.Add([]byte("regions: {a: &x [*x]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := spec.Parse("fuzz.yaml", data)
		if err == nil {
			if top == nil || len(top.Workloads) == 0 || len(top.Regions) == 0 {
				t.Fatalf("a valid spec must have regions and workloads: %+v", top)
			}
			return
		}
		var errs spec.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error is not spec.Errors: %v", err)
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), "fuzz.yaml") || e.Msg == "" {
				t.Fatalf("bad error %q", e)
			}
		}
	})
}
