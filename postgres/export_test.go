package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// PromotionStep runs one step of Promote's wait.
func (i *Instance) PromotionStep(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var woken time.Time
	return i.promotionStep(ctx, conn, &woken)
}
