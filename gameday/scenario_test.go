package gameday_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/spec"
)

// base is a valid scenario; each error case edits one line of it.
const base = `name: zone-loss
spec: ../warm-standby.yaml
plan:
  hypothesis: no write is lost
  participants:
    - {name: ada, role: commander}
  abort:
    - errors > 50% for 60s
load:
  target: http
  rate: 40/s
  mix: {writes: 80, reads: 20}
  duration: 40s
timeline:
  - {at: 10s, fault: kill-zone, target: primary, for: 20s}
  - {at: 12s, fault: delete, sql: "DELETE FROM example_orders"}
  - {at: 14s, action: restore, table: example_orders}
expect:
  - lost-writes == 0
  - rto <= 30s
`

func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestParseScenario_Valid(t *testing.T) {
	sc, err := gameday.ParseScenario("s.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sc.Load.Rate, 40.0; got != want {
		t.Errorf("rate = %v, want %v", got, want)
	}
	if got, want := sc.Load.Duration, 40*time.Second; got != want {
		t.Errorf("duration = %v, want %v", got, want)
	}
	var steps []string
	for _, s := range sc.Timeline {
		steps = append(steps, string(s.Kind)+" "+s.Name+" "+s.At.String())
	}
	want := "inject kill-zone 10s,inject delete 12s,action restore 14s,heal kill-zone 30s"
	if got := strings.Join(steps, ","); got != want {
		t.Errorf("timeline = %s, want %s", got, want)
	}
	if got := len(sc.Expect); got != 2 {
		t.Errorf("%d expectations, want 2", got)
	}
	if r := sc.Plan.Abort[0]; r.Metric != "errors" || r.Value != 50 || r.For != time.Minute {
		t.Errorf("abort = %+v", r)
	}
}

// TestParseScenario_Examples: every example scenario parses.
func TestParseScenario_Examples(t *testing.T) {
	files, err := filepath.Glob("../examples/gamedays/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example scenarios: %v", err)
	}
	for _, f := range files {
		if _, err := gameday.LoadScenario(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseScenario_Errors(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		line int
		want string
	}{
		{"syntax", edit(t, "  rate: 40/s\n", "  rate: [40\n"), 10, "did not find expected"},
		{"empty", "", 0, "the scenario is empty"},
		{"second document", base + "---\nname: x\n", 21, "one YAML document"},
		{"unknown key", edit(t, "  duration: 40s\n", "  duration: 40s\n  colour: blue\n"), 14, `unknown key "colour" in load`},
		{"unknown top key", edit(t, "name: zone-loss\n", "name: zone-loss\nregion: x\n"), 2, `unknown key "region" in the scenario`},
		{"duplicate key", edit(t, "  rate: 40/s\n", "  rate: 40/s\n  rate: 50/s\n"), 12, `key "rate" is already defined`},
		{"not a mapping", edit(t, "  mix: {writes: 80, reads: 20}\n", "  mix: lots\n"), 12, "load mix: want a mapping"},
		{"no name", edit(t, "name: zone-loss\n", ""), 1, "name is required"},
		{"bad name", edit(t, "name: zone-loss", "name: Zone Loss"), 1, `name "Zone Loss"`},
		{"neither spec nor attach", edit(t, "spec: ../warm-standby.yaml\n", ""), 1, "give spec"},
		{"both spec and attach", edit(t, "spec: ../warm-standby.yaml\n", "spec: ../warm-standby.yaml\nattach: .lifeline\n"), 3, "not both"},
		{"unknown strategy", edit(t, "spec: ../warm-standby.yaml\n", "spec: ../{strategy}.yaml\nstrategies: [warm, pilot-light]\n"), 3, `unknown strategy "warm"`},
		{"strategy twice", edit(t, "spec: ../warm-standby.yaml\n", "spec: ../{strategy}.yaml\nstrategies: [pilot-light, pilot-light]\n"), 3, `listed twice`},
		{"strategies without placeholder", edit(t, "spec: ../warm-standby.yaml\n", "spec: ../warm-standby.yaml\nstrategies: [pilot-light, warm-standby]\n"), 2, "name {strategy}"},
		{"placeholder without strategies", edit(t, "spec: ../warm-standby.yaml", "spec: ../{strategy}.yaml"), 2, "list the strategies"},
		{"strategies attached", edit(t, "spec: ../warm-standby.yaml\n", "attach: .lifeline\nstrategies: [pilot-light]\n"), 3, "an attached topology"},
		{"participant without role", edit(t, "{name: ada, role: commander}", "{name: ada}"), 6, "name and role are required"},
		{"bad abort", edit(t, "errors > 50% for 60s", "errors are bad"), 8, `want "errors > 50% for 60s"`},
		{"abort without unit", edit(t, "errors > 50% for 60s", "errors > 50 for 60s"), 8, "wants a percentage"},
		{"no load", edit(t, "load:\n  target: http\n  rate: 40/s\n  mix: {writes: 80, reads: 20}\n  duration: 40s\n", ""), 1, "load is required"},
		{"bad target", edit(t, "target: http", "target: dns"), 10, `load target "dns"`},
		{"no rate", edit(t, "  rate: 40/s\n", ""), 10, "load rate is required"},
		{"bad rate", edit(t, "rate: 40/s", "rate: fast"), 11, `load rate "fast"`},
		{"rate too high", edit(t, "rate: 40/s", "rate: 100000/s"), 11, "at most 5000/s"},
		{"negative mix", edit(t, "reads: 20", "reads: -20"), 12, "must not be negative"},
		{"empty mix", edit(t, "{writes: 80, reads: 20}", "{writes: 0, reads: 0}"), 12, "give writes and reads weights"},
		{"no duration", edit(t, "  duration: 40s\n", ""), 10, "load duration is required"},
		{"bad duration", edit(t, "duration: 40s", "duration: 40 parsecs"), 13, `bad duration "40 parsecs"`},
		{"negative duration", edit(t, "duration: 40s", "duration: -4s"), 13, "must not be negative"},
		{"bad concurrency", edit(t, "  duration: 40s\n", "  duration: 40s\n  concurrency: 0\n"), 14, "load concurrency 0"},
		{"unknown fault", edit(t, "fault: kill-zone", "fault: kill-datacenter"), 15, `unknown fault "kill-datacenter" (faults: archive-down, delete, freeze, kill-region, kill-zone, latency, partition)`},
		{"unknown action", edit(t, "action: restore, table: example_orders", "action: reboot"), 17, `unknown action "reboot" (actions: approve, failback, restore, switchover)`},
		{"fault and action", edit(t, "fault: kill-zone,", "fault: kill-zone, action: approve,"), 15, "not both"},
		{"neither fault nor action", edit(t, "fault: kill-zone, target: primary, ", ""), 15, "give fault (one of"},
		{"no at", edit(t, "at: 10s, fault: kill-zone", "fault: kill-zone"), 15, "at is required"},
		{"at after the load", edit(t, "at: 12s", "at: 50s"), 16, "the load runs for 40s only"},
		{"fault key unknown", edit(t, "target: primary", "target: primary, sql: x"), 15, `unknown key "sql" in timeline entry kill-zone (known keys: at, fault, action, for, target)`},
		{"for on an action", edit(t, "action: restore,", "action: restore, for: 5s,"), 17, "for applies to faults only"},
		{"bad node", edit(t, "target: primary", "target: eu-west"), 15, `target "eu-west": want primary or REGION/ZONE`},
		{"delete without sql", edit(t, `fault: delete, sql: "DELETE FROM example_orders"`, "fault: delete"), 16, "delete: sql is required"},
		{"restore without table", edit(t, "action: restore, table: example_orders", "action: restore"), 17, "restore: table is required"},
		{"restore bad table", edit(t, "table: example_orders", "table: 'orders; drop'"), 17, `table "orders; drop"`},
		{"restore without delete", edit(t, `  - {at: 12s, fault: delete, sql: "DELETE FROM example_orders"}`+"\n", ""), 16, `no fault of the timeline records "before-delete"`},
		{"partition without ends", edit(t, "fault: kill-zone, target: primary", "fault: partition"), 15, "give between: [A, B]"},
		{"partition one end", edit(t, "fault: kill-zone, target: primary", "fault: partition, between: [eu-west]"), 15, "want two ends"},
		{"latency without add", edit(t, "fault: kill-zone, target: primary", "fault: latency, between: [eu-west, eu-central]"), 15, "add is required"},
		{"freeze without for", edit(t, "fault: kill-zone, target: primary, for: 20s", "fault: freeze"), 15, "freeze: for is required"},
		{"switchover without to", edit(t, "action: restore, table: example_orders", "action: switchover"), 17, "switchover: to is required"},
		{"bad expectation", edit(t, "lost-writes == 0", "no writes lost"), 19, "want METRIC OP VALUE"},
		{"unknown metric", edit(t, "lost-writes == 0", "happiness >= 1"), 19, `unknown metric "happiness"`},
		{"expectation unit", edit(t, "rto <= 30s", "rto <= 30"), 20, "wants a duration"},
		{"objective of a count", edit(t, "lost-writes == 0", "lost-writes == objective"), 19, "only rpo and rto have an objective"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := gameday.ParseScenario("s.yaml", []byte(c.src))
			var errs spec.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want spec.Errors", err)
			}
			for _, e := range errs {
				if e.Line == c.line && strings.Contains(e.Msg, c.want) && e.File == "s.yaml" {
					return
				}
			}
			t.Errorf("want s.yaml:%d: ...%s...; got:\n%v", c.line, c.want, err)
		})
	}
}

// FuzzParseScenario: no input makes the parser panic, and what it
// accepts has a load and a timeline within it. Seeds: testdata/fuzz and
// the example scenarios.
func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(base))
	files, _ := filepath.Glob("../examples/gamedays/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := gameday.ParseScenario("fuzz.yaml", data)
		if err != nil {
			var errs spec.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is not spec.Errors: %v", err)
			}
			return
		}
		if sc.Load.Rate <= 0 || sc.Load.Duration <= 0 || sc.Load.Concurrency < 1 {
			t.Fatalf("accepted a load that cannot run: %+v", sc.Load)
		}
		for _, st := range sc.Timeline {
			if st.Kind != gameday.StepHeal && st.At >= sc.Load.Duration {
				t.Fatalf("accepted a step at %s after the load's %s", st.At, sc.Load.Duration)
			}
		}
	})
}
