package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/trust"
)

// metrics are lotsed's Prometheus metrics, on a registry of their own (never
// the process-wide default one). Every label takes values from a bounded
// set: event types lotsed handles, GitLab endpoint templates, status codes,
// the app and stage names of lotse.yaml, fixed result words; never digests,
// usernames or free text. Values beyond a label's cap count as "other".
type metrics struct {
	reg *prometheus.Registry

	accepted, duplicates, ignored *prometheus.CounterVec // by event
	processed, failed, dead       *prometheus.CounterVec // by event
	rejected                      *prometheus.CounterVec // by source: the token or signature did not check out
	ackLatency                    seconds
	processing                    *prometheus.HistogramVec // by event
	gitlabCalls                   *prometheus.CounterVec   // by method, endpoint, status
	gitlabLatency                 *prometheus.HistogramVec // by endpoint
	verifications                 *prometheus.CounterVec   // by kind, result
	gateResults                   *prometheus.CounterVec   // by gate, stage, result
	promotions                    *prometheus.CounterVec   // by app, stage, outcome
	landed                        *prometheus.CounterVec   // by stage
	tampered, outOfBand           prometheus.Counter
	auditHead                     atomic.Int64 // the sequence number of the audit chain's head
	build                         *prometheus.GaugeVec

	bound   bounded
	state   stateCollector
	handler http.Handler // serves reg in Prometheus' text format
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), bound: bounded{max: 200}}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	m.accepted = counter("lotsed_deliveries_accepted_total", "Webhook deliveries stored.", "event")
	m.duplicates = counter("lotsed_deliveries_duplicate_total", "Webhook deliveries already stored (same Idempotency-Key).", "event")
	m.rejected = counter("lotsed_deliveries_rejected_total", "Webhook deliveries refused: bad token or signature.", "source")
	m.ignored = counter("lotsed_deliveries_ignored_total", "Webhook deliveries of event types or projects lotsed does not act on.", "event")
	m.processed = counter("lotsed_deliveries_processed_total", "Deliveries processed by the workers.", "event")
	m.failed = counter("lotsed_deliveries_failed_total", "Delivery processing attempts that failed and will be retried.", "event")
	m.dead = counter("lotsed_deliveries_dead_total", "Deliveries parked as dead after the last attempt.", "event")
	m.gitlabCalls = counter("lotsed_gitlab_requests_total", "HTTP requests to GitLab's API (retries included) by endpoint template and status code (0: no response).",
		"method", "endpoint", "status")
	m.verifications = counter("lotsed_verifications_total", "Signature and attestation verifications against the registry, by kind and result.", "kind", "result")
	m.gateResults = counter("lotsed_gate_results_total", "Gate checks of promotions by gate, stage and result (passed, failed, unchecked).", "gate", "stage", "result")
	m.promotions = counter("lotsed_promotions_total", "Promotion steps and outcomes by app, stage and outcome (the audit record's kind).", "app", "stage", "outcome")
	m.landed = counter("lotsed_promotions_landed_total", "Versions that landed in a stage.", "stage")
	m.tampered = prometheus.NewCounter(prometheus.CounterOpts{Name: "lotsed_promotions_tampered_total",
		Help: "Promotion MRs closed unmerged because someone else pushed to them or they are not what lotse wrote."})
	m.outOfBand = prometheus.NewCounter(prometheus.CounterOpts{Name: "lotsed_out_of_band_changes_total",
		Help: "Changes of a stage on the default branch by someone other than lotse and its writers."})
	ack := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lotsed_ack_seconds", Help: "Time from a delivery's arrival to its durable acknowledgement.",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}})
	m.ackLatency = seconds{ack}
	m.processing = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lotsed_processing_seconds",
		Help:    "Time a worker took to process a delivery (GitLab calls and gates included), by event.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}}, []string{"event"})
	m.gitlabLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lotsed_gitlab_request_seconds",
		Help: "Duration of HTTP requests to GitLab's API by endpoint template.", Buckets: prometheus.DefBuckets}, []string{"endpoint"})
	m.build = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lotsed_build_info", Help: "lotsed's version and Go version; always 1."},
		[]string{"version", "goversion"})
	head := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lotsed_audit_head_seq",
		Help: `Sequence number of the audit chain's head as last published (its hash is in the log line "audit chain head").`},
		func() float64 { return float64(m.auditHead.Load()) })
	m.state.bound = &m.bound
	m.reg.MustRegister(m.tampered, m.outOfBand, ack, m.processing, m.gitlabLatency, m.build, head, &m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// seconds is a histogram of durations in seconds.
type seconds struct{ h prometheus.Observer }

func (s seconds) observe(d time.Duration) { s.h.Observe(d.Seconds()) }

// eventLabel is a delivery's event as a label: the events lotsed handles,
// else "other" (the header is the sender's to choose).
func eventLabel(event string) string {
	if handledEvents[event] || event == argoCDEvent {
		return event
	}
	return "other"
}

// argoCDEvent is the event of ArgoCD's notifications.
const argoCDEvent = "ArgoCD Notification"

// delivery counts a delivery by what became of it: accepted, duplicate,
// ignored, processed, failed or dead.
func (m *metrics) delivery(result, event string) {
	var c *prometheus.CounterVec
	switch result {
	case "accepted":
		c = m.accepted
	case "duplicate":
		c = m.duplicates
	case "ignored":
		c = m.ignored
	case "processed":
		c = m.processed
	case "failed":
		c = m.failed
	case "dead":
		c = m.dead
	default:
		return
	}
	c.WithLabelValues(eventLabel(event)).Inc()
}

// reject counts a delivery refused for its token or signature.
func (m *metrics) reject(source string) { m.rejected.WithLabelValues(source).Inc() }

// processedIn records how long processing a delivery took.
func (m *metrics) processedIn(event string, d time.Duration) {
	m.processing.WithLabelValues(eventLabel(event)).Observe(d.Seconds())
}

// gitlabRequest is the GitLab client's observer.
func (m *metrics) gitlabRequest(method, endpoint string, status int, took time.Duration) {
	endpoint = m.bound.value("endpoint", endpoint)
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch:
	default:
		method = "other"
	}
	code := "0"
	if status >= 100 && status <= 599 {
		code = strconv.Itoa(status)
	}
	m.gitlabCalls.WithLabelValues(method, endpoint, code).Inc()
	m.gitlabLatency.WithLabelValues(endpoint).Observe(took.Seconds())
}

// setBuild publishes the version.
func (m *metrics) setBuild(version string) {
	if version == "" {
		version = "unknown"
	}
	m.build.WithLabelValues(m.bound.value("version", version), runtime.Version()).Set(1)
}

// audited counts what an audit record says happened.
func (m *metrics) audited(a promotion.Audit) {
	switch a.Kind {
	case promotion.AuditLanded:
		m.landed.WithLabelValues(m.bound.value("stage", a.Stage)).Inc()
	case promotion.AuditTampered:
		m.tampered.Inc()
	case promotion.AuditOutOfBand:
		m.outOfBand.Inc()
	}
	switch a.Kind {
	case promotion.AuditStarted, promotion.AuditGatesPassed, promotion.AuditBlocked, promotion.AuditMROpened, promotion.AuditMerged,
		promotion.AuditLanded, promotion.AuditSuperseded, promotion.AuditCancelled, promotion.AuditTampered, promotion.AuditRollback,
		promotion.AuditDegraded, promotion.AuditBreakGlass, promotion.AuditMergeDeferred:
		m.promotions.WithLabelValues(m.bound.value("app", a.App), m.bound.value("stage", a.Stage), a.Kind).Inc()
	}
}

// gatesChecked counts the gates a CheckGates action checked for app's stage,
// judged as the engine judges them (the scan against the stage's
// maxSeverity and maxScanAge).
func (m *metrics) gatesChecked(snap *snapshot, app string, a promotion.CheckGates, ev promotion.GatesChecked) {
	stage := m.bound.value("stage", a.Stage)
	if a.Signature {
		m.gateResults.WithLabelValues("signature", stage, verdict(ev.Signature)).Inc()
	}
	if a.Scan {
		r := promotion.Result{Checked: ev.Scan.Checked}
		if p, ok := snap.policy(app); ok {
			for _, sp := range p.Stages {
				if sp.Name == a.Stage && sp.MaxSeverity != nil {
					r = promotion.JudgeScan(ev.Scan, *sp.MaxSeverity, sp.MaxScanAge, time.Now())
				}
			}
		}
		m.gateResults.WithLabelValues("scan", stage, verdict(r)).Inc()
	}
}

func verdict(r promotion.Result) string {
	switch {
	case !r.Checked:
		return "unchecked"
	case r.OK:
		return "passed"
	}
	return "failed"
}

// countingVerifier counts the verifier's verifications by kind and result.
type countingVerifier struct {
	next Verifier
	m    *metrics
}

func (v countingVerifier) VerifySignature(ctx context.Context, image string, signer trust.Signer) error {
	err := v.next.VerifySignature(ctx, image, signer)
	v.m.verified("signature", err)
	return err
}

func (v countingVerifier) VerifyAttestation(ctx context.Context, image string, signer trust.Signer, predicateType string) ([]byte, error) {
	out, err := v.next.VerifyAttestation(ctx, image, signer, predicateType)
	v.m.verified("attestation", err)
	return out, err
}

func (m *metrics) verified(kind string, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "timeout"
	default:
		result = "failed"
	}
	m.verifications.WithLabelValues(kind, result).Inc()
}

// bounded caps the distinct values of each label: past max, new values
// count as "other", and so do values longer than 100 bytes.
type bounded struct {
	mu   sync.Mutex
	max  int
	seen map[string]map[string]bool // label -> values
}

func (b *bounded) value(label, v string) string {
	if len(v) > 100 {
		return "other"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = map[string]map[string]bool{}
	}
	vs := b.seen[label]
	if vs == nil {
		vs = map[string]bool{}
		b.seen[label] = vs
	}
	if vs[v] {
		return v
	}
	if len(vs) >= b.max {
		return "other"
	}
	vs[v] = true
	return v
}

// Interfaces the state collector reads through.
type (
	queueStats interface {
		Stats(ctx context.Context) (map[store.State]int, error)
	}
	oldestQueued interface {
		OldestQueued(ctx context.Context) (time.Time, bool, error)
	}
	appStates interface {
		LoadState(ctx context.Context, app string) (data []byte, version int64, err error)
	}
)

// stateCollector reads, on each scrape, the queue's depth and age from the
// store and the promotions under way and freezes in force from the apps'
// stored states (all replicas report the same: aggregate with max).
type stateCollector struct {
	bound *bounded

	mu     sync.Mutex
	queue  queueStats
	config *configSource
	states appStates
	now    func() time.Time
}

var (
	queueDesc = prometheus.NewDesc("lotsed_queue_deliveries", "Deliveries in the queue by state.", []string{"state"}, nil)
	oldest    = prometheus.NewDesc("lotsed_queue_oldest_seconds",
		"Age of the oldest delivery not yet processed (queued or leased); 0 when there is none.", nil, nil)
	waitingDesc = prometheus.NewDesc("lotsed_promotion_waiting_seconds",
		"Age of each promotion under way (not landed, blocked, tampered, superseded or cancelled) by app, stage and phase.",
		[]string{"app", "stage", "phase"}, nil)
	frozenDesc = prometheus.NewDesc("lotsed_freeze_active",
		"1 while a freeze holds promotions into the app's stage: kind stop-the-line (ChatOps or the API) or window (lotse.yaml freezes).",
		[]string{"app", "stage", "kind"}, nil)
)

// watchQueue has the queue's depth and age read from q on each scrape.
func (m *metrics) watchQueue(q queueStats) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.queue = q
}

// watchPromotions has the promotions under way read from the apps' stored
// states on each scrape, for the apps of config's snapshot in force.
func (m *metrics) watchPromotions(config *configSource, states appStates, now func() time.Time) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.config, m.state.states, m.state.now = config, states, now
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueDesc, oldest, waitingDesc, frozenDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	q, config, states, now := c.queue, c.config, c.states, c.now
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if now == nil {
		now = time.Now
	}
	t := now()
	if q != nil {
		if stats, err := q.Stats(ctx); err == nil {
			for _, s := range store.States() {
				ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(stats[s]), string(s))
			}
		}
		if o, ok := q.(oldestQueued); ok {
			if at, any, err := o.OldestQueued(ctx); err == nil {
				age := 0.0
				if any {
					age = max(t.Sub(at).Seconds(), 0)
				}
				ch <- prometheus.MustNewConstMetric(oldest, prometheus.GaugeValue, age)
			}
		}
	}
	if config == nil || states == nil {
		return
	}
	snap := config.cur.Load() // never read lotse.yaml from GitLab for a scrape
	if snap == nil {
		return
	}
	for _, app := range snap.apps() {
		pol, _ := snap.policyAt(app, t)
		var rec record
		if data, _, err := states.LoadState(ctx, app); err != nil || (len(data) > 0 && json.Unmarshal(data, &rec) != nil) {
			continue
		}
		appL := c.bound.value("app", app)
		for _, sp := range pol.Stages {
			stage := c.bound.value("stage", sp.Name)
			if st := rec.State.Stage(sp.Name); st != nil && st.Promotion != nil && !st.Promotion.Phase.IsTerminal() {
				p := st.Promotion
				since := p.StartedAt
				if since.IsZero() {
					since = p.UpdatedAt
				}
				ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, max(t.Sub(since).Seconds(), 0), appL, stage, string(p.Phase))
			}
			stop, window := 0.0, 0.0
			if rec.State.Frozen[sp.Name] != nil || rec.State.Frozen[""] != nil {
				stop = 1
			}
			for _, w := range pol.Freezes {
				if len(w.Stages) == 0 || contains(w.Stages, sp.Name) {
					window = 1
				}
			}
			ch <- prometheus.MustNewConstMetric(frozenDesc, prometheus.GaugeValue, stop, appL, stage, "stop-the-line")
			ch <- prometheus.MustNewConstMetric(frozenDesc, prometheus.GaugeValue, window, appL, stage, "window")
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) metricsHandler(c echo.Context) error {
	s.metrics.handler.ServeHTTP(c.Response(), c.Request())
	return nil
}
