package router_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/router"
)

// countUndecodable is an Observer that counts only the undecodable records.
type countUndecodable struct{ got chan string }

func (countUndecodable) HTTPRequest(string, int, time.Duration) {}
func (countUndecodable) DNSAnswer(string)                       {}
func (c countUndecodable) Undecodable(record string)            { c.got <- record }

// A record the writer cannot decode is an error it shows (to refused
// clients, in Undecodable and to the Observer), never a silent "no
// primary": an undecodable lease holds writes, an undecodable state keeps
// the last state read, and a good record clears the error.
func TestWriter_UndecodableRecords(t *testing.T) {
	t.Parallel()
	s := connect(t)
	sub := testenv.Subnet(t)
	const port = 15433
	top := topology(sub, port)
	top.Router.Address = sub + ".10"
	w := &top.Workloads[0]
	w.Routing.WriterPort = port
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := lifeline.WorkloadState{Active: "eu-west", Primary: "eu-west/a", Epoch: 1, Databases: []string{"eu-west", "eu-central"}}
	if err := s.Put(ctx, s.Keys().State(w.Name), state); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, s.Keys().Lease(w.Name), lifeline.LeaseRecord{Node: "eu-west/a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	obs := countUndecodable{got: make(chan string, 8)}
	wr := router.NewWriter(top, w, s, quiet)
	wr.Observer = obs
	done := make(chan error, 1)
	go func() { done <- wr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
	})
	primary := sub + ".1:" + strconv.Itoa(port)
	waitFor(t, "the primary as target", 10*time.Second, func() bool { return wr.Target() == primary })

	put := func(key, value string) {
		t.Helper()
		if _, err := s.Client().Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	put(s.Keys().State(w.Name), `{"active": 7`)
	waitFor(t, "the state's error", 10*time.Second, func() bool { return wr.Undecodable()["state"] != "" })
	if got := <-obs.got; got != "state" {
		t.Errorf("observer told of %q, want state", got)
	}
	if got := wr.Target(); got != primary {
		t.Errorf("with an undecodable state the target is %q, want the last state's primary %s", got, primary)
	}

	put(s.Keys().Lease(w.Name), `not json`)
	waitFor(t, "writes held", 10*time.Second, func() bool { return wr.Target() == "" })
	if got := <-obs.got; got != "lease" {
		t.Errorf("observer told of %q, want lease", got)
	}
	if why := wr.Undecodable()["lease"]; !strings.Contains(why, "lease record") || !strings.Contains(why, "cannot be decoded") {
		t.Errorf("lease error %q", why)
	}

	if err := s.Put(ctx, s.Keys().State(w.Name), state); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, s.Keys().Lease(w.Name), lifeline.LeaseRecord{Node: "eu-west/a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the primary again", 10*time.Second, func() bool { return wr.Target() == primary })
	if bad := wr.Undecodable(); len(bad) != 0 {
		t.Errorf("errors left after good records: %v", bad)
	}
}
