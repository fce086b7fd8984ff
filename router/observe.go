package router

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Observer is told what the router's servers answer, for metrics. Its
// methods are called on the serving path: they must be quick and safe for
// concurrent use (metrics.Router is one).
type Observer interface {
	// HTTPRequest: a front door answered a request with code after d.
	HTTPRequest(door string, code int, d time.Duration)
	// DNSAnswer: the DNS server answered a query; answer is the region
	// an A query was answered with, else the answer's kind (zone, nodata,
	// or the rcode: nxdomain, refused, formerr, notimp, badvers).
	DNSAnswer(answer string)
	// Undecodable: a record read from the control store could not be
	// decoded (record is its kind: state, lease, health); the record is
	// not used, and the router says so in its log and this count.
	Undecodable(record string)
}

// answerLabel names a DNS answer for an Observer.
func answerLabel(m *dns.Msg, region string) string {
	switch {
	case m.Rcode != dns.RcodeSuccess:
		if name, ok := dns.RcodeToString[m.Rcode]; ok {
			return strings.ToLower(name)
		}
		return "rcode"
	case region != "":
		return region
	case len(m.Answer) == 0:
		return "nodata"
	}
	return "zone"
}
