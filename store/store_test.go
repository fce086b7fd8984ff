package store_test

import (
	"context"
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

func TestStore_StateSurvivesMemberLoss(t *testing.T) {
	members, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	init := lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1, Phase: lifeline.PhaseSteady, Databases: []string{"central", "west"}}
	got, rev, err := s.InitState(ctx, "orders", init)
	if err != nil || got.Primary != "west/a" {
		t.Fatalf("init: %+v %v", got, err)
	}
	other := init
	other.Primary = "west/b"
	if got, _, err = s.InitState(ctx, "orders", other); err != nil || got.Primary != "west/a" {
		t.Fatalf("a second init must keep the first: %+v %v", got, err)
	}

	// Losing one of three sites leaves a quorum.
	members[0].Close()
	next := init
	next.Primary, next.Epoch = "west/b", 2
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: next}); err != nil {
		t.Fatal(err)
	}
	stale := init
	stale.Primary, stale.Active, stale.Epoch = "central/a", "central", 2
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: stale}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale swap: err = %v, want ErrConflict", err)
	}
	if got, _, _, err = s.State(ctx, "orders"); err != nil || got.Primary != next.Primary || got.Epoch != 2 {
		t.Fatalf("state = %+v, want %+v (%v)", got, next, err)
	}
}

// ChangeState's conditions: the lease key gone, the writer's guard, and
// what is written with the change (the lease handed over, audit entries).
func TestStore_ChangeState(t *testing.T) {
	_, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	init := lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1, Databases: []string{"west"}}
	if _, _, err := s.InitState(ctx, "orders", init); err != nil {
		t.Fatal(err)
	}
	grant, err := s.Client().Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	st, rev, _, err := s.State(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	took, _, _, err := s.TakeLease(ctx, "orders", lifeline.LeaseRecord{Node: "west/a", Epoch: 1}, rev, grant.ID)
	if err != nil || !took {
		t.Fatalf("take lease: %v %v", took, err)
	}
	took, held, heldID, err := s.TakeLease(ctx, "orders", lifeline.LeaseRecord{Node: "west/b", Epoch: 1}, rev, grant.ID)
	if err != nil || took || held.Node != "west/a" || heldID != grant.ID {
		t.Fatalf("second take: %v %+v %v %v", took, held, heldID, err)
	}
	next := st
	next.Primary, next.Epoch = "west/b", 2
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: next, LeaseGone: true}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("naming a primary while the lease is held: err = %v, want ErrConflict", err)
	}
	// A guard that does not hold: not the leader.
	notLeader := clientv3.Compare(clientv3.CreateRevision("/nobody"), ">", 0)
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: next, Guard: []clientv3.Cmp{notLeader}}); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("guarded change: err = %v, want ErrNotLeader", err)
	}
	if _, err := s.Client().Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	spare, err := s.Client().Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	audit := lifeline.AuditEntry{Workload: "orders", Kind: "test", Result: "named", Actor: "t"}
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: next, LeaseGone: true, Handoff: spare.ID, Audit: []lifeline.AuditEntry{audit}}); err != nil {
		t.Fatal(err)
	}
	l, id, found, err := s.LeaseKey(ctx, "orders")
	if err != nil || !found || id != spare.ID || l != (lifeline.LeaseRecord{Node: "west/b", Epoch: 2}) {
		t.Fatalf("handed-over lease = %+v %x %v %v", l, id, found, err)
	}
	log, err := s.AuditLog(ctx)
	if err != nil || len(log) == 0 || log[len(log)-1].Result != "named" {
		t.Fatalf("audit log = %+v %v", log, err)
	}
	// UpdateState: a refusal changes nothing; ErrUnchanged writes nothing.
	refused := errors.New("refused")
	if _, err := s.UpdateState(ctx, "orders", func(*lifeline.WorkloadState, *store.Change) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("refusal: %v", err)
	}
	_, before, _, _ := s.State(ctx, "orders")
	if _, err := s.UpdateState(ctx, "orders", func(*lifeline.WorkloadState, *store.Change) error { return store.ErrUnchanged }); err != nil {
		t.Fatal(err)
	}
	if _, after, _, _ := s.State(ctx, "orders"); after != before {
		t.Fatalf("an unchanged update wrote (revision %d -> %d)", before, after)
	}
}

// A data directory from before the state record carries its primary over.
func TestStore_InitStateMigratesPrimaryRecord(t *testing.T) {
	_, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Put(ctx, s.Keys().Root()+"workloads/orders/primary", map[string]any{"node": "central/b", "epoch": 7}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.InitState(ctx, "orders", lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1})
	if err != nil || got.Primary != "central/b" || got.Active != "central" || got.Epoch != 7 {
		t.Fatalf("migrated state = %+v %v", got, err)
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
	if _, _, err := s.InitState(ctx, "orders", lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1}); err != nil {
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
			_, _, found, err := s.State(rctx, "orders")
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
func TestStore_WatchState(t *testing.T) {
	_, endpoints := startCluster(t)
	s, err := store.Connect(endpoints, "shop")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := lifeline.WorkloadState{Active: "west", Primary: "west/a", Epoch: 1}
	if _, _, err := s.InitState(ctx, "orders", first); err != nil {
		t.Fatal(err)
	}
	states := make(chan store.Watched, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() { _ = s.WatchState(wctx, "orders", func(st store.Watched) { states <- st }) }()
	next := func() store.Watched {
		t.Helper()
		select {
		case st := <-states:
			return st
		case <-ctx.Done():
			t.Fatal("no state from the watch")
			return store.Watched{}
		}
	}
	if st := next(); st.State.Primary != first.Primary || st.LeaseID != 0 || st.StateRev == 0 {
		t.Fatalf("initial state = %+v", st)
	}

	grant, err := s.Client().Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	second := first
	second.Primary, second.Epoch = "west/b", 2
	// A change of a key between the two is not a change of state.
	if _, err := s.Client().Put(ctx, s.Keys().Root()+"workloads/orders/primary", "x"); err != nil {
		t.Fatal(err)
	}
	_, rev, _, err := s.State(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ChangeState(ctx, "orders", store.Change{Rev: rev, Next: second, LeaseGone: true, Handoff: grant.ID}); err != nil {
		t.Fatal(err)
	}
	_, written, _, _ := s.State(ctx, "orders")
	st := next()
	if st.State.Primary != "west/b" || st.LeaseID != grant.ID || st.Lease.Node != "west/b" || st.Lease.Epoch != 2 ||
		st.StateRev != written || st.Rev != written {
		t.Fatalf("state after the handoff = %+v (revision %d, lease %x)", st, written, grant.ID)
	}

	if _, err := s.Client().Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	if st := next(); st.State.Primary != "west/b" || st.LeaseID != 0 || st.Lease != (lifeline.LeaseRecord{}) {
		t.Fatalf("state after the lease went = %+v", st)
	}
}

// A process that cannot read the state keeps the last one it saw and says
// so; one that never saw any has none (never a guess from the spec).
func TestStateView_KeepsTheLastState(t *testing.T) {
	s, err := store.Connect(testenv.Etcd(t), "view")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := s.View("orders")
	if _, ok, err := v.Read(ctx); ok || !errors.Is(err, store.ErrNoState) {
		t.Fatalf("before any state: ok=%v err=%v, want none and ErrNoState", ok, err)
	}
	if _, _, err := s.InitState(ctx, "orders", lifeline.WorkloadState{Active: "eu-central", Primary: "eu-central/a", Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if st, ok, err := v.Read(ctx); !ok || err != nil || st.Active != "eu-central" {
		t.Fatalf("read: %+v %v %v", st, ok, err)
	}
	dead, stop := context.WithCancel(ctx)
	stop()
	st, ok, err := v.Read(dead)
	if !ok || err == nil || st.Active != "eu-central" || !strings.Contains(err.Error(), "using the state last seen") {
		t.Fatalf("a failed read: %+v ok=%v err=%v; want the last state and an error saying so", st, ok, err)
	}
}
