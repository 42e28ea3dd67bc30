package store

import (
	"context"
	"testing"
	"time"
)

// OldestQueued is the receipt time of the oldest delivery not yet done or
// dead, queued or leased; none when there is none.
func TestOldestQueued(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t))
		ctx := context.Background()
		if _, ok, err := db.OldestQueued(ctx); err != nil || ok {
			t.Fatalf("empty queue: %v %v", ok, err)
		}
		t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
		for i, k := range []string{"a", "b", "c"} {
			if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Event: "Push Hook", Key: k, Body: []byte("{}"),
				ReceivedAt: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}
		at, ok, err := db.OldestQueued(ctx)
		if err != nil || !ok || !at.Equal(t0) {
			t.Fatalf("oldest = %v %v %v, want %v", at, ok, err, t0)
		}
		// Leased still counts; done and dead do not.
		ds, err := db.Lease(ctx, "w", 2, time.Minute, time.Now())
		if err != nil || len(ds) != 2 {
			t.Fatalf("lease: %v %v", ds, err)
		}
		if at, _, _ := db.OldestQueued(ctx); !at.Equal(t0) {
			t.Fatalf("oldest while leased = %v", at)
		}
		for _, d := range ds {
			if d.Key == "a" {
				if err := db.Complete(ctx, d.ID, "w"); err != nil {
					t.Fatal(err)
				}
			} else if dead, err := db.Fail(ctx, d.ID, "w", "no", time.Now(), 1); err != nil || !dead {
				t.Fatalf("fail: %v %v", dead, err)
			}
		}
		if at, ok, _ := db.OldestQueued(ctx); !ok || !at.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("oldest after done and dead = %v %v", at, ok)
		}
	})
}
