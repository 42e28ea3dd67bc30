package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCycle is a delivery's whole life on SQLite: enqueued by many
// callers while workers lease batches and complete them, as lotsed does.
func BenchmarkCycle(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	body := mrHook(b)
	var seq atomic.Int64
	stop := make(chan struct{})
	var workers sync.WaitGroup
	var done atomic.Int64
	for w := range 2 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			owner := fmt.Sprint("w", w)
			for {
				select {
				case <-stop:
					return
				default:
				}
				ds, err := db.Lease(ctx, owner, 32, time.Minute, time.Now())
				if err != nil {
					b.Error(err)
					return
				}
				if len(ds) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				ids := make([]int64, len(ds))
				for i, d := range ds {
					ids[i] = d.ID
				}
				n, err := db.CompleteMany(ctx, ids, owner)
				if err != nil {
					b.Error(err)
					return
				}
				done.Add(int64(n))
			}
		}()
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: fmt.Sprint(seq.Add(1)), Body: body, ReceivedAt: time.Now()}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	close(stop)
	workers.Wait()
	b.ReportMetric(float64(done.Load())/float64(b.N), "completed/op")
}
