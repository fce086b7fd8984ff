package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeline-dr/lifeline/router"
)

// Router counts what the router's front doors and DNS server answer. It
// implements router.Observer: each call is a few atomic additions.
type Router struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	dns      *prometheus.CounterVec
	bad      *prometheus.CounterVec
}

// NewRouter registers the router's metrics in reg.
func NewRouter(reg prometheus.Registerer) *Router {
	r := &Router{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeline_router_http_requests_total",
			Help: "HTTP requests answered by a front door (global, or WORKLOAD/REGION), by status code."}, []string{"door", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeline_router_http_errors_total",
			Help: "HTTP requests a front door answered with an error of its own or an upstream's 5xx, by status code."}, []string{"door", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lifeline_router_http_request_duration_seconds",
			Help: "Time from a request read to its answer's header relayed, per front door.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"door"}),
		dns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeline_router_dns_queries_total",
			Help: "DNS queries answered, by answer: the region a name was answered with, or the answer's kind (nodata, nxdomain, refused, formerr, notimp, ...)."}, []string{"answer"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeline_router_undecodable_records_total",
			Help: "Records read from the control store that could not be decoded and were not used, by kind (state, lease, health)."}, []string{"record"}),
	}
	reg.MustRegister(r.requests, r.errors, r.latency, r.dns, r.bad)
	return r
}

var _ router.Observer = (*Router)(nil)

// HTTPRequest implements router.Observer.
func (r *Router) HTTPRequest(door string, code int, d time.Duration) {
	c := strconv.Itoa(code)
	r.requests.WithLabelValues(door, c).Inc()
	if code >= 500 {
		r.errors.WithLabelValues(door, c).Inc()
	}
	r.latency.WithLabelValues(door).Observe(d.Seconds())
}

// DNSAnswer implements router.Observer.
func (r *Router) DNSAnswer(answer string) { r.dns.WithLabelValues(answer).Inc() }

// Undecodable implements router.Observer.
func (r *Router) Undecodable(record string) { r.bad.WithLabelValues(record).Inc() }
