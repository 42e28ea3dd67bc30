package vuln

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// GitLabSchemaVersion is the container-scanning report schema lotse writes.
// GitLab 17.x and 18.x accept 15.0.0 to 15.2.x; 15.0.7 is the newest whose
// schema text we have checked the report against.
const GitLabSchemaVersion = "15.0.7"

// Field limits of the 15.x schema.
const (
	maxName        = 255
	maxDescription = 1 << 20
	maxSolution    = 7000
)

var (
	urlPattern      = regexp.MustCompile(`^(https?|ftp)://.+`)
	analyzerPattern = regexp.MustCompile(`^https?://.+`)
)

// GitLabReport is GitLab's container-scanning report
// (artifacts:reports:container_scanning).
type GitLabReport struct {
	Version         string       `json:"version"`
	Scan            gitlabScan   `json:"scan"`
	Vulnerabilities []gitlabVuln `json:"vulnerabilities"`
	Remediations    []any        `json:"remediations"`
}

type gitlabScan struct {
	Type      string       `json:"type"`
	Status    string       `json:"status"`
	StartTime string       `json:"start_time"`
	EndTime   string       `json:"end_time"`
	Analyzer  gitlabTool   `json:"analyzer"`
	Scanner   gitlabTool   `json:"scanner"`
	Messages  []gitlabNote `json:"messages,omitempty"`
}

type gitlabTool struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Version string       `json:"version"`
	URL     string       `json:"url,omitempty"`
	Vendor  gitlabVendor `json:"vendor"`
}

type gitlabVendor struct {
	Name string `json:"name"`
}

type gitlabNote struct {
	Level string `json:"level"`
	Value string `json:"value"`
}

type gitlabVuln struct {
	ID          string             `json:"id"`
	Name        string             `json:"name,omitempty"`
	Description string             `json:"description,omitempty"`
	Severity    string             `json:"severity"`
	Solution    string             `json:"solution,omitempty"`
	Identifiers []gitlabIdentifier `json:"identifiers"`
	Links       []gitlabLink       `json:"links,omitempty"`
	Location    gitlabLocation     `json:"location"`
}

type gitlabIdentifier struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Value string `json:"value"`
	URL   string `json:"url,omitempty"`
}

type gitlabLink struct {
	URL string `json:"url"`
}

type gitlabLocation struct {
	Dependency      gitlabDependency `json:"dependency"`
	OperatingSystem string           `json:"operating_system"`
	Image           string           `json:"image"`
}

type gitlabDependency struct {
	Package gitlabPackage `json:"package"`
	Version string        `json:"version"`
}

type gitlabPackage struct {
	Name string `json:"name"`
}

// ToGitLab converts a report into GitLab's container-scanning format. image
// is the reference GitLab shows and tracks findings by (use the published
// repository with tag, not the digest, so findings keep their identity across
// builds); analyzer names lotse.
func ToGitLab(r Report, image string, analyzer Tool) GitLabReport {
	osn := osName(r.OS)
	out := GitLabReport{
		Version: GitLabSchemaVersion,
		Scan: gitlabScan{
			Type:      "container_scanning",
			Status:    "success",
			StartTime: gitlabTime(r.StartedAt),
			EndTime:   gitlabTime(r.FinishedAt),
			Analyzer:  tool(analyzer, "lotse"),
			Scanner:   tool(r.Scanner, "trivy"),
		},
		Vulnerabilities: make([]gitlabVuln, 0, len(r.Findings)),
		Remediations:    []any{},
	}
	if out.Scan.Analyzer.URL != "" && !analyzerPattern.MatchString(out.Scan.Analyzer.URL) {
		out.Scan.Analyzer.URL = ""
	}
	if out.Scan.Scanner.URL != "" && !analyzerPattern.MatchString(out.Scan.Scanner.URL) {
		out.Scan.Scanner.URL = ""
	}
	seen := make(map[string]bool, len(r.Findings))
	for _, f := range r.Findings {
		v := gitlabVuln{
			ID:          findingID(image, osn, f),
			Name:        truncate(f.ID+" in "+f.Package, maxName),
			Description: truncate(description(f), maxDescription),
			Severity:    f.Severity.GitLab(),
			Solution:    truncate(solution(f), maxSolution),
			Identifiers: []gitlabIdentifier{identifier(f.ID, f.PrimaryURL)},
			Location: gitlabLocation{
				Dependency:      gitlabDependency{Package: gitlabPackage{Name: f.Package}, Version: f.InstalledVersion},
				OperatingSystem: osn,
				Image:           nonEmpty(image, r.Artifact, "unknown"),
			},
		}
		if seen[v.ID] {
			continue // the same package found twice in one place adds nothing
		}
		seen[v.ID] = true
		for _, ref := range append([]string{f.PrimaryURL}, f.References...) {
			if urlPattern.MatchString(ref) && !hasLink(v.Links, ref) {
				v.Links = append(v.Links, gitlabLink{URL: ref})
			}
		}
		out.Vulnerabilities = append(out.Vulnerabilities, v)
	}
	return out
}

// MarshalGitLab renders the report as indented JSON.
func MarshalGitLab(r GitLabReport) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode GitLab report: %w", err)
	}
	return append(b, '\n'), nil
}

func tool(t Tool, fallback string) gitlabTool {
	return gitlabTool{
		ID:      nonEmpty(t.ID, fallback),
		Name:    nonEmpty(t.Name, fallback),
		Version: nonEmpty(t.Version, "unknown"),
		URL:     t.URL,
		Vendor:  gitlabVendor{Name: nonEmpty(t.Vendor, t.Name, fallback)},
	}
}

// gitlabTime formats as the schema wants: UTC, no zone, no fraction.
func gitlabTime(t time.Time) string {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return t.UTC().Format("2006-01-02T15:04:05")
}

// osName turns trivy's "debian 12.5" into GitLab's "debian:12.5".
func osName(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "Unknown"
	}
	if fam, ver, ok := strings.Cut(s, " "); ok {
		return fam + ":" + ver
	}
	return s
}

// findingID is a stable UUID-shaped ID: the same finding in the same image
// gets the same ID in every pipeline.
func findingID(image, osn string, f Finding) string {
	h := sha256.Sum256([]byte(strings.Join([]string{image, osn, f.Type, f.Path, f.Package, f.InstalledVersion, f.ID}, "\x00")))
	h[6] = (h[6] & 0x0f) | 0x50 // version 5 layout
	h[8] = (h[8] & 0x3f) | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// identifier derives the identifier type from the ID's prefix: cve, ghsa, go, ...
func identifier(id, url string) gitlabIdentifier {
	typ := "trivy"
	if pfx, _, ok := strings.Cut(id, "-"); ok && pfx != "" {
		typ = strings.ToLower(pfx)
	}
	idf := gitlabIdentifier{Type: typ, Name: id, Value: id}
	if urlPattern.MatchString(url) {
		idf.URL = url
	}
	if idf.Name == "" {
		idf.Name, idf.Value = "unknown", "unknown"
	}
	return idf
}

func description(f Finding) string {
	if f.Description != "" {
		return f.Description
	}
	return f.Title
}

func solution(f Finding) string {
	if f.FixedVersion == "" {
		return ""
	}
	return fmt.Sprintf("Upgrade %s to %s", f.Package, f.FixedVersion)
}

func hasLink(ls []gitlabLink, u string) bool {
	for _, l := range ls {
		if l.URL == u {
			return true
		}
	}
	return false
}

func nonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
