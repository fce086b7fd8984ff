package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/lifeline-dr/lifeline"
)

// impactSpec is a workload's `impact:` section: what its failures cost.
type impactSpec struct {
	Tier                   string      `yaml:"tier"`
	Currency               string      `yaml:"currency"`
	DowntimePerHour        *float64    `yaml:"downtime-per-hour"`
	DataLossPerMinute      *float64    `yaml:"data-loss-per-minute"`
	DataLossPerTransaction *float64    `yaml:"data-loss-per-transaction"`
	TransactionsPerMinute  *float64    `yaml:"transactions-per-minute"`
	ApprovalTime           *duration   `yaml:"approval-time"`
	DataGB                 *float64    `yaml:"data-gb"`
	Risks                  []riskSpec  `yaml:"risks"`
	Prices                 *pricesSpec `yaml:"prices"`
}

type riskSpec struct {
	Risk    string   `yaml:"risk"`
	PerYear *float64 `yaml:"per-year"`
	Lasts   duration `yaml:"lasts"`
}

type pricesSpec struct {
	InstanceMonth  *float64 `yaml:"instance-month"`
	DatabaseMonth  *float64 `yaml:"database-month"`
	StorageGBMonth *float64 `yaml:"storage-gb-month"`
}

type contactSpec struct {
	Name  string `yaml:"name"`
	Role  string `yaml:"role"`
	Reach string `yaml:"reach"`
}

// unset marks an amount the spec left out, for Default to fill from the tier.
const unset = -1

func orUnset(v *float64) float64 {
	if v == nil {
		return unset
	}
	return *v
}

// unsetImpact is the impact of a workload whose spec has no impact section.
func unsetImpact() lifeline.Impact {
	return lifeline.Impact{DowntimePerHour: unset, DataLossPerMinute: unset, ApprovalTime: unset, DataGB: unset,
		Prices: lifeline.Prices{InstanceMonth: unset, DatabaseMonth: unset, StorageGBMonth: unset}}
}

// buildImpact converts the section, checking what needs its raw shape: a
// lost transaction's cost instead of a minute's.
func (p *parser) buildImpact(path string, s *impactSpec) lifeline.Impact {
	im := unsetImpact()
	im.Tier, im.Currency = lifeline.Tier(s.Tier), s.Currency
	im.DowntimePerHour = orUnset(s.DowntimePerHour)
	im.DataLossPerMinute = orUnset(s.DataLossPerMinute)
	im.DataGB = orUnset(s.DataGB)
	if s.ApprovalTime != nil {
		im.ApprovalTime = s.ApprovalTime.Duration
	}
	switch {
	case s.DataLossPerTransaction != nil && s.DataLossPerMinute != nil:
		p.at(path+".data-loss-per-transaction", "impact: give data-loss-per-minute or data-loss-per-transaction, not both")
	case s.DataLossPerTransaction != nil && (s.TransactionsPerMinute == nil || *s.TransactionsPerMinute <= 0):
		p.at(path+".data-loss-per-transaction", "impact: data-loss-per-transaction needs transactions-per-minute (how many are written a minute) to cost a minute of lost data")
	case s.DataLossPerTransaction != nil:
		im.DataLossPerMinute = *s.DataLossPerTransaction * *s.TransactionsPerMinute
		if *s.DataLossPerTransaction < 0 {
			p.at(path+".data-loss-per-transaction", "impact: data-loss-per-transaction %v: amounts are 0 or more", *s.DataLossPerTransaction)
		}
	case s.TransactionsPerMinute != nil:
		p.at(path+".transactions-per-minute", "impact: transactions-per-minute is only used with data-loss-per-transaction")
	}
	if s.Prices != nil {
		im.Prices = lifeline.Prices{InstanceMonth: orUnset(s.Prices.InstanceMonth), DatabaseMonth: orUnset(s.Prices.DatabaseMonth),
			StorageGBMonth: orUnset(s.Prices.StorageGBMonth)}
		for key, v := range map[string]*float64{"instance-month": s.Prices.InstanceMonth, "database-month": s.Prices.DatabaseMonth, "storage-gb-month": s.Prices.StorageGBMonth} {
			if v != nil && *v < 0 {
				p.at(path+".prices."+key, "impact prices %s %v: prices are 0 or more", key, *v)
			}
		}
	}
	if s.Risks != nil {
		im.Risks = []lifeline.RiskLikelihood{}
	}
	for j, r := range s.Risks {
		rp := fmt.Sprintf("%s.risks[%d]", path, j)
		rl := lifeline.RiskLikelihood{Risk: lifeline.Risk(r.Risk), PerYear: orUnset(r.PerYear), Lasts: r.Lasts.Duration}
		if r.Lasts.set && rl.Risk != lifeline.RiskRegion {
			p.at(rp+".lasts", "impact risk %s: lasts is only for region-loss (how long a region's outage lasts when waited out)", r.Risk)
		}
		im.Risks = append(im.Risks, rl)
	}
	return im
}

var (
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
	roleRe     = regexp.MustCompile(`^[a-z][a-z-]{0,30}$`)
)

// checkImpact validates a workload's impact once the tier's defaults are in.
func (p *parser) checkImpact(path string, w *lifeline.Workload) {
	im := &w.Impact
	if !slices.Contains(lifeline.Tiers, im.Tier) {
		p.at(path+".tier", "impact tier %q: want one of %s", im.Tier, tierList())
	}
	if !currencyRe.MatchString(im.Currency) {
		p.at(path+".currency", "impact currency %q: want a three-letter code such as EUR or USD", im.Currency)
	}
	for _, a := range []struct {
		key string
		v   float64
	}{{"downtime-per-hour", im.DowntimePerHour}, {"data-loss-per-minute", im.DataLossPerMinute}} {
		if a.v < 0 {
			p.at(path+"."+a.key, "impact %s %v: amounts are 0 or more", a.key, a.v)
		}
	}
	if im.DataGB <= 0 {
		p.at(path+".data-gb", "impact data-gb %v: the database's size in GB, above 0", im.DataGB)
	}
	if im.ApprovalTime > 0 && w.Failover != lifeline.FailoverApprove {
		p.at(path+".approval-time", "impact approval-time counts the wait for a human's approval: it applies to failover: approve, not %s", w.Failover)
	}
	seen := map[lifeline.Risk]bool{}
	for j, r := range im.Risks {
		rp := fmt.Sprintf("%s.risks[%d]", path, j)
		if !slices.Contains(lifeline.Risks, r.Risk) {
			p.at(rp+".risk", "impact risk %q: want one of %s", r.Risk, riskList())
			continue
		}
		if seen[r.Risk] {
			p.at(rp+".risk", "impact risk %s is listed twice", r.Risk)
		}
		seen[r.Risk] = true
		if r.PerYear < 0 {
			p.at(rp+".per-year", "impact risk %s: per-year %v: a yearly likelihood is 0 or more (0.05: once in twenty years)", r.Risk, r.PerYear)
		}
	}
}

func (p *parser) checkContacts(path string, w *lifeline.Workload) {
	names := map[string]bool{}
	for j, c := range w.Contacts {
		cp := fmt.Sprintf("%s[%d]", path, j)
		if strings.TrimSpace(c.Name) == "" {
			p.at(cp, "contact: name is required")
		} else if names[c.Name] {
			p.at(cp+".name", "contact %q is listed twice", c.Name)
		}
		names[c.Name] = true
		if !roleRe.MatchString(c.Role) {
			p.at(cp+".role", "contact %q: role %q: want a lower-case word such as approver, commander, dba or sre", c.Name, c.Role)
		}
		if strings.TrimSpace(c.Reach) == "" {
			p.at(cp, "contact %q: reach is required (a phone number, a pager, a channel)", c.Name)
		}
	}
}

func tierList() string {
	s := make([]string, len(lifeline.Tiers))
	for i, t := range lifeline.Tiers {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func riskList() string {
	s := make([]string, len(lifeline.Risks))
	for i, r := range lifeline.Risks {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
