package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OldestQueued returns when the oldest delivery still in the queue (queued
// or leased: received and not yet done or dead) was received; ok is false
// when the queue is empty.
func (db *DB) OldestQueued(ctx context.Context) (received time.Time, ok bool, err error) {
	var us sql.NullInt64
	err = db.r.QueryRowContext(ctx, `SELECT MIN(received_at) FROM deliveries WHERE state IN ('queued', 'leased')`).Scan(&us)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest queued delivery: %w", err)
	}
	if !us.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(us.Int64), true, nil
}
