// Package sigstoretest is a private Sigstore in memory, for tests: a Fulcio
// certificate authority, a certificate-transparency log, a Rekor log and a
// timestamp authority, the trusted_root.json that trusts exactly them, and
// keyless signatures and attestations made with short-lived certificates
// for any identity and issuer, attached to images as cosign attaches them
// (Sigstore bundles as OCI referrers).
//
// Nothing is mocked on the verifying side: certificates chain to the CA,
// carry an embedded SCT signed by the CT log, and every bundle holds a
// Rekor entry with a signed entry timestamp and an inclusion proof under a
// signed checkpoint. cosign verifies them with --trusted-root.
//
// It lives under internal/sign because only that package tree imports
// cosign and sigstore.
package sigstoretest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	ctx509util "github.com/google/certificate-transparency-go/x509util"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/options"
	cbundle "github.com/sigstore/cosign/v3/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v3/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	"github.com/sigstore/cosign/v3/pkg/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sigpayload "github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sigstore is one private Sigstore instance. Each New makes fresh keys, so
// two instances do not trust each other's signatures.
type Sigstore struct {
	// rekor is sigstore-go's virtual Sigstore, used for its Rekor log (and
	// timestamp authority); its Fulcio CA makes no SCTs, so ours does.
	rekor     *ca.VirtualSigstore
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  *ecdsa.PrivateKey
	ctKey     *ecdsa.PrivateKey
	createdAt time.Time
}

// New makes a Sigstore whose keys are valid for about an hour.
func New() (*Sigstore, error) {
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		return nil, err
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		return nil, err
	}
	ctKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, err
	}
	return &Sigstore{rekor: vs, root: rootCert, inter: inter, interKey: interKey, ctKey: ctKey, createdAt: time.Now()}, nil
}

// TrustedRoot returns the trusted_root.json that trusts this Sigstore.
func (s *Sigstore) TrustedRoot() ([]byte, error) {
	start := s.createdAt.Add(-time.Hour)
	ctID, err := keyID(s.ctKey.Public())
	if err != nil {
		return nil, err
	}
	ctlogs := map[string]*root.TransparencyLog{hex.EncodeToString(ctID): {
		BaseURL:             "https://ctfe.sigstoretest.invalid",
		ID:                  ctID,
		ValidityPeriodStart: start,
		HashFunc:            crypto.SHA256,
		PublicKey:           s.ctKey.Public(),
		SignatureHashFunc:   crypto.SHA256,
	}}
	// The virtual Sigstore's log IDs are hex strings; a trusted root holds
	// the raw key ID.
	rekorLogs := map[string]*root.TransparencyLog{}
	for id, l := range s.rekor.RekorLogs() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			return nil, err
		}
		c := *l
		c.ID = raw
		c.ValidityPeriodStart, c.ValidityPeriodEnd = start, time.Time{}
		rekorLogs[id] = &c
	}
	fulcio := &root.FulcioCertificateAuthority{
		Root:                s.root,
		Intermediates:       []*x509.Certificate{s.inter},
		ValidityPeriodStart: start,
		URI:                 "https://fulcio.sigstoretest.invalid",
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{fulcio}, ctlogs, s.rekor.TimestampingAuthorities(), rekorLogs)
	if err != nil {
		return nil, err
	}
	return tr.MarshalJSON()
}

// Sign attaches a keyless signature of the image at ref (a digest) by
// identity, in a certificate from issuer, as 'cosign sign' does.
func (s *Sigstore) Sign(ref, identity, issuer string, opts ...ociremote.Option) error {
	return s.attach(ref, identity, issuer, types.CosignSignPredicateType, json.RawMessage(`{}`), NoFlaw, opts)
}

// SignLegacy attaches a keyless signature of the image at ref in the
// format of cosign before Sigstore bundles (cosign 2 and older): a
// simple-signing payload in a sha256-<digest>.sig image, with the
// certificate, its chain and the Rekor entry (hashedrekord, signed entry
// timestamp) as annotations.
func (s *Sigstore) SignLegacy(ref, identity, issuer string, opts ...ociremote.Option) error {
	d, err := name.NewDigest(ref)
	if err != nil {
		return err
	}
	payload, err := (&sigpayload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		return err
	}
	now := time.Now()
	leaf, key, err := s.certificate(identity, issuer, now.Add(-time.Minute), true)
	if err != nil {
		return err
	}
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	chainPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.inter.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.root.Raw})...)
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(h[:])}},
			"signature": map[string]any{
				"content":   base64.StdEncoding.EncodeToString(sig),
				"publicKey": map[string]string{"content": base64.StdEncoding.EncodeToString(certPEM)},
			},
		},
	})
	if err != nil {
		return err
	}
	logID, err := s.rekor.RekorLogID()
	if err != nil {
		return err
	}
	rp := tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body), IntegratedTime: now.Unix(), LogIndex: 1, LogID: logID}
	set, err := s.rekor.RekorSignPayload(rp)
	if err != nil {
		return err
	}
	osig, err := static.NewSignature(payload, base64.StdEncoding.EncodeToString(sig),
		static.WithCertChain(certPEM, chainPEM),
		static.WithBundle(&cbundle.RekorBundle{SignedEntryTimestamp: set, Payload: cbundle.RekorPayload{
			Body: rp.Body, IntegratedTime: rp.IntegratedTime, LogIndex: rp.LogIndex, LogID: rp.LogID,
		}}))
	if err != nil {
		return err
	}
	se, err := ociremote.SignedEntity(d, opts...)
	if err != nil {
		return err
	}
	se, err = mutate.AttachSignatureToEntity(se, osig)
	if err != nil {
		return err
	}
	return ociremote.WriteSignatures(d.Repository, se, opts...)
}

// A Flaw spoils one part of a signature, for tests of what a verifier
// must refuse.
type Flaw int

// The flaws SignFlawed makes.
const (
	NoFlaw Flaw = iota
	// NoTlogEntry leaves the transparency-log entry out; the bundle has
	// a timestamp from the timestamp authority instead.
	NoTlogEntry
	// NoSCT issues the certificate without an SCT from the CT log.
	NoSCT
	// Expired logs the signature after the certificate expired.
	Expired
)

// SignFlawed is Sign with one flaw.
func (s *Sigstore) SignFlawed(ref, identity, issuer string, f Flaw, opts ...ociremote.Option) error {
	return s.attach(ref, identity, issuer, types.CosignSignPredicateType, json.RawMessage(`{}`), f, opts)
}

// Rogue returns a Sigstore that logs to the same Rekor log but issues
// certificates from its own CA, with SCTs from its own CT log: an
// attacker's Fulcio. The trusted root of s does not trust its
// certificates.
func (s *Sigstore) Rogue() (*Sigstore, error) {
	r, err := New()
	if err != nil {
		return nil, err
	}
	r.rekor = s.rekor
	return r, nil
}

// Attest attaches a keyless attestation with the predicate of type typ (a
// cosign --type name such as vuln, or a URI) to the image at ref, as
// 'cosign attest' does.
func (s *Sigstore) Attest(ref, identity, issuer, typ string, predicate []byte, opts ...ociremote.Option) error {
	uri, err := options.ParsePredicateType(typ)
	if err != nil {
		return err
	}
	if !json.Valid(predicate) {
		return fmt.Errorf("predicate is not JSON")
	}
	return s.attach(ref, identity, issuer, uri, json.RawMessage(predicate), NoFlaw, opts)
}

func (s *Sigstore) attach(ref, identity, issuer, predicateType string, predicate json.RawMessage, f Flaw, opts []ociremote.Option) error {
	d, err := name.NewDigest(ref)
	if err != nil {
		return err
	}
	alg, hexDigest, _ := strings.Cut(d.DigestStr(), ":")
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []map[string]any{{"digest": map[string]string{alg: hexDigest}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		return err
	}
	bundle, err := s.bundle(statement, identity, issuer, f)
	if err != nil {
		return err
	}
	return ociremote.WriteAttestationNewBundleFormat(d, bundle, predicateType, opts...)
}

// bundle signs statement as a DSSE envelope with a fresh certificate for
// identity and logs it in Rekor; it returns the Sigstore bundle (v0.3).
func (s *Sigstore) bundle(statement []byte, identity, issuer string, f Flaw) ([]byte, error) {
	now := time.Now()
	notBefore := now.Add(-time.Minute)
	if f == Expired {
		notBefore = now.Add(-11 * time.Minute)
	}
	leaf, key, err := s.certificate(identity, issuer, notBefore, f != NoSCT)
	if err != nil {
		return nil, err
	}
	const payloadType = "application/vnd.in-toto+json"
	h := sha256.Sum256(dsse.PAE(payloadType, statement))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	env := &dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(statement),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	entry, err := s.rekor.GenerateTlogEntry(leaf, env, sig, now.Unix(), true)
	if err != nil {
		return nil, err
	}
	tle := entry.TransparencyLogEntry()
	tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
	set, err := s.rekor.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.LogId.KeyId),
	})
	if err != nil {
		return nil, err
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	vm := &protobundle.VerificationMaterial{
		Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: leaf.Raw}},
		TlogEntries: []*protorekor.TransparencyLogEntry{tle},
	}
	if f == NoTlogEntry {
		tsr, err := s.rekor.TimestampResponse(sig)
		if err != nil {
			return nil, err
		}
		vm.TlogEntries = nil
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: tsr}},
		}
	}
	b := &protobundle.Bundle{
		MediaType:            "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     statement,
			PayloadType: payloadType,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return protojson.Marshal(b)
}

// Fulcio's OIDC issuer extensions: the first takes the raw string, its
// successor a DER UTF8String.
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	oidSCTList  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// Certificate issues a Fulcio-like code-signing certificate, valid for ten
// minutes from notBefore, for identity (a URI SAN when it has a scheme,
// else an email SAN) from issuer, with an SCT from the CT log embedded.
func (s *Sigstore) Certificate(identity, issuer string, notBefore time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return s.certificate(identity, issuer, notBefore, true)
}

func (s *Sigstore) certificate(identity, issuer string, notBefore time.Time, withSCT bool) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	issuerDER, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(issuer)},
			{Id: oidIssuerV2, Value: issuerDER},
		},
	}
	if strings.Contains(identity, "://") {
		u, err := url.Parse(identity)
		if err != nil {
			return nil, nil, err
		}
		if u.String() != identity {
			return nil, nil, fmt.Errorf("identity %q does not survive as a URI (%q)", identity, u.String())
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{identity}
	}
	// The SCT signs the certificate without its SCT list: issue it once
	// with a placeholder list, have the log sign it with the list removed,
	// and issue it again with the real list in the same place.
	if withSCT {
		n := len(tmpl.ExtraExtensions)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidSCTList, Value: []byte{0x04, 0x00}})
		pre, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter, key.Public(), s.interKey)
		if err != nil {
			return nil, nil, err
		}
		tmpl.ExtraExtensions[n], err = s.sctList(pre, notBefore)
		if err != nil {
			return nil, nil, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter, key.Public(), s.interKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// sctList has the CT log sign an SCT for the certificate pre and returns
// the extension that embeds it.
func (s *Sigstore) sctList(pre []byte, at time.Time) (pkix.Extension, error) {
	// The placeholder list does not parse: a non-fatal error.
	chain, err := ctx509.ParseCertificates(append(append([]byte{}, pre...), s.inter.Raw...))
	if ctx509.IsFatal(err) {
		return pkix.Extension{}, err
	}
	ts := uint64(at.UnixMilli())
	leaf, err := ct.MerkleTreeLeafForEmbeddedSCT(chain, ts)
	if err != nil {
		return pkix.Extension{}, err
	}
	id, err := keyID(s.ctKey.Public())
	if err != nil {
		return pkix.Extension{}, err
	}
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, Timestamp: ts}
	copy(sct.LogID.KeyID[:], id)
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: *leaf})
	if err != nil {
		return pkix.Extension{}, err
	}
	h := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ctKey, h[:])
	if err != nil {
		return pkix.Extension{}, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	list, err := ctx509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		return pkix.Extension{}, err
	}
	b, err := cttls.Marshal(*list)
	if err != nil {
		return pkix.Extension{}, err
	}
	v, err := asn1.Marshal(b)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidSCTList, Value: v}, nil
}

// keyID is the SHA-256 of a public key's PKIX encoding: the ID of a log.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(der)
	return h[:], nil
}
