package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/wan"
)

// The control socket lets commands from another terminal act on the
// topology that `up` runs: stop, kill and start nodes, cut and heal links,
// and shut down.
func (r *Runner) serveControl() (*http.Server, error) {
	path := r.dir.Socket()
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, r.states(), nil)
	})
	node := func(req *http.Request) string {
		if req.PathValue("zone") == "" {
			return req.PathValue("region")
		}
		return req.PathValue("region") + "/" + req.PathValue("zone")
	}
	act := func(w http.ResponseWriter, req *http.Request) {
		name, action := node(req), req.PathValue("action")
		var err error
		switch {
		case r.isRegion(name) && (action == "kill" || action == "start"):
			err = r.regionAction(req.Context(), name, action)
		case action == "kill", action == "stop":
			_ = r.thaw(name) // a frozen agent cannot act on SIGTERM
			err = r.signalNode(req.Context(), name, action)
		case action == "start":
			if err = r.checkNode(name); err == nil {
				err = r.startProcess(name)
			}
		case action == "freeze":
			var d time.Duration
			if d, err = time.ParseDuration(req.URL.Query().Get("for")); err != nil || d <= 0 || d > maxFreeze {
				err = fmt.Errorf("freeze %s: want for=DURATION, above 0 and at most %s", name, maxFreeze)
			} else {
				err = r.freeze(name, d)
			}
		case action == "thaw":
			err = r.thaw(name)
		default:
			err = fmt.Errorf("unknown action %q: want kill, stop, start, freeze or thaw", action)
		}
		reply(w, r.states(), err)
	}
	mux.HandleFunc("POST /v1/nodes/{region}/{zone}/{action}", act)
	mux.HandleFunc("POST /v1/nodes/{region}/{action}", act)
	mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, r.links(), nil)
	})
	mux.HandleFunc("POST /v1/links/{action}", func(w http.ResponseWriter, req *http.Request) {
		var rule wan.Rule
		if err := json.NewDecoder(req.Body).Decode(&rule); err != nil || rule.A == "" {
			reply(w, nil, fmt.Errorf("want {\"a\": REGION|NODE, \"b\": REGION|NODE}: %v", err))
			return
		}
		if rule.A == "*" && req.PathValue("action") == "heal" {
			r.wan.Heal(wan.Rule{})
			reply(w, r.links(), r.applyCuts())
			return
		}
		if err := r.checkParty(rule.A); err != nil {
			reply(w, nil, err)
			return
		}
		if rule.B != "" {
			if err := r.checkParty(rule.B); err != nil {
				reply(w, nil, err)
				return
			}
		}
		switch req.PathValue("action") {
		case "cut":
			r.wan.Cut(rule)
		case "heal":
			r.wan.Heal(rule)
		default:
			reply(w, nil, fmt.Errorf("unknown action %q: want cut or heal", req.PathValue("action")))
			return
		}
		// In network namespaces the packets themselves are dropped.
		reply(w, r.links(), r.applyCuts())
	})
	mux.HandleFunc("POST /v1/latency", func(w http.ResponseWriter, req *http.Request) {
		var d struct {
			wan.Rule
			Extra string `json:"extra"`
		}
		if err := json.NewDecoder(req.Body).Decode(&d); err != nil || d.A == "" || d.B == "" {
			reply(w, nil, fmt.Errorf("want {\"a\": REGION|NODE, \"b\": REGION|NODE, \"extra\": DURATION}: %v", err))
			return
		}
		extra, err := time.ParseDuration(strings.TrimPrefix(d.Extra, "+"))
		if d.Extra == "0" {
			extra, err = 0, nil
		}
		if err != nil || extra < 0 || extra > maxDelay {
			reply(w, nil, fmt.Errorf("extra latency %q: want +DURATION up to %s, or 0 to remove it", d.Extra, maxDelay))
			return
		}
		for _, p := range []string{d.A, d.B} {
			if err := r.checkParty(p); err != nil {
				reply(w, nil, err)
				return
			}
		}
		r.wan.SetDelay(d.Rule, extra)
		reply(w, r.links(), nil)
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, _ *http.Request) {
		r.once.Do(func() { close(r.down) })
		reply(w, map[string]string{"state": "stopping"}, nil)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

// checkNode validates a node name ("eu-west/a") or "witness".
func (r *Runner) checkNode(name string) error {
	if (name == lifeline.WitnessSite && r.t.Witness != nil) || name == routerName {
		return nil
	}
	id, err := lifeline.ParseNodeID(name)
	if err != nil {
		return err
	}
	_, err = r.t.Zone(id)
	return err
}

// checkParty validates a link endpoint: a region, a node, the witness, or
// the router when it has an address of its own.
func (r *Runner) checkParty(p string) error {
	if p == lifeline.WitnessSite {
		return nil
	}
	if p == wan.RouterParty && r.hostOf(routerName) == wan.RouterParty {
		return nil
	}
	if id, err := lifeline.ParseNodeID(p); err == nil {
		_, err := r.t.Zone(id)
		return err
	}
	_, err := r.t.Region(p)
	return err
}

// Links is the state of the emulated network.
type Links struct {
	// Isolation is loopback (routes cut) or netns (packets dropped).
	Isolation lifeline.Isolation `json:"isolation,omitempty"`
	LatencyMS float64            `json:"latency_ms"`
	Cuts      []wan.Rule         `json:"cuts"`
	Delays    []wan.Delay        `json:"delays,omitempty"`
	Routes    int                `json:"routes"`
}

func (r *Runner) links() Links {
	iso := r.t.Isolation
	if iso == "" {
		iso = lifeline.IsolationLoopback
	}
	return Links{Isolation: iso, LatencyMS: float64(r.wan.Latency()) / float64(time.Millisecond), Cuts: r.wan.Rules(), Delays: r.wan.Delays(), Routes: len(r.wan.Routes())}
}

// Bounds of the faults the control socket injects: a freeze always ends
// by itself, and an extra latency stays below the clients' timeouts' scale.
const (
	maxFreeze = 10 * time.Minute
	maxDelay  = time.Minute
)

// isRegion reports whether name is one of the topology's regions.
func (r *Runner) isRegion(name string) bool {
	_, err := r.t.Region(name)
	return err == nil && !strings.Contains(name, "/")
}

// regionAction kills every running node of a region at the same instant
// (SIGKILL to all their process groups in one go, as when the region is
// lost), or starts every node of it that is not running.
func (r *Runner) regionAction(ctx context.Context, region, action string) error {
	var names []string
	for _, id := range r.t.Nodes() {
		if id.Region == region {
			names = append(names, id.String())
		}
	}
	if action == "start" {
		started := 0
		for _, n := range names {
			if r.pid(n) != 0 {
				continue
			}
			if err := r.startProcess(n); err != nil {
				return err
			}
			started++
		}
		if started == 0 {
			return fmt.Errorf("every node of %s is already running", region)
		}
		return nil
	}
	r.mu.Lock()
	var victims []*process
	for _, n := range names {
		if p, ok := r.procs[n]; ok && p.state == "running" {
			victims = append(victims, p)
		}
	}
	if len(victims) == 0 {
		r.mu.Unlock()
		return fmt.Errorf("no node of %s is running", region)
	}
	for _, p := range victims {
		if t, frozen := r.frozen[p.name]; frozen {
			t.Stop()
			delete(r.frozen, p.name)
		}
		p.state = "killed"
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	r.mu.Unlock()
	r.log.Warn("region kill", "region", region, "nodes", len(victims))
	for _, p := range victims {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		waitGroupGone(p.cmd.Process.Pid)
	}
	return nil
}

// freeze stops a running node's process group (agent, etcd member,
// PostgreSQL) with SIGSTOP and sends SIGCONT after d: a freeze always ends,
// even when whoever asked for it is gone.
func (r *Runner) freeze(name string, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.procs[name]
	if !ok || p.state != "running" {
		return fmt.Errorf("node %s is not running", name)
	}
	if _, frozen := r.frozen[name]; frozen {
		return fmt.Errorf("node %s is already frozen", name)
	}
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freeze %s: %w", name, err)
	}
	r.frozen[name] = time.AfterFunc(d, func() { _ = r.thaw(name) })
	r.log.Warn("node frozen", "name", name, "for", d)
	return nil
}

// thaw sends SIGCONT to a frozen node's process group at once.
func (r *Runner) thaw(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, frozen := r.frozen[name]
	if !frozen {
		return nil
	}
	t.Stop()
	delete(r.frozen, name)
	if p, ok := r.procs[name]; ok {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	}
	r.log.Info("node thawed", "name", name)
	return nil
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	resp := response{}
	if v != nil {
		resp.Result, _ = json.Marshal(v)
	}
	if err != nil {
		resp.Error = err.Error()
		w.WriteHeader(http.StatusBadRequest)
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// Client talks to the `up` running on a data directory.
type Client struct {
	dir  string
	http *http.Client
}

// Dial returns a client for the data directory's control socket.
func Dial(dataDir string) (*Client, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(abs, socketFile)
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("no lifeline up is running on %s (no %s)", abs, socketFile)
	}
	return &Client{dir: abs, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://up"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("no lifeline up answers on %s: %w", c.dir, err)
	}
	defer resp.Body.Close()
	var r response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	if out != nil && r.Result != nil {
		return json.Unmarshal(r.Result, out)
	}
	return nil
}

// Nodes lists the topology's processes.
func (c *Client) Nodes(ctx context.Context) ([]NodeState, error) {
	var out []NodeState
	return out, c.call(ctx, http.MethodGet, "/v1/nodes", nil, &out)
}

// Node kills, stops or starts a node ("eu-west/a") or the witness.
func (c *Client) Node(ctx context.Context, name, action string) ([]NodeState, error) {
	var out []NodeState
	return out, c.call(ctx, http.MethodPost, "/v1/nodes/"+name+"/"+action, nil, &out)
}

// Freeze stops a node's processes for d (SIGSTOP, then SIGCONT).
func (c *Client) Freeze(ctx context.Context, name string, d time.Duration) ([]NodeState, error) {
	var out []NodeState
	return out, c.call(ctx, http.MethodPost, "/v1/nodes/"+name+"/freeze?for="+url.QueryEscape(d.String()), nil, &out)
}

// Delay sets the extra latency between two parties (0 removes it).
func (c *Client) Delay(ctx context.Context, rule wan.Rule, extra string) (Links, error) {
	var out Links
	body := map[string]string{"a": rule.A, "b": rule.B, "extra": extra}
	return out, c.call(ctx, http.MethodPost, "/v1/latency", body, &out)
}

// Link cuts or heals links.
func (c *Client) Link(ctx context.Context, action string, rule wan.Rule) (Links, error) {
	var out Links
	return out, c.call(ctx, http.MethodPost, "/v1/links/"+action, rule, &out)
}

// Links shows the emulated network.
func (c *Client) Links(ctx context.Context) (Links, error) {
	var out Links
	return out, c.call(ctx, http.MethodGet, "/v1/links", nil, &out)
}

// Down asks `up` to stop the topology and waits until it has.
func (c *Client) Down(ctx context.Context) error {
	if err := c.call(ctx, http.MethodPost, "/v1/down", nil, nil); err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(c.dir, socketFile)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if c.call(ctx, http.MethodGet, "/v1/nodes", nil, nil) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
