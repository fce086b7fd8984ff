package api

import (
	"context"
	"net/http"
	"time"

	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/ops"
)

// backupTimeout bounds a backup or a drill started through the API. It
// runs on the agent that received the request, detached from the request:
// a client that hangs up does not abort it.
const backupTimeout = time.Hour

func (s *Server) listBackups(w http.ResponseWriter, r *http.Request, _ Identity) error {
	wl, err := ops.Workload(s.cfg.T, r.PathValue("workload"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	region := r.URL.Query().Get("region")
	if region == "" {
		st, _, found, err := s.cfg.S.State(ctx, wl.Name)
		if err != nil {
			return err
		}
		if !found {
			return errorf(http.StatusServiceUnavailable, "unavailable", "%s has no state yet: give region", wl.Name)
		}
		region = st.Active
	} else if _, err := s.cfg.T.Region(region); err != nil {
		return &ops.Error{Kind: ops.Invalid, Err: err}
	}
	repo, err := backup.OpenRegion(ctx, wl, region, s.cfg.DataDir)
	if err != nil {
		return err
	}
	defer repo.Close()
	infos, err := repo.List(ctx)
	if err != nil {
		return err
	}
	if infos == nil {
		infos = []backup.Info{}
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"workload": wl.Name, "region": region, "repository": repo.String(), "backups": infos})
	return nil
}

// lockBackups takes this agent's backup slot, or answers 409.
func (s *Server) lockBackups() error {
	if !s.backupMu.TryLock() {
		return errorf(http.StatusConflict, "conflict", "a backup or a drill started through %s is running; wait for it", s.cfg.Node)
	}
	return nil
}

func (s *Server) backupNow(w http.ResponseWriter, r *http.Request, _ Identity) error {
	if s.cfg.Backups == nil {
		return errorf(http.StatusNotFound, "not_found", "this server takes no backups")
	}
	wl, err := ops.Workload(s.cfg.T, r.PathValue("workload"))
	if err != nil {
		return err
	}
	if err := s.lockBackups(); err != nil {
		return err
	}
	defer s.backupMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backupTimeout)
	defer cancel()
	info, err := s.cfg.Backups.Now(ctx, wl, nil)
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, info)
	return nil
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request, _ Identity) error {
	if s.cfg.Backups == nil {
		return errorf(http.StatusNotFound, "not_found", "this server verifies no backups")
	}
	wl, err := ops.Workload(s.cfg.T, r.PathValue("workload"))
	if err != nil {
		return err
	}
	region := r.URL.Query().Get("region")
	if err := s.lockBackups(); err != nil {
		return err
	}
	defer s.backupMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backupTimeout)
	defer cancel()
	if region == "" {
		st, _, _, err := s.cfg.S.State(ctx, wl.Name)
		if err != nil {
			return err
		}
		region = st.Active
	}
	res, err := s.cfg.Backups.Verify(ctx, wl, region)
	if res != nil {
		// A failed drill is an answer, not an error: its result says why.
		writeJSON(w, r, http.StatusOK, res)
		return nil
	}
	return err
}
