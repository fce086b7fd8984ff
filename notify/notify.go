// Package notify sends alarms to webhooks: a JSON POST of the alarm,
// signed with HMAC-SHA256 of the body under the webhook's secret (header
// X-Lifeline-Signature: sha256=HEX, as GitHub signs its webhooks), retried
// with back-off. A webhook that still fails is an error the caller shows;
// it never stops the others.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// SignatureHeader carries the body's HMAC-SHA256.
const SignatureHeader = "X-Lifeline-Signature"

// Webhooks sends alarms to every configured webhook.
type Webhooks struct {
	Hooks []lifeline.Webhook
	// Client defaults to one with a 5 s timeout.
	Client *http.Client
	// Attempts per webhook (default 4), with Backoff doubling from its
	// value (default 500 ms) between them.
	Attempts int
	Backoff  time.Duration
}

// Sign is the signature header's value for body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature under secret.
func Verify(secret, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// Notify posts the alarm to every webhook; the error joins those that
// failed every attempt.
func (w *Webhooks) Notify(ctx context.Context, a lifeline.Alarm) error {
	if len(w.Hooks) == 0 {
		return nil
	}
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range w.Hooks {
		if err := w.send(ctx, h, body); err != nil {
			errs = append(errs, fmt.Errorf("webhook %s: %w", h.URL, err))
		}
	}
	return errors.Join(errs...)
}

func (w *Webhooks) send(ctx context.Context, h lifeline.Webhook, body []byte) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	attempts, backoff := w.Attempts, w.Backoff
	if attempts <= 0 {
		attempts = 4
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	var secret []byte
	if h.Secret.Set() {
		v, err := h.Secret.Resolve()
		if err != nil {
			return err
		}
		secret = []byte(v)
	}
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(backoff << (i - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(last, ctx.Err())
			case <-t.C:
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "lifeline-alarm")
		if secret != nil {
			req.Header.Set(SignatureHeader, Sign(secret, body))
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return nil
		}
		last = fmt.Errorf("status %d", resp.StatusCode)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return last // the receiver refuses it: retrying will not help
		}
	}
	return fmt.Errorf("%d attempts: %w", attempts, last)
}
