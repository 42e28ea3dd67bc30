package sign

import "context"

// GateVerifier verifies released images with fixed registry options, for
// lotsed's signature and scan gates.
type GateVerifier struct{ Options Options }

// VerifySignature checks that image carries a signature valid for key.
func (v GateVerifier) VerifySignature(ctx context.Context, image, key string) error {
	_, err := Verify(ctx, image, VerifyOptions{Options: v.Options, Key: key})
	return err
}

// VerifyAttestation returns image's attestations of predicateType (an
// AttestationType such as "vuln") that verify with key, one DSSE envelope
// per line.
func (v GateVerifier) VerifyAttestation(ctx context.Context, image, key, predicateType string) ([]byte, error) {
	t, err := ParseAttestationType(predicateType)
	if err != nil {
		return nil, err
	}
	return VerifyAttestation(ctx, image, t, VerifyOptions{Options: v.Options, Key: key})
}
