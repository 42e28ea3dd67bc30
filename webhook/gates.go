package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/vuln"
)

// gates checks a released image the way `lotse verify` does: its signature
// and its vulnerability attestation (the trivy report `lotse release`
// attested, after the team's ignore file).
type gates struct {
	key      string // cosign public key: a file, env://VAR or a KMS URI
	insecure bool
	offline  bool // no transparency log
	user     string
	password string
}

// signature reports whether image carries a valid signature, and why not.
func (g *gates) signature(ctx context.Context, image string) (bool, string) {
	if g.key == "" {
		return false, "no public key configured (lotse.yaml signing.publicKey or LOTSE_PUBLIC_KEY)"
	}
	if _, err := sign.Verify(ctx, image, g.verifyOptions()); err != nil {
		return false, "signature does not verify: " + err.Error()
	}
	return true, "signature verified with the configured key"
}

// scan returns the highest severity in image's verified vuln attestation.
func (g *gates) scan(ctx context.Context, image string) (vuln.Severity, int, error) {
	if g.key == "" {
		return 0, 0, fmt.Errorf("no public key configured to verify the scan attestation")
	}
	out, err := sign.VerifyAttestation(ctx, image, sign.Vuln, g.verifyOptions())
	if err != nil {
		return 0, 0, fmt.Errorf("no verified vuln attestation: %w", err)
	}
	return maxSeverity(out)
}

func (g *gates) verifyOptions() sign.VerifyOptions {
	return sign.VerifyOptions{Options: sign.Options{Insecure: g.insecure, Offline: g.offline, Username: g.user, Password: g.password, Quiet: true}, Key: g.key}
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
