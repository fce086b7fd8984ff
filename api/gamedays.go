package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// GamedayHistory is where `lifeline gameday run` records past game days
// under a data directory (one JSON object a line, with its report's path).
const GamedayHistory = "gamedays/history.jsonl"

// gamedayEntries reads the history as it is written: each line is passed
// on as it stands (the game-day package owns its fields); id and report
// are read to find reports.
func (s *Server) gamedayEntries() ([]json.RawMessage, error) {
	path := filepath.Join(s.cfg.DataDir, GamedayHistory)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf(http.StatusNotFound, "not_found", "no game-day history on %s (%s does not exist): run lifeline gameday run SCENARIO", s.cfg.Node, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []json.RawMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || !json.Valid([]byte(line)) {
			continue
		}
		out = append(out, json.RawMessage(line))
	}
	return out, sc.Err()
}

func (s *Server) gamedays(w http.ResponseWriter, r *http.Request, _ Identity) error {
	entries, err := s.gamedayEntries()
	if err != nil {
		return err
	}
	writeJSON(w, r, http.StatusOK, newestFirst(entries, r, len(entries)))
	return nil
}

func (s *Server) gamedayReport(w http.ResponseWriter, r *http.Request, _ Identity) error {
	entries, err := s.gamedayEntries()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	for _, raw := range entries {
		var e struct {
			ID     string `json:"id"`
			Report string `json:"report"`
		}
		if json.Unmarshal(raw, &e) != nil || e.ID != id {
			continue
		}
		// Only files under the data directory are served.
		root, _ := filepath.Abs(s.cfg.DataDir)
		path := e.Report
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		if rel, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(rel, "..") {
			return errorf(http.StatusNotFound, "not_found", "the report of %s is outside the data directory", id)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return errorf(http.StatusNotFound, "not_found", "the report of %s: %v", id, err)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "sandbox")
		w.Write(b)
		return nil
	}
	return errorf(http.StatusNotFound, "not_found", "no game day %q in the history", id)
}
