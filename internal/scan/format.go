package scan

import (
	"context"
	"fmt"
	"io"
	"slices"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/report"
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
