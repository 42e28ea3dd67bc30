package vuln

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// envelope is one line of cosign verify-attestation output: a DSSE
// envelope around an in-toto statement with a vuln predicate whose report
// has findings of the given severities.
func envelope(predicateType, finished, started string, sevs ...string) string {
	var vs []string
	for _, s := range sevs {
		vs = append(vs, `{"VulnerabilityID":"CVE-1","Severity":"`+s+`"}`)
	}
	meta := ""
	if finished != "" || started != "" {
		var f []string
		if started != "" {
			f = append(f, `"scanStartedOn":"`+started+`"`)
		}
		if finished != "" {
			f = append(f, `"scanFinishedOn":"`+finished+`"`)
		}
		meta = `,"metadata":{` + strings.Join(f, ",") + `}`
	}
	st := `{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"` + predicateType + `","subject":[],"predicate":{"invocation":{},` +
		`"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","result":{"SchemaVersion":2,"Results":[{"Target":"debian","Vulnerabilities":[` +
		strings.Join(vs, ",") + `]}]}}` + meta + `}}`
	return `{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(st)) + `","signatures":[{"sig":"x"}]}`
}

const cosignVuln = "https://cosign.sigstore.dev/attestation/vuln/v1"

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestNewestAttested(t *testing.T) {
	const (
		jan  = "2026-01-01T00:00:01Z"
		june = "2026-06-01T12:00:00.5+02:00"
		dec  = "2026-12-01T00:00:00Z"
	)
	for _, tc := range []struct {
		name  string
		lines []string
		want  Attested
		count int
		err   string
	}{
		{name: "one", lines: []string{envelope(cosignVuln, jan, "2026-01-01T00:00:00Z", "LOW", "HIGH")},
			want: Attested{ScannedAt: at(jan), Findings: 2, Highest: High}, count: 1},
		// The release's scan found a CRITICAL; the rescan after the fix
		// found none: the rescan counts, not a merge of both.
		{name: "newest wins, findings and time together", lines: []string{envelope(cosignVuln, jan, "", "CRITICAL"), envelope(cosignVuln, dec, "")},
			want: Attested{ScannedAt: at(dec)}, count: 2},
		// ... and the other way round: a new advisory the rescan found.
		{name: "newest wins in any order", lines: []string{envelope(cosignVuln, dec, "", "CRITICAL", "LOW"), envelope(cosignVuln, june, "")},
			want: Attested{ScannedAt: at(dec), Findings: 2, Highest: Critical}, count: 2},
		{name: "time zones compared as instants", lines: []string{envelope(cosignVuln, "2026-06-01T11:00:00Z", "", "HIGH"), envelope(cosignVuln, june, "", "LOW")},
			want: Attested{ScannedAt: at("2026-06-01T11:00:00Z"), Findings: 1, Highest: High}, count: 2}, // june is 10:00:00.5Z
		{name: "started when finished is missing", lines: []string{envelope(cosignVuln, "", june, "MEDIUM")},
			want: Attested{ScannedAt: at(june), Findings: 1, Highest: Medium}, count: 1},
		{name: "zero finished falls back to started", lines: []string{envelope(cosignVuln, "0001-01-01T00:00:00Z", june)},
			want: Attested{ScannedAt: at(june)}, count: 1},
		{name: "no time at all", lines: []string{envelope(cosignVuln, "", "", "HIGH")},
			want: Attested{Findings: 1, Highest: High}, count: 1},
		{name: "a timed scan beats one without time", lines: []string{envelope(cosignVuln, "", "", "CRITICAL"), envelope(cosignVuln, jan, "", "LOW")},
			want: Attested{ScannedAt: at(jan), Findings: 1, Highest: Low}, count: 2},
		// Equally new: the worst counts, whatever the order.
		{name: "tie: worst severity", lines: []string{envelope(cosignVuln, dec, "", "LOW", "LOW", "LOW"), envelope(cosignVuln, dec, "", "HIGH"), envelope(cosignVuln, dec, "")},
			want: Attested{ScannedAt: at(dec), Findings: 1, Highest: High}, count: 3},
		{name: "tie: most findings", lines: []string{envelope(cosignVuln, dec, "", "LOW"), envelope(cosignVuln, dec, "", "LOW", "UNKNOWN")},
			want: Attested{ScannedAt: at(dec), Findings: 2, Highest: Low}, count: 2},
		{name: "tie: a finding beats none", lines: []string{envelope(cosignVuln, "", "", "UNKNOWN"), envelope(cosignVuln, "", "")},
			want: Attested{Findings: 1, Highest: Unknown}, count: 2},
		{name: "other predicate types are skipped", lines: []string{envelope("https://cyclonedx.org/bom", dec, "", "CRITICAL"), envelope(cosignVuln, jan, "", "LOW"), ""},
			want: Attested{ScannedAt: at(jan), Findings: 1, Highest: Low}, count: 1},
		{name: "unknown severity word counts as UNKNOWN", lines: []string{envelope(cosignVuln, jan, "", "severe")},
			want: Attested{ScannedAt: at(jan), Findings: 1, Highest: Unknown}, count: 1},
		{name: "none", lines: []string{envelope("https://cyclonedx.org/bom", dec, "")}, err: ErrNoVulnAttestation.Error()},
		{name: "empty", err: ErrNoVulnAttestation.Error()},
		{name: "bad time", lines: []string{envelope(cosignVuln, "yesterday", "", "LOW")}, err: `attestation 1: metadata.scanFinishedOn "yesterday" is not an RFC 3339 time`},
		{name: "not JSON", lines: []string{envelope(cosignVuln, jan, ""), "nope"}, err: "attestation 2: "},
		{name: "bad base64", lines: []string{`{"payload":"%%%"}`}, err: "attestation 1: payload: "},
		{name: "bad statement", lines: []string{`{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicate":`)) + `"}`}, err: "attestation 1: statement: "},
		{name: "bad predicate", lines: []string{envelope(cosignVuln, "", ""), `{"payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"predicateType":"`+cosignVuln+`","predicate":[]}`)) + `"}`},
			err: "attestation 2: vuln predicate: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := NewestAttested([]byte(strings.Join(tc.lines, "\n")))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if tc.err == ErrNoVulnAttestation.Error() && !errors.Is(err, ErrNoVulnAttestation) {
					t.Fatalf("err = %v, want ErrNoVulnAttestation", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.ScannedAt.Equal(tc.want.ScannedAt) || got.Findings != tc.want.Findings || got.Highest != tc.want.Highest || n != tc.count {
				t.Fatalf("NewestAttested = %+v of %d, want %+v of %d", got, n, tc.want, tc.count)
			}
		})
	}
}

// The order of the attestations never changes which scan counts.
func TestNewestIsOrderIndependent(t *testing.T) {
	scans := []Attested{
		{ScannedAt: at("2026-01-01T00:00:00Z"), Findings: 3, Highest: Critical},
		{ScannedAt: at("2026-03-01T00:00:00Z"), Findings: 1, Highest: Low},
		{ScannedAt: at("2026-03-01T00:00:00Z"), Findings: 1, Highest: Medium},
		{Findings: 9, Highest: Critical},
		{ScannedAt: at("2026-02-01T00:00:00Z")},
	}
	want := scans[2]
	perm := []int{0, 1, 2, 3, 4}
	var rec func(k int)
	rec = func(k int) {
		if k == len(perm) {
			var in []Attested
			for _, i := range perm {
				in = append(in, scans[i])
			}
			if got, _ := Newest(in); got != want {
				t.Fatalf("Newest(%v) = %+v, want %+v", perm, got, want)
			}
			return
		}
		for i := k; i < len(perm); i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
}

func FuzzParseAttested(f *testing.F) {
	f.Add([]byte(envelope(cosignVuln, "2026-01-01T00:00:01Z", "", "HIGH")))
	f.Add([]byte(envelope(cosignVuln, "", "2026-01-01T00:00:01+01:00") + "\n" + envelope("x", "", "")))
	f.Add([]byte(`{"payload":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		scans, err := ParseAttested(b)
		if err != nil {
			return
		}
		best, ok := Newest(scans)
		if ok != (len(scans) > 0) {
			t.Fatalf("Newest ok = %v for %d scans", ok, len(scans))
		}
		for _, s := range scans {
			if s.Findings < 0 || s.Highest < Unknown || s.Highest > Critical {
				t.Fatalf("bad scan %+v", s)
			}
			if s.ScannedAt.After(best.ScannedAt) {
				t.Fatalf("Newest = %+v, but %+v is newer", best, s)
			}
		}
	})
}
