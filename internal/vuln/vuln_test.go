package vuln

import (
	"reflect"
	"testing"
)

func TestParseSeverity(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Severity
		wantErr bool
	}{
		{"critical", Critical, false},
		{"HIGH", High, false},
		{"Medium", Medium, false},
		{"low", Low, false},
		{"unknown", Unknown, false},
		{"severe", Unknown, true},
		{"", Unknown, true},
	} {
		got, err := ParseSeverity(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseSeverity(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSeverityNames(t *testing.T) {
	if got := High.String(); got != "HIGH" {
		t.Errorf("High.String() = %q", got)
	}
	if got := Critical.GitLab(); got != "Critical" {
		t.Errorf("Critical.GitLab() = %q", got)
	}
	if got := Severity(42).GitLab(); got != "Unknown" {
		t.Errorf("out of range GitLab() = %q", got)
	}
}

func TestGate(t *testing.T) {
	fs := []Finding{
		{ID: "CVE-1", Severity: Low},
		{ID: "CVE-2", Severity: Critical},
		{ID: "CVE-3", Severity: High},
		{ID: "CVE-4", Severity: Unknown},
	}
	for _, tc := range []struct {
		threshold Severity
		want      []string
	}{
		{Critical, []string{"CVE-2"}},
		{High, []string{"CVE-2", "CVE-3"}},
		{Low, []string{"CVE-1", "CVE-2", "CVE-3"}},
		{Unknown, []string{"CVE-1", "CVE-2", "CVE-3", "CVE-4"}},
	} {
		var got []string
		for _, f := range AtOrAbove(fs, tc.threshold) {
			got = append(got, f.ID)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("AtOrAbove(%v) = %v, want %v", tc.threshold, got, tc.want)
		}
	}
	if got, want := Summary(fs), "1 CRITICAL, 1 HIGH, 0 MEDIUM, 1 LOW, 1 UNKNOWN"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestSort(t *testing.T) {
	fs := []Finding{
		{ID: "CVE-B", Package: "a", Severity: High},
		{ID: "CVE-A", Package: "z", Severity: Low},
		{ID: "CVE-A", Package: "b", Severity: High},
	}
	Sort(fs)
	var got []string
	for _, f := range fs {
		got = append(got, f.ID+"/"+f.Package)
	}
	want := []string{"CVE-A/b", "CVE-B/a", "CVE-A/z"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sort = %v, want %v", got, want)
	}
}
