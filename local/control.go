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
	"os"
	"path/filepath"
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
		switch action {
		case "kill", "stop":
			err = r.signalNode(req.Context(), name, action)
		case "start":
			if err = r.checkNode(name); err == nil {
				err = r.startProcess(name)
			}
		default:
			err = fmt.Errorf("unknown action %q: want kill, stop or start", action)
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
			reply(w, r.links(), nil)
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

// checkParty validates a link endpoint: a region, a node, or the witness.
func (r *Runner) checkParty(p string) error {
	if p == lifeline.WitnessSite {
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
	LatencyMS float64    `json:"latency_ms"`
	Cuts      []wan.Rule `json:"cuts"`
	Routes    int        `json:"routes"`
}

func (r *Runner) links() Links {
	return Links{LatencyMS: float64(r.wan.Latency()) / float64(time.Millisecond), Cuts: r.wan.Rules(), Routes: len(r.wan.Routes())}
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
