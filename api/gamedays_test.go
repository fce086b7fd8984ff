package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
)

func gamedayServer(t *testing.T, dataDir string) *api.Server {
	t.Helper()
	tp := &lifeline.Topology{Name: "shop", API: lifeline.API{Port: 8443}}
	return api.New(api.Config{T: tp, Tokens: tokens, DataDir: dataDir, Node: "eu-west/a"})
}

func get(t *testing.T, srv *api.Server, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer llt_viewer")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

func TestServer_Gamedays(t *testing.T) {
	dir := t.TempDir()
	srv := gamedayServer(t, dir)
	rec := get(t, srv, "/api/v1/gamedays")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "lifeline gameday run") {
		t.Errorf("no history: %d %s; want 404 saying how to make one", rec.Code, rec.Body)
	}
	report := filepath.Join(dir, "gamedays", "one", "report.html")
	if err := os.MkdirAll(filepath.Dir(report), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(report, []byte("<html>zone-loss</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	history := `{"id":"one","scenario":"zone-loss","passed":true,"report":"` + report + `"}
{"id":"two","scenario":"region-loss","passed":false,"report":"/etc/passwd"}
`
	if err := os.WriteFile(filepath.Join(dir, api.GamedayHistory), []byte(history), 0o644); err != nil {
		t.Fatal(err)
	}
	rec = get(t, srv, "/api/v1/gamedays")
	var entries []struct{ ID, Scenario string }
	if err := json.Unmarshal(rec.Body.Bytes(), &entries); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("history: %d %s", rec.Code, rec.Body)
	}
	if len(entries) != 2 || entries[0].ID != "two" || entries[1].Scenario != "zone-loss" {
		t.Errorf("history %+v, want newest first", entries)
	}
	if rec := get(t, srv, "/api/v1/gamedays/one/report"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "zone-loss") {
		t.Errorf("report: %d %s", rec.Code, rec.Body)
	}
	for _, id := range []string{"two", "three"} {
		if rec := get(t, srv, "/api/v1/gamedays/"+id+"/report"); rec.Code != http.StatusNotFound {
			t.Errorf("report %s: %d, want 404 (outside the data directory, or unknown)", id, rec.Code)
		}
	}
}
