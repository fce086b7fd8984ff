package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/store"
)

// startCluster starts three embedded members on loopback, as a local
// topology places them, and stops them at cleanup.
func startCluster(t *testing.T) ([]*store.Member, []string) {
	t.Helper()
	members, endpoints, _ := startMembers(t, testenv.Dir(t), testenv.Subnet(t), "http", nil)
	return members, endpoints
}

var memberNames = []string{"west", "central", "witness"}

// startMembers starts a member of each of memberNames on sub.1, sub.2,
// sub.3, with tlsOf's TLS when it is not nil, and stops them at cleanup.
func startMembers(t *testing.T, dir, sub, scheme string, tlsOf func(name string) *store.MemberTLS) (members []*store.Member, clientURLs, peerURLs []string) {
	t.Helper()
	cluster := map[string]string{}
	for i, name := range memberNames {
		cluster[name] = fmt.Sprintf("%s://%s.%d:2380", scheme, sub, i+1)
		clientURLs = append(clientURLs, fmt.Sprintf("%s://%s.%d:2379", scheme, sub, i+1))
		peerURLs = append(peerURLs, cluster[name])
	}
	members = make([]*store.Member, len(memberNames))
	var wg sync.WaitGroup
	errs := make([]error, len(memberNames))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, name := range memberNames {
		cfg := store.MemberConfig{
			Name: name, Dir: fmt.Sprintf("%s/%s", dir, name),
			ClientURL: clientURLs[i], PeerURL: cluster[name], Cluster: cluster, Token: "test",
			LogFile: fmt.Sprintf("%s/%s.log", dir, name),
		}
		if tlsOf != nil {
			cfg.TLS = tlsOf(name)
		}
		wg.Go(func() { members[i], errs[i] = store.StartMember(ctx, cfg) })
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
	return members, clientURLs, peerURLs
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

// A member behind a partition keeps its connections open while no byte
// flows. The store must stop sending it requests: otherwise every request
// that lands on it hangs until gRPC's keepalive (10 s at the least) gives
// the connection up.
func TestStore_SkipsSilentMembers(t *testing.T) {
	_, endpoints := startCluster(t)
	gate := startGate(t, strings.TrimPrefix(endpoints[0], "http://"))
	eps := []string{"http://" + gate.addr, endpoints[1], endpoints[2]}
	s, err := store.Connect(eps, "shop", store.SkipSilentMembers(100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Create(ctx, s.Keys().Primary("orders"), lifeline.PrimaryRecord{Node: "west/a", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	inUse := func(want int) {
		t.Helper()
		for len(s.Client().Endpoints()) != want {
			select {
			case <-ctx.Done():
				t.Fatalf("endpoints in use: %v, want %d of them", s.Client().Endpoints(), want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	readAll := func() {
		t.Helper()
		// Round robin sends some of these to every endpoint in use; one
		// that reached the silent member would hang far past its timeout.
		for i := 0; i < 30; i++ {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _, found, err := s.Primary(rctx, "orders")
			rcancel()
			if err != nil || !found {
				t.Fatalf("read %d: found=%v err=%v", i, found, err)
			}
		}
	}
	readAll()

	gate.cut(true)
	inUse(2)
	if slices.Contains(s.Client().Endpoints(), eps[0]) {
		t.Fatalf("the silent member is still in use: %v", s.Client().Endpoints())
	}
	readAll()

	gate.cut(false)
	inUse(3)
	readAll()
}

// gate relays TCP to a target and can stop every byte, as a partition does,
// without closing a connection; when it opens again, the connections that
// spanned the cut are closed.
type gate struct {
	addr string
	mu   sync.Mutex
	shut bool
	cuts map[net.Conn]bool // connections open during a cut
}

func startGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", testenv.Subnet(t)+".9:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{addr: ln.Addr().String(), cuts: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for c := range g.cuts {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.cuts[c], g.cuts[up] = g.shut, g.shut
			g.mu.Unlock()
			go g.pipe(c, up)
			go g.pipe(up, c)
		}
	}()
	return g
}

func (g *gate) pipe(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if shut {
			continue // dropped
		}
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (g *gate) cut(shut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = shut
	for c, spanned := range g.cuts {
		if shut {
			g.cuts[c] = true
		} else if spanned {
			c.Close()
			delete(g.cuts, c)
		}
	}
}

// The controller names a primary and hands it the lease in one transaction;
// the watch must deliver both as one state, and the lease key's going.
func TestStore_WatchPrimary(t *testing.T) {
	_, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := lifeline.PrimaryRecord{Node: "west/a", Epoch: 1}
	if _, err := s.Create(ctx, s.Keys().Primary("orders"), first); err != nil {
		t.Fatal(err)
	}
	states := make(chan store.PrimaryState, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() { _ = s.WatchPrimary(wctx, "orders", func(st store.PrimaryState) { states <- st }) }()
	next := func() store.PrimaryState {
		t.Helper()
		select {
		case st := <-states:
			return st
		case <-ctx.Done():
			t.Fatal("no state from the watch")
			return store.PrimaryState{}
		}
	}
	if st := next(); st.Record != first || st.LeaseID != 0 || st.RecordRev == 0 {
		t.Fatalf("initial state = %+v", st)
	}

	grant, err := s.Client().Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	second := lifeline.PrimaryRecord{Node: "west/b", Epoch: 2}
	rb, _ := json.Marshal(second)
	lb, _ := json.Marshal(lifeline.LeaseRecord{Node: "west/b", Epoch: 2})
	// A lock change between the two keys is not a state change.
	if _, err := s.Client().Put(ctx, s.Keys().Lock("orders"), "x"); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Client().Txn(ctx).Then(
		clientv3.OpPut(s.Keys().Primary("orders"), string(rb)),
		clientv3.OpPut(s.Keys().Lease("orders"), string(lb), clientv3.WithLease(grant.ID))).Commit()
	if err != nil {
		t.Fatal(err)
	}
	st := next()
	if st.Record != second || st.LeaseID != grant.ID || st.Lease.Node != "west/b" || st.Lease.Epoch != 2 ||
		st.RecordRev != resp.Header.Revision || st.Rev != resp.Header.Revision {
		t.Fatalf("state after the handoff = %+v (revision %d, lease %x)", st, resp.Header.Revision, grant.ID)
	}

	if _, err := s.Client().Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	if st := next(); st.Record != second || st.LeaseID != 0 || st.Lease != (lifeline.LeaseRecord{}) {
		t.Fatalf("state after the lease went = %+v", st)
	}
}
