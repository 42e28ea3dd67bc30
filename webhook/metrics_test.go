package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metricsql"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/test/gitlabsim"
)

// procFunc is a processor.
type procFunc func(d store.Delivery) error

func (f procFunc) process(_ context.Context, d store.Delivery, _ *gitlabHook) error { return f(d) }

// scrapeDriven drives a test server and the engine through every kind of
// thing lotsed counts and returns what its real /metrics then serves.
func scrapeDriven(t *testing.T) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	ctx := context.Background()
	m := newMetrics()
	m.setBuild("v-test")
	m.auditHead.Store(3)

	// Promotions: shop lands in dev, goes to staging (merged), lands in
	// staging and waits for approvals into production, which is frozen.
	w := newTestWorld(t)
	w.now = time.Now().Add(-2 * time.Hour)
	eff := w.runner.effects.(*effects)
	eff.metrics = m
	eff.gates = &gates{verifier: countingVerifier{next: w.verifier, m: m}}
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = []string{"LOW"}
	for _, ev := range []promotion.Event{landedIn("dev", img1, "c1"), landedIn("staging", img1, "c2"),
		promotion.Freeze{Stage: "production", Reason: "release weekend", By: promotion.User{ID: 2, Username: "olga"}}} {
		if err := w.apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	if ph := w.phase("production"); ph != promotion.PhaseAwaitingApproval {
		t.Fatalf("production phase %s", ph)
	}
	m.audited(promotion.Audit{Kind: promotion.AuditTampered, App: "shop", Stage: "staging"})
	m.audited(promotion.Audit{Kind: promotion.AuditOutOfBand, App: "shop", Stage: "dev"})
	src := &configSource{gitopsProject: testProject}
	src.cur.Store(w.snap)
	m.watchPromotions(src, w.states, time.Now)

	// Intake: accepted, duplicate, ignored (an unhandled and a made-up
	// event), refused.
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := &Config{WebhookSecret: testToken, APIReadToken: readToken, APIAdminToken: adminToken, MaxBody: 64 << 10,
		SignatureTolerance: 5 * time.Minute, GitOpsProject: testProject}
	s, err := newServer(cfg, serverParts{queue: db, watch: watchOnly(testProject), views: noViews{}, metrics: m,
		log: slog.New(slog.DiscardHandler), now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	hdr := func(token, event, key string) map[string]string {
		return map[string]string{"X-Gitlab-Token": token, "X-Gitlab-Event": event, "Idempotency-Key": key, "Content-Type": "application/json"}
	}
	for _, tc := range []struct {
		hdr  map[string]string
		code int
	}{
		{hdr(testToken, "Merge Request Hook", "k1"), 200},
		{hdr(testToken, "Merge Request Hook", "k1"), 200},
		{hdr(testToken, "Wiki Page Hook", "k2"), 200},
		{hdr(testToken, `Evil"} 1`+"\nlotsed_injected 1", "k3"), 200},
		{hdr("wrong", "Merge Request Hook", "k4"), 401},
	} {
		if rec := post(h, "/webhooks/gitlab", mrBody(testProject), tc.hdr); rec.Code != tc.code {
			t.Fatalf("%v: %d %s", tc.hdr, rec.Code, rec.Body)
		}
	}

	// Workers: one processed, one failed (to be retried), one dead; one
	// left queued for an hour.
	for i, ev := range []string{"Push Hook", "Note Hook", "Pipeline Hook"} {
		if _, _, err := db.Enqueue(ctx, store.Delivery{Source: "gitlab", Event: ev, Key: fmt.Sprint("w", i), Body: []byte(`{}`), ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	wk := &workers{queue: db, handoff: newHandoff("me/intake", time.Minute, 0), n: 1, ttl: time.Minute, maxAttempts: 2, metrics: m,
		now: time.Now, log: slog.New(slog.DiscardHandler), proc: procFunc(func(d store.Delivery) error {
			switch d.Event {
			case "Note Hook":
				return &permanentError{errors.New("undecodable")}
			case "Pipeline Hook":
				return errors.New("GitLab said no")
			}
			return nil
		})}
	ds, err := db.Lease(ctx, "me/0", 10, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if wk.handle(ctx, "me/0", handed{d: d}) {
			if _, err := db.CompleteMany(ctx, []int64{d.ID}, "me/0"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := db.Enqueue(ctx, store.Delivery{Source: "gitlab", Event: "Push Hook", Key: "old", Body: []byte(`{}`),
		ReceivedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// GitLab: a real client against the simulator, reporting to the metrics.
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	u, err := sim.CreateUser(gitlabsim.UserSpec{Username: "lotse-bot"})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := gitlab.New(srv.URL+"/api/v4", u.Token, gitlab.WithObserver(m.gitlabRequest), gitlab.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gl.CurrentUser(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := gl.GetMR(ctx, "no/such", 4); err == nil {
		t.Fatal("MR of a missing project")
	}

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams, body
}

// value is the value of the series of family name with exactly the labels
// given (others may exist); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, mt := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		case mt.Histogram != nil:
			return float64(mt.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsScrape(t *testing.T) {
	fams, body := scrapeDriven(t)
	for _, tc := range []struct {
		name   string
		labels []string
		want   func(float64) bool
		what   string
	}{
		{"lotsed_deliveries_accepted_total", []string{"event", "Merge Request Hook"}, eq(1), "1"},
		{"lotsed_deliveries_duplicate_total", []string{"event", "Merge Request Hook"}, eq(1), "1"},
		{"lotsed_deliveries_ignored_total", []string{"event", "other"}, eq(2), "2 (an unhandled and a made-up event)"},
		{"lotsed_deliveries_rejected_total", []string{"source", "gitlab"}, eq(1), "1"},
		{"lotsed_deliveries_processed_total", []string{"event", "Push Hook"}, eq(1), "1"},
		{"lotsed_deliveries_dead_total", []string{"event", "Note Hook"}, eq(1), "1"},
		{"lotsed_deliveries_failed_total", []string{"event", "Pipeline Hook"}, eq(1), "1"},
		{"lotsed_processing_seconds", []string{"event", "Note Hook"}, eq(1), "1 observation"},
		{"lotsed_ack_seconds", nil, eq(2), "2 observations"},
		{"lotsed_queue_deliveries", []string{"state", "dead"}, eq(1), "1"},
		{"lotsed_queue_deliveries", []string{"state", "queued"}, eq(2), "2 (the old one and the failed one)"},
		{"lotsed_queue_oldest_seconds", nil, func(v float64) bool { return v >= 3500 && v < 4000 }, "about an hour"},
		{"lotsed_gitlab_requests_total", []string{"method", "GET", "endpoint", "user", "status", "200"}, eq(1), "1"},
		{"lotsed_gitlab_requests_total", []string{"method", "GET", "endpoint", "projects/:id/merge_requests/:id", "status", "404"}, eq(1), "1"},
		{"lotsed_gitlab_request_seconds", []string{"endpoint", "user"}, eq(1), "1 observation"},
		{"lotsed_verifications_total", []string{"kind", "signature", "result", "ok"}, eq(2), "2 (staging, production)"},
		{"lotsed_verifications_total", []string{"kind", "attestation", "result", "ok"}, eq(2), "2"},
		{"lotsed_gate_results_total", []string{"gate", "scan", "stage", "staging", "result", "passed"}, eq(1), "1"},
		{"lotsed_gate_results_total", []string{"gate", "signature", "stage", "production", "result", "passed"}, eq(1), "1"},
		{"lotsed_promotions_total", []string{"app", "shop", "stage", "staging", "outcome", "merged"}, eq(1), "1"},
		{"lotsed_promotions_landed_total", []string{"stage", "staging"}, eq(1), "1"},
		{"lotsed_promotions_tampered_total", nil, eq(1), "1"},
		{"lotsed_out_of_band_changes_total", nil, eq(1), "1"},
		{"lotsed_promotion_waiting_seconds", []string{"app", "shop", "stage", "production", "phase", "awaiting-approval"},
			func(v float64) bool { return v >= 7200 && v < 7260 }, "2h"},
		{"lotsed_freeze_active", []string{"app", "shop", "stage", "production", "kind", "stop-the-line"}, eq(1), "1"},
		{"lotsed_freeze_active", []string{"app", "shop", "stage", "staging", "kind", "stop-the-line"}, eq(0), "0"},
		{"lotsed_freeze_active", []string{"app", "shop", "stage", "production", "kind", "window"}, eq(0), "0"},
		{"lotsed_audit_head_seq", nil, eq(3), "3"},
		{"lotsed_build_info", []string{"version", "v-test"}, eq(1), "1"},
	} {
		if v := value(fams, tc.name, tc.labels...); !tc.want(v) {
			t.Errorf("%s%v = %v, want %s", tc.name, tc.labels, v, tc.what)
		}
	}
	// No promotion into staging is under way any more (merged is not
	// terminal: it waits for its landing, which came).
	if v := value(fams, "lotsed_promotion_waiting_seconds", "stage", "staging"); v != -1 {
		t.Errorf("staging still waiting: %v", v)
	}
	// What callers choose never becomes a series: no made-up event, no
	// digest, no project path.
	for _, bad := range []string{"Evil", "lotsed_injected", "sha256:", "no/such", "no%2Fsuch", "Wiki Page Hook"} {
		if strings.Contains(body, bad) {
			t.Errorf("%q in /metrics", bad)
		}
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// exported are the series names a scrape's families stand for, as queries
// name them (histograms: _bucket, _sum, _count).
func exported(fams map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range fams {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// promQLFuncs are the PromQL functions and aggregations the dashboard and
// rules may use: MetricsQL, which parses them, knows more.
var promQLFuncs = map[string]bool{
	"rate": true, "irate": true, "increase": true, "delta": true, "deriv": true, "resets": true, "changes": true,
	"histogram_quantile": true, "max_over_time": true, "min_over_time": true, "avg_over_time": true, "time": true,
	"sum": true, "max": true, "min": true, "avg": true, "count": true, "topk": true, "bottomk": true, "absent": true,
}

// grafanaVars are Grafana's built-in variables, replaced as Grafana would
// before the query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1d", "$__interval", "1m")

// checkQuery parses q as PromQL (with MetricsQL's parser, restricted to
// PromQL's functions) and returns an error when it does not parse or names
// a metric lotsed does not export.
func checkQuery(q string, have map[string]bool) error {
	e, err := metricsql.Parse(grafanaVars.Replace(q))
	if err != nil {
		return fmt.Errorf("does not parse: %w", err)
	}
	var errs []error
	metricsql.VisitAll(e, func(x metricsql.Expr) {
		switch x := x.(type) {
		case *metricsql.MetricExpr:
			for _, group := range x.LabelFilterss {
				if len(group) == 0 || group[0].Label != "__name__" || group[0].IsRegexp || group[0].IsNegative {
					errs = append(errs, fmt.Errorf("a selector without a plain metric name: %s", x.AppendString(nil)))
					continue
				}
				if !have[group[0].Value] {
					errs = append(errs, fmt.Errorf("lotsed does not export %s", group[0].Value))
				}
			}
		case *metricsql.FuncExpr:
			if !promQLFuncs[strings.ToLower(x.Name)] {
				errs = append(errs, fmt.Errorf("%s is not a PromQL function used here", x.Name))
			}
		case *metricsql.AggrFuncExpr:
			if !promQLFuncs[strings.ToLower(x.Name)] {
				errs = append(errs, fmt.Errorf("%s is not a PromQL aggregation used here", x.Name))
			}
		}
	})
	return errors.Join(errs...)
}

// The checker itself refuses what it must.
func TestCheckQueryRefuses(t *testing.T) {
	have := map[string]bool{"lotsed_x_total": true}
	for _, q := range []string{
		`lotsed_nope_total`,
		`rate(lotsed_x_total[5m]) / rate(lotsed_y_total[5m])`,
		`{__name__=~"lotsed_.*"}`,
		`{job="lotsed"}`,
		`range_median(lotsed_x_total[5m])`, // MetricsQL only
		`sum(rate(lotsed_x_total[5m])`,
	} {
		if err := checkQuery(q, have); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	if err := checkQuery(`sum by (a) (increase(lotsed_x_total{a!=""}[$__range]))`, have); err != nil {
		t.Error(err)
	}
}

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// updateMetrics rewrites deploy/promql/exported-metrics.txt from a scrape.
var updateMetrics = flag.Bool("update-metrics", false, "rewrite deploy/promql/exported-metrics.txt")

// checkExportedList keeps deploy/promql/exported-metrics.txt, the names
// lotsed exports, equal to a scrape: the Prometheus-parser check in
// deploy/promql (a module of its own, so that Prometheus' dependencies do
// not change lotse's) reads it.
func checkExportedList(t *testing.T, have map[string]bool) {
	t.Helper()
	// The Go collector's runtime/metrics names change with the Go version;
	// the list keeps the stable ones.
	var names []string
	for _, n := range slices.Sorted(maps.Keys(have)) {
		if strings.HasPrefix(n, "lotsed_") || strings.HasPrefix(n, "process_") || strings.HasPrefix(n, "go_memstats_") ||
			n == "go_goroutines" || n == "go_threads" || n == "go_info" {
			names = append(names, n)
		}
	}
	want := strings.Join(names, "\n") + "\n"
	const path = "deploy/promql/exported-metrics.txt"
	if *updateMetrics {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s is not what lotsed exports (go test ./webhook -run TestDeployQueries -update-metrics rewrites it): %v\nexported:\n%s", path, err, want)
	}
}

var templateRef = regexp.MustCompile(`\{\{\s*\$labels\.([a-z_]+)\s*\}\}`)

// The alert rules and the dashboard parse, and every metric they query is
// one lotsed exports, by the scrape of a driven server.
func TestDeployQueriesNameExportedMetrics(t *testing.T) {
	fams, _ := scrapeDriven(t)
	have := exported(fams)
	checkExportedList(t, have)

	files, err := filepath.Glob("deploy/chart/files/*-rules.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files: %v", err)
	}
	alerts := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(rf.Groups) == 0 {
			t.Fatalf("%s: no groups", f)
		}
		groups := map[string]bool{}
		for _, g := range rf.Groups {
			if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
				t.Errorf("%s: group %q empty, unnamed or twice", f, g.Name)
			}
			groups[g.Name] = true
			for _, r := range g.Rules {
				where := f + ": " + r.Alert + r.Record
				if (r.Alert == "") == (r.Record == "") {
					t.Errorf("%s: a rule is an alert or a record", where)
				}
				if r.For != "" {
					if _, err := model.ParseDuration(r.For); err != nil {
						t.Errorf("%s: for: %v", where, err)
					}
				}
				if r.Alert != "" {
					alerts[r.Alert] = true
					if !slices.Contains([]string{"page", "warning", "info"}, r.Labels["severity"]) {
						t.Errorf("%s: severity %q", where, r.Labels["severity"])
					}
					if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
						t.Errorf("%s: summary and description wanted", where)
					}
				}
				if err := checkQuery(r.Expr, have); err != nil {
					t.Errorf("%s: %s: %v", where, r.Expr, err)
				}
				// A template naming a label the expression aggregates away
				// would render empty.
				for _, a := range r.Annotations {
					for _, m := range templateRef.FindAllStringSubmatch(a, -1) {
						if !strings.Contains(r.Expr, m[1]) {
							t.Errorf("%s: annotation uses $labels.%s, which the expression does not keep", where, m[1])
						}
					}
				}
			}
		}
	}
	for _, want := range []string{"LotsedQueueStuck", "LotsedQueueGrowing", "LotsedDeadDeliveries", "LotsedWebhookAuthFailures",
		"LotsedGitLabAPIErrors", "LotsedPromotionWaitingLong", "LotsedPromotionTampered", "LotsedOutOfBandChange", "LotsedFreezeActive"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}

	data, err := os.ReadFile("deploy/dashboards/lotsed.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				s, isString := x.(string)
				switch {
				case k == "expr" && isString:
					n++
					if err := checkQuery(s, have); err != nil {
						t.Errorf("dashboard: %s: %v", s, err)
					}
				case k == "definition" && isString:
					// label_values(METRIC, label)
					inner, ok := strings.CutPrefix(s, "label_values(")
					metric, _, ok2 := strings.Cut(inner, ",")
					if !ok || !ok2 || !have[strings.TrimSpace(metric)] {
						t.Errorf("dashboard variable %q: not label_values of a metric lotsed exports", s)
					}
				default:
					walk(x)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if n < 20 {
		t.Errorf("dashboard has %d queries", n)
	}
}
