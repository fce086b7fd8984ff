package postgres

import "context"

// WakeRetryWait runs the promotion's wake-up loop alone, until done closes.
func (i *Instance) WakeRetryWait(ctx context.Context, done <-chan struct{}) { i.wakeRetryWait(ctx, done) }
