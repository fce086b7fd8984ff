package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/ops"
)

// SideCopies builds and starts side copies on the agent's host
// (sidecopy.Runner).
type SideCopies interface {
	// Restore builds the data directory into and returns the
	// restore_command the copy fetches WAL with.
	Restore(ctx context.Context, w *lifeline.Workload, region string, target backup.Target, into string) (*backup.RestoreResult, string, error)
	// Start starts a restored copy and returns where it listens and how to
	// stop it.
	Start(ctx context.Context, w *lifeline.Workload, into, restoreCmd string) (addr string, stop func(context.Context) error, err error)
}

// RestoreRequest asks for a side copy at a point in time: exactly one of
// ToTime (RFC 3339), ToLSN, Latest.
type RestoreRequest struct {
	Region string `json:"region,omitempty"`
	ToTime string `json:"to_time,omitempty"`
	ToLSN  string `json:"to_lsn,omitempty"`
	Latest bool   `json:"latest,omitempty"`
	As     string `json:"as,omitempty"`
}

// RestoreView is a side copy made through this agent.
type RestoreView struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	Workload string `json:"workload"`
	Region   string `json:"region"`
	Target   string `json:"target"`
	// State: restoring, starting, running, failed.
	State string `json:"state"`
	Dir   string `json:"dir"`
	// Address is where the running copy listens; Connect a psql line.
	Address string    `json:"address,omitempty"`
	Connect string    `json:"connect,omitempty"`
	Backup  string    `json:"backup,omitempty"`
	Notes   []string  `json:"notes,omitempty"`
	Error   string    `json:"error,omitempty"`
	By      string    `json:"by"`
	Started time.Time `json:"started"`
	Ready   time.Time `json:"ready,omitzero"`
}

type restoreJob struct {
	view   RestoreView
	cancel context.CancelFunc
	stop   func(context.Context) error
	done   chan struct{}
}

// restoreTimeout bounds a side copy's restore and start.
const restoreTimeout = 2 * time.Hour

func parseTarget(req RestoreRequest) (backup.Target, string, error) {
	var t backup.Target
	n := 0
	desc := ""
	if req.ToTime != "" {
		n++
		tm, err := time.Parse(time.RFC3339Nano, req.ToTime)
		if err != nil {
			return t, "", errorf(http.StatusBadRequest, "invalid", "to_time %q: want RFC 3339 (2026-11-25T10:15:00Z)", req.ToTime)
		}
		t.Time, desc = tm, tm.UTC().Format(time.RFC3339Nano)
	}
	if req.ToLSN != "" {
		n++
		l, err := lifeline.ParseLSN(req.ToLSN)
		if err != nil {
			return t, "", errorf(http.StatusBadRequest, "invalid", "to_lsn: %v", err)
		}
		t.LSN, desc = l, "lsn "+l.String()
	}
	if req.Latest {
		n++
		t.Latest, desc = true, "latest"
	}
	if n != 1 {
		return t, "", errorf(http.StatusBadRequest, "invalid", "give exactly one of to_time, to_lsn, latest")
	}
	return t, desc, nil
}

func (s *Server) createRestore(w http.ResponseWriter, r *http.Request, id Identity) error {
	if s.cfg.Sides == nil {
		return errorf(http.StatusNotFound, "not_found", "this server makes no side copies")
	}
	var req RestoreRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	wl, err := ops.Workload(s.cfg.T, r.PathValue("workload"))
	if err != nil {
		return err
	}
	target, desc, err := parseTarget(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	region := req.Region
	if region == "" {
		st, _, _, err := s.cfg.S.State(ctx, wl.Name)
		if err != nil {
			cancel()
			return err
		}
		region = st.Active
	} else if _, err := s.cfg.T.Region(region); err != nil {
		cancel()
		return &ops.Error{Kind: ops.Invalid, Err: err}
	}
	cancel()
	now := time.Now().UTC()
	rid := strings.ReplaceAll(now.Format("20060102T150405.000"), ".", "") + "-" + wl.Name
	dir := filepath.Join(s.cfg.DataDir, "restores", rid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	jctx, jcancel := context.WithTimeout(context.Background(), restoreTimeout)
	job := &restoreJob{cancel: jcancel, done: make(chan struct{}), view: RestoreView{ID: rid, Node: s.cfg.Node, Workload: wl.Name, Region: region,
		Target: desc, State: "restoring", Dir: dir, By: id.Actor(req.As), Started: now}}
	s.restoreMu.Lock()
	if s.restores == nil {
		s.restores = map[string]*restoreJob{}
	}
	s.restores[rid] = job
	s.restoreMu.Unlock()
	_ = s.cfg.S.Audit(r.Context(), lifeline.AuditEntry{Workload: wl.Name, Kind: "restore", Step: rid, Result: "started",
		Detail: fmt.Sprintf("side copy from %s at %s on %s", region, desc, s.cfg.Node), Actor: job.view.By})
	go s.runRestore(jctx, job, wl, target)
	writeJSON(w, r, http.StatusAccepted, s.restoreView(job))
	return nil
}

func (s *Server) runRestore(ctx context.Context, job *restoreJob, wl *lifeline.Workload, target backup.Target) {
	defer close(job.done)
	set := func(f func(v *RestoreView)) {
		s.restoreMu.Lock()
		f(&job.view)
		s.restoreMu.Unlock()
	}
	data := filepath.Join(job.view.Dir, "data")
	res, restoreCmd, err := s.cfg.Sides.Restore(ctx, wl, job.view.Region, target, data)
	if err == nil {
		set(func(v *RestoreView) { v.State, v.Backup, v.Notes = "starting", res.Backup.ID, res.Notes })
		var addr string
		var stop func(context.Context) error
		addr, stop, err = s.cfg.Sides.Start(ctx, wl, data, restoreCmd)
		if err == nil {
			host, port, _ := strings.Cut(addr, ":")
			set(func(v *RestoreView) {
				v.State, v.Address, v.Ready = "running", addr, time.Now().UTC()
				// A scratch instance without TLS, as lifeline restore's.
				v.Connect = fmt.Sprintf(`psql "host=%s port=%s user=%s sslmode=disable"`, host, port, wl.Database.Superuser)
			})
			s.restoreMu.Lock()
			job.stop = stop
			s.restoreMu.Unlock()
			return
		}
	}
	set(func(v *RestoreView) { v.State, v.Error = "failed", err.Error() })
	s.cfg.Log.Warn("side copy failed", "id", job.view.ID, "err", err)
}

func (s *Server) restoreView(job *restoreJob) RestoreView {
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	v := job.view
	v.Notes = append([]string(nil), v.Notes...)
	return v
}

func (s *Server) listRestores(w http.ResponseWriter, r *http.Request, _ Identity) error {
	s.restoreMu.Lock()
	jobs := make([]*restoreJob, 0, len(s.restores))
	for _, j := range s.restores {
		jobs = append(jobs, j)
	}
	s.restoreMu.Unlock()
	out := make([]RestoreView, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, s.restoreView(j))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	writeJSON(w, r, http.StatusOK, out)
	return nil
}

func (s *Server) deleteRestore(w http.ResponseWriter, r *http.Request, id Identity) error {
	rid := r.PathValue("id")
	s.restoreMu.Lock()
	job, ok := s.restores[rid]
	delete(s.restores, rid)
	s.restoreMu.Unlock()
	if !ok {
		return errorf(http.StatusNotFound, "not_found", "no side copy %q on %s (side copies are listed by the agent that made them)", rid, s.cfg.Node)
	}
	if err := s.endRestore(r.Context(), job); err != nil {
		return err
	}
	_ = s.cfg.S.Audit(r.Context(), lifeline.AuditEntry{Workload: job.view.Workload, Kind: "restore", Step: rid, Result: "removed", Actor: id.Actor("")})
	writeJSON(w, r, http.StatusOK, map[string]string{"removed": rid})
	return nil
}

// endRestore stops a side copy (waiting for its restore to give up) and
// removes its directory.
func (s *Server) endRestore(ctx context.Context, job *restoreJob) error {
	job.cancel()
	<-job.done
	s.restoreMu.Lock()
	stop := job.stop
	s.restoreMu.Unlock()
	if stop != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := stop(sctx); err != nil {
			return fmt.Errorf("stop side copy %s: %w", job.view.ID, err)
		}
	}
	return os.RemoveAll(job.view.Dir)
}

// Close stops the side copies made through this server (their data is
// removed).
func (s *Server) Close(ctx context.Context) error {
	s.restoreMu.Lock()
	jobs := s.restores
	s.restores = nil
	s.restoreMu.Unlock()
	var errs []error
	for _, j := range jobs {
		if err := s.endRestore(ctx, j); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
