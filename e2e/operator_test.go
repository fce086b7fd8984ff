package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	ll "github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/internal/chromium"
	"github.com/lifeline-dr/lifeline/internal/promtest"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/status"
)

// operator is a caller of one agent's API with one token.
type operator struct {
	base  string
	token string
	http  *http.Client
}

func (o operator) do(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	if out, ok := out.(*api.Error); ok && resp.StatusCode >= 300 {
		_ = json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

func (o operator) get(t *testing.T, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", o.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := o.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
	}
	return b
}

// newToken makes a token with the CLI (direct etcd access).
func newToken(t *testing.T, u *topotest.Up, name, role string) string {
	t.Helper()
	var out struct{ Token string }
	if err := json.Unmarshal([]byte(lifeline(t, u, "token", "create", "--name", name, "--role", role, "--json")), &out); err != nil || out.Token == "" {
		t.Fatalf("token create: %v", err)
	}
	return out.Token
}

// gaugeValue reads one series of a scrape ("" labels: the first series).
func gaugeValue(scrape []byte, name, labels string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(scrape))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if labels != "" && !strings.Contains(line, labels) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// operatorSurface runs the operator surface on one topology: the API's
// tokens and roles, the CLI going through the API (the audit log names the
// token), /metrics linted by promtool with its lag gauge following a
// stopped standby, and the dashboard in headless Chromium: every node with
// its role, a viewer's approve button that does nothing, and an approver
// approving a region failover that waits at its gate (the active region is
// killed for it: a region failover begun while the old primary still holds
// its lease ends at its gate, so one cannot be made to wait otherwise).
// The failover then runs: the test accepts it and ends the topology there.
func operatorSurface(t *testing.T, u *topotest.Up) {
	rep := u.WaitHealthy(t, 2*time.Minute)
	w := rep.Workloads[0]
	topo, err := local.LoadTopology(u.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.API) != len(topo.Nodes()) {
		t.Fatalf("status --json lists %d API endpoints, want one per node: %v", len(rep.API), rep.API)
	}
	tlsConfig, err := api.ClientTLS(api.CAFiles(u.DataDir)...)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 20 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	// The agent every call goes to: eu-central/a survives the loss of
	// eu-west at the end.
	base := ""
	for _, ep := range rep.API {
		if strings.HasPrefix(ep, "https://"+topo.Address(nodeID(t, "eu-central/a"))+":") {
			base = ep
		}
	}
	viewer := operator{base, newToken(t, u, "e2e-viewer", "viewer"), hc}
	opr := operator{base, newToken(t, u, "e2e-operator", "operator"), hc}
	approver := operator{base, newToken(t, u, "e2e-approver", "approver"), hc}

	t.Run("tokens and roles", func(t *testing.T) {
		var e api.Error
		if code := (operator{base, "", hc}).do(t, "GET", "/api/v1/status", nil, &e); code != http.StatusUnauthorized {
			t.Errorf("status without a token: %d, want 401", code)
		}
		var st api.StatusView
		if code := viewer.do(t, "GET", "/api/v1/status", nil, &st); code != http.StatusOK || len(st.Workloads) != 1 {
			t.Errorf("status as viewer: %d %+v", code, st)
		}
		e = api.Error{}
		if code := viewer.do(t, "POST", "/api/v1/workloads/"+w.Name+"/switchover", api.RunbookRequest{To: "eu-west/b"}, &e); code != http.StatusForbidden || e.RoleNeeded != "operator" {
			t.Errorf("switchover as viewer: %d %+v, want 403 naming operator", code, e)
		}
		e = api.Error{}
		if code := opr.do(t, "POST", "/api/v1/workloads/"+w.Name+"/failover", api.RunbookRequest{To: "eu-central"}, &e); code != http.StatusForbidden || e.RoleNeeded != "approver" {
			t.Errorf("failover as operator: %d %+v, want 403 naming approver", code, e)
		}
		var plan struct{ Steps []struct{ Name string } }
		if code := opr.do(t, "POST", "/api/v1/workloads/"+w.Name+"/switchover?plan=true", api.RunbookRequest{To: "eu-central"}, &plan); code != http.StatusOK || len(plan.Steps) == 0 {
			t.Errorf("switchover plan as operator: %d %+v", code, plan)
		}
		// A revoked token stops working as soon as the agents hear of it.
		gone := operator{base, newToken(t, u, "e2e-revoked", "viewer"), hc}
		lifeline(t, u, "token", "revoke", "e2e-revoked")
		deadline := time.Now().Add(10 * time.Second)
		for gone.do(t, "GET", "/api/v1/whoami", nil, nil) != http.StatusUnauthorized {
			if time.Now().After(deadline) {
				t.Fatal("a revoked token still works after 10s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out := lifeline(t, u, "token", "list"); !strings.Contains(out, "e2e-approver") || strings.Contains(out, "e2e-revoked") || strings.Contains(out, approver.token) {
			t.Errorf("token list:\n%s", out)
		}
	})

	t.Run("the CLI's changes go through the API and name the token", func(t *testing.T) {
		lifeline(t, u, "routing", "set", "eu-central=off", "--as", "alice")
		lifeline(t, u, "routing", "set", "eu-central=on")
		var entries []struct{ Kind, Step, Result, Actor string }
		if code := viewer.do(t, "GET", "/api/v1/audit?limit=50", nil, &entries); code != http.StatusOK {
			t.Fatalf("audit: %d", code)
		}
		found := 0
		for _, e := range entries {
			if e.Kind == "routing-control" && e.Step == "eu-central" {
				found++
				if !strings.HasPrefix(e.Actor, "token:"+api.AdminTokenName) {
					t.Errorf("routing change by %q, want the admin token", e.Actor)
				}
			}
		}
		if found != 2 {
			t.Errorf("%d routing changes of eu-central in the audit log, want 2: %+v", found, entries)
		}
		if out, err := u.Lifeline("switchover", "--to", "eu-west/b", "--token", viewer.token); err == nil || !strings.Contains(out, "operator role") {
			t.Errorf("switchover with a viewer's token: %v\n%s", err, out)
		}
	})

	t.Run("metrics pass promtool and the lag gauge follows a stopped standby", func(t *testing.T) {
		agentMetrics := operator{strings.Replace(base, topo.Address(nodeID(t, "eu-central/a")), topo.Address(nodeID(t, "eu-west/b")), 1), "", hc}
		scrape := agentMetrics.get(t, "/metrics")
		routerMetrics := operator{fmt.Sprintf("https://%s:%d", topo.Router.Address, topo.API.Port), "", hc}
		routerScrape := routerMetrics.get(t, "/metrics")
		// promtool may be absent (the check then skips, not the rest).
		t.Run("agent's pass promtool", func(t *testing.T) { promtest.Check(t, scrape) })
		t.Run("router's pass promtool", func(t *testing.T) { promtest.Check(t, routerScrape) })
		const series = `node="eu-central/b"`
		before, ok := gaugeValue(scrape, "lifeline_replication_lag_seconds", series)
		if !ok {
			t.Fatalf("no lifeline_replication_lag_seconds for eu-central/b:\n%s", scrape)
		}
		lifeline(t, u, "node", "stop", "eu-central/b")
		stopped := time.Now()
		deadline := stopped.Add(30 * time.Second)
		for {
			now, _ := gaugeValue(agentMetrics.get(t, "/metrics"), "lifeline_replication_lag_seconds", series)
			if now >= before+3 {
				t.Logf("lag of eu-central/b: %.2fs before, %.2fs %.1fs after it stopped", before, now, time.Since(stopped).Seconds())
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lag gauge of a stopped standby stayed at %.2f (was %.2f)", now, before)
			}
			time.Sleep(500 * time.Millisecond)
		}
		lifeline(t, u, "node", "start", "eu-central/b")
	})

	t.Run("a side copy through the API", func(t *testing.T) {
		// The controller takes a first backup at once.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var list struct{ Backups []json.RawMessage }
			if viewer.do(t, "GET", "/api/v1/workloads/"+w.Name+"/backups", nil, &list) == http.StatusOK && len(list.Backups) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no base backup after 2m")
			}
			time.Sleep(time.Second)
		}
		var e api.Error
		if code := opr.do(t, "POST", "/api/v1/workloads/"+w.Name+"/restores", api.RestoreRequest{Latest: true, ToLSN: "0/1"}, &e); code != http.StatusBadRequest {
			t.Errorf("two targets: %d %+v, want 400", code, e)
		}
		var side api.RestoreView
		if code := opr.do(t, "POST", "/api/v1/workloads/"+w.Name+"/restores", api.RestoreRequest{Latest: true}, &side); code != http.StatusAccepted {
			t.Fatalf("restore: %d", code)
		}
		deadline = time.Now().Add(3 * time.Minute)
		for side.State != "running" {
			var all []api.RestoreView
			opr.do(t, "GET", "/api/v1/restores", nil, &all)
			for _, v := range all {
				if v.ID == side.ID {
					side = v
				}
			}
			if side.State == "failed" || time.Now().After(deadline) {
				t.Fatalf("side copy: %+v", side)
			}
			time.Sleep(500 * time.Millisecond)
		}
		host, port, _ := strings.Cut(side.Address, ":")
		// A side copy is a scratch instance without TLS, as lifeline restore's.
		conn, err := pgx.Connect(context.Background(), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", host, atoi(t, port)))
		if err != nil {
			t.Fatalf("connect to the side copy: %v", err)
		}
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database").Scan(&n); err != nil || n == 0 {
			t.Errorf("the side copy answers %d, %v", n, err)
		}
		conn.Close(context.Background())
		if code := opr.do(t, "DELETE", "/api/v1/restores/"+side.ID, nil, nil); code != http.StatusOK {
			t.Errorf("remove the side copy: %d", code)
		}
		if _, err := os.Stat(side.Dir); !os.IsNotExist(err) {
			t.Errorf("the side copy's directory is still there: %v", err)
		}
		t.Logf("side copy %s of backup %s at %s, ready in %.1fs", side.ID, side.Backup, side.Address, side.Ready.Sub(side.Started).Seconds())
	})

	t.Run("dashboard", func(t *testing.T) {
		dash := newDashboard(t, chromium.Find(t, "the dashboard is not checked in a browser"))
		viewerTab := dash.tab(t, base, viewer.token)
		// Every node of the topology, with the role status gives it.
		st := waitStatusNodes(t, u)
		for _, n := range st.Nodes {
			sel := fmt.Sprintf(`document.querySelector('.node[data-node="%s"] .role')?.textContent`, name(n))
			if _, err := chromedp.Run(viewerTab, chromedp.Poll[bool](sel+` === "`+n.Role+`"`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
				got, _ := chromedp.Run(viewerTab, chromedp.Evaluate[string](sel+` || "(none)"`))
				t.Errorf("node %s: the dashboard shows role %q, want %q", name(n), got, n.Role)
			}
		}
		// The active region is lost: its failover waits for approval.
		killRegion(t, u, w, "eu-west")
		var rb runbook.Runbook
		deadline := time.Now().Add(90 * time.Second)
		for {
			var st api.StatusView
			if viewer.do(t, "GET", "/api/v1/status?fresh=true", nil, &st) == http.StatusOK && st.Workloads[0].Phase == "waiting-approval" {
				viewer.do(t, "GET", "/api/v1/runbooks/"+st.Workloads[0].Runbook, nil, &rb)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no region failover waiting for approval 90s after eu-west was lost: %+v", st)
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("runbook %s waits for approval", rb.ID)
		if err := chromedp.Do(viewerTab, chromedp.WaitVisible("#approval"), chromedp.WaitVisible("#approve")); err != nil {
			t.Fatalf("the viewer's dashboard shows no approval panel: %v", err)
		}
		disabled, err := chromedp.Run(viewerTab, chromedp.Evaluate[bool](`document.getElementById("approve").disabled`))
		if err != nil || !disabled {
			t.Errorf("the viewer's approve button is enabled (%v)", err)
		}
		_ = chromedp.Do(viewerTab, chromedp.Click("#approve"))
		var e api.Error
		if code := viewer.do(t, "POST", "/api/v1/runbooks/"+rb.ID+"/approve", api.DecisionRequest{}, &e); code != http.StatusForbidden || e.RoleNeeded != "approver" {
			t.Errorf("approve as viewer: %d %+v", code, e)
		}
		time.Sleep(time.Second)
		if viewer.do(t, "GET", "/api/v1/runbooks/"+rb.ID, nil, &rb); rb.Approval != nil {
			t.Fatalf("the runbook was decided by the viewer: %+v", rb.Approval)
		}

		approverTab := dash.tab(t, base, approver.token)
		err = chromedp.Do(approverTab, chromedp.WaitVisible("#approve"))
		if err == nil {
			_, err = chromedp.Run(approverTab, chromedp.Poll[bool](`!document.getElementById("approve").disabled`, chromedp.WithPollingTimeout(10*time.Second)))
		}
		if err == nil {
			err = chromedp.Do(approverTab, chromedp.SendKeys("#reason", "e2e: eu-west is gone"), chromedp.Click("#approve"))
		}
		if err == nil {
			_, err = chromedp.Run(approverTab, chromedp.Poll[bool](`document.getElementById("approval-msg").textContent.startsWith("approved by token:e2e-approver")`, chromedp.WithPollingTimeout(20*time.Second)))
		}
		if err != nil {
			msg, _ := chromedp.Run(approverTab, chromedp.Evaluate[string](`document.getElementById("approval-msg").textContent`))
			t.Fatalf("approving in the dashboard: %v (%s)", err, msg)
		}
		// The runbook moves on past its gate.
		deadline = time.Now().Add(60 * time.Second)
		for {
			viewer.do(t, "GET", "/api/v1/runbooks/"+rb.ID, nil, &rb)
			if gateDone(rb) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the runbook did not move on after the approval: %+v", rb.Steps)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if rb.Approval == nil || rb.Approval.By != "token:e2e-approver" || rb.Approval.Reason != "e2e: eu-west is gone" {
			t.Errorf("approval %+v", rb.Approval)
		}
		// The dashboard shows it moving on.
		if _, err := chromedp.Run(approverTab, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('#runbooks details[data-id="%s"] tr[data-step="await-approval"] td:nth-child(2)')?.textContent === "succeeded"`, rb.ID),
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Errorf("the dashboard does not show the gate passed: %v", err)
		}
		shot, err := chromedp.Run(approverTab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.ArtifactDir(), "dashboard-approved.png")
		if err := os.WriteFile(out, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s; steps: %s", out, stepLine(rb))
		// On a phone's screen nothing is wider than the screen (tables
		// scroll inside their panels).
		if err := chromedp.Do(approverTab, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if fits, err := chromedp.Run(approverTab, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth + 1`)); err != nil || !fits {
			w, _ := chromedp.Run(approverTab, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			t.Errorf("on a 390 px wide screen the page is %d px wide (%v)", w, err)
		}
		if phone, err := chromedp.Run(approverTab, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), "dashboard-phone.png"), phone, 0o644)
		}
		dash.checkConsole(t)
	})
}

func gateDone(rb runbook.Runbook) bool {
	for i, s := range rb.Steps {
		if s.Name == "await-approval" {
			return s.State == runbook.Succeeded && i+1 < len(rb.Steps) && rb.Steps[i+1].State != runbook.Pending
		}
	}
	return false
}

func stepLine(rb runbook.Runbook) string {
	var parts []string
	for _, s := range rb.Steps {
		parts = append(parts, fmt.Sprintf("%s %s %.2fs", s.Name, s.State, s.Seconds))
	}
	return strings.Join(parts, ", ")
}

func waitStatusNodes(t *testing.T, u *topotest.Up) status.Workload {
	t.Helper()
	return u.WaitHealthy(t, time.Minute).Workloads[0]
}

// dashboard is a headless Chromium with one tab per signed-in token, and
// every console message, exception and log entry of them.
type dashboard struct {
	browser  context.Context
	problems chromium.Problems
}

func newDashboard(t *testing.T, browser string) *dashboard {
	t.Helper()
	return &dashboard{browser: chromium.Start(t, browser, filepath.Join(testenv.Dir(t), "profile"), 1280, 1600)}
}

// tab opens the dashboard in a new tab and signs in with token.
func (d *dashboard) tab(t *testing.T, base, token string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(d.browser)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(cancel)
	d.problems.Watch(ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", token), chromedp.Click("#signin"),
		chromedp.WaitVisible("#map .node")); err != nil {
		t.Fatalf("signing in to the dashboard: %v", err)
	}
	return ctx
}

func (d *dashboard) checkConsole(t *testing.T) { d.problems.Check(t) }

func nodeID(t *testing.T, s string) ll.NodeID {
	t.Helper()
	id, err := ll.ParseNodeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
