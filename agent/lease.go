package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// primaryLease is the lease a primary's agent holds on the primary role.
//
// The rule that keeps two writers apart: the agent renews the lease every
// CheckInterval and, when it has not managed to for LeaseTTL-FenceMargin,
// stops its server (fences) before etcd can expire the lease. The
// controller promotes another node only after the lease key is gone, in a
// transaction that also requires it to be gone.
type primaryLease struct {
	r *workloadRunner

	mu       sync.Mutex
	id       clientv3.LeaseID
	epoch    int64
	deadline time.Time // the server must be fenced by then unless renewed
	// spare is a lease granted ahead of need by a node that is not primary:
	// taking the primary role is then one etcd write, not two. spareSent is
	// when its last renewal was sent.
	spare     clientv3.LeaseID
	spareSent time.Time
}

// ErrLeaseHeld is returned when another node holds the primary lease.
var ErrLeaseHeld = errors.New("the primary lease is held by another node")

// valid reports whether the lease was renewed recently enough to write.
func (l *primaryLease) valid(now time.Time, epoch int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id != 0 && l.epoch == epoch && now.Before(l.deadline)
}

func (l *primaryLease) expiresBy() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

func (l *primaryLease) drop() {
	l.mu.Lock()
	l.id, l.epoch, l.deadline = 0, 0, time.Time{}
	l.mu.Unlock()
}

func (l *primaryLease) window() time.Duration {
	c := l.r.a.cfg.Topology.Control
	return c.LeaseTTL - c.FenceMargin()
}

// acquire takes the lease for the state read at revision stateRev: it
// succeeds only while the key is free and the state still names this
// node, so a controller that is failing over and this agent never both
// win. A lease this node left behind (same epoch, agent restarted) is
// adopted.
//
// seen, when not nil, is the state and lease key as the state watch saw
// them at the state's revision.
func (l *primaryLease) acquire(ctx context.Context, st lifeline.WorkloadState, stateRev int64, seen *store.Watched) error {
	a := l.r.a
	rec := lifeline.LeaseRecord{Node: st.Primary, Epoch: st.Epoch}
	if l.adoptHandoff(ctx, st, seen) {
		return nil
	}
	grant, sent, err := l.takeSpare(ctx)
	if err != nil {
		return fmt.Errorf("grant primary lease: %w", err)
	}
	took, have, haveID, err := a.store.TakeLease(ctx, l.r.w.Name, rec, stateRev, grant.ID)
	if err != nil {
		_, _ = a.store.Client().Revoke(context.Background(), grant.ID)
		return err
	}
	if took {
		l.set(grant.ID, st.Epoch, sent)
		return nil
	}
	if haveID == grant.ID && have == rec {
		// The controller attached the key to this very lease (a handoff
		// the read above missed): it is ours, and revoking it would drop it.
		l.set(grant.ID, st.Epoch, sent)
		return nil
	}
	_, _ = a.store.Client().Revoke(context.Background(), grant.ID)
	if haveID == 0 {
		return fmt.Errorf("take primary lease: the state changed")
	}
	if have != rec {
		return fmt.Errorf("%w: %s (epoch %d)", ErrLeaseHeld, have.Node, have.Epoch)
	}
	// Ours from before a restart: adopt it if it is still alive.
	ka, err := a.store.Client().KeepAliveOnce(ctx, haveID)
	if err != nil || ka.TTL <= 0 {
		return fmt.Errorf("adopt primary lease: %v", err)
	}
	l.set(haveID, st.Epoch, sent)
	return nil
}

// adoptHandoff takes the primary lease when the controller already
// attached the lease key to this node's spare lease while naming it
// primary: no etcd write, so the promotion starts one round trip sooner.
// The fencing deadline counts from the spare's last renewal, as for a
// spare taken by acquire.
//
// The lease key comes from seen when the watch saw it with the record
// (the controller writes both in one transaction), else from a read.
func (l *primaryLease) adoptHandoff(ctx context.Context, st lifeline.WorkloadState, seen *store.Watched) bool {
	l.mu.Lock()
	spare, sent := l.spare, l.spareSent
	l.mu.Unlock()
	if spare == 0 {
		return false
	}
	var have lifeline.LeaseRecord
	var id clientv3.LeaseID
	if seen != nil && seen.State.Primary == st.Primary && seen.State.Epoch == st.Epoch && seen.LeaseID != 0 {
		have, id = seen.Lease, seen.LeaseID
	} else {
		var found bool
		var err error
		have, id, found, err = l.r.a.store.LeaseKey(ctx, l.r.w.Name, clientv3.WithSerializable())
		if err != nil || !found {
			return false
		}
	}
	if id != spare || have.Node != st.Primary || have.Epoch != st.Epoch {
		return false
	}
	if time.Since(sent) >= l.window()/2 {
		// Not renewed lately (renewals come every check interval): renew
		// it now, and count from this renewal. A spare renewed within half
		// the window leaves the primary at least that long to renew again.
		now := time.Now()
		if ka, err := l.r.a.store.Client().KeepAliveOnce(ctx, spare); err != nil || ka.TTL <= 0 {
			return false
		}
		sent = now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare != spare {
		return false // renewed into a new spare meanwhile: take the slow path
	}
	l.spare = 0
	l.id, l.epoch, l.deadline = spare, st.Epoch, sent.Add(l.window())
	l.r.log.Info("the controller handed the primary lease over", "epoch", st.Epoch)
	return true
}

// spareID is the spare lease, 0 when there is none.
func (l *primaryLease) spareID() clientv3.LeaseID {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != 0 {
		return 0
	}
	return l.spare
}

// takeSpare returns the spare lease, or a new one, and the moment from
// which its TTL runs at the latest: when its last renewal (or the grant)
// was sent. A spare renewed within the last check interval is used as it
// is; the fencing deadline is counted from that renewal.
func (l *primaryLease) takeSpare(ctx context.Context) (*clientv3.LeaseGrantResponse, time.Time, error) {
	l.mu.Lock()
	spare, sent := l.spare, l.spareSent
	l.spare = 0
	l.mu.Unlock()
	cli := l.r.a.store.Client()
	if spare != 0 && time.Since(sent) < l.r.a.cfg.Topology.Control.CheckInterval {
		return &clientv3.LeaseGrantResponse{ID: spare}, sent, nil
	}
	now := time.Now()
	if spare != 0 {
		if ka, err := cli.KeepAliveOnce(ctx, spare); err == nil && ka.TTL > 0 {
			return &clientv3.LeaseGrantResponse{ID: spare, TTL: ka.TTL}, now, nil
		}
	}
	g, err := cli.Grant(ctx, int64(l.r.a.cfg.Topology.Control.LeaseTTL/time.Second))
	return g, now, err
}

// keepSpare keeps a spare lease ready while the node is not primary.
func (l *primaryLease) keepSpare(ctx context.Context) {
	l.mu.Lock()
	holding, spare := l.id != 0, l.spare
	l.mu.Unlock()
	if holding {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, l.r.a.cfg.Topology.Control.CheckInterval)
	defer cancel()
	cli := l.r.a.store.Client()
	sent := time.Now()
	if spare != 0 {
		if ka, err := cli.KeepAliveOnce(cctx, spare); err == nil && ka.TTL > 0 {
			l.mu.Lock()
			if l.spare == spare {
				l.spareSent = sent
			}
			l.mu.Unlock()
			return
		}
	}
	g, err := cli.Grant(cctx, int64(l.r.a.cfg.Topology.Control.LeaseTTL/time.Second))
	l.mu.Lock()
	if err == nil && l.id == 0 {
		l.spare, l.spareSent = g.ID, sent
	} else {
		l.spare = 0
	}
	l.mu.Unlock()
}

func (l *primaryLease) set(id clientv3.LeaseID, epoch int64, sent time.Time) {
	l.mu.Lock()
	l.id, l.epoch, l.deadline = id, epoch, sent.Add(l.window())
	l.mu.Unlock()
}

// renew extends the lease once. The deadline moves from the moment the
// request was sent, not answered: etcd restarts the TTL no earlier than that.
func (l *primaryLease) renew(ctx context.Context) error {
	l.mu.Lock()
	id := l.id
	l.mu.Unlock()
	if id == 0 {
		return nil
	}
	sent := time.Now()
	cctx, cancel := context.WithTimeout(ctx, l.r.a.cfg.Topology.Control.CheckInterval*2)
	defer cancel()
	err := l.r.a.store.Renew(cctx, id)
	if errors.Is(err, store.ErrLeaseGone) {
		l.drop()
		return errors.New("the primary lease expired")
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.id == id {
		l.deadline = sent.Add(l.window())
	}
	l.mu.Unlock()
	return nil
}

// hold renews the lease every check interval and fences the server the
// moment the deadline passes without a renewal, or whenever it serves as
// primary with no lease held (one a renewal found expired, or one let go
// of while the server was starting). Renewals run off the loop: one that
// hangs on a member cut off from the others must not hold the fencing
// back past the deadline.
func (l *primaryLease) hold(ctx context.Context) {
	interval := l.r.a.cfg.Topology.Control.CheckInterval
	renew := time.NewTicker(interval)
	defer renew.Stop()
	fence := time.NewTimer(time.Hour)
	defer fence.Stop()
	renewed := make(chan error, 1)
	renewing := false
	for {
		if l.expiresBy().IsZero() && l.r.role() == lifeline.RolePrimary && l.r.pg.Running() {
			l.r.fence("serving as primary without a valid primary lease")
		}
		fence.Reset(time.Hour)
		if deadline := l.expiresBy(); !deadline.IsZero() {
			fence.Reset(time.Until(deadline))
		}
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			if renewing {
				continue
			}
			renewing = true
			go func() {
				l.keepSpare(ctx)
				renewed <- l.renew(ctx)
			}()
		case err := <-renewed:
			renewing = false
			switch d := l.expiresBy(); {
			case err == nil:
			case d.IsZero(): // let go of already
				l.r.log.Warn("primary lease not renewed", "err", err)
			default:
				l.r.log.Warn("primary lease not renewed", "err", err, "fence_in", time.Until(d).Round(time.Millisecond))
			}
		case <-fence.C:
			if d := l.expiresBy(); !d.IsZero() && !d.After(time.Now()) {
				// Let go of it before stopping the server: a renewal still
				// in flight must not make it valid again meanwhile, or the
				// reconcile that the server's exit wakes would start it
				// again as primary. The agent takes the lease again
				// (adopting it if etcd still has it) before it serves.
				l.drop()
				l.r.fence("the primary lease was not renewed in time")
			}
		}
	}
}

func (l *primaryLease) epochHeld() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// release lets go of the lease at once (revoking it in etcd), for a
// primary that stopped cleanly: the key vanishes now, not after its TTL.
func (l *primaryLease) release(ctx context.Context) error {
	l.mu.Lock()
	id := l.id
	l.id, l.epoch, l.deadline = 0, 0, time.Time{}
	l.mu.Unlock()
	if id == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := l.r.a.store.Client().Revoke(cctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("let go of the primary lease: %w", err)
	}
	return nil
}
