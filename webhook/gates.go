package webhook

import (
	"context"

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

// scan reads the findings and the time of image's newest verified vuln
// attestation (vuln.Newest: findings and time of the same scan).
func (g *gates) scan(ctx context.Context, keys gateKeys, image string) promotion.ScanFacts {
	if !keys.usable() {
		return promotion.ScanFacts{Reason: "nothing to verify the scan attestation with: " + keys.problem}
	}
	out, err := g.verifier.VerifyAttestation(ctx, image, keys.signer, "vuln")
	if err != nil {
		return promotion.ScanFacts{Reason: "no verified vuln attestation: " + err.Error()}
	}
	a, _, err := vuln.NewestAttested(out)
	if err != nil {
		return promotion.ScanFacts{Reason: err.Error()}
	}
	return promotion.ScanFacts{Checked: true, Findings: a.Findings, Highest: a.Highest, ScannedAt: a.ScannedAt}
}
