package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/ops"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/telemetry"
)

// V1 is the API's path prefix.
const V1 = "/api/v1"

// opTimeout bounds an operation on the control store.
const opTimeout = 15 * time.Second

// table is every route, with the role it needs. A route is added here and
// in openapi.json (a test holds the two together and checks every route's
// role against every token).
func (s *Server) table() []Route {
	rs := []Route{
		{"GET", V1 + "/openapi.json", Public, "The OpenAPI 3 document of this API", s.openAPI},
		{"GET", V1 + "/healthz", Public, "Whether this agent answers and reaches a quorum of the control store", s.healthz},
		{"GET", V1 + "/whoami", Viewer, "The calling token's name and role", s.whoami},
		{"GET", V1 + "/status", Viewer, "What lifeline status shows, as of the latest snapshot (fresh=true reads now)", s.status},
		{"GET", V1 + "/events", Viewer, "Server-sent events: a snapshot of the cluster whenever it changes", s.events},
		{"GET", V1 + "/lag", Viewer, "Each standby's replication lag over the last hour (one point per 10 s)", s.lag},
		{"GET", V1 + "/runbooks", Viewer, "Runbooks, newest first, with their steps, evidence and approval", s.listRunbooks},
		{"GET", V1 + "/runbooks/{id}", Viewer, "One runbook", s.getRunbook},
		{"POST", V1 + "/runbooks/{id}/approve", Approver, "Approve a region failover waiting at its approval gate", s.decide(true)},
		{"POST", V1 + "/runbooks/{id}/reject", Approver, "Reject a region failover waiting at its approval gate", s.decide(false)},
		{"POST", V1 + "/workloads/{workload}/failover", Approver, "Fail over to a region now, approved by the caller (plan=true: the steps only)", s.failover},
		{"POST", V1 + "/workloads/{workload}/switchover", Operator, "Move the writer to a region or zone with no data loss (plan=true: the steps only)", s.planned(controller.Switchover)},
		{"POST", V1 + "/workloads/{workload}/failback", Operator, "Bring the writer back to a region that returned (plan=true: the steps only)", s.planned(controller.Failback)},
		{"GET", V1 + "/routing", Viewer, "Every routing control", s.routing},
		{"PUT", V1 + "/workloads/{workload}/routing/{region}", Operator, "Switch a region on or off in routing, under the safety rules", s.setRouting},
		{"GET", V1 + "/workloads/{workload}/backups", Viewer, "The base backups in a region's repository", s.listBackups},
		{"POST", V1 + "/workloads/{workload}/backups", Operator, "Take a full base backup now", s.backupNow},
		{"POST", V1 + "/workloads/{workload}/backups/verify", Operator, "Restore the latest backup in a scratch directory and check it (a drill)", s.verify},
		{"GET", V1 + "/restores", Viewer, "Side copies made through this agent, with where they listen", s.listRestores},
		{"POST", V1 + "/workloads/{workload}/restores", Operator, "Restore a side copy at a point in time on this agent and start it", s.createRestore},
		{"DELETE", V1 + "/restores/{id}", Operator, "Stop a side copy and remove its data", s.deleteRestore},
		{"GET", V1 + "/alarms", Viewer, "Alarms raised, newest first", s.alarms},
		{"GET", V1 + "/audit", Viewer, "The audit log, newest first", s.audit},
		{"GET", V1 + "/gamedays", Viewer, "Past game days with their measured RPO and RTO", s.gamedays},
		{"GET", V1 + "/gamedays/{id}/report", Viewer, "A game day's HTML report", s.gamedayReport},
	}
	if s.cfg.Metrics != nil {
		rs = append(rs, Route{"GET", "/metrics", Public, "Prometheus metrics", func(w http.ResponseWriter, r *http.Request, _ Identity) error {
			s.metricsHandler().ServeHTTP(w, r)
			return nil
		}})
	}
	if s.cfg.Assets != nil {
		serve := func(w http.ResponseWriter, r *http.Request, _ Identity) error {
			s.cfg.Assets.ServeHTTP(w, r)
			return nil
		}
		rs = append(rs,
			Route{"GET", "/{$}", Public, "The dashboard", serve},
			Route{"GET", "/assets/{file}", Public, "The dashboard's scripts and styles", serve})
	}
	return rs
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, id Identity) error {
	writeJSON(w, r, http.StatusOK, map[string]string{"name": id.Name, "role": id.Role, "node": s.cfg.Node})
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, _, err := s.cfg.S.Topology(ctx); err != nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "%s cannot reach the control store: %v", s.cfg.Node, err)
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"node": s.cfg.Node, "status": "ok"})
	return nil
}

// StatusView is the status route's answer: the report, and how fresh it is.
type StatusView struct {
	*status.Report
	// Node is the agent that answered; At when its snapshot was taken;
	// Error why the latest refresh failed, if it did.
	Node  string    `json:"node"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ Identity) error {
	if fresh, _ := strconv.ParseBool(r.URL.Query().Get("fresh")); fresh || s.cfg.Sampler == nil {
		ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
		defer cancel()
		rep, err := status.Collect(ctx, s.cfg.S, s.cfg.T)
		if err != nil {
			return err
		}
		rep.API = APIEndpoints(s.cfg.T)
		writeJSON(w, r, http.StatusOK, StatusView{Report: rep, Node: s.cfg.Node, At: time.Now().UTC()})
		return nil
	}
	snap, ok := s.cfg.Sampler.Snapshot()
	if !ok {
		return errorf(http.StatusServiceUnavailable, "unavailable", "%s has not read the cluster yet: %s", s.cfg.Node, snap.Error)
	}
	writeCached(w, r, s.statusBody(snap))
	return nil
}

// cachedJSON is an answer encoded once, plain and gzipped.
type cachedJSON struct {
	at        time.Time
	err       string
	plain, gz []byte
}

// statusBody is the status answer of a snapshot, encoded once per
// snapshot: every client asking between two refreshes gets the same bytes.
func (s *Server) statusBody(snap telemetry.Snapshot) *cachedJSON {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if c := s.statusCache; c != nil && c.at.Equal(snap.At) && c.err == snap.Error {
		return c
	}
	rep := *snap.Status
	rep.API = APIEndpoints(s.cfg.T)
	b, err := json.Marshal(StatusView{Report: &rep, Node: s.cfg.Node, At: snap.At, Error: snap.Error})
	if err != nil {
		b = []byte(`{"error":"encode the status","kind":"internal"}`)
	}
	b = append(b, '\n')
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	s.statusCache = &cachedJSON{at: snap.At, err: snap.Error, plain: b, gz: gz.Bytes()}
	return s.statusCache
}

func writeCached(w http.ResponseWriter, r *http.Request, c *cachedJSON) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept-Encoding")
	body := c.plain
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = c.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *Server) lag(w http.ResponseWriter, r *http.Request, _ Identity) error {
	if s.cfg.Sampler == nil {
		return errorf(http.StatusNotFound, "not_found", "no lag history on this server")
	}
	window := telemetryWindow(r.URL.Query().Get("window"))
	writeJSON(w, r, http.StatusOK, map[string]any{"node": s.cfg.Node, "step_seconds": 10, "series": s.cfg.Sampler.History(time.Now().Add(-window))})
	return nil
}

func telemetryWindow(q string) time.Duration {
	d, err := time.ParseDuration(q)
	if err != nil || d <= 0 || d > time.Hour {
		return time.Hour
	}
	return d
}

func (s *Server) listRunbooks(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	all, err := runbook.List(ctx, s.cfg.S)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, newestFirst(all, r, 50))
	return nil
}

// newestFirst reverses a list kept oldest first, keeping at most the
// request's limit (def when it gives none).
func newestFirst[T any](all []T, r *http.Request, def int) []T {
	limit := def
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
		limit = n
	}
	out := make([]T, 0, min(limit, len(all)))
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, all[i])
	}
	return out
}

func (s *Server) getRunbook(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	rb, err := ops.GetRunbook(ctx, s.cfg.S, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, rb)
	return nil
}

// DecisionRequest is the body of approve and reject.
type DecisionRequest struct {
	Reason string `json:"reason,omitempty"`
	// Force overrides the readiness refusals (approve only).
	Force bool `json:"force,omitempty"`
	// As names the person acting with the token, for the audit log.
	As string `json:"as,omitempty"`
}

// DecisionView is the answer to approve and reject.
type DecisionView struct {
	Approval *lifeline.Approval `json:"approval"`
}

func (s *Server) decide(approve bool) func(http.ResponseWriter, *http.Request, Identity) error {
	return func(w http.ResponseWriter, r *http.Request, id Identity) error {
		var req DecisionRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		if !approve && req.Force {
			return errorf(http.StatusBadRequest, "invalid", "force applies to approve only")
		}
		ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
		defer cancel()
		a, err := s.ops.Decide(ctx, r.PathValue("id"), ops.Decision{Approve: approve, Actor: id.Actor(req.As), Reason: req.Reason, Force: req.Force})
		if err != nil {
			return err
		}
		writeJSON(w, r, http.StatusOK, DecisionView{Approval: a})
		return nil
	}
}

// RunbookRequest is the body of failover, switchover and failback.
type RunbookRequest struct {
	// To is the target region (failover), region or REGION/ZONE
	// (switchover), or the region to return to (failback, default the
	// spec's active region).
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Force (failover only) overrides the readiness refusals and revokes
	// a primary lease still held; recorded in the audit log.
	Force bool   `json:"force,omitempty"`
	As    string `json:"as,omitempty"`
	// Plan answers the steps without running anything (also ?plan=true).
	Plan bool `json:"plan,omitempty"`
}

// Started is the answer to a runbook begun.
type Started struct {
	Runbook *runbook.Runbook `json:"runbook"`
}

func wantPlan(r *http.Request, req RunbookRequest) bool {
	p, _ := strconv.ParseBool(r.URL.Query().Get("plan"))
	return p || req.Plan
}

func (s *Server) failover(w http.ResponseWriter, r *http.Request, id Identity) error {
	var req RunbookRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if wantPlan(r, req) {
		p, err := ops.Plan(s.cfg.T, r.PathValue("workload"), string(controller.RegionFailover), req.To)
		if err != nil {
			return err
		}
		writeJSON(w, r, http.StatusOK, p)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	rb, err := s.ops.Failover(ctx, ops.FailoverRequest{Workload: r.PathValue("workload"), To: req.To, Actor: id.Actor(req.As), Reason: req.Reason, Force: req.Force})
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusAccepted, Started{Runbook: rb})
	return nil
}

func (s *Server) planned(kind string) func(http.ResponseWriter, *http.Request, Identity) error {
	return func(w http.ResponseWriter, r *http.Request, id Identity) error {
		var req RunbookRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		if req.Force {
			return errorf(http.StatusBadRequest, "invalid", "force applies to failover only")
		}
		if wantPlan(r, req) {
			p, err := ops.Plan(s.cfg.T, r.PathValue("workload"), kind, req.To)
			if err != nil {
				return err
			}
			writeJSON(w, r, http.StatusOK, p)
			return nil
		}
		ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
		defer cancel()
		rb, err := s.ops.Planned(ctx, kind, ops.PlannedRequest{Workload: r.PathValue("workload"), To: req.To, Actor: id.Actor(req.As), Reason: req.Reason})
		if err != nil {
			return err
		}
		writeJSON(w, r, http.StatusAccepted, Started{Runbook: rb})
		return nil
	}
}

func (s *Server) routing(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	c, err := router.Show(ctx, s.cfg.S, s.cfg.T)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, c)
	return nil
}

// RoutingRequest is the body of a routing change.
type RoutingRequest struct {
	On *bool `json:"on"`
	// Force overrides the runbook lock; it needs a reason.
	Force  bool   `json:"force,omitempty"`
	Reason string `json:"reason,omitempty"`
	As     string `json:"as,omitempty"`
}

func (s *Server) setRouting(w http.ResponseWriter, r *http.Request, id Identity) error {
	var req RoutingRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.On == nil {
		return errorf(http.StatusBadRequest, "invalid", `"on": true or false is required`)
	}
	wl, err := ops.Workload(s.cfg.T, r.PathValue("workload"))
	if err != nil {
		return err
	}
	region := r.PathValue("region")
	if _, err := s.cfg.T.Region(region); err != nil {
		return &ops.Error{Kind: ops.Invalid, Err: err}
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	if err := router.Set(ctx, s.cfg.S, s.cfg.T, wl.Name, region, *req.On, router.ControlOptions{Force: req.Force, Reason: req.Reason, Actor: id.Actor(req.As)}); err != nil {
		return err
	}
	c, err := router.Show(ctx, s.cfg.S, s.cfg.T)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, c)
	return nil
}

func (s *Server) alarms(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	all := []lifeline.Alarm{}
	for _, wl := range s.cfg.T.Workloads {
		as, err := s.cfg.S.Alarms(ctx, wl.Name)
		if err != nil {
			return err
		}
		all = append(all, as...)
	}
	writeJSON(w, r, http.StatusOK, all)
	return nil
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, _ Identity) error {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	log, err := s.cfg.S.AuditLog(ctx)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, newestFirst(log, r, 200))
	return nil
}

// APIEndpoints lists the base URL of every agent's API, in spec order.
func APIEndpoints(t *lifeline.Topology) []string { return status.APIEndpoints(t) }
