package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/notify"
)

func TestWebhooks_SignedAndRetried(t *testing.T) {
	t.Setenv("HOOK_SECRET", "s3cret")
	var calls atomic.Int32
	got := make(chan lifeline.Alarm, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable) // retried
			return
		}
		if !notify.Verify([]byte("s3cret"), body, r.Header.Get(notify.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a lifeline.Alarm
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- a
	}))
	defer srv.Close()
	hooks := &notify.Webhooks{Hooks: []lifeline.Webhook{{URL: srv.URL, Secret: "env:HOOK_SECRET"}}, Backoff: time.Millisecond}
	a := lifeline.Alarm{ID: "a1", Workload: "orders", Kind: "region-down", Summary: "eu-west is down"}
	if err := hooks.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b.ID != "a1" || calls.Load() != 3 {
		t.Errorf("received %+v after %d calls", b, calls.Load())
	}
}

func TestWebhooks_FailuresAreReturned(t *testing.T) {
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer refused.Close()
	var ok atomic.Int32
	fine := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ok.Add(1) }))
	defer fine.Close()
	hooks := &notify.Webhooks{Hooks: []lifeline.Webhook{{URL: refused.URL}, {URL: fine.URL}}, Backoff: time.Millisecond}
	err := hooks.Notify(context.Background(), lifeline.Alarm{ID: "a2"})
	if err == nil || !strings.Contains(err.Error(), "status 403") || !strings.Contains(err.Error(), refused.URL) {
		t.Errorf("err = %v, want the refused webhook named", err)
	}
	if ok.Load() != 1 {
		t.Errorf("the working webhook got %d posts, want 1: one failing must not stop the others", ok.Load())
	}
	if err := (&notify.Webhooks{Hooks: []lifeline.Webhook{{URL: fine.URL, Secret: "env:LIFELINE_NO_SUCH_VAR"}}}).Notify(context.Background(), lifeline.Alarm{}); err == nil {
		t.Error("an unresolvable secret must be an error, not an unsigned post")
	}
}
