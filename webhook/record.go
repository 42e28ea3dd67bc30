package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/intoto"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/vuln"
)

// Attester attaches lotsed's own attestations to released images, signed
// with lotsed's key (--signing-key). cmd/lotsed gives cosign's
// (internal/sign.Attester), so that this package does not link cosign.
type Attester interface {
	// AttestPredicate attaches predicate (JSON) to image (a digest) as an
	// in-toto attestation of predicateType (a URL).
	AttestPredicate(ctx context.Context, image, predicateType string, predicate []byte) error
	// Close forgets the key.
	Close()
}

// attestedReader is an Attester that reads back what it attached: the
// attestations of a type on an image that verify with its own key, one
// DSSE envelope per line (cmd/lotsed's does).
type attestedReader interface {
	Attested(ctx context.Context, image, predicateType string) ([]byte, error)
}

// SigningKey is lotsed's signing key as configured: a file, env://VAR or a
// KMS URI, and the password of a file or env:// key.
type SigningKey struct {
	Ref      string
	Password []byte
}

// NewAttester makes the Attester for lotsed's signing key and registry
// settings; getenv reads env:// keys. It fails when the key cannot be used
// (unreadable, wrong password), so lotsed does not start with a key that
// would sign nothing.
type NewAttester func(key SigningKey, r Registry, getenv func(string) string) (Attester, error)

// recordAttester is the Attester for --signing-key, or nil without one.
func recordAttester(cfg *Config, r Registry, getenv func(string) string, newAttester NewAttester, log *slog.Logger) (Attester, error) {
	if cfg.SigningKey == "" {
		log.Warn("no --signing-key: promotion records are written to the audit log only, not signed and attached to the images")
		return nil, nil
	}
	if newAttester == nil {
		return nil, errors.New("this lotsed cannot sign (built without an attester)")
	}
	pw := cfg.SigningKeyPassword
	if pw == "" {
		pw = getenv("COSIGN_PASSWORD")
	}
	return newAttester(SigningKey{Ref: cfg.SigningKey, Password: []byte(pw)}, r, getenv)
}

// records write promotion records: signed and attached to the image when
// lotsed has a signing key, and in the audit log always.
type records struct {
	attester   Attester // nil: the audit log only
	signedWith string   // the signing key as configured, for the audit log
	now        func() time.Time
}

// attestPromotion carries out AttestPromotion: it completes the record
// with what lotsed verifies now, attaches it to the image signed with
// lotsed's key (once per promotion: a claim), and writes it into the audit
// log (once).
func (s *effects) attestPromotion(ctx context.Context, snap *snapshot, app string, a promotion.AttestPromotion) error {
	r := s.records
	if r == nil {
		r = &records{}
	}
	rec := a.Record
	if rec.App == "" {
		rec.App = app
	}
	key := digestOf(rec.App, a.Stage, a.Image, fmt.Sprint(rec.PromotionID), rec.MergeRequest.Commit, rec.MergeRequest.MergeCommit)
	full := rec.WithFacts(s.recordFacts(ctx, snap, r.clock(), a.Image, rec))
	body, err := json.Marshal(full)
	if err != nil {
		return &permanentError{fmt.Errorf("encode the promotion record: %w", err)}
	}
	sum := sha256.Sum256(body)
	now := r.clock()
	at := now
	if rec.Times.Landed != nil {
		at = *rec.Times.Landed
	}
	var detail string
	if r.attester != nil {
		claim := "attest-promotion:" + key
		first, err := s.claims.Once(ctx, claim)
		if err != nil {
			return err
		}
		if first && r.attachedBefore(ctx, a.Image, rec) {
			s.log.InfoContext(ctx, "promotion record already attached", "app", rec.App, "stage", a.Stage, "image", a.Image)
		} else if first {
			if err := r.attester.AttestPredicate(ctx, a.Image, promotion.RecordPredicateType, body); err != nil {
				_ = s.claims.Forget(ctx, claim) // the retry attests
				if now.Sub(at) < recordRetryFor {
					return fmt.Errorf("attest the promotion record of %s: %w", a.Image, err)
				}
				// A failing action holds the app's outbox: after retrying
				// long enough, the record goes to the audit log only.
				detail = fmt.Sprintf("promotion record NOT attached to the image: signing or pushing it failed for %s (%v); it is kept in this audit log only; record sha256:%x: %s",
					recordRetryFor, err, sum, body)
				return s.auditRecord(ctx, key, a, rec.App, at, detail)
			}
		}
		detail = fmt.Sprintf("promotion record signed with lotsed's key %s and attached to the image as an in-toto attestation of type %s "+
			"(verify: lotse verify --type promotion --key LOTSED_PUBLIC_KEY %s); record sha256:%x: %s",
			r.signedWith, promotion.RecordPredicateType, a.Image, sum, body)
	} else {
		detail = fmt.Sprintf("promotion record NOT signed: lotsed has no --signing-key, so it is kept in this audit log only; record sha256:%x: %s", sum, body)
	}
	return s.auditRecord(ctx, key, a, rec.App, at, detail)
}

// recordRetryFor is how long after the landing lotsed retries attaching a
// promotion record before it keeps it in the audit log only.
const recordRetryFor = time.Hour

// auditRecord writes the promotion record's audit entry, once.
func (s *effects) auditRecord(ctx context.Context, key string, a promotion.AttestPromotion, app string, at time.Time, detail string) error {
	claim := "promotion-record:" + key
	first, err := s.claims.Once(ctx, claim)
	if err != nil || !first {
		return err
	}
	au := promotion.Audit{App: app, Kind: promotion.AuditRecord, Stage: a.Stage, Image: a.Image, Detail: detail, At: at}
	if s.metrics != nil {
		s.metrics.audited(au)
	}
	if err := s.audit.Audit(ctx, store.AuditRecord{At: au.At, App: au.App, Stage: au.Stage, Image: au.Image, Kind: au.Kind, Detail: au.Detail}); err != nil {
		_ = s.claims.Forget(ctx, claim) // the retry writes it
		return err
	}
	return nil
}

// attachedBefore reports whether the image already carries this record,
// signed with lotsed's key: an attestation whose answer was lost (a timeout
// after the registry took it) is not attached a second time.
func (r *records) attachedBefore(ctx context.Context, image string, rec promotion.Record) bool {
	rd, ok := r.attester.(attestedReader)
	if !ok {
		return false
	}
	out, err := rd.Attested(ctx, image, promotion.RecordPredicateType)
	if err != nil {
		return false // none, or unreadable: attach it
	}
	have, err := promotion.ReadRecords(out)
	if err != nil {
		return false
	}
	for _, h := range have {
		if h.App == rec.App && h.Stage == rec.Stage && h.PromotionID == rec.PromotionID &&
			h.MergeRequest.Commit == rec.MergeRequest.Commit && h.MergeRequest.MergeCommit == rec.MergeRequest.MergeCommit {
			return true
		}
	}
	return false
}

func (r *records) clock() time.Time {
	if r.now == nil {
		return time.Now().UTC()
	}
	return r.now().UTC()
}

// sbomTypes are the SBOM attestation types a release may carry.
var sbomTypes = []string{"cyclonedx", "spdxjson"}

// recordFacts verifies the image again, the way the gates and `lotse
// verify` do, and reports what it found: the signature and who made it,
// the digests of the verified SBOM and vuln attestations, and the scan.
func (s *effects) recordFacts(ctx context.Context, snap *snapshot, now time.Time, image string, rec promotion.Record) promotion.RecordFacts {
	f := promotion.RecordFacts{GitOpsProject: s.project}
	v := &promotion.RecordVerification{At: now, Attestations: []promotion.RecordAttestation{}}
	f.Verification = v
	if rec.Source.Project != "" && rec.Source.Commit != "" && s.sources != nil {
		mrs, err := s.sources.MRsForCommit(ctx, rec.Source.Project, rec.Source.Commit)
		if err != nil {
			v.Notes = append(v.Notes, "source merge requests not read: "+err.Error())
		}
		for _, m := range mrs {
			f.SourceMRs = append(f.SourceMRs, m.IID)
		}
	}
	if s.gates == nil || s.gates.verifier == nil || snap == nil || !snap.keys.usable() {
		why := "nothing to verify with"
		if snap != nil && snap.keys.problem != "" {
			why = snap.keys.problem
		}
		v.Signature.Reason = why
		v.Notes = append(v.Notes, "the image was not verified: "+why)
		return f
	}
	keys, verifier := snap.keys, s.gates.verifier
	if err := verifier.VerifySignature(ctx, image, keys.signer); err != nil {
		v.Signature.Reason = "signature does not verify: " + err.Error()
	} else {
		v.Signature.Verified, v.Signature.VerifiedBy = true, signerIdentity(keys.signer)
	}
	var sbomErrs []string
	for _, t := range append(sbomTypes, "vuln") {
		out, err := verifier.VerifyAttestation(ctx, image, keys.signer, t)
		if err != nil {
			if t == "vuln" {
				v.Notes = append(v.Notes, "no verified vuln attestation: "+err.Error())
			} else {
				sbomErrs = append(sbomErrs, t+": "+err.Error())
			}
			continue
		}
		atts, err := attestationDigests(t, out)
		if err != nil {
			v.Notes = append(v.Notes, t+" attestation unreadable: "+err.Error())
			continue
		}
		v.Attestations = append(v.Attestations, atts...)
		if t == "vuln" {
			v.Scan = scanOf(out, &v.Notes)
		}
	}
	if len(sbomErrs) == len(sbomTypes) {
		v.Notes = append(v.Notes, "no verified SBOM attestation ("+strings.Join(sbomErrs, "; ")+")")
	}
	return f
}

// signerIdentity names the key or keyless identity that verified a
// signature: a public key by the SHA-256 of its DER encoding, a KMS key by
// its URI, a keyless identity by its subject and issuer.
func signerIdentity(s trust.Signer) string {
	if kl := s.Keyless; kl != nil {
		id := kl.Identity
		if id == "" {
			id = "matching " + kl.AnchoredIdentityRegexp()
		}
		return "keyless: " + id + " from " + kl.Issuer
	}
	if strings.Contains(s.Key, "://") {
		return "key " + s.Key
	}
	b, err := os.ReadFile(s.Key)
	if err != nil {
		return "public key " + s.Key
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	sum := sha256.Sum256(b)
	return "public key sha256:" + hex.EncodeToString(sum[:])
}

// attestationDigests names the attestations of cosign's verify-attestation
// output (one DSSE envelope per line) by the digests of each envelope and
// its statement.
func attestationDigests(typ string, out []byte) ([]promotion.RecordAttestation, error) {
	sts, err := intoto.Read(out)
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		return nil, errors.New("no envelope")
	}
	atts := make([]promotion.RecordAttestation, 0, len(sts))
	for _, st := range sts {
		atts = append(atts, promotion.RecordAttestation{Type: typ, PredicateType: st.PredicateType,
			EnvelopeDigest: st.EnvelopeDigest, StatementDigest: st.StatementDigest})
	}
	return atts, nil
}

// scanOf reads the findings and the scan time of the newest verified vuln
// attestation (the one the scan gate judged).
func scanOf(out []byte, notes *[]string) *promotion.RecordScan {
	a, _, err := vuln.NewestAttested(out)
	if err != nil {
		*notes = append(*notes, "vuln attestation: "+err.Error())
		return nil
	}
	sc := &promotion.RecordScan{Findings: a.Findings, MaxSeverity: "NONE"}
	if a.Findings > 0 {
		sc.MaxSeverity = a.Highest.String()
	}
	if !a.ScannedAt.IsZero() {
		t := a.ScannedAt
		sc.ScannedAt = &t
	} else {
		*notes = append(*notes, "the vuln attestation does not say when the scan finished")
	}
	return sc
}
