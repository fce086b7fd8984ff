package spec_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/spec"
)

// withImpact appends lines to the base spec's workload; its first line is
// line 24.
func withImpact(lines ...string) string {
	return base + strings.Join(lines, "\n") + "\n"
}

func TestParse_ImpactDefaults(t *testing.T) {
	top, err := spec.Parse("lifeline.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spec.DefaultImpact(spec.DefaultTier), top.Workloads[0].Impact); diff != "" {
		t.Errorf("a workload without impact gets its tier's defaults (-want +got):\n%s", diff)
	}
	top, err = spec.Parse("lifeline.yaml", []byte(withImpact(
		"    impact:",
		"      tier: critical",
		"      currency: USD",
		"      data-loss-per-transaction: 2.5",
		"      transactions-per-minute: 600",
		"      approval-time: 10m",
		"      risks:",
		"        - {risk: region-loss, per-year: 0.1, lasts: 12h}",
		"        - {risk: operator-error}",
		"      prices: {instance-month: 80}",
		"    contacts:",
		"      - {name: Ana Souza, role: approver, reach: \"+33 6 12 34 56 78\"}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	w := top.Workloads[0]
	want := spec.DefaultImpact(lifeline.TierCritical)
	want.Currency = "USD"
	want.DataLossPerMinute = 1500
	want.ApprovalTime = 10 * time.Minute
	want.Risks = []lifeline.RiskLikelihood{{Risk: lifeline.RiskRegion, PerYear: 0.1, Lasts: 12 * time.Hour}, {Risk: lifeline.RiskOperator, PerYear: 1}}
	want.Prices.InstanceMonth = 80
	if diff := cmp.Diff(want, w.Impact); diff != "" {
		t.Errorf("impact (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]lifeline.Contact{{Name: "Ana Souza", Role: "approver", Reach: "+33 6 12 34 56 78"}}, w.Contacts); diff != "" {
		t.Errorf("contacts (-want +got):\n%s", diff)
	}
}

// TestParse_ImpactErrors: one case per rule of the impact and contacts
// sections, each at its line.
func TestParse_ImpactErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		lines []string
		line  int
		want  string
	}{
		{"unknown key", []string{"    impact:", "      downtime-per-day: 5"}, 25, `unknown key "downtime-per-day" in impact`},
		{"unknown risk key", []string{"    impact:", "      risks: [{risk: zone-loss, yearly: 1}]"}, 25, `unknown key "yearly" in risk`},
		{"unknown price key", []string{"    impact:", "      prices: {gpu-month: 1}"}, 25, `unknown key "gpu-month" in prices`},
		{"unknown contact key", []string{"    contacts:", "      - {name: Ana, role: approver, reach: x, email: y}"}, 25, `unknown key "email" in contact`},
		{"amount not a number", []string{"    impact:", "      downtime-per-hour: lots"}, 25, `"lots" is not a number`},
		{"bad tier", []string{"    impact:", "      tier: gold"}, 25, `impact tier "gold": want one of critical, high, medium, low`},
		{"bad currency", []string{"    impact:", "      currency: euro"}, 25, `impact currency "euro"`},
		{"negative amount", []string{"    impact:", "      downtime-per-hour: -5"}, 25, `impact downtime-per-hour -5: amounts are 0 or more`},
		{"negative transaction cost", []string{"    impact:", "      data-loss-per-transaction: -1", "      transactions-per-minute: 10"}, 25, `data-loss-per-transaction -1`},
		{"minute and transaction", []string{"    impact:", "      data-loss-per-minute: 5", "      data-loss-per-transaction: 1", "      transactions-per-minute: 10"}, 26, `not both`},
		{"transaction without rate", []string{"    impact:", "      data-loss-per-transaction: 1"}, 25, `needs transactions-per-minute`},
		{"rate without transaction cost", []string{"    impact:", "      transactions-per-minute: 10"}, 25, `only used with data-loss-per-transaction`},
		{"negative price", []string{"    impact:", "      prices: {storage-gb-month: -0.1}"}, 25, `impact prices storage-gb-month -0.1`},
		{"data size", []string{"    impact:", "      data-gb: 0"}, 25, `impact data-gb 0`},
		{"bad approval time", []string{"    impact:", "      approval-time: soon"}, 25, `bad duration "soon"`},
		{"approval time with auto", []string{"    impact:", "      approval-time: 5m"}, 25, `applies to failover: approve, not auto`},
		{"unknown risk", []string{"    impact:", "      risks:", "        - {risk: meteor}"}, 26, `impact risk "meteor": want one of zone-loss, region-loss, operator-error, corruption`},
		{"risk twice", []string{"    impact:", "      risks:", "        - {risk: zone-loss}", "        - {risk: zone-loss, per-year: 2}"}, 27, `impact risk zone-loss is listed twice`},
		{"negative likelihood", []string{"    impact:", "      risks:", "        - {risk: corruption, per-year: -0.1}"}, 26, `per-year -0.1`},
		{"lasts on another risk", []string{"    impact:", "      risks:", "        - {risk: zone-loss, lasts: 1h}"}, 26, `lasts is only for region-loss`},
		{"contact without name", []string{"    contacts:", "      - {role: approver, reach: x}"}, 25, `contact: name is required`},
		{"contact twice", []string{"    contacts:", "      - {name: Ana, role: approver, reach: x}", "      - {name: Ana, role: dba, reach: y}"}, 26, `contact "Ana" is listed twice`},
		{"contact role", []string{"    contacts:", "      - {name: Ana, role: Boss, reach: x}"}, 25, `role "Boss"`},
		{"contact without reach", []string{"    contacts:", "      - {name: Ana, role: approver}"}, 25, `reach is required`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := withImpact(c.lines...)
			if c.name == "approval time with auto" {
				src = strings.Replace(src, "failover: approve", "failover: auto", 1)
			}
			_, err := spec.Parse("lifeline.yaml", []byte(src))
			var errs spec.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want spec.Errors", err)
			}
			for _, e := range errs {
				if e.Line == c.line && strings.Contains(e.Msg, c.want) {
					return
				}
			}
			t.Errorf("want an error at line %d containing %q; got:\n%v", c.line, c.want, err)
		})
	}
}
