package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEnqueue measures durable enqueues of GitLab's 6 KB Merge Request Hook from many
// concurrent callers (webhook handlers), each with its own key, and reports
// enqueues per second and the p50/p99 latency of one Enqueue.
//
//	eval "$(scripts/postgres.sh)"
//	GOEXPERIMENT=jsonv2 CGO_ENABLED=0 go test -p 1 -run '^$' -bench Enqueue -benchtime 5s ./internal/store/
func BenchmarkEnqueue(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := ctxT(b)
			db := open(b, be.url(b))
			payload := mrHook(b)
			headers := map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Instance": "https://gitlab.example.com"}
			var (
				seq atomic.Int64
				mu  sync.Mutex
				lat []time.Duration
			)
			// 64 callers per CPU: the HTTP server runs a goroutine per request.
			b.SetParallelism(64)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					key := fmt.Sprintf("bench-%d", seq.Add(1))
					start := time.Now()
					if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Event: "Merge Request Hook", Key: key, Headers: headers, Body: payload}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enqueues/s")
			if len(lat) > 0 {
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkEnqueueAt500 offers 500 enqueues a second, each from its own
// goroutine, and reports the p50/p99 latency measured from each one's
// scheduled start (so a stall also delays the ones scheduled behind it).
func BenchmarkEnqueueAt500(b *testing.B) {
	const interval = time.Second / 500
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := ctxT(b)
			db := open(b, be.url(b))
			payload := mrHook(b)
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				at := start.Add(time.Duration(i) * interval)
				time.Sleep(time.Until(at))
				wg.Go(func() {
					key := fmt.Sprintf("rate-%d", i)
					if _, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: key, Body: payload}); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(at)
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
