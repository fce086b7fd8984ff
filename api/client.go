package api

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
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Client calls the API of a topology's agents: the first agent that
// answers and reaches a quorum of the control store takes the request.
type Client struct {
	// Endpoints are base URLs (https://host:port), tried in order.
	Endpoints []string
	Token     string
	HTTP      *http.Client

	chosen string
}

// TokenEnv names the environment variable the CLI reads a token from.
const TokenEnv = "LIFELINE_TOKEN"

// LocalClient is the client of the topology whose data directory is
// dataDir: every agent's API, trusting the data directory's certificates
// (and caFile when given), with token, else $LIFELINE_TOKEN, else the
// admin token `lifeline up` left in the data directory.
func LocalClient(dataDir string, t *lifeline.Topology, token, caFile string) (*Client, error) {
	if token == "" {
		token = strings.TrimSpace(os.Getenv(TokenEnv))
	}
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, Dir, AdminTokenFile))
		if err != nil {
			return nil, fmt.Errorf("no API token: give --token or set %s (lifeline token create makes one; lifeline up leaves one in %s): %w",
				TokenEnv, filepath.Join(dataDir, Dir, AdminTokenFile), err)
		}
		token = strings.TrimSpace(string(b))
	}
	files := CAFiles(dataDir)
	if caFile != "" {
		files = append(files, caFile)
	}
	tlsConfig, err := ClientTLS(files...)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsConfig,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout: 3 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	return &Client{Endpoints: APIEndpoints(t), Token: token, HTTP: &http.Client{Transport: tr}}, nil
}

// ErrNoAgent is returned when no agent's API answers.
var ErrNoAgent = errors.New("no agent's API answers")

// CallError is an error answer of the API.
type CallError struct {
	Status int
	Body   Error
	URL    string
}

func (e *CallError) Error() string {
	msg := e.Body.Error
	if len(e.Body.Reasons) > 0 && !strings.Contains(msg, e.Body.Reasons[0]) {
		msg += ": " + strings.Join(e.Body.Reasons, "; ")
	}
	return msg
}

// pick finds the first agent whose health check passes (it answers and
// reaches a quorum): a request is sent to one agent only, so that a
// change is never made twice.
func (c *Client) pick(ctx context.Context) (string, error) {
	if c.chosen != "" {
		return c.chosen, nil
	}
	var tried []string
	for _, ep := range c.Endpoints {
		hctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		err := c.call(hctx, ep, http.MethodGet, V1+"/healthz", nil, nil)
		cancel()
		if err == nil {
			c.chosen = ep
			return ep, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		tried = append(tried, fmt.Sprintf("%s: %v", ep, shortErr(err)))
	}
	return "", fmt.Errorf("%w (is the topology running? lifeline up):\n  %s", ErrNoAgent, strings.Join(tried, "\n  "))
}

func shortErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Endpoint is the agent the client settled on ("" before its first call).
func (c *Client) Endpoint() string { return c.chosen }

// Do sends a request with body (JSON, when not nil) to path and decodes
// the answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	ep, err := c.pick(ctx)
	if err != nil {
		return err
	}
	err = c.call(ctx, ep, method, path, body, out)
	var ce *CallError
	if err != nil && !errors.As(err, &ce) {
		// The agent did not answer: the next call looks for one again.
		c.chosen = ""
	}
	return err
}

func (c *Client) call(ctx context.Context, ep, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, ep+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		ce := &CallError{Status: resp.StatusCode, URL: ep + path}
		if json.Unmarshal(b, &ce.Body) != nil || ce.Body.Error == "" {
			ce.Body.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return ce
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
	}
	return nil
}
