package sign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Attester attaches lotsed's own attestations (promotion records) to
// released images, signed with lotsed's key. It is GateVerifier's sibling:
// lotsed's webhook package sees it through a narrow interface, so that it
// does not link cosign.
type Attester struct {
	// Options are the registry options; Options.Key is the private key (a
	// file, env://VAR, a KMS URI, or a LoadKey Ref).
	Options Options
	key     *Key // decrypted by NewAttester; closed by Close
}

// AttesterKey is lotsed's signing key as configured.
type AttesterKey struct {
	// Ref is a file, env://VAR (the PEM in the variable) or a KMS URI
	// (awskms://, gcpkms://, azurekms://, hashivault://).
	Ref string
	// Password decrypts a file or env:// key.
	Password []byte
}

// NewAttester makes an Attester for key with the registry options o. A key
// in a file or a variable is decrypted once here, so a wrong password or
// an unreadable key fails at start, not at the first promotion. getenv and
// readFile read env:// keys and key files.
func NewAttester(o Options, key AttesterKey, getenv func(string) string, readFile func(string) ([]byte, error)) (*Attester, error) {
	if key.Ref == "" {
		return nil, errors.New("no signing key")
	}
	if o.IDToken != "" {
		return nil, errors.New("lotsed signs with a key, not keylessly")
	}
	var pem []byte
	switch {
	case strings.HasPrefix(key.Ref, "env://"):
		v := strings.TrimPrefix(key.Ref, "env://")
		if pem = []byte(getenv(v)); len(pem) == 0 {
			return nil, fmt.Errorf("signing key: %s is empty", v)
		}
	case strings.Contains(key.Ref, "://"):
		o.Key = key.Ref // a KMS key: nothing to decrypt here
		return &Attester{Options: o}, nil
	default:
		b, err := readFile(key.Ref)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		pem = b
	}
	k, err := LoadKey(pem, key.Password)
	if err != nil {
		return nil, err
	}
	o.Key = k.Ref()
	return &Attester{Options: o, key: k}, nil
}

// Close forgets the decrypted key.
func (a *Attester) Close() {
	if a.key != nil {
		a.key.Close()
	}
}

// AttestPredicate attaches predicate (JSON) to image (a digest) as an
// in-toto attestation of predicateType: a name ParseAttestationType knows,
// or a predicate type URL.
func (a *Attester) AttestPredicate(ctx context.Context, image, predicateType string, predicate []byte) error {
	t := AttestationType(predicateType)
	if !strings.Contains(predicateType, "://") {
		var err error
		if t, err = ParseAttestationType(predicateType); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "lotse-attest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "predicate.json")
	if err := os.WriteFile(f, predicate, 0o600); err != nil {
		return err
	}
	return Attest(ctx, image, t, f, a.Options)
}

// Attested returns the attestations of predicateType (a name or a URL) on
// image that verify with the attester's own key, one DSSE envelope per
// line: what lotsed attached earlier. An image without any is an error, as
// from VerifyAttestation.
func (a *Attester) Attested(ctx context.Context, image, predicateType string) ([]byte, error) {
	t := AttestationType(predicateType)
	if !strings.Contains(predicateType, "://") {
		var err error
		if t, err = ParseAttestationType(predicateType); err != nil {
			return nil, err
		}
	}
	return VerifyAttestation(ctx, image, t, VerifyOptions{Options: a.Options, Key: a.Options.Key})
}
