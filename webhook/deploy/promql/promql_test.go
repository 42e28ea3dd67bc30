package promql

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	rulesFile     = "../chart/files/lotsed-rules.yaml"
	dashboardFile = "../dashboards/lotsed.json"
)

// grafanaVars are Grafana's built-in variables, replaced as Grafana does
// before a query reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1d", "$__interval", "1m")

func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("exported-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range strings.Fields(string(b)) {
		have[n] = true
	}
	if len(have) < 20 {
		t.Fatalf("exported-metrics.txt lists %d names", len(have))
	}
	return have
}

// check parses q with Prometheus' PromQL parser and returns what is wrong
// with it: a parse error, a selector without a metric name, or a metric
// lotsed does not export.
func check(p parser.Parser, q string, have map[string]bool) []string {
	expr, err := p.ParseExpr(grafanaVars.Replace(q))
	if err != nil {
		return []string{"does not parse: " + err.Error()}
	}
	var bad []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		switch {
		case vs.Name == "":
			bad = append(bad, "a selector without a metric name: "+vs.String())
		case !have[vs.Name]:
			bad = append(bad, "lotsed does not export "+vs.Name)
		}
		return nil
	})
	return bad
}

// The rule file loads as Prometheus loads rule files (rulefmt, which also
// parses each expression and checks the alert templates), and every metric
// it names is one lotsed exports.
func TestRules(t *testing.T) {
	have := exportedMetrics(t)
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	rgs, errs := rulefmt.Parse(b, false, model.UTF8Validation, p, nil)
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if rgs == nil || len(rgs.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	n := 0
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			n++
			for _, e := range check(p, r.Expr, have) {
				t.Errorf("%s: %s%s: %s", rulesFile, r.Alert, r.Record, e)
			}
		}
	}
	if n < 9 {
		t.Errorf("%s: %d rules", rulesFile, n)
	}
}

// Every query of the dashboard parses as PromQL and names only metrics
// lotsed exports.
func TestDashboard(t *testing.T) {
	have := exportedMetrics(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	p := parser.NewParser(parser.Options{})
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					n++
					for _, e := range check(p, s, have) {
						t.Errorf("%s: %s: %s", dashboardFile, s, e)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if n < 20 {
		t.Errorf("%s: %d queries", dashboardFile, n)
	}
}

// The checks refuse what they must.
func TestCheckRefuses(t *testing.T) {
	have := map[string]bool{"lotsed_x_total": true}
	p := parser.NewParser(parser.Options{})
	for _, q := range []string{
		`lotsed_nope_total`,
		`rate(lotsed_x_total[5m]) / rate(lotsed_y_total[5m])`,
		`{job="lotsed"}`,
		`range_median(lotsed_x_total[5m])`, // MetricsQL, not PromQL
		`sum(rate(lotsed_x_total[5m])`,
	} {
		if len(check(p, q, have)) == 0 {
			t.Errorf("%s: accepted", q)
		}
	}
	if bad := check(p, `sum by (a) (increase(lotsed_x_total{a!=""}[$__range]))`, have); len(bad) > 0 {
		t.Error(bad)
	}
	if _, errs := rulefmt.Parse([]byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(\n"), false, model.UTF8Validation, p, nil); len(errs) == 0 {
		t.Error("rulefmt accepted a rule that does not parse")
	}
}
