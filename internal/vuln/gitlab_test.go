package vuln

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/lotse/lotse/test/reportschema"
)

// compileSchema compiles GitLab's full container-scanning report schema at
// the version the report declares (test/reportschema/testdata/gitlab).
func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	s, err := reportschema.Compile(reportschema.ContainerScanning, GitLabSchemaVersion)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	return s.Validate(doc)
}

func TestSchemaAcceptsReferenceExample(t *testing.T) {
	s := compileSchema(t)
	b, err := os.ReadFile("testdata/gl-container-scanning-report.minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, s, b); err != nil {
		t.Fatalf("reference example does not validate: %v", err)
	}
	// And the schema is not vacuous: a report with a null version fails.
	bad := bytes.Replace(b, []byte(`"version": "3.0.11-1~deb12u2"`), []byte(`"version": null`), 1)
	if err := validate(t, s, bad); err == nil {
		t.Fatal("a null dependency version validated")
	}
}

func sampleReport() Report {
	start := time.Date(2026, 1, 15, 10, 0, 0, 123, time.FixedZone("CET", 3600))
	return Report{
		Artifact: "registry.example.com/group/app:1.2.3",
		OS:       "debian 12.5",
		Scanner:  Tool{ID: "trivy", Name: "Trivy", Version: "0.74.0", Vendor: "Aqua Security"},
		Findings: []Finding{
			{
				ID: "CVE-2024-0001", Package: "libssl3", SourcePackage: "openssl",
				InstalledVersion: "3.0.11-1~deb12u2", FixedVersion: "3.0.13-1~deb12u1",
				Severity: High, Title: "openssl: bad things", PrimaryURL: "https://avd.aquasec.com/nvd/cve-2024-0001",
				References: []string{"https://example.com/a", "not a url"}, Type: "debian", Target: "debian 12.5",
			},
			{
				ID: "GHSA-xxxx-yyyy-zzzz", Package: "golang.org/x/net", InstalledVersion: "v0.1.0",
				Severity: Medium, Type: "gobinary", Path: "usr/local/bin/app", Description: "desc",
			},
			{ID: "", Package: "", InstalledVersion: "", Severity: Unknown},
		},
		StartedAt:  start,
		FinishedAt: start.Add(42 * time.Second),
	}
}

func TestToGitLab(t *testing.T) {
	s := compileSchema(t)
	r := ToGitLab(sampleReport(), "registry.example.com/group/app:1.2.3", Tool{ID: "lotse", Name: "lotse", Version: "v0.1.0", Vendor: "lotse"})
	b, err := MarshalGitLab(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, s, b); err != nil {
		t.Fatalf("report does not validate: %v\n%s", err, b)
	}
	if r.Scan.StartTime != "2026-01-15T09:00:00" || r.Scan.EndTime != "2026-01-15T09:00:42" {
		t.Errorf("times = %s .. %s, want UTC without zone", r.Scan.StartTime, r.Scan.EndTime)
	}
	if len(r.Vulnerabilities) != 3 {
		t.Fatalf("got %d vulnerabilities, want 3", len(r.Vulnerabilities))
	}
	v := r.Vulnerabilities[0]
	if v.Location.OperatingSystem != "debian:12.5" || v.Location.Dependency.Package.Name != "libssl3" ||
		v.Location.Dependency.Version != "3.0.11-1~deb12u2" || v.Severity != "High" {
		t.Errorf("first vulnerability = %+v", v)
	}
	if v.Identifiers[0].Type != "cve" || v.Identifiers[0].URL == "" {
		t.Errorf("identifier = %+v", v.Identifiers[0])
	}
	if len(v.Links) != 2 {
		t.Errorf("links = %+v, want the two URLs only", v.Links)
	}
	if !strings.Contains(v.Solution, "3.0.13-1~deb12u1") {
		t.Errorf("solution = %q", v.Solution)
	}
	if got := r.Vulnerabilities[1].Identifiers[0].Type; got != "ghsa" {
		t.Errorf("GHSA identifier type = %q", got)
	}
	// IDs are stable across runs and distinct across findings.
	again := ToGitLab(sampleReport(), "registry.example.com/group/app:1.2.3", Tool{})
	if again.Vulnerabilities[0].ID != v.ID || r.Vulnerabilities[1].ID == v.ID {
		t.Errorf("IDs not stable or not distinct")
	}
}

func TestToGitLabEmpty(t *testing.T) {
	s := compileSchema(t)
	b, err := MarshalGitLab(ToGitLab(Report{}, "", Tool{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, s, b); err != nil {
		t.Fatalf("empty report does not validate: %v\n%s", err, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["vulnerabilities"].([]any); !ok || len(v) != 0 {
		t.Errorf("vulnerabilities = %#v, want []", m["vulnerabilities"])
	}
}

// FuzzToGitLab checks that whatever a scanner reports, the GitLab report
// validates: GitLab drops an invalid report silently, so this must hold.
func FuzzToGitLab(f *testing.F) {
	f.Add("CVE-2024-1", "libssl3", "1.0", "https://x", "debian 12", "img:1", strings.Repeat("é", 200), 3)
	f.Add("", "", "", "ftp:/", "", "", "", 9)
	f.Add("GO-2024-1", "golang.org/x/net", "v0.0.1", "javascript:alert(1)", "alpine", "r/a@sha256:00", "\xff\xfe", -1)
	s := compileSchema(f)
	f.Fuzz(func(t *testing.T, id, pkg, ver, url, os, image, title string, sev int) {
		r := Report{OS: os, Findings: []Finding{{
			ID: id, Package: pkg, InstalledVersion: ver, PrimaryURL: url, References: []string{url},
			Title: strings.Repeat(title, 3), Severity: Severity(sev), FixedVersion: ver,
		}}}
		b, err := MarshalGitLab(ToGitLab(r, image, Tool{URL: url}))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, s, b); err != nil {
			t.Fatalf("invalid report: %v\n%s", err, b)
		}
	})
}
