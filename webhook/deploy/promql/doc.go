// Package promql checks lotsed's alert rules and Grafana dashboard with
// Prometheus' own rule-file and PromQL parsers.
//
// It is a module of its own: github.com/prometheus/prometheus would raise
// the versions of dozens of modules lotse shares with trivy, syft and
// cosign, and so rebuild them. It reads the rules and the dashboard from
// the chart and webhook/deploy/dashboards, and the metric names lotsed
// exports from exported-metrics.txt, which lotse's webhook tests keep equal
// to a scrape of a driven lotsed.
package promql
