// Package sign signs, attests and verifies container images with the cosign
// library. It runs cosign's own commands in process, with the defaults of the
// cosign CLI, so that what lotse signs the cosign CLI verifies and the
// reverse: signatures and attestations are Sigstore bundles attached as OCI
// referrers (or sha256-<digest> tags on registries without the referrers
// API). An SBOM's attestation is the one thing built here: its in-toto
// statement embeds the document as it is (see attestDocument), and is
// signed and attached with cosign's functions.
//
// Keys are a file, env://VAR or a KMS URI (awskms://, gcpkms://, azurekms://,
// hashivault://). Without a key, signing is keyless with an OIDC identity
// token (GitLab's id_tokens with aud "sigstore"). Offline mode uses no
// transparency log, for private sites and tests.
//
// Keyless signatures are verified against an exact identity (or a regular
// expression lotse anchors) and an exact OIDC issuer, with a Sigstore
// trusted root: the public-good instance's or a trusted_root.json file
// (private Sigstore, air-gapped sites). The certificate must chain to a
// trusted Fulcio CA, carry an SCT from a trusted CT log, and the signature
// must have a transparency-log entry.
package sign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sigstore/cosign/v3/cmd/cosign/cli"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"

	// KMS providers register themselves with sigstore, as in the cosign CLI.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/trust"
)

// Options say how to sign and where the registry is.
type Options struct {
	// Key is the private key: a file, env://VAR or a KMS URI. Empty means
	// keyless signing with IDToken. An encrypted key's password comes from
	// COSIGN_PASSWORD, as with the cosign CLI.
	Key string
	// IDToken is the OIDC token for keyless signing (SIGSTORE_ID_TOKEN).
	IDToken string
	// Offline writes no transparency-log entry and uses no signing config.
	Offline bool
	// Insecure allows plain-HTTP and unverified-TLS registries.
	Insecure bool
	// Username and Password authenticate to the registry; empty means the
	// docker config.
	Username, Password string
}

// AttestationType is a predicate type name as cosign accepts it.
type AttestationType string

// The attestation types lotse writes and checks.
const (
	CycloneDX      AttestationType = "cyclonedx"
	SPDX           AttestationType = "spdxjson"
	Vuln           AttestationType = "vuln"
	SLSAProvenance AttestationType = "slsaprovenance"
	// Promotion is lotsed's promotion record (see internal/promotion.Record),
	// a custom predicate type cosign takes by its URL.
	Promotion AttestationType = promotion.RecordPredicateType
)

// ParseAttestationType checks a --type value.
func ParseAttestationType(s string) (AttestationType, error) {
	switch t := AttestationType(s); t {
	case CycloneDX, SPDX, Vuln, SLSAProvenance:
		return t, nil
	case "spdx":
		return SPDX, nil
	case "promotion":
		return Promotion, nil
	}
	return "", fmt.Errorf("unknown attestation type %q (want cyclonedx, spdxjson, vuln, slsaprovenance or promotion)", s)
}

// cosignMu serialises cosign commands: the cosign CLI keeps its root options
// in a package variable.
var cosignMu sync.Mutex

// run executes one cosign command line in process. cosign writes its
// progress messages to the process's standard error, whatever the caller
// asks; this package leaves the process alone (lotsed points os.Stderr
// elsewhere once at start, see cmd/lotsed).
func run(ctx context.Context, args ...string) error {
	cosignMu.Lock()
	defer cosignMu.Unlock()
	cmd := cli.New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceErrors = true
	if err := cmd.ExecuteContext(ctx); err != nil {
		return errors.New(cleanError(err))
	}
	return nil
}

// cleanError drops cosign's nested "signing [..]: " prefixes down to the cause.
func cleanError(err error) string {
	return strings.TrimSpace(err.Error())
}

func (o Options) registryArgs() []string {
	var a []string
	if o.Insecure {
		a = append(a, "--allow-insecure-registry", "--allow-http-registry")
	}
	if o.Username != "" {
		a = append(a, "--registry-username", o.Username, "--registry-password", o.Password)
	}
	return a
}

func (o Options) signerArgs() ([]string, error) {
	a := []string{"--yes"}
	switch {
	case o.Key != "":
		a = append(a, "--key", o.Key)
	case o.IDToken != "":
		a = append(a, "--identity-token", o.IDToken)
	default:
		return nil, errors.New("no signing key: give --key (a file, env://VAR or a KMS URI) or set SIGSTORE_ID_TOKEN for keyless signing")
	}
	if o.Offline {
		if o.Key == "" {
			return nil, errors.New("keyless signing needs the transparency log: drop --offline or give --key")
		}
		a = append(a, "--tlog-upload=false", "--use-signing-config=false")
	}
	return a, nil
}

// Sign signs the image at ref, which must name a digest.
func Sign(ctx context.Context, ref string, o Options) error {
	if !strings.Contains(ref, "@sha256:") {
		return fmt.Errorf("sign %s: sign a digest (REPOSITORY@sha256:...), not a tag", ref)
	}
	sa, err := o.signerArgs()
	if err != nil {
		return err
	}
	args := append([]string{"sign"}, sa...)
	args = append(args, o.registryArgs()...)
	if err := run(ctx, append(args, ref)...); err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	return nil
}

// Attest attaches an in-toto attestation of type t with the predicate in
// predicateFile to the image at ref (a digest).
func Attest(ctx context.Context, ref string, t AttestationType, predicateFile string, o Options) error {
	if !strings.Contains(ref, "@sha256:") {
		return fmt.Errorf("attest %s: attest a digest (REPOSITORY@sha256:...), not a tag", ref)
	}
	if _, err := os.Stat(predicateFile); err != nil {
		return fmt.Errorf("attest %s: predicate: %w", ref, err)
	}
	sa, err := o.signerArgs()
	if err != nil {
		return err
	}
	args := append([]string{"attest", "--type", string(t), "--predicate", predicateFile}, sa...)
	args = append(args, o.registryArgs()...)
	args = append(args, ref)
	if documentTypes[t] {
		// An SBOM: the statement embeds the document as it is (see
		// attestDocument), unless the options ask for cosign's legacy
		// bundle format.
		cosignMu.Lock()
		err := attestDocument(ctx, args[1:])
		cosignMu.Unlock()
		if !errors.Is(err, errLegacyBundle) {
			if err != nil {
				return fmt.Errorf("attest %s: %s", ref, cleanError(err))
			}
			return nil
		}
	}
	if err := run(ctx, args...); err != nil {
		return fmt.Errorf("attest %s: %w", ref, err)
	}
	return nil
}

// VerifyOptions say what a valid signature is: one made with Key, or a
// keyless one that Keyless accepts. Exactly one of the two.
type VerifyOptions struct {
	Options
	// Key is the public key (a file, env://VAR or KMS URI).
	Key string
	// Keyless accepts signatures made with a short-lived Fulcio
	// certificate for one identity from one OIDC issuer, logged in the
	// transparency log.
	Keyless *Keyless
}

// Keyless is who must have signed keylessly; see trust.Keyless.
type Keyless = trust.Keyless

// Check reports what is missing or contradictory in o: a bad combination
// of options, not a bad signature.
func (o VerifyOptions) Check() error {
	switch {
	case o.Key != "" && o.Keyless != nil:
		return errors.New("verify with a public key or a keyless identity, not both")
	case o.Key == "" && o.Keyless == nil:
		return errors.New("nothing to verify against: give --key, or --certificate-identity (or --certificate-identity-regexp) and --certificate-oidc-issuer for keyless signatures")
	case o.Keyless != nil && o.Offline:
		return errors.New("keyless signatures are verified with their transparency-log entry: offline verification is for key signatures")
	case o.Keyless != nil:
		return o.Keyless.Check()
	}
	return nil
}

func (o VerifyOptions) args() ([]string, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	var a []string
	if o.Key != "" {
		a = append(a, "--key", o.Key)
		if o.Offline {
			a = append(a, "--insecure-ignore-tlog=true")
		}
	} else {
		k := o.Keyless
		// cosign's --certificate-identity is an exact comparison (sigstore-go's
		// SAN matcher); the regexp is anchored here, whatever the user wrote.
		// Values go in the flag=value form, so none reads as a flag.
		if k.Identity != "" {
			a = append(a, "--certificate-identity="+k.Identity)
		} else {
			a = append(a, "--certificate-identity-regexp="+k.AnchoredIdentityRegexp())
		}
		a = append(a, "--certificate-oidc-issuer="+k.Issuer)
		if k.TrustedRoot != "" {
			// A private or air-gapped Sigstore: the proof of logging must be
			// in the signature (bundle); never look it up in a public log.
			a = append(a, "--trusted-root="+k.TrustedRoot, "--offline=true")
		}
	}
	return append(a, o.registryArgs()...), nil
}

// Verify checks that the image at ref carries a valid signature and returns
// the verified payloads (one JSON document per line).
func Verify(ctx context.Context, ref string, o VerifyOptions) ([]byte, error) {
	va, err := o.args()
	if err != nil {
		return nil, err
	}
	return verify(ctx, ref, append([]string{"verify", "--output", "json"}, va...))
}

// VerifyAttestation checks that the image at ref carries a valid attestation
// of type t and returns the verified in-toto envelopes' payloads.
func VerifyAttestation(ctx context.Context, ref string, t AttestationType, o VerifyOptions) ([]byte, error) {
	va, err := o.args()
	if err != nil {
		return nil, err
	}
	return verify(ctx, ref, append([]string{"verify-attestation", "--type", string(t)}, va...))
}

// verify runs a cosign verify command; cosign prints what it verified to
// standard output, which --output-file redirects into a file we read back.
func verify(ctx context.Context, ref string, args []string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "lotse-verify")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out")
	if err := run(ctx, append(append([]string{"--output-file", out}, args...), ref)...); err != nil {
		return nil, fmt.Errorf("verify %s: %w", ref, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("verify %s: read result: %w", ref, err)
	}
	return b, nil
}

// GenerateKeyPair makes a cosign key pair: the private key encrypted with
// password, and the public key, both PEM.
func GenerateKeyPair(password []byte) (private, public []byte, err error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// Key is a private key decrypted once for several Sign and Attest calls:
// decrypting an encrypted cosign key (scrypt) takes about 0.16 s of a
// core, and cosign's commands would do it on every call. Give Ref as
// Options.Key; Close forgets the key.
type Key struct{ ref string }

// LoadKey decrypts an encrypted cosign private key (PEM) with password.
func LoadKey(pemBytes, password []byte) (*Key, error) {
	sv, err := loadPrivateKey(pemBytes, password)
	if errors.Is(err, errDecryptionFailed) {
		return nil, fmt.Errorf("signing key: %w (is COSIGN_PASSWORD right?)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return &Key{ref: loadedKeys.add(sv)}, nil
}

// Ref is the key reference that cosign's commands, in this process, resolve
// to the decrypted key (through sigstore's KMS provider registry, as any
// KMS URI).
func (k *Key) Ref() string { return k.ref }

// Close forgets the decrypted key.
func (k *Key) Close() { loadedKeys.remove(k.ref) }

// loadedKeyScheme names keys decrypted in this process.
const loadedKeyScheme = "lotse-loaded-key://"

// loadedKeys holds the keys LoadKey decrypted. It is package state because
// sigstore's KMS provider registry, which cosign's commands resolve --key
// through, is.
var loadedKeys = &keyRing{keys: map[string]signature.SignerVerifier{}}

type keyRing struct {
	register sync.Once
	mu       sync.Mutex
	next     int
	keys     map[string]signature.SignerVerifier
}

func (r *keyRing) add(sv signature.SignerVerifier) string {
	r.register.Do(func() { kms.AddProvider(loadedKeyScheme, r.provider) })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	ref := fmt.Sprintf("%s%d", loadedKeyScheme, r.next)
	r.keys[ref] = sv
	return ref
}

func (r *keyRing) remove(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, ref)
}

func (r *keyRing) provider(_ context.Context, ref string, _ crypto.Hash, _ ...signature.RPCOption) (kms.SignerVerifier, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sv, ok := r.keys[ref]
	if !ok {
		return nil, fmt.Errorf("%s: no such key loaded in this process", ref)
	}
	return loadedKey{sv}, nil
}

// loadedKey is a decrypted key as a KMS key: it signs and verifies; it
// makes no keys.
type loadedKey struct{ signature.SignerVerifier }

func (loadedKey) CreateKey(context.Context, string) (crypto.PublicKey, error) {
	return nil, errors.New("a loaded key creates no keys")
}

func (loadedKey) CryptoSigner(context.Context, func(error)) (crypto.Signer, crypto.SignerOpts, error) {
	return nil, nil, errors.New("a loaded key has no crypto.Signer")
}

func (loadedKey) SupportedAlgorithms() []string { return nil }
func (loadedKey) DefaultAlgorithm() string      { return "" }
