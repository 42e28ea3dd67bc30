package sign

import (
	"context"

	"github.com/lotse/lotse/internal/trust"
)

// GateVerifier verifies released images with fixed registry options, for
// lotsed's signature and scan gates.
type GateVerifier struct{ Options Options }

// options are the verify options for signer. Offline (no transparency log)
// applies to key signatures only: keyless ones are always checked with
// their log entry.
func (v GateVerifier) options(signer trust.Signer) VerifyOptions {
	o := VerifyOptions{Options: v.Options, Key: signer.Key, Keyless: signer.Keyless}
	if signer.Keyless != nil {
		o.Offline = false
	}
	return o
}

// VerifySignature checks that image carries a valid signature of signer.
func (v GateVerifier) VerifySignature(ctx context.Context, image string, signer trust.Signer) error {
	_, err := Verify(ctx, image, v.options(signer))
	return err
}

// VerifyAttestation returns image's attestations of predicateType (an
// AttestationType such as "vuln") that verify as signer's, one DSSE
// envelope per line.
func (v GateVerifier) VerifyAttestation(ctx context.Context, image string, signer trust.Signer, predicateType string) ([]byte, error) {
	t, err := ParseAttestationType(predicateType)
	if err != nil {
		return nil, err
	}
	return VerifyAttestation(ctx, image, t, v.options(signer))
}
