package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/vuln"
)

// Verifier checks the signature and the attestations of a released image
// the way `lotse verify` does, with key (a file, env://VAR or a KMS URI).
// cmd/lotsed gives lotsed cosign's (internal/sign), so that this package and
// its tests do not link cosign.
type Verifier interface {
	VerifySignature(ctx context.Context, image string, signer trust.Signer) error
	// VerifyAttestation returns the verified attestations of the type, one
	// DSSE envelope per line.
	VerifyAttestation(ctx context.Context, image string, signer trust.Signer, predicateType string) ([]byte, error)
}

// Registry is how the gates reach the registry that holds released images.
type Registry struct {
	Insecure bool // plain HTTP
	Offline  bool // signatures carry no transparency-log entry
	Username string
	Password string
}

// NewVerifier makes the gates' verifier for lotsed's registry settings.
type NewVerifier func(Registry) Verifier

// gates gather the facts of the signature and scan gates. They report what
// they found; the promotion engine judges it against the stage's policy.
type gates struct {
	verifier Verifier
}

// signature reports whether image carries a valid signature, and why not.
func (g *gates) signature(ctx context.Context, keys gateKeys, image string) promotion.Result {
	if !keys.usable() {
		return promotion.Result{Reason: keys.problem}
	}
	if err := g.verifier.VerifySignature(ctx, image, keys.signer); err != nil {
		return promotion.Result{Checked: true, Reason: "signature does not verify: " + err.Error()}
	}
	return promotion.Result{Checked: true, OK: true, Reason: "signature verified: " + keys.describe()}
}

// scan reads the findings of image's verified vuln attestation.
func (g *gates) scan(ctx context.Context, keys gateKeys, image string) promotion.ScanFacts {
	if !keys.usable() {
		return promotion.ScanFacts{Reason: "nothing to verify the scan attestation with: " + keys.problem}
	}
	out, err := g.verifier.VerifyAttestation(ctx, image, keys.signer, "vuln")
	if err != nil {
		return promotion.ScanFacts{Reason: "no verified vuln attestation: " + err.Error()}
	}
	sev, n, err := maxSeverity(out)
	if err != nil {
		return promotion.ScanFacts{Reason: err.Error()}
	}
	return promotion.ScanFacts{Checked: true, Findings: n, Highest: sev}
}

// maxSeverity reads cosign's verify-attestation output (one DSSE envelope
// per line) and returns the highest severity and the number of findings in
// the newest vuln predicate's trivy report.
func maxSeverity(out []byte) (vuln.Severity, int, error) {
	var (
		best  vuln.Severity
		count int
		found bool
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var env struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(line, &env); err != nil {
			return 0, 0, fmt.Errorf("attestation: %w", err)
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			return 0, 0, fmt.Errorf("attestation payload: %w", err)
		}
		var st struct {
			PredicateType string `json:"predicateType"`
			Predicate     struct {
				Scanner struct {
					Result struct {
						Results []struct {
							Vulnerabilities []struct {
								Severity string `json:"Severity"`
							} `json:"Vulnerabilities"`
						} `json:"Results"`
					} `json:"result"`
				} `json:"scanner"`
			} `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return 0, 0, fmt.Errorf("attestation statement: %w", err)
		}
		if !strings.Contains(st.PredicateType, "vuln") {
			continue
		}
		found = true
		for _, r := range st.Predicate.Scanner.Result.Results {
			for _, v := range r.Vulnerabilities {
				count++
				if s, err := vuln.ParseSeverity(v.Severity); err == nil && s > best {
					best = s
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, fmt.Errorf("no vuln predicate in the attestations")
	}
	return best, count, nil
}
