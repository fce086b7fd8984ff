package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/metadata"

	"github.com/lifeline-dr/lifeline"
)

func init() {
	// The gRPC client logs every reconnect to a lost member; the store
	// reports what matters through its own errors.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
}

// ErrConflict is returned when a compare-and-swap lost to another writer.
var ErrConflict = errors.New("changed by someone else")

// Store is the typed view of the control store.
type Store struct {
	cli    *clientv3.Client
	keys   Keys
	prober *prober
	opts   options
}

// Connect opens a client to the cluster's control store. It does not wait
// for a quorum: calls fail with their context until there is one.
func Connect(endpoints []string, cluster string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          3 * time.Second,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
		AutoSyncInterval:     0,
	}
	if o.requireLeader {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(requireLeader))
	}
	o.apply(&cfg)
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("control store %s: %w", strings.Join(endpoints, ","), err)
	}
	s := &Store{cli: cli, keys: NewKeys(cluster), opts: o}
	if o.probeEvery > 0 && len(endpoints) > 1 {
		log := o.log
		if log == nil {
			log = slog.Default()
		}
		if s.prober, err = startProber(s, endpoints, o.probeEvery, log); err != nil {
			cli.Close()
			return nil, fmt.Errorf("control store %s: %w", strings.Join(endpoints, ","), err)
		}
	}
	return s, nil
}

// Option tunes Connect.
type Option func(*options)

type options struct {
	requireLeader bool
	probeEvery    time.Duration
	log           *slog.Logger
	tls           *tls.Config
	dial          func(ctx context.Context, addr string) (net.Conn, error)
}

// RequireLeader makes a member cut off from the others refuse requests at
// once ("no leader"), where it would hold them until they time out; the
// client then reads from another member. For operators' commands, which
// must answer while any member is partitioned. Agents do without it: a
// write that waits out an etcd election beats one that fails.
func RequireLeader() Option { return func(o *options) { o.requireLeader = true } }

func requireLeader(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Close releases the client.
func (s *Store) Close() error {
	if s.prober != nil {
		s.prober.stop()
	}
	return s.cli.Close()
}

// ErrLeaseGone is returned by Renew when etcd no longer has the lease
// (expired or revoked): renewing it again cannot help.
var ErrLeaseGone = errors.New("the lease is gone")

// Renew extends a lease once, on a call of its own rather than the
// client's one keepalive stream (which can hang on a partitioned member).
func (s *Store) Renew(ctx context.Context, id clientv3.LeaseID) error {
	ka, err := s.cli.KeepAliveOnce(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && ka.TTL <= 0) {
		return ErrLeaseGone
	}
	return err
}

// Client is the raw etcd client, for leases, elections and watches.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Keys is the key layout.
func (s *Store) Keys() Keys { return s.keys }

// Get reads a JSON value; found is false when the key does not exist.
func (s *Store) Get(ctx context.Context, key string, v any, opts ...clientv3.OpOption) (rev int64, found bool, err error) {
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return 0, false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, true, nil
}

// Put writes a JSON value, optionally under a lease.
func (s *Store) Put(ctx context.Context, key string, v any, opts ...clientv3.OpOption) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := s.cli.Put(ctx, key, string(b), opts...); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Create writes a JSON value only if the key does not exist yet. It returns
// false (and no error) when someone else created it first.
func (s *Store) Create(ctx context.Context, key string, v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return false, fmt.Errorf("create %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// Swap replaces a JSON value if it still has revision rev; ErrConflict otherwise.
func (s *Store) Swap(ctx context.Context, key string, rev int64, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("swap %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("swap %s: %w", key, ErrConflict)
	}
	return nil
}

// List reads every JSON value under a prefix, keyed by the rest of the key.
func List[T any](ctx context.Context, s *Store, prefix string, opts ...clientv3.OpOption) (map[string]T, error) {
	resp, err := s.cli.Get(ctx, prefix, append(opts, clientv3.WithPrefix())...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make(map[string]T, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), prefix)] = v
	}
	return out, nil
}

// Topology returns the topology the cluster was built from.
func (s *Store) Topology(ctx context.Context) (*lifeline.Topology, bool, error) {
	var t lifeline.Topology
	_, found, err := s.Get(ctx, s.keys.Topology(), &t)
	return &t, found, err
}

// Statuses returns the latest report of every live agent for the workload.
func (s *Store) Statuses(ctx context.Context, workload string, opts ...clientv3.OpOption) (map[string]lifeline.NodeStatus, error) {
	return List[lifeline.NodeStatus](ctx, s, s.keys.StatusPrefix(workload), opts...)
}

// Watched is a workload's state and primary lease key as of one revision.
type Watched struct {
	State    lifeline.WorkloadState
	StateRev int64 // the state's mod revision; 0 when there is none
	Lease    lifeline.LeaseRecord
	LeaseID  clientv3.LeaseID // the etcd lease the key lives under; 0 when there is none
	Rev      int64            // the revision this is as of
}

// WatchState sends the workload's state and primary lease key to fn, as
// they are now and after every revision that changes either, until ctx
// ends. One watch over both keys: a transaction that names a primary and
// hands it the lease arrives as one change.
func (s *Store) WatchState(ctx context.Context, workload string, fn func(Watched)) error {
	recKey, leaseKey := s.keys.State(workload), s.keys.Lease(workload)
	// The range holds the two keys and a few between them
	// ("lease" < "lock" < "primary" < "state").
	from, end := leaseKey, recKey+"\x00"
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end))
	if err != nil {
		return fmt.Errorf("watch the state of %s: %w", workload, err)
	}
	var st Watched
	apply := func(kv *mvccpb.KeyValue, deleted bool) error {
		switch string(kv.Key) {
		case recKey:
			st.State, st.StateRev = lifeline.WorkloadState{}, 0
			if !deleted {
				if err := json.Unmarshal(kv.Value, &st.State); err != nil {
					return fmt.Errorf("decode %s: %w", recKey, err)
				}
				st.StateRev = kv.ModRevision
			}
		case leaseKey:
			st.Lease, st.LeaseID = lifeline.LeaseRecord{}, 0
			if !deleted {
				if err := json.Unmarshal(kv.Value, &st.Lease); err != nil {
					return fmt.Errorf("decode %s: %w", leaseKey, err)
				}
				st.LeaseID = clientv3.LeaseID(kv.Lease)
			}
		}
		return nil
	}
	for _, kv := range resp.Kvs {
		if err := apply(kv, false); err != nil {
			return err
		}
	}
	st.Rev = resp.Header.Revision
	fn(st)
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), from, clientv3.WithRange(end), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch the state of %s: %w", workload, err)
		}
		changed := false
		for _, ev := range wr.Events {
			if k := string(ev.Kv.Key); k != recKey && k != leaseKey {
				continue
			}
			if err := apply(ev.Kv, ev.Type == clientv3.EventTypeDelete); err != nil {
				return err
			}
			st.Rev, changed = ev.Kv.ModRevision, true
		}
		if changed {
			fn(st)
		}
	}
	return ctx.Err()
}

// WatchKey sends the key's new value to fn for every change until ctx ends.
// The first call carries the current value (nil when absent).
func (s *Store) WatchKey(ctx context.Context, key string, fn func(value []byte)) error {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("watch %s: %w", key, err)
	}
	var cur []byte
	if len(resp.Kvs) > 0 {
		cur = resp.Kvs[0].Value
	}
	fn(cur)
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				fn(nil)
			} else {
				fn(ev.Kv.Value)
			}
		}
	}
	return ctx.Err()
}

// Status reads one node's latest report of a workload; ok is false when
// it has none (its agent is down).
func (s *Store) Status(ctx context.Context, workload, node string, opts ...clientv3.OpOption) (lifeline.NodeStatus, bool, error) {
	var st lifeline.NodeStatus
	_, found, err := s.Get(ctx, s.keys.Status(workload, node), &st, opts...)
	return st, found, err
}

// GetString reads a plain string value (not JSON); found is false when the
// key does not exist.
func (s *Store) GetString(ctx context.Context, key string, opts ...clientv3.OpOption) (string, bool, error) {
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return "", false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

// Candidates lists an election's candidates, the leader first (etcd's
// concurrency.Election orders them by creation).
func (s *Store) Candidates(ctx context.Context, election string, opts ...clientv3.OpOption) ([]string, error) {
	opts = append(append([]clientv3.OpOption(nil), opts...), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	resp, err := s.cli.Get(ctx, s.keys.Election(election)+"/", opts...)
	if err != nil {
		return nil, fmt.Errorf("read the %s election: %w", election, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Value))
	}
	return out, nil
}

// DeleteStatus removes a node's report of a workload (a node that holds no
// database of it any more).
func (s *Store) DeleteStatus(ctx context.Context, workload, node string) error {
	if _, err := s.cli.Delete(ctx, s.keys.Status(workload, node)); err != nil {
		return fmt.Errorf("delete the report of %s: %w", node, err)
	}
	return nil
}
