package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/store"
)

// startCluster starts three embedded members on loopback, as a local
// topology places them, and stops them at cleanup.
func startCluster(t *testing.T) ([]*store.Member, []string) {
	t.Helper()
	dir := testenv.Dir(t)
	net := testenv.Subnet(t)
	cluster := map[string]string{}
	var endpoints []string
	for i, name := range []string{"west", "central", "witness"} {
		cluster[name] = fmt.Sprintf("http://%s.%d:2380", net, i+1)
		endpoints = append(endpoints, fmt.Sprintf("http://%s.%d:2379", net, i+1))
	}
	members := make([]*store.Member, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, name := range []string{"west", "central", "witness"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			members[i], errs[i] = store.StartMember(ctx, store.MemberConfig{
				Name: name, Dir: fmt.Sprintf("%s/%s", dir, name),
				ClientURL: endpoints[i], PeerURL: cluster[name], Cluster: cluster, Token: "test",
				LogFile: fmt.Sprintf("%s/%s.log", dir, name),
			})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range members {
			if m != nil {
				m.Close()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return members, endpoints
}

func TestStore_PrimaryRecordSurvivesMemberLoss(t *testing.T) {
	members, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rec := lifeline.PrimaryRecord{Node: "west/a", Epoch: 1}
	created, err := s.Create(ctx, s.Keys().Primary("orders"), rec)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	created, err = s.Create(ctx, s.Keys().Primary("orders"), lifeline.PrimaryRecord{Node: "west/b", Epoch: 1})
	if err != nil || created {
		t.Fatalf("second create must lose: %v %v", created, err)
	}
	got, rev, found, err := s.Primary(ctx, "orders")
	if err != nil || !found || got.Node != "west/a" {
		t.Fatalf("primary = %+v %v %v", got, found, err)
	}

	// Losing one of three sites leaves a quorum.
	members[0].Close()
	next := lifeline.PrimaryRecord{Node: "west/b", Epoch: 2}
	if err := s.Swap(ctx, s.Keys().Primary("orders"), rev, next); err != nil {
		t.Fatal(err)
	}
	if err := s.Swap(ctx, s.Keys().Primary("orders"), rev, lifeline.PrimaryRecord{Node: "central/a", Epoch: 2}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale swap: err = %v, want ErrConflict", err)
	}
	got, _, _, err = s.Primary(ctx, "orders")
	if err != nil || got != next {
		t.Fatalf("primary = %+v, want %+v (%v)", got, next, err)
	}
}
