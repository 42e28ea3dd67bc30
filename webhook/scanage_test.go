package webhook

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/vuln"
	"github.com/lotse/lotse/test/gitlabsim"
)

// envelopeVerifier returns the DSSE envelopes it holds, one a line, as
// cosign verify-attestation prints them.
type envelopeVerifier struct {
	lines []string
	err   error
}

func (v envelopeVerifier) VerifySignature(context.Context, string, trust.Signer) error { return v.err }
func (v envelopeVerifier) VerifyAttestation(context.Context, string, trust.Signer, string) ([]byte, error) {
	return []byte(strings.Join(v.lines, "\n") + "\n"), v.err
}

// vulnEnvelope is a verified vuln attestation as lotse release and lotse
// rescan write it: cosign's vuln predicate with trivy's report and the
// scan's times.
func vulnEnvelope(finished string, sevs ...string) string {
	var vs []string
	for _, s := range sevs {
		vs = append(vs, `{"VulnerabilityID":"CVE-2024-0001","PkgName":"libssl3","Severity":"`+s+`"}`)
	}
	meta := ""
	if finished != "" {
		meta = `,"metadata":{"scanStartedOn":"` + finished + `","scanFinishedOn":"` + finished + `"}`
	}
	st := `{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1","predicate":{"invocation":{},` +
		`"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","version":"0.74.0","db":{},"result":{"SchemaVersion":2,"Results":[{"Target":"debian","Vulnerabilities":[` +
		strings.Join(vs, ",") + `]}]}}` + meta + `}}`
	return `{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(st)) + `","signatures":[{"keyid":"","sig":"MEUC"}]}`
}

// The scan gate reports the newest verified scan: its findings and its
// time together, never a merge of several scans.
func TestScanGateReadsTheNewestAttestation(t *testing.T) {
	keys := gateKeys{signer: trust.Signer{Key: "keys/cosign.pub"}}
	release := "2026-11-01T10:00:00Z"
	rescan := "2026-12-04T06:00:00.123456789Z"
	for _, tc := range []struct {
		name string
		v    envelopeVerifier
		want promotion.ScanFacts
	}{
		{name: "release only", v: envelopeVerifier{lines: []string{vulnEnvelope(release, "MEDIUM", "LOW")}},
			want: promotion.ScanFacts{Checked: true, Findings: 2, Highest: vuln.Medium, ScannedAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)}},
		// The release's scan had a CRITICAL that the team's .trivyignore
		// now accepts; the rescan counts, not the worst of both.
		{name: "rescan after the release", v: envelopeVerifier{lines: []string{vulnEnvelope(release, "CRITICAL"), vulnEnvelope(rescan, "LOW")}},
			want: promotion.ScanFacts{Checked: true, Findings: 1, Highest: vuln.Low, ScannedAt: time.Date(2026, 12, 4, 6, 0, 0, 123456789, time.UTC)}},
		// A new advisory found by the rescan is not hidden by the clean
		// release scan, whatever order the registry lists them in.
		{name: "rescan finds more", v: envelopeVerifier{lines: []string{vulnEnvelope(rescan, "CRITICAL", "HIGH"), vulnEnvelope(release)}},
			want: promotion.ScanFacts{Checked: true, Findings: 2, Highest: vuln.Critical, ScannedAt: time.Date(2026, 12, 4, 6, 0, 0, 123456789, time.UTC)}},
		{name: "no scan time", v: envelopeVerifier{lines: []string{vulnEnvelope("", "HIGH")}},
			want: promotion.ScanFacts{Checked: true, Findings: 1, Highest: vuln.High}},
		{name: "does not verify", v: envelopeVerifier{err: errors.New("no matching attestations")},
			want: promotion.ScanFacts{Reason: "no verified vuln attestation: no matching attestations"}},
		{name: "bad scan time", v: envelopeVerifier{lines: []string{vulnEnvelopeRaw(`"metadata":{"scanFinishedOn":"last week"}`)}},
			want: promotion.ScanFacts{Reason: `attestation 1: metadata.scanFinishedOn "last week" is not an RFC 3339 time`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gates{verifier: tc.v}
			got := g.scan(context.Background(), keys, "harbor.example.com/team/shop@sha256:"+strings.Repeat("1", 64))
			if got.Checked != tc.want.Checked || got.Findings != tc.want.Findings || got.Highest != tc.want.Highest ||
				!got.ScannedAt.Equal(tc.want.ScannedAt) || got.Reason != tc.want.Reason {
				t.Fatalf("scan = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// vulnEnvelopeRaw is a vuln attestation with the given predicate fields.
func vulnEnvelopeRaw(fields string) string {
	st := `{"predicateType":"https://cosign.sigstore.dev/attestation/vuln/v1","predicate":{` + fields + `}}`
	return `{"payload":"` + base64.StdEncoding.EncodeToString([]byte(st)) + `"}`
}

// lotse.yaml's gates.maxScanAge reaches the engine's policy, and the
// engine judges the facts the gate read with it.
func TestMaxScanAgeReachesThePolicy(t *testing.T) {
	cfg, err := gitops.ParseConfig([]byte(`version: 1
gitlab: {project: platform/gitops}
signing: {publicKey: keys/cosign.pub}
apps:
  - name: shop
    sourceProject: team/shop
    image: harbor.example.com/team/shop
    values: apps/{app}/envs/{stage}/values.yaml
    set: {image.tag: tag}
stages:
  - name: dev
    promotion: commit
  - name: production
    promotion: merge-request
    gates: {signature: true, maxSeverity: high, maxScanAge: 24h}
`), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(cfg, nil, "platform/gitops", people{}, gateKeys{signer: trust.Signer{Key: "keys/cosign.pub"}})
	p, ok := s.policy("shop")
	if !ok || len(p.Stages) != 2 {
		t.Fatalf("policy = %+v", p)
	}
	if p.Stages[0].MaxScanAge != 0 || p.Stages[1].MaxScanAge != 24*time.Hour {
		t.Fatalf("maxScanAge of dev %v, production %v", p.Stages[0].MaxScanAge, p.Stages[1].MaxScanAge)
	}
	g := &gates{verifier: envelopeVerifier{lines: []string{vulnEnvelope("2026-11-01T10:00:00Z", "LOW")}}}
	facts := g.scan(context.Background(), s.keys, "harbor.example.com/team/shop@sha256:"+strings.Repeat("1", 64))
	now := time.Date(2026, 11, 10, 13, 0, 0, 0, time.UTC)
	st := p.Stages[1]
	r := promotion.JudgeScan(facts, *st.MaxSeverity, st.MaxScanAge, now)
	if r.OK || r.Reason != "scan attestation is 9d 3h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan" {
		t.Fatalf("judged %+v", r)
	}
	if r := promotion.JudgeScan(facts, *st.MaxSeverity, st.MaxScanAge, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)); !r.OK {
		t.Fatalf("a 2h old scan: %+v", r)
	}
}

// POST /api/v1/releases judges the first stage's maxScanAge as the engine
// does: an old scan attestation is refused with its age, a rescan passes.
func TestReleaseFirstStageScanAge(t *testing.T) {
	w := newReleaseWorld(t, nil)
	yaml := strings.Replace(relLotseYAML, "gates: {signature: true, maxSeverity: high}", "gates: {signature: true, maxSeverity: high, maxScanAge: 24h}", 1)
	if _, err := w.sim.Commit("platform/gitops", "lotse-bot", gitlabsim.CommitSpec{Branch: "main", Message: "dev: fresh scans only",
		Files: map[string]string{"lotse.yaml": yaml}}); err != nil {
		t.Fatal(err)
	}
	before := w.head()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	w.rel.now = func() time.Time { return now }
	v := &envelopeVerifier{lines: []string{vulnEnvelope("2026-11-20T12:00:00Z", "LOW")}}
	w.rel.gates = &gates{verifier: v}

	code, _, e := w.post(w.token(gitlabsim.IDTokenSpec{}), shop(relGood))
	want := "scan: scan attestation is 14d 0h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan"
	if code != http.StatusUnprocessableEntity || len(e.Reasons) != 1 || e.Reasons[0] != want {
		t.Fatalf("stale scan: %d %q %q", code, e.Message, e.Reasons)
	}
	if w.head() != before {
		t.Fatal("a release with a stale scan was committed")
	}
	// lotse rescan added a newer attestation: the release goes through.
	v.lines = append(v.lines, vulnEnvelope("2026-12-04T06:00:00Z", "LOW"))
	code, res, e := w.post(w.token(gitlabsim.IDTokenSpec{}), shop(relGood))
	if code != http.StatusCreated || len(res.Gates) != 2 || !res.Gates[1].OK || !strings.Contains(res.Gates[1].Reason, "scanned 6h 0m ago, within the stage's maxScanAge 24h") {
		t.Fatalf("after the rescan: %d %+v %q", code, res.Gates, e.Message)
	}
}
