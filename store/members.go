package store

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// SkipSilentMembers keeps the members that stop answering out of the
// client's rotation, checking each every interval.
//
// The client spreads requests over every endpoint (gRPC round robin). A
// member behind a partition still looks connected: bytes stop flowing, but
// nothing closes the connection, and gRPC's keepalive pings, which would
// notice, come at most every 10 s. Until then every request sent its way
// hangs: reads time out, leases go unrenewed, the controller loses its
// election, all for a member the others have already given up on.
//
// A member answers if a local read that requires it to know a leader comes
// back within twice the interval; one cut off from the others loses its
// leader within an election timeout. A member is left out after two checks
// in a row without an answer (one slow answer on a busy machine is not a
// partition), and back at its first answer. When no member answers, the
// client keeps them all: there is nothing better to send to.
func SkipSilentMembers(interval time.Duration, log *slog.Logger) Option {
	return func(o *options) { o.probeEvery, o.log = interval, log }
}

// prober checks each member over a client of its own, so that its checks
// never queue behind the requests it is there to protect.
type prober struct {
	s        *Store
	all      []string
	every    time.Duration
	log      *slog.Logger
	clients  []*clientv3.Client
	cancel   context.CancelFunc
	done     chan struct{}
	inUse    []string
	misses   []int // checks in a row each member did not answer
	checkKey string
}

func startProber(s *Store, endpoints []string, every time.Duration, log *slog.Logger) (*prober, error) {
	p := &prober{s: s, all: endpoints, every: every, log: log, inUse: endpoints, misses: make([]int, len(endpoints)),
		done: make(chan struct{}), checkKey: s.keys.Root() + "probe"}
	for _, ep := range endpoints {
		cfg := clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: 2 * every,
			Logger:      zap.NewNop(),
		}
		s.opts.apply(&cfg)
		cli, err := clientv3.New(cfg)
		if err != nil {
			p.closeClients()
			return nil, err
		}
		p.clients = append(p.clients, cli)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(ctx)
	return p, nil
}

func (p *prober) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		p.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check probes every member at once and puts the ones that answered in
// rotation, when that changes.
func (p *prober) check(ctx context.Context) {
	ok := make([]bool, len(p.clients))
	var wg sync.WaitGroup
	for i, cli := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 2*p.every)
			defer cancel()
			_, err := cli.Get(cctx, p.checkKey, clientv3.WithSerializable(), clientv3.WithCountOnly())
			ok[i] = err == nil
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	var answering, silent []string
	for i, ep := range p.all {
		if ok[i] {
			p.misses[i] = 0
		} else {
			p.misses[i]++
		}
		if p.misses[i] < 2 {
			answering = append(answering, ep)
		} else {
			silent = append(silent, ep)
		}
	}
	use := answering
	if len(answering) == 0 {
		use = p.all
	}
	if slices.Equal(use, p.inUse) {
		return
	}
	switch {
	case len(answering) == 0:
		p.log.Warn("no etcd member answers; requests go to all of them", "silent", silent)
	case len(silent) > 0:
		p.log.Warn("etcd members not answering; requests go to the others", "silent", silent, "in_use", use)
	default:
		p.log.Info("every etcd member answers again", "in_use", use)
	}
	p.inUse = use
	p.s.cli.SetEndpoints(use...)
}

func (p *prober) closeClients() {
	for _, c := range p.clients {
		_ = c.Close()
	}
}

func (p *prober) stop() {
	p.cancel()
	<-p.done
	p.closeClients()
}
