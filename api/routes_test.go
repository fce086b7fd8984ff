package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/web"
)

var tokens = api.StaticTokens{
	"llt_viewer":   {Name: "v", Role: "viewer"},
	"llt_operator": {Name: "o", Role: "operator"},
	"llt_approver": {Name: "a", Role: "approver"},
}

var tokenOf = map[api.Role]string{api.Viewer: "llt_viewer", api.Operator: "llt_operator", api.Approver: "llt_approver"}

// newServer is a server with every optional route (metrics, dashboard) and
// no control store: the role checks come before any handler runs.
func newServer() *api.Server {
	t := &lifeline.Topology{Name: "shop", API: lifeline.API{Port: 8443}, Workloads: []lifeline.Workload{{Name: "orders"}}}
	return api.New(api.Config{T: t, Tokens: tokens, Metrics: prometheus.NewRegistry(), Assets: web.Handler()})
}

// target fills a route's path parameters.
func target(path string) string {
	return strings.NewReplacer("{$}", "", "{workload}", "orders", "{region}", "eu-west", "{id}", "x", "{file}", "app.js").Replace(path)
}

// publicRoutes are the only routes that need no token.
var publicRoutes = map[string]bool{
	"GET /api/v1/openapi.json": true,
	"GET /api/v1/healthz":      true,
	"GET /metrics":             true,
	"GET /{$}":                 true,
	"GET /assets/{file}":       true,
}

// TestServer_EveryRouteChecksItsRole goes over the server's own route list:
// a route added without a role check, or public by mistake, fails here.
func TestServer_EveryRouteChecksItsRole(t *testing.T) {
	srv := newServer()
	routes := srv.Routes()
	if len(routes) < 20 {
		t.Fatalf("%d routes: the table is not what this test expects", len(routes))
	}
	for _, rt := range routes {
		t.Run(rt.Pattern(), func(t *testing.T) {
			if rt.Role == api.Public {
				if !publicRoutes[rt.Pattern()] {
					t.Fatalf("%s needs no token; only %v may be public", rt.Pattern(), publicRoutes)
				}
				return
			}
			if publicRoutes[rt.Pattern()] {
				t.Errorf("%s is listed as public but needs %s", rt.Pattern(), rt.Role)
			}
			if rt.Method != http.MethodGet && rt.Role < api.Operator {
				t.Errorf("%s changes something with the %s role; want operator or approver", rt.Pattern(), rt.Role)
			}
			do := func(token string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(rt.Method, target(rt.Path), strings.NewReader("{}"))
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				return rec
			}
			for _, c := range []struct{ name, token string }{{"no token", ""}, {"unknown token", "llt_nobody"}} {
				rec := do(c.token)
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s: status %d, want 401: %s", c.name, rec.Code, rec.Body)
				}
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s: no WWW-Authenticate header", c.name)
				}
			}
			for _, r := range api.Roles {
				if r >= rt.Role {
					continue
				}
				rec := do(tokenOf[r])
				if rec.Code != http.StatusForbidden {
					t.Errorf("%s token: status %d, want 403: %s", r, rec.Code, rec.Body)
					continue
				}
				var body api.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				if got, want := body.RoleNeeded, rt.Role.String(); got != want {
					t.Errorf("%s token: role_needed %q, want %q", r, got, want)
				}
				if !strings.Contains(body.Error, rt.Role.String()) {
					t.Errorf("%s token: the error %q does not name the role needed", r, body.Error)
				}
			}
		})
	}
}

func TestServer_AuthorizationScheme(t *testing.T) {
	srv := newServer()
	for _, h := range []string{"llt_approver", "Basic llt_approver", "bearer llt_approver", "Bearer "} {
		req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
		req.Header.Set("Authorization", h)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", h, rec.Code)
		}
	}
	req := httptest.NewRequest("GET", "/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer llt_operator")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	var who map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &who); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("whoami: %d %s", rec.Code, rec.Body)
	}
	if who["name"] != "o" || who["role"] != "operator" {
		t.Errorf("whoami = %v", who)
	}
}

// TestOpenAPI_DocumentsEveryRoute holds openapi.json and the route table
// together: every route is documented with its role and its 401/403, and
// the document describes no route that does not exist.
func TestOpenAPI_DocumentsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Role      string                     `json:"x-role"`
			Security  []map[string][]string      `json:"security"`
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	seen := map[string]bool{}
	for _, rt := range newServer().Routes() {
		path := strings.ReplaceAll(rt.Path, "{$}", "")
		if path == "" {
			path = "/"
		}
		key := strings.ToLower(rt.Method) + " " + path
		seen[key] = true
		op, ok := doc.Paths[path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s is not documented in openapi.json", rt.Pattern())
			continue
		}
		if op.Role != rt.Role.String() {
			t.Errorf("%s: documented role %q, the server's %q", rt.Pattern(), op.Role, rt.Role)
		}
		if rt.Role != api.Public {
			if len(op.Security) == 0 {
				t.Errorf("%s: documented without security", rt.Pattern())
			}
			for _, code := range []string{"401", "403"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: %s not documented", rt.Pattern(), code)
				}
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !seen[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the server does not answer", strings.ToUpper(method), path)
			}
		}
	}
}

func TestServer_OpenAPIAndDashboardArePublic(t *testing.T) {
	srv := newServer()
	for _, c := range []struct{ path, ctype string }{
		{"/api/v1/openapi.json", "application/json"},
		{"/", "text/html"},
		{"/assets/app.js", "javascript"},
		{"/assets/app.css", "text/css"},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s: %d %q", c.path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/assets/nope.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /assets/nope.js: %d, want 404", rec.Code)
	}
}

func TestParseRole(t *testing.T) {
	for _, c := range []struct {
		in   string
		want api.Role
		ok   bool
	}{
		{"viewer", api.Viewer, true}, {"operator", api.Operator, true}, {"approver", api.Approver, true},
		{"public", api.Public, false}, {"admin", api.Public, false}, {"", api.Public, false},
	} {
		got, err := api.ParseRole(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseRole(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if !api.Approver.Allows(api.Operator) || api.Viewer.Allows(api.Operator) || !api.Operator.Allows(api.Operator) {
		t.Error("Allows does not order the roles")
	}
}

func TestIdentity_Actor(t *testing.T) {
	id := api.Identity{Name: "oncall"}
	if got := id.Actor(""); got != "token:oncall" {
		t.Errorf("Actor() = %q", got)
	}
	if got := id.Actor(" alice "); got != "token:oncall (as alice)" {
		t.Errorf("Actor(alice) = %q", got)
	}
}

func TestToken_HashAndFormat(t *testing.T) {
	a, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := api.NewToken()
	if a == b || !strings.HasPrefix(a, api.TokenPrefix) || len(a) != len(api.TokenPrefix)+43 {
		t.Errorf("tokens %q %q", a, b)
	}
	if h := api.Hash(a); len(h) != 64 || h == api.Hash(b) || strings.Contains(h, a) {
		t.Errorf("hash %q", h)
	}
}
