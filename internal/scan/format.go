package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/clock"
	"github.com/aquasecurity/trivy/pkg/report"
	"github.com/aquasecurity/trivy/pkg/report/predicate"
	"github.com/aquasecurity/trivy/pkg/report/table"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/version/app"
)

// Format is an output format of a scan.
type Format string

// The formats lotse prints; they are trivy's.
const (
	FormatTable Format = "table"
	FormatJSON  Format = "json"
	FormatSARIF Format = "sarif"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	f := Format(s)
	if !slices.Contains([]Format{FormatTable, FormatJSON, FormatSARIF}, f) {
		return "", fmt.Errorf("unknown scan format %q (want table, json or sarif)", s)
	}
	return f, nil
}

// Write renders the result as trivy does for the same format.
func (r *Result) Write(ctx context.Context, w io.Writer, f Format) error {
	var wr report.Writer
	switch f {
	case FormatTable:
		wr = table.NewWriter(table.Options{
			Scanners:   types.Scanners{types.VulnerabilityScanner},
			Output:     w,
			Severities: []dbtypes.Severity{dbtypes.SeverityUnknown, dbtypes.SeverityLow, dbtypes.SeverityMedium, dbtypes.SeverityHigh, dbtypes.SeverityCritical},
			TableModes: []types.TableMode{types.Summary, types.Detailed},
		})
	case FormatJSON:
		wr = &report.JSONWriter{Output: w}
	case FormatSARIF:
		wr = &report.SarifWriter{Output: w, Version: app.Version()}
	default:
		_, err := ParseFormat(string(f))
		return err
	}
	if err := wr.Write(ctx, r.trivy); err != nil {
		return fmt.Errorf("write %s report: %w", f, err)
	}
	return nil
}

// WriteVulnPredicate writes the result as the predicate of cosign's "vuln"
// attestation (trivy --format cosign-vuln): the trivy report inside
// {"invocation", "scanner": {"uri", "version", "db", "result"}, "metadata"}.
// cosign attest --type vuln expects exactly this shape; a bare trivy report
// would be attested as an empty predicate.
//
// Its metadata.scanStartedOn and scanFinishedOn, which lotsed's maxScanAge
// gate reads, are when the scan finished (trivy's writer would say when the
// predicate was written); for a report read back from trivy's JSON, when
// trivy made it (its CreatedAt), and Go's zero time when it does not say,
// never the time it was wrapped.
func (r *Result) WriteVulnPredicate(ctx context.Context, w io.Writer) error {
	scanned := r.Report.FinishedAt
	if scanned.IsZero() {
		scanned = r.trivy.CreatedAt
	}
	ctx = clock.With(ctx, scanned.UTC())
	if err := predicate.NewVulnWriter(w, app.Version()).Write(ctx, r.trivy); err != nil {
		return fmt.Errorf("write vuln predicate: %w", err)
	}
	return nil
}

// VulnPredicate wraps a trivy JSON report (as `lotse scan --format json` or
// `trivy --format json` write it) into cosign's vuln predicate. A document
// that already is a vuln predicate is returned as it is.
func VulnPredicate(ctx context.Context, trivyJSON []byte) ([]byte, error) {
	var probe struct {
		Scanner *json.RawMessage `json:"scanner"`
		Results *json.RawMessage `json:"Results"`
		Schema  *json.RawMessage `json:"SchemaVersion"`
	}
	if err := json.Unmarshal(trivyJSON, &probe); err != nil {
		return nil, fmt.Errorf("vuln predicate: not JSON: %w", err)
	}
	if probe.Scanner != nil {
		return trivyJSON, nil
	}
	if probe.Schema == nil {
		return nil, fmt.Errorf("vuln predicate: neither a trivy JSON report nor a cosign vuln predicate")
	}
	var rep types.Report
	if err := json.Unmarshal(trivyJSON, &rep); err != nil {
		return nil, fmt.Errorf("vuln predicate: read trivy report: %w", err)
	}
	var b bytes.Buffer
	if err := (&Result{trivy: rep}).WriteVulnPredicate(ctx, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
