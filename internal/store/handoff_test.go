package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A delivery enqueued with a lease is stored leased to its owner (its
// first attempt): nobody else leases it until the lease runs out, and the
// owner completes it.
func TestEnqueueLeased(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		now := time.Now()
		d := Delivery{Source: "gitlab", Event: "Merge Request Hook", Key: "k1", Body: mrHook(t), ReceivedAt: now,
			LeaseOwner: "host/intake", LeaseUntil: now.Add(time.Minute)}
		id, dup, err := db.Enqueue(ctx, d)
		if err != nil || dup {
			t.Fatalf("Enqueue: %v dup=%v", err, dup)
		}
		got, err := db.Delivery(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != Leased || got.Attempts != 1 || got.LeaseOwner != "host/intake" || !got.LeaseUntil.Equal(d.LeaseUntil.Truncate(time.Microsecond)) {
			t.Errorf("stored %+v, want leased to host/intake, attempt 1", got)
		}
		if ds, err := db.Lease(ctx, "w1", 10, time.Minute, now.Add(30*time.Second)); err != nil || len(ds) != 0 {
			t.Errorf("Lease during the intake's lease: %v, %v", idsOf(ds), err)
		}
		// A re-sent delivery is a duplicate and changes nothing.
		again := d
		again.LeaseOwner, again.LeaseUntil = "other/intake", now.Add(time.Hour)
		if id2, dup, err := db.Enqueue(ctx, again); err != nil || !dup || id2 != id {
			t.Errorf("duplicate Enqueue = %d %v %v, want %d true", id2, dup, err, id)
		}
		if n, err := db.CompleteMany(ctx, []int64{id}, "other/intake"); err != nil || n != 0 {
			t.Errorf("CompleteMany by another owner = %d, %v, want 0", n, err)
		}
		if n, err := db.CompleteMany(ctx, []int64{id}, "host/intake"); err != nil || n != 1 {
			t.Errorf("CompleteMany by the owner = %d, %v, want 1", n, err)
		}
		if got, _ := db.Delivery(ctx, id); got.State != Done {
			t.Errorf("state %s, want done", got.State)
		}

		// Unkeyed deliveries can be leased at intake too.
		id3, _, err := db.Enqueue(ctx, Delivery{Source: "argocd", Body: []byte(`{}`), LeaseOwner: "host/intake", LeaseUntil: now.Add(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		// Its lease runs out: another worker takes it, as its second attempt.
		ds, err := db.Lease(ctx, "w1", 10, time.Minute, now.Add(2*time.Second))
		if err != nil || len(ds) != 1 || ds[0].ID != id3 || ds[0].Attempts != 2 || string(ds[0].Body) != `{}` {
			t.Errorf("Lease after the intake's lease ran out = %+v, %v", ds, err)
		}

		for _, bad := range []Delivery{{Source: "gitlab", LeaseOwner: "x"}, {Source: "gitlab", LeaseUntil: now}} {
			if _, _, err := db.Enqueue(ctx, bad); err == nil {
				t.Errorf("Enqueue(%+v) took a half-set lease", bad)
			}
		}
	})
}

func TestReleaseLeases(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		now := time.Now()
		var ids []int64
		for i := range 3 {
			id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint(i), Body: body(100),
				LeaseOwner: "dead-process/intake", LeaseUntil: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if _, err := db.CompleteMany(ctx, ids[:1], "dead-process/intake"); err != nil {
			t.Fatal(err)
		}
		// A stopping process releases only its own.
		if n, err := db.ReleaseLeases(ctx, now, "other/intake", "other/0"); err != nil || n != 0 {
			t.Fatalf("ReleaseLeases of other owners = %d, %v, want 0", n, err)
		}
		n, err := db.ReleaseLeases(ctx, now)
		if err != nil || n != 2 {
			t.Fatalf("ReleaseLeases = %d, %v, want 2", n, err)
		}
		ds, err := db.Lease(ctx, "w1", 10, time.Minute, now)
		if err != nil || len(ds) != 2 || ds[0].ID != ids[1] || ds[1].ID != ids[2] || ds[0].Attempts != 2 {
			t.Errorf("Lease after ReleaseLeases = %+v, %v", ds, err)
		}
		if n, err := db.ReleaseLeases(ctx, now, "w1"); err != nil || n != 2 {
			t.Errorf("ReleaseLeases(w1) = %d, %v, want 2", n, err)
		}
		if db.SingleProcess() != (b.name == "sqlite") {
			t.Errorf("SingleProcess = %v on %s", db.SingleProcess(), b.name)
		}
	})
}

// Bodies are stored compressed and read back as received, whichever way
// they are read.
func TestBodiesCompressed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		hook := mrHook(t)
		small := []byte(`{"object_kind":"push"}`)
		idBig, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "big", Body: hook})
		if err != nil {
			t.Fatal(err)
		}
		idSmall, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "small", Body: small})
		if err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int64]struct {
			encoding string
			body     []byte
		}{idBig: {"s2", hook}, idSmall: {"", small}} {
			var (
				enc  string
				size int
			)
			if err := db.r.QueryRowContext(ctx, db.q(`SELECT encoding, LENGTH(body) FROM delivery_bodies WHERE id = ?`), id).Scan(&enc, &size); err != nil {
				t.Fatal(err)
			}
			if enc != want.encoding || (enc == "s2" && size > len(want.body)/2) {
				t.Errorf("delivery %d stored as %q, %d bytes (received %d)", id, enc, size, len(want.body))
			}
			got, err := db.Delivery(ctx, id)
			if err != nil || string(got.Body) != string(want.body) {
				t.Errorf("Delivery(%d) body differs: %v", id, err)
			}
		}
		ds, err := db.Lease(ctx, "w1", 10, time.Minute, time.Now())
		if err != nil || len(ds) != 2 || string(ds[0].Body) != string(hook) || string(ds[1].Body) != string(small) {
			t.Errorf("Lease bodies differ: %v", err)
		}
		// A body in an encoding this lotsed does not know is an error, not
		// garbage.
		if _, err := db.w.ExecContext(ctx, db.q(`UPDATE delivery_bodies SET encoding = 'zz' WHERE id = ?`), idSmall); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Delivery(ctx, idSmall); err == nil {
			t.Error("Delivery read a body in an unknown encoding")
		}
	})
}

func TestChunks(t *testing.T) {
	for n := 1; n <= 3*rowsPerInsert; n++ {
		sum, prev := 0, rowsPerInsert
		for rest := n; rest > 0; {
			c := chunkLen(rest)
			if c&(c-1) != 0 || c > prev || c > rest || 1<<chunkIndex(c) != c || chunkIndex(c) >= chunkSizes {
				t.Fatalf("n=%d: chunk %d (index %d) after %d", n, c, chunkIndex(c), prev)
			}
			sum, prev, rest = sum+c, c, rest-c
		}
		if sum != n {
			t.Fatalf("n=%d: chunks sum to %d", n, sum)
		}
	}
}

// Completions share the writers' transactions with enqueues: many of both
// at once all land.
func TestCompletionsWithEnqueues(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		const n = 300
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprint("intake-", i%3)
				id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint(i), Body: body(700 + i),
					LeaseOwner: owner, LeaseUntil: time.Now().Add(time.Minute)})
				if err != nil {
					errs <- err
					return
				}
				if n, err := db.CompleteMany(ctx, []int64{id}, owner); err != nil || n != 1 {
					errs <- fmt.Errorf("CompleteMany(%d) = %d, %w", id, n, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		stats, err := db.Stats(ctx)
		if err != nil || stats[Done] != n {
			t.Errorf("Stats = %v, %v, want %d done", stats, err, n)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CompleteMany(ctx, []int64{1}, "x"); !errors.Is(err, ErrClosed) {
			t.Errorf("CompleteMany after Close: %v, want ErrClosed", err)
		}
	})
}
