package webhook

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// metrics are lotsed's counters, exposed in Prometheus' text format.
type metrics struct {
	accepted, duplicates, rejected, ignored atomic.Int64
	processed, failed, dead                 atomic.Int64
	tampered, outOfBand                     atomic.Int64
	auditHead                               atomic.Int64 // the sequence number of the audit chain's head
	ackLatency                              histogram
	landed                                  sync.Map // stage -> *atomic.Int64
}

func newMetrics() *metrics {
	return &metrics{ackLatency: histogram{bounds: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}}
}

// audited counts what an audit record says happened.
func (m *metrics) audited(a promotion.Audit) {
	switch a.Kind {
	case promotion.AuditLanded:
		v, _ := m.landed.LoadOrStore(a.Stage, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	case promotion.AuditTampered:
		m.tampered.Add(1)
	case promotion.AuditOutOfBand:
		m.outOfBand.Add(1)
	}
}

// histogram is a fixed-bucket latency histogram in seconds.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []int64
	sum    float64
	n      int64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = make([]int64, len(h.bounds))
	}
	for i, b := range h.bounds {
		if s <= b {
			h.counts[i]++
		}
	}
	h.sum += s
	h.n++
}

func (s *Server) metricsHandler(c echo.Context) error {
	w := c.Response()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.WriteHeader(http.StatusOK)
	m := s.metrics
	counter := func(name, help string, v int64, labels string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s%s %d\n", name, help, name, name, labels, v)
	}
	counter("lotsed_deliveries_accepted_total", "Webhook deliveries stored.", m.accepted.Load(), "")
	counter("lotsed_deliveries_duplicate_total", "Webhook deliveries already stored (same Idempotency-Key).", m.duplicates.Load(), "")
	counter("lotsed_deliveries_rejected_total", "Webhook deliveries refused: bad token or signature.", m.rejected.Load(), "")
	counter("lotsed_deliveries_ignored_total", "Webhook deliveries of event types or projects lotsed does not act on.", m.ignored.Load(), "")
	counter("lotsed_deliveries_processed_total", "Deliveries processed by the workers.", m.processed.Load(), "")
	counter("lotsed_deliveries_failed_total", "Delivery processing attempts that failed and will be retried.", m.failed.Load(), "")
	counter("lotsed_deliveries_dead_total", "Deliveries parked as dead after the last attempt.", m.dead.Load(), "")
	counter("lotsed_promotions_tampered_total", "Promotion MRs closed unmerged because someone else pushed to them or they are not what lotse wrote.", m.tampered.Load(), "")
	counter("lotsed_out_of_band_changes_total", "Changes of a stage on the default branch by someone other than lotse and its writers.", m.outOfBand.Load(), "")
	fmt.Fprintf(w, "# HELP lotsed_audit_head_seq Sequence number of the audit chain's head as last published (its hash is in the log line \"audit chain head\").\n# TYPE lotsed_audit_head_seq gauge\nlotsed_audit_head_seq %d\n", m.auditHead.Load())
	fmt.Fprintf(w, "# HELP lotsed_promotions_landed_total Versions that landed in a stage.\n# TYPE lotsed_promotions_landed_total counter\n")
	var stages []string
	m.landed.Range(func(k, _ any) bool { stages = append(stages, k.(string)); return true })
	sort.Strings(stages)
	for _, st := range stages {
		v, _ := m.landed.Load(st)
		fmt.Fprintf(w, "lotsed_promotions_landed_total{stage=%q} %d\n", st, v.(*atomic.Int64).Load())
	}
	if stats, err := s.queue.Stats(c.Request().Context()); err == nil {
		fmt.Fprintf(w, "# HELP lotsed_queue_deliveries Deliveries in the queue by state.\n# TYPE lotsed_queue_deliveries gauge\n")
		keys := make([]string, 0, len(stats))
		for k := range stats {
			keys = append(keys, string(k))
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "lotsed_queue_deliveries{state=%q} %d\n", k, stats[store.State(k)])
		}
	}
	h := &m.ackLatency
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP lotsed_ack_seconds Time from a delivery's arrival to its durable acknowledgement.\n# TYPE lotsed_ack_seconds histogram\n")
	for i, b := range h.bounds {
		var n int64
		if h.counts != nil {
			n = h.counts[i]
		}
		fmt.Fprintf(w, "lotsed_ack_seconds_bucket{le=\"%g\"} %d\n", b, n)
	}
	fmt.Fprintf(w, "lotsed_ack_seconds_bucket{le=\"+Inf\"} %d\nlotsed_ack_seconds_sum %g\nlotsed_ack_seconds_count %d\n", h.n, h.sum, h.n)
	return nil
}
