package guardrails

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	slashpath "path"
	"path/filepath"
	"strings"
)

// Text renders the report for people: one line per finding,
//
//	file:line: severity rule Kind/name container: message
//
// (without the container for findings about the pod, with "[exempt: reason]"
// after exempted ones), then a summary and how to fix each rule that failed
// the gate at failOn (SeverityNone: no gate).
func (r Report) Text(failOn Severity) []byte {
	var b strings.Builder
	for _, f := range r.Findings {
		obj := f.Object()
		if f.Container != "" {
			obj += " " + f.Container
		}
		fmt.Fprintf(&b, "%s:%d: %s %s %s: %s", f.File, f.Line, f.Severity, f.Rule, obj, f.Message)
		if f.Exemption != "" {
			fmt.Fprintf(&b, " [exempt: %s]", f.Exemption)
		}
		b.WriteByte('\n')
	}
	b.WriteString(r.Summary(failOn))
	b.WriteByte('\n')
	failing := r.AtOrAbove(failOn)
	seen := map[string]bool{}
	for _, f := range failing {
		if seen[f.Rule] {
			continue
		}
		if len(seen) == 0 {
			b.WriteString("how to fix:\n")
		}
		seen[f.Rule] = true
		rule, _ := RuleByID(f.Rule)
		fmt.Fprintf(&b, "  %s: %s\n", f.Rule, rule.Fix)
	}
	return []byte(b.String())
}

// Summary is one line: what was checked, the findings by severity, how many
// are exempted and how many fail the gate at failOn.
func (r Report) Summary(failOn Severity) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%d workload(s) in %d file(s): ", r.Workloads, r.Files)
	counts := map[Severity]int{}
	exempted := 0
	for _, f := range r.Findings {
		if f.Exemption != "" {
			exempted++
			continue
		}
		counts[f.Severity]++
	}
	active := len(r.Findings) - exempted
	if active == 0 {
		s.WriteString("no findings")
	} else {
		var parts []string
		for sev := SeverityBlocker; sev > SeverityNone; sev-- {
			if counts[sev] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
			}
		}
		fmt.Fprintf(&s, "%d finding(s) (%s)", active, strings.Join(parts, ", "))
	}
	if exempted > 0 {
		fmt.Fprintf(&s, ", %d exempted", exempted)
	}
	if failOn != SeverityNone {
		fmt.Fprintf(&s, "; %d at or above %s", len(r.AtOrAbove(failOn)), failOn)
	}
	return s.String()
}

// codeQualityIssue is one entry of GitLab's code quality report
// (artifacts:reports:codequality), a subset of the Code Climate format.
type codeQualityIssue struct {
	Description string              `json:"description"`
	CheckName   string              `json:"check_name"`
	Fingerprint string              `json:"fingerprint"`
	Severity    Severity            `json:"severity"`
	Location    codeQualityLocation `json:"location"`
}

type codeQualityLocation struct {
	Path  string           `json:"path"`
	Lines codeQualityLines `json:"lines"`
}

type codeQualityLines struct {
	Begin int `json:"begin"`
}

// CodeQuality renders GitLab's code quality report: a JSON array with one
// entry per finding that is not exempted. Fingerprints hash the file, the
// object, the container, the rule and the detail, not the line or the
// message, so a finding keeps its fingerprint when lines move or an image
// changes, and GitLab shows it as the same issue in the merge request.
func (r Report) CodeQuality() ([]byte, error) {
	issues := []codeQualityIssue{}
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if f.Exemption != "" {
			continue
		}
		fp := f.Fingerprint()
		for i := 2; seen[fp]; i++ {
			fp = fingerprint(f.fingerprintKey(), fmt.Sprint(i))
		}
		seen[fp] = true
		desc := f.Object()
		if f.Container != "" {
			desc += " container " + f.Container
		}
		line := max(f.Line, 1)
		issues = append(issues, codeQualityIssue{
			Description: desc + ": " + f.Message,
			CheckName:   "lotse-guardrails/" + f.Rule,
			Fingerprint: fp,
			Severity:    f.Severity,
			Location:    codeQualityLocation{Path: codeQualityPath(f.File), Lines: codeQualityLines{Begin: line}},
		})
	}
	out, err := json.MarshalIndent(issues, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("code quality report: %w", err)
	}
	return append(out, '\n'), nil
}

// codeQualityPath makes file the repository-relative path GitLab's report
// wants: slashes, no "./" prefix, not absolute (GitLab resolves the path in
// the repository, so a leading "/" would name nothing), never empty.
func codeQualityPath(file string) string {
	p := strings.TrimLeft(slashpath.Clean(filepath.ToSlash(file)), "/")
	if p == "" || p == "." {
		return "-"
	}
	return p
}

// Fingerprint identifies the finding across runs: a hash of its file,
// object, container, rule and detail.
func (f Finding) Fingerprint() string { return fingerprint(f.fingerprintKey()) }

func (f Finding) fingerprintKey() string {
	return strings.Join([]string{f.File, f.Kind, f.Namespace, f.Name, f.Container, f.Rule, f.Detail}, "\x00")
}

func fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00#")))
	return hex.EncodeToString(h[:16])
}

// JSON renders the report with every finding, exempted ones included.
func (r Report) JSON() ([]byte, error) {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("guardrails report: %w", err)
	}
	return append(out, '\n'), nil
}
