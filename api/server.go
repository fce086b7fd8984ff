package api

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/ops"
	"github.com/lifeline-dr/lifeline/store"
	"github.com/lifeline-dr/lifeline/telemetry"
)

// Backups is what the backup routes run: controller.Backups, the same code
// the controller leader runs on the spec's schedule.
type Backups interface {
	Now(ctx context.Context, w *lifeline.Workload, progress func(backup.Progress)) (*backup.Info, error)
	Verify(ctx context.Context, w *lifeline.Workload, region string) (*backup.VerifyResult, error)
}

// Telemetry is the cluster as an agent follows it (telemetry.Sampler).
type Telemetry interface {
	Snapshot() (telemetry.Snapshot, bool)
	// Subscribe signals each refresh until the returned function is called.
	Subscribe() (<-chan struct{}, func())
	History(since time.Time) []telemetry.Series
}

var _ Telemetry = (*telemetry.Sampler)(nil)

// Config is what a server needs.
type Config struct {
	T *lifeline.Topology
	// S is the control store; the API's client should require a leader
	// (store.RequireLeader), so that a member cut off answers at once.
	S *store.Store
	// Node names the agent serving ("" for a process that is no agent).
	Node string
	// DataDir is the agent's data directory: backups' file:// repositories
	// and game-day reports are found from it.
	DataDir string
	Tokens  TokenLookup
	// Sampler is the agent's view of the cluster (telemetry.Sampler):
	// status, the dashboard's events and the lag history come from it.
	Sampler Telemetry
	Backups Backups
	// Sides makes side copies (restores at a point in time); nil makes none.
	Sides SideCopies
	// Ready is the readiness gate of failovers and approvals
	// (readiness.Runner.Gate); nil has none.
	Ready func(ctx context.Context, w *lifeline.Workload, region string) error
	// Metrics, when set, is served at /metrics; the server's own request
	// metrics are registered in it.
	Metrics *prometheus.Registry
	// Assets is the dashboard (web.Assets); nil serves none.
	Assets http.Handler
	Log    *slog.Logger
}

// Server is the HTTP API of one agent.
type Server struct {
	cfg    Config
	ops    *ops.Ops
	routes []Route
	mux    *http.ServeMux

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	backupMu sync.Mutex // one backup or verification at a time per agent

	restoreMu sync.Mutex
	restores  map[string]*restoreJob

	statusMu    sync.Mutex
	statusCache *cachedJSON
}

// Route is one operation of the API.
type Route struct {
	Method string
	// Path is a net/http ServeMux pattern path ("/api/v1/runbooks/{id}").
	Path string
	// Role is the weakest role that may call it.
	Role    Role
	Summary string
	handle  func(w http.ResponseWriter, r *http.Request, id Identity) error
}

// Pattern is the route's ServeMux pattern.
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// New returns a server over cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, ops: &ops.Ops{T: cfg.T, S: cfg.S, Ready: cfg.Ready}, mux: http.NewServeMux()}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lifeline_api_requests_total",
		Help: "HTTP API requests answered, by route and status code."}, []string{"route", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lifeline_api_request_duration_seconds",
		Help: "Time to answer an HTTP API request, by route (server-sent event streams excluded).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"route"})
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(s.requests, s.duration)
	}
	s.routes = s.table()
	for _, rt := range s.routes {
		s.mux.Handle(rt.Pattern(), s.wrap(rt))
	}
	return s
}

// Routes lists every route the server answers.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve answers on ln with TLS until ctx ends.
func Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var err error
	if tlsConfig != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Error is the JSON body of every error answer.
type Error struct {
	Error string `json:"error"`
	// Kind classifies it: unauthorized, forbidden, invalid, not_found,
	// refused, locked, conflict, unavailable, internal.
	Kind    string   `json:"kind"`
	Reasons []string `json:"reasons,omitempty"`
	// RoleNeeded names the role a refused token lacks (403).
	RoleNeeded string `json:"role_needed,omitempty"`
}

// httpError is an error with its status, from the API itself.
type httpError struct {
	status int
	body   Error
}

func (e *httpError) Error() string { return e.body.Error }

func errorf(status int, kind, format string, args ...any) error {
	return &httpError{status: status, body: Error{Error: fmt.Sprintf(format, args...), Kind: kind}}
}

// statusOf maps an error to its answer.
func statusOf(err error) (int, Error) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.body
	}
	kind, reasons := ops.KindOf(err)
	body := Error{Error: err.Error(), Kind: string(kind), Reasons: reasons}
	switch kind {
	case ops.Invalid:
		return http.StatusBadRequest, body
	case ops.NotFound:
		return http.StatusNotFound, body
	case ops.Refused, ops.Locked, ops.Conflict:
		return http.StatusConflict, body
	}
	if errors.Is(err, context.DeadlineExceeded) {
		body.Kind = "unavailable"
		return http.StatusServiceUnavailable, body
	}
	return http.StatusInternalServerError, body
}

// recorder keeps the status an answer was sent with.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush an event stream.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// wrap checks the caller's token against the route's role, then serves.
func (s *Server) wrap(rt Route) http.Handler {
	label := rt.Pattern()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			code := rec.status
			if code == 0 {
				code = http.StatusOK
			}
			s.requests.WithLabelValues(label, strconv.Itoa(code)).Inc()
			if !strings.HasSuffix(rt.Path, "/events") {
				s.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
			}
		}()
		id, err := s.authorize(r, rt.Role)
		if err == nil {
			err = rt.handle(rec, r, id)
		}
		if err != nil {
			status, body := statusOf(err)
			if status == http.StatusUnauthorized {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="lifeline"`)
			}
			if status >= 500 {
				s.cfg.Log.Warn("api", "route", label, "status", status, "err", err)
			}
			writeJSON(rec, r, status, body)
		}
	})
}

// authorize finds the request's token and checks it against need.
func (s *Server) authorize(r *http.Request, need Role) (Identity, error) {
	if need == Public {
		return Identity{}, nil
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return Identity{}, errorf(http.StatusUnauthorized, "unauthorized", "a token is required (Authorization: Bearer TOKEN; lifeline token create makes one)")
	}
	if s.cfg.Tokens == nil {
		return Identity{}, errorf(http.StatusServiceUnavailable, "unavailable", "tokens cannot be checked on this server")
	}
	id, found, err := s.cfg.Tokens.Lookup(strings.TrimSpace(tok))
	if err != nil {
		return Identity{}, errorf(http.StatusServiceUnavailable, "unavailable", "%v", err)
	}
	if !found {
		return Identity{}, errorf(http.StatusUnauthorized, "unauthorized", "the token is not valid (unknown or revoked)")
	}
	if !id.role.Allows(need) {
		return id, &httpError{status: http.StatusForbidden, body: Error{
			Error: fmt.Sprintf("this needs the %s role; token %s has %s", need, id.Name, id.Role),
			Kind:  "forbidden", RoleNeeded: need.String()}}
	}
	return id, nil
}

// writeJSON answers v as JSON, gzipped when the client takes it and it is
// worth it.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode the answer","kind":"internal"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if len(b) > 1024 && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
		w.WriteHeader(status)
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		gz.Write(b)
		gz.Close()
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// decode reads a JSON request body strictly; an empty body leaves v as is.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "invalid", "request body: %v", err)
	}
	return nil
}

// metricsHandler serves the registry.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn)})
}
