package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOpenURLs(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	for _, u := range []string{dir + "/a/b/plain.db", "sqlite://" + dir + "/c/url.db"} {
		db, err := Open(ctx, u)
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(ctx, ""); err == nil || !strings.Contains(err.Error(), "no database URL") {
		t.Errorf(`Open(""): %v (want "no database URL")`, err)
	}
	if _, err := Open(ctx, "mysql://u:secret@h/db"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("mysql://u:xxxxx@h/db")) {
		t.Errorf("mysql URL: %v (want an error with the password redacted)", err)
	}
}

func TestEnqueueDurableAcrossReopen(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		u := b.url(t)
		db, err := Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		received := time.Date(2026, 5, 1, 12, 0, 0, 123456000, time.FixedZone("CEST", 2*3600))
		want := map[int64]Delivery{}
		for i := range 50 {
			d := Delivery{
				Source: "gitlab", Event: "Merge Request Hook", Key: fmt.Sprintf("key-%d", i),
				Headers: map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Instance": "https://gitlab.example.com"},
				Body:    body(4096 + i), ReceivedAt: received,
			}
			id, dup, err := db.Enqueue(ctx, d)
			if err != nil || dup || id == 0 {
				t.Fatalf("Enqueue %d: id %d dup %v err %v", i, id, dup, err)
			}
			want[id] = d
		}
		// Unkeyed deliveries are never deduplicated.
		for range 2 {
			id, dup, err := db.Enqueue(ctx, Delivery{Source: "argocd", Body: []byte(`{}`)})
			if err != nil || dup {
				t.Fatalf("unkeyed Enqueue: %d %v %v", id, dup, err)
			}
			want[id] = Delivery{Source: "argocd", Body: []byte(`{}`)}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "late"}); !errors.Is(err, ErrClosed) {
			t.Errorf("Enqueue after Close: %v, want ErrClosed", err)
		}

		db = open(t, u)
		got, err := db.Deliveries(ctx, Queued, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("after reopen: %d deliveries, want %d", len(got), len(want))
		}
		for _, g := range got {
			w := want[g.ID]
			if g.Source != w.Source || g.Key != w.Key || g.Event != w.Event || !bytes.Equal(g.Body, w.Body) || g.State != Queued || g.Attempts != 0 {
				t.Errorf("delivery %d = %+v, want %+v", g.ID, g, w)
			}
			if w.Key != "" && (!g.ReceivedAt.Equal(received) || g.ReceivedAt.Location() != time.UTC || !g.NextAttempt.Equal(received)) {
				t.Errorf("delivery %d times: received %v next %v, want %v in UTC", g.ID, g.ReceivedAt, g.NextAttempt, received)
			}
			if len(g.Headers) != len(w.Headers) || g.Headers["X-Gitlab-Instance"] != w.Headers["X-Gitlab-Instance"] {
				t.Errorf("delivery %d headers %v, want %v", g.ID, g.Headers, w.Headers)
			}
		}
		// A resend after the restart is still a duplicate.
		for id, w := range want {
			if w.Key == "" {
				continue
			}
			id2, dup, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: w.Key, Body: []byte("resent")})
			if err != nil || !dup || id2 != id {
				t.Fatalf("resend of %s: id %d dup %v err %v, want %d true", w.Key, id2, dup, err, id)
			}
			break
		}
		one, err := db.Delivery(ctx, got[0].ID)
		if err != nil || one.ID != got[0].ID {
			t.Errorf("Delivery(%d) = %v, %v", got[0].ID, one.ID, err)
		}
		if _, err := db.Delivery(ctx, 999999); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delivery(999999): %v, want ErrNotFound", err)
		}
	})
}

func TestEnqueueDedupeConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		const goroutines, keys, rounds = 100, 20, 5
		type result struct {
			key string
			id  int64
			dup bool
		}
		results := make(chan result, goroutines*rounds)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Go(func() {
				<-start
				for r := range rounds {
					key := fmt.Sprintf("k%02d", (g+r)%keys)
					// The same key from another source is another delivery.
					id, dup, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: key, Body: body(1024)})
					if err != nil {
						t.Errorf("Enqueue: %v", err)
						return
					}
					results <- result{key, id, dup}
				}
			})
		}
		close(start)
		wg.Wait()
		close(results)
		ids := map[string]int64{}
		firsts := map[string]int{}
		for r := range results {
			if prev, ok := ids[r.key]; ok && prev != r.id {
				t.Errorf("key %s answered with ids %d and %d", r.key, prev, r.id)
			}
			ids[r.key] = r.id
			if !r.dup {
				firsts[r.key]++
			}
		}
		for k, n := range firsts {
			if n != 1 {
				t.Errorf("key %s: %d callers were told they stored it first", k, n)
			}
		}
		stats, err := db.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats[Queued] != keys || len(ids) != keys || len(firsts) != keys {
			t.Errorf("stored %d deliveries (%d keys answered, %d firsts), want %d", stats[Queued], len(ids), len(firsts), keys)
		}
		id, dup, err := db.Enqueue(ctx, Delivery{Source: "argocd", Key: "k00"})
		if err != nil || dup || id == ids["k00"] {
			t.Errorf("same key, other source: id %d dup %v err %v", id, dup, err)
		}
	})
}

func TestLeaseCompleteFailDeadRequeue(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		var ids []int64
		for i := range 5 {
			id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint(i), Body: []byte("x"), ReceivedAt: t0.Add(time.Duration(i) * time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		// Nothing is due before it was received.
		if got, err := db.Lease(ctx, "w1", 10, time.Minute, t0.Add(-time.Second)); err != nil || len(got) != 0 {
			t.Fatalf("Lease before due: %v, %v", got, err)
		}
		now := t0.Add(time.Minute)
		got, err := db.Lease(ctx, "w1", 2, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != ids[0] || got[1].ID != ids[1] {
			t.Fatalf("Lease = %v, want the oldest two %v", idsOf(got), ids[:2])
		}
		for _, d := range got {
			if d.State != Leased || d.Attempts != 1 || d.LeaseOwner != "w1" || !d.LeaseUntil.Equal(now.Add(time.Minute)) {
				t.Errorf("leased delivery %+v", d)
			}
		}
		// Owner checks.
		if err := db.Complete(ctx, ids[0], "w2"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Complete by another owner: %v, want ErrLeaseLost", err)
		}
		if _, err := db.Fail(ctx, ids[0], "w2", "boom", now, 3); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Fail by another owner: %v, want ErrLeaseLost", err)
		}
		if err := db.Complete(ctx, ids[2], "w1"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Complete of a queued delivery: %v, want ErrLeaseLost", err)
		}
		if err := db.Complete(ctx, 999999, "w1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Complete of a missing delivery: %v, want ErrNotFound", err)
		}
		if err := db.Complete(ctx, ids[0], "w1"); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if err := db.Complete(ctx, ids[0], "w1"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("second Complete: %v, want ErrLeaseLost", err)
		}

		// Fail with a retry time: queued again, due then, dead after 3 attempts.
		retry := now.Add(10 * time.Second)
		dead, err := db.Fail(ctx, ids[1], "w1", "gitlab said 502", retry, 3)
		if err != nil || dead {
			t.Fatalf("Fail #1: dead %v err %v", dead, err)
		}
		d, _ := db.Delivery(ctx, ids[1])
		if d.State != Queued || d.LastError != "gitlab said 502" || !d.NextAttempt.Equal(retry) || d.LeaseOwner != "" {
			t.Errorf("after Fail: %+v", d)
		}
		// The others, due all along, are leased and done.
		rest, err := db.Lease(ctx, "w1", 10, time.Minute, now)
		if err != nil || !slices.Equal(idsOf(rest), ids[2:]) {
			t.Fatalf("Lease of the rest = %v, %v, want %v", idsOf(rest), err, ids[2:])
		}
		for _, d := range rest {
			if err := db.Complete(ctx, d.ID, "w1"); err != nil {
				t.Fatal(err)
			}
		}
		for attempt := 2; attempt <= 3; attempt++ {
			now = retry
			got, err := db.Lease(ctx, "w1", 10, time.Minute, now)
			if err != nil || len(got) != 1 || got[0].ID != ids[1] || got[0].Attempts != attempt {
				t.Fatalf("attempt %d: Lease = %+v, %v", attempt, got, err)
			}
			retry = now.Add(10 * time.Second)
			dead, err := db.Fail(ctx, ids[1], "w1", fmt.Sprintf("fail %d", attempt), retry, 3)
			if err != nil || dead != (attempt == 3) {
				t.Fatalf("Fail #%d: dead %v err %v", attempt, dead, err)
			}
		}
		deadList, err := db.Deliveries(ctx, Dead, 10)
		if err != nil || len(deadList) != 1 || deadList[0].ID != ids[1] || deadList[0].LastError != "fail 3" {
			t.Fatalf("dead deliveries: %+v, %v", deadList, err)
		}
		// A dead delivery is never leased.
		if got, _ := db.Lease(ctx, "w1", 100, time.Minute, now.Add(time.Hour)); len(got) != 0 {
			t.Errorf("a dead delivery was leased: %v", idsOf(got))
		}
		stats, err := db.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats[Dead] != 1 || stats[Leased] != 0 || stats[Queued] != 0 || stats[Done] != 4 {
			t.Errorf("Stats = %v", stats)
		}

		// Requeue: dead → queued, attempts reset.
		if err := db.Requeue(ctx, ids[0], now); !errors.Is(err, ErrNotDead) {
			t.Errorf("Requeue of a done delivery: %v, want ErrNotDead", err)
		}
		if err := db.Requeue(ctx, 999999, now); !errors.Is(err, ErrNotFound) {
			t.Errorf("Requeue of a missing delivery: %v, want ErrNotFound", err)
		}
		later := now.Add(2 * time.Hour)
		if err := db.Requeue(ctx, ids[1], later); err != nil {
			t.Fatal(err)
		}
		got, err = db.Lease(ctx, "w9", 10, time.Minute, later)
		if err != nil || len(got) != 1 || got[0].ID != ids[1] || got[0].Attempts != 1 {
			t.Fatalf("Lease after Requeue: %+v, %v", got, err)
		}
		// maxAttempts <= 0: never dead.
		if dead, err := db.Fail(ctx, ids[1], "w9", "again", later, 0); err != nil || dead {
			t.Errorf("Fail with no limit: dead %v err %v", dead, err)
		}

		// Prune removes done deliveries, nothing else.
		n, err := db.Prune(ctx, t0.Add(time.Hour))
		if err != nil || n != 4 {
			t.Errorf("Prune = %d, %v, want 4", n, err)
		}
		stats, _ = db.Stats(ctx)
		if stats[Done] != 0 || stats[Queued] != 1 {
			t.Errorf("Stats after Prune = %v", stats)
		}
	})
}

func idsOf(ds []Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func TestExpiredLeaseIsReclaimed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "a", ReceivedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.Lease(ctx, "w1", 1, 30*time.Second, t0)
		if err != nil || len(got) != 1 {
			t.Fatalf("Lease: %v %v", got, err)
		}
		// While the lease runs nobody else gets it.
		if got, _ := db.Lease(ctx, "w2", 1, 30*time.Second, t0.Add(29*time.Second)); len(got) != 0 {
			t.Fatalf("leased twice before expiry: %+v", got)
		}
		got, err = db.Lease(ctx, "w2", 1, 30*time.Second, t0.Add(30*time.Second))
		if err != nil || len(got) != 1 || got[0].ID != id || got[0].Attempts != 2 || got[0].LeaseOwner != "w2" {
			t.Fatalf("re-claim after expiry: %+v %v", got, err)
		}
		// The first owner lost it.
		if err := db.Complete(ctx, id, "w1"); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Complete by the expired owner: %v, want ErrLeaseLost", err)
		}
		if err := db.Complete(ctx, id, "w2"); err != nil {
			t.Errorf("Complete by the new owner: %v", err)
		}
	})
}

// TestReplicasNeverShareADelivery runs two stores on one database (two
// lotsed replicas) with several workers each, leasing concurrently; every
// delivery must be handed to exactly one worker.
func TestReplicasNeverShareADelivery(t *testing.T) {
	b := backends()[1]
	ctx := ctxT(t)
	u := b.url(t)
	replicas := []*DB{open(t, u), open(t, u)}
	const rounds, perRound, workersPerReplica = 20, 200, 4
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Go(func() {
				if _, _, err := replicas[i%2].Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprintf("%d-%d", round, i), Body: []byte("x")}); err != nil {
					t.Errorf("Enqueue: %v", err)
				}
			})
		}
		wg.Wait()
		var mu sync.Mutex
		seen := map[int64]string{}
		for r, db := range replicas {
			for w := range workersPerReplica {
				owner := fmt.Sprintf("r%d-w%d", r, w)
				wg.Go(func() {
					for {
						got, err := db.Lease(ctx, owner, 7, time.Minute, time.Now())
						if err != nil {
							t.Errorf("Lease: %v", err)
							return
						}
						if len(got) == 0 {
							return
						}
						mu.Lock()
						for _, d := range got {
							if prev, ok := seen[d.ID]; ok {
								t.Errorf("round %d: delivery %d leased by %s and %s", round, d.ID, prev, owner)
							}
							seen[d.ID] = owner
						}
						mu.Unlock()
						for _, d := range got {
							if err := db.Complete(ctx, d.ID, owner); err != nil {
								t.Errorf("Complete: %v", err)
							}
						}
					}
				})
			}
		}
		wg.Wait()
		if len(seen) != perRound {
			t.Fatalf("round %d: %d deliveries leased, want %d", round, len(seen), perRound)
		}
	}
	stats, err := replicas[0].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats[Done] != rounds*perRound {
		t.Errorf("Stats = %v, want %d done", stats, rounds*perRound)
	}
}

func TestSaveStateOptimistic(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		data, v, err := db.LoadState(ctx, "shop")
		if err != nil || data != nil || v != 0 {
			t.Fatalf("LoadState of a new app: %q %d %v", data, v, err)
		}
		// Concurrent savers of one version: exactly one wins per version.
		for version := int64(0); version < 5; version++ {
			var wg sync.WaitGroup
			var mu sync.Mutex
			winners := 0
			for g := range 10 {
				wg.Go(func() {
					err := db.SaveState(ctx, "shop", fmt.Appendf(nil, "v%d-g%d", version+1, g), version)
					switch {
					case err == nil:
						mu.Lock()
						winners++
						mu.Unlock()
					case !errors.Is(err, ErrStale):
						t.Errorf("SaveState: %v", err)
					}
				})
			}
			wg.Wait()
			if winners != 1 {
				t.Fatalf("version %d: %d winners, want 1", version, winners)
			}
			data, v, err := db.LoadState(ctx, "shop")
			if err != nil || v != version+1 || !bytes.HasPrefix(data, fmt.Appendf(nil, "v%d-", version+1)) {
				t.Fatalf("after saving version %d: %q %d %v", version, data, v, err)
			}
		}
		if err := db.SaveState(ctx, "shop", []byte("old"), 2); !errors.Is(err, ErrStale) {
			t.Errorf("SaveState at an old version: %v, want ErrStale", err)
		}
		// Apps are independent.
		if err := db.SaveState(ctx, "cart", nil, 0); err != nil {
			t.Fatal(err)
		}
		if data, v, _ := db.LoadState(ctx, "cart"); v != 1 || data == nil || len(data) != 0 {
			t.Errorf("cart: %q %d", data, v)
		}
	})
}

func TestOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		var wg sync.WaitGroup
		var mu sync.Mutex
		firsts := 0
		for range 20 {
			wg.Go(func() {
				first, err := db.Once(ctx, "note:shop!42:staging")
				if err != nil {
					t.Errorf("Once: %v", err)
				}
				if first {
					mu.Lock()
					firsts++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firsts != 1 {
			t.Errorf("%d firsts, want 1", firsts)
		}
		if first, _ := db.Once(ctx, "note:shop!42:production"); !first {
			t.Error("another key is not first")
		}
		if err := db.Forget(ctx, "note:shop!42:staging"); err != nil {
			t.Fatal(err)
		}
		if first, _ := db.Once(ctx, "note:shop!42:staging"); !first {
			t.Error("not first after Forget")
		}
	})
}

func TestAuditLog(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		recs := []AuditRecord{
			{At: t0, App: "shop", Stage: "dev", Image: "r/shop@sha256:1", Actor: "lotse", Kind: "landed"},
			{At: t0.Add(time.Hour), App: "cart", Stage: "dev", Actor: "lotse", Kind: "landed"},
			{At: t0.Add(2 * time.Hour), App: "shop", Stage: "staging", Actor: "alice", Kind: "approved", Detail: "MR !7"},
			{At: t0.Add(3 * time.Hour), App: "shop", Stage: "staging", Actor: "lotse", Kind: "landed"},
		}
		for _, r := range recs {
			if err := db.Audit(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Audit(ctx, AuditRecord{App: "shop", Kind: "now"}); err != nil {
			t.Fatal(err)
		}
		kinds := func(rs []AuditRecord) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.App+"/"+r.Stage+"/"+r.Kind)
			}
			return out
		}
		for _, tc := range []struct {
			f    AuditFilter
			want []string
		}{
			{AuditFilter{App: "shop", Since: t0, Limit: 10}, []string{"shop//now", "shop/staging/landed", "shop/staging/approved", "shop/dev/landed"}},
			{AuditFilter{App: "shop", Since: t0.Add(90 * time.Minute), Limit: 2}, []string{"shop//now", "shop/staging/landed"}},
			{AuditFilter{Kind: "landed", Stage: "dev"}, []string{"cart/dev/landed", "shop/dev/landed"}},
			{AuditFilter{App: "none"}, nil},
		} {
			got, err := db.AuditLog(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(kinds(got), tc.want) {
				t.Errorf("AuditLog(%+v) = %v, want %v", tc.f, kinds(got), tc.want)
			}
		}
		got, _ := db.AuditLog(ctx, AuditFilter{Kind: "approved"})
		if len(got) != 1 || got[0].Actor != "alice" || got[0].Detail != "MR !7" || !got[0].At.Equal(recs[2].At) || got[0].Seq != 3 {
			t.Errorf("approved record: %+v", got)
		}
	})
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		u := b.url(t)
		n := 4
		if b.name == "sqlite" {
			n = 1 // one process per SQLite file
		}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				db, err := Open(ctx, u)
				if err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				db.Close()
			})
		}
		wg.Wait()
		db := open(t, u)
		var v int
		if err := db.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || v != len(migrations()) {
			t.Errorf("schema version %d %v, want %d", v, err, len(migrations()))
		}
	})
}

func TestEnqueueCallerGone(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		db := open(t, b.url(t))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "gone"}); !errors.Is(err, context.Canceled) {
			t.Errorf("Enqueue with a canceled ctx: %v", err)
		}
		if _, _, err := db.Enqueue(ctxT(t), Delivery{Key: "x"}); err == nil {
			t.Error("Enqueue without a source: no error")
		}
	})
}

func TestEnqueueDropsSecretHeaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: "k", Headers: map[string]string{
			"X-Gitlab-Token": "s3cret", "webhook-signature": "v1,abc", "Authorization": "Bearer x",
			"Idempotency-Key": "k", "X-Gitlab-Event": "Push Hook",
		}})
		if err != nil {
			t.Fatal(err)
		}
		d, err := db.Delivery(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Headers) != 2 || d.Headers["Idempotency-Key"] != "k" || d.Headers["X-Gitlab-Event"] != "Push Hook" {
			t.Errorf("stored headers %v, want only Idempotency-Key and X-Gitlab-Event", d.Headers)
		}
	})
}

// TestEnqueueBadDeliveryFailsAlone sends one delivery PostgreSQL refuses (a
// NUL byte in a text column) among good ones committed in the same batches:
// only that one fails.
func TestEnqueueBadDeliveryFailsAlone(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		var wg sync.WaitGroup
		for round := range 5 {
			for i := range 40 {
				wg.Go(func() {
					d := Delivery{Source: "gitlab", Key: fmt.Sprintf("%d-%d", round, i), Event: "Push Hook", Body: []byte("{}")}
					if i == 7 {
						d.Event = "bad\x00event"
					}
					_, _, err := db.Enqueue(ctx, d)
					switch {
					case i != 7 && err != nil:
						t.Errorf("good delivery %s: %v", d.Key, err)
					case i == 7 && b.name == "postgres" && err == nil:
						t.Errorf("delivery with a NUL byte was stored")
					}
				})
			}
			wg.Wait()
		}
	})
}

func TestCompleteMany(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		for i := range 6 {
			if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint("many", i), Body: []byte("x"), ReceivedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		mine, err := db.Lease(ctx, "w1", 4, time.Minute, now)
		if err != nil || len(mine) != 4 {
			t.Fatalf("lease: %v %v", idsOf(mine), err)
		}
		theirs, err := db.Lease(ctx, "w2", 2, time.Minute, now)
		if err != nil || len(theirs) != 2 {
			t.Fatalf("lease: %v %v", idsOf(theirs), err)
		}
		// w1 completes its four and tries one of w2's: only its own change.
		n, err := db.CompleteMany(ctx, append(idsOf(mine), theirs[0].ID), "w1")
		if err != nil || n != 4 {
			t.Fatalf("CompleteMany = %d, %v; want 4", n, err)
		}
		st, err := db.Stats(ctx)
		if err != nil || st[Done] != 4 || st[Leased] != 2 {
			t.Fatalf("stats = %v, %v", st, err)
		}
		if n, err := db.CompleteMany(ctx, nil, "w1"); n != 0 || err != nil {
			t.Fatalf("CompleteMany(nil) = %d, %v", n, err)
		}
	})
}

// A worker that still works on its deliveries renews their leases; a lease
// another owner took over is not renewed.
func TestRenew(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		for i := range 3 {
			if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint("renew", i), Body: []byte("x"), ReceivedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		mine, err := db.Lease(ctx, "w1", 3, time.Minute, now)
		if err != nil || len(mine) != 3 {
			t.Fatalf("lease: %v %v", idsOf(mine), err)
		}
		if n, err := db.Renew(ctx, idsOf(mine), "w1", now.Add(10*time.Minute)); err != nil || n != 3 {
			t.Fatalf("renew = %d, %v", n, err)
		}
		// After the old expiry nobody else may lease them.
		if got, err := db.Lease(ctx, "w2", 3, time.Minute, now.Add(5*time.Minute)); err != nil || len(got) != 0 {
			t.Fatalf("leased renewed deliveries: %v %v", idsOf(got), err)
		}
		// Past the renewed lease w2 takes them; w1 can no longer renew.
		if got, err := db.Lease(ctx, "w2", 3, time.Minute, now.Add(11*time.Minute)); err != nil || len(got) != 3 {
			t.Fatalf("lease after expiry: %v %v", idsOf(got), err)
		}
		if n, err := db.Renew(ctx, idsOf(mine), "w1", now.Add(20*time.Minute)); err != nil || n != 0 {
			t.Fatalf("renewed another owner's leases: %d, %v", n, err)
		}
	})
}
