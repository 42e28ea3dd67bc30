// Package vuln is the scanner-independent model of vulnerability findings:
// severities, the gate that fails a release, and GitLab's container-scanning
// report. It does no I/O; internal/scan fills it from trivy.
package vuln

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Severity orders findings. The zero value is Unknown, the lowest.
type Severity int

// Severities, lowest first.
const (
	Unknown Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// ParseSeverity reads a severity name in any case: unknown, low, medium,
// high, critical.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return Unknown, fmt.Errorf("unknown severity %q (want one of unknown, low, medium, high, critical)", s)
}

// String returns the upper-case name trivy and grype print.
func (s Severity) String() string {
	if s < Unknown || s > Critical {
		return "UNKNOWN"
	}
	return severityNames[s]
}

// GitLab returns the capitalised name GitLab's security reports use.
func (s Severity) GitLab() string {
	n := s.String()
	return n[:1] + strings.ToLower(n[1:])
}

// Finding is one vulnerability in one installed package.
type Finding struct {
	ID               string // CVE-2024-1234, GHSA-..., GO-2024-...
	Package          string // the installed package: libssl3
	SourcePackage    string // the source it was built from: openssl (OS packages)
	InstalledVersion string
	FixedVersion     string // empty when there is no fix
	Severity         Severity
	Title            string
	Description      string
	PrimaryURL       string
	References       []string
	Target           string // where it was found: "debian 12.5", "usr/local/bin/app"
	Type             string // debian, alpine, gobinary, jar, ...
	Path             string // file of a language package, if any
}

// Key identifies a finding across scanners and runs.
func (f Finding) Key() string {
	return f.ID + " " + f.Package + "@" + f.InstalledVersion + " " + f.Path
}

// Report is the outcome of scanning one artifact.
type Report struct {
	Artifact   string // the image reference or SBOM file that was scanned
	OS         string // "debian 12.5"; empty when no OS was detected
	Findings   []Finding
	Scanner    Tool // the vulnerability scanner (trivy)
	StartedAt  time.Time
	FinishedAt time.Time
}

// Tool names a scanner or analyzer and its version.
type Tool struct {
	ID      string
	Name    string
	Version string
	Vendor  string
	URL     string
}

// Sort orders findings by severity (highest first), then ID, package, path.
func Sort(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if a.Severity != b.Severity {
			return int(b.Severity - a.Severity)
		}
		return strings.Compare(a.Key(), b.Key())
	})
}

// AtOrAbove returns the findings whose severity is at least threshold, in
// report order.
func AtOrAbove(fs []Finding, threshold Severity) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Severity >= threshold {
			out = append(out, f)
		}
	}
	return out
}

// Counts returns the number of findings per severity.
func Counts(fs []Finding) map[Severity]int {
	m := make(map[Severity]int, 5)
	for _, f := range fs {
		m[f.Severity]++
	}
	return m
}

// Summary is a one-line count such as "2 CRITICAL, 1 HIGH, 0 MEDIUM, 3 LOW, 0 UNKNOWN".
func Summary(fs []Finding) string {
	c := Counts(fs)
	parts := make([]string, 0, 5)
	for s := Critical; s >= Unknown; s-- {
		parts = append(parts, fmt.Sprintf("%d %s", c[s], s))
	}
	return strings.Join(parts, ", ")
}
