package controller

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("fence", func(e *Env) runbook.Action { return &fence{base{e, "fence"}} }) }

// fence waits until the old primary's lease is gone. Its agent stops its
// server before the lease can expire (or died, and its server with it),
// so no write is accepted there any more.
type fence struct{ base }

// Check reads from the nearest member (serializable): the promote step's
// transaction requires the lease gone, so a stale answer here can only make
// that transaction fail, never promote next to a live primary.
func (s *fence) Check(ctx context.Context, rb *runbook.Runbook) (bool, error) {
	_, _, held, err := s.S.LeaseKey(ctx, rb.Workload, clientv3.WithSerializable())
	return err == nil && !held, err
}

func (s *fence) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	_, err := s.until(ctx, s.T.Control.LeaseTTL+s.T.Control.CheckInterval*2, s.T.Control.CheckInterval/2, func() (bool, string, error) {
		ok, err := s.Check(ctx, rb)
		return ok && err == nil, "", nil
	})
	if errors.Is(err, ErrTimeout) {
		return "", errors.New("the primary holds its lease again: it is alive, no failover")
	}
	return "", err
}
