package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
)

// recordingAttester keeps what it was asked to attest; it fails the first
// fail calls.
type recordingAttester struct {
	mu    sync.Mutex
	fail  int
	lost  int // attach, then fail as when the answer is lost
	calls []attestCall
}

type attestCall struct {
	image, predicateType string
	predicate            []byte
}

func (a *recordingAttester) AttestPredicate(_ context.Context, image, predicateType string, predicate []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail > 0 {
		a.fail--
		return errors.New("registry down")
	}
	a.calls = append(a.calls, attestCall{image, predicateType, bytes.Clone(predicate)})
	if a.lost > 0 {
		a.lost--
		return errors.New("context deadline exceeded")
	}
	return nil
}

// Attested returns what was attached to image, as cosign's
// verify-attestation prints it.
func (a *recordingAttester) Attested(_ context.Context, image, predicateType string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []byte
	_, digest, _ := strings.Cut(image, "@sha256:")
	for _, c := range a.calls {
		if c.image == image && c.predicateType == predicateType {
			st := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"` + digest + `"}}],"predicateType":"` +
				predicateType + `","predicate":` + string(c.predicate) + `}`
			out = append(out, `{"payload":"`+b64(st)+`"}`+"\n"...)
		}
	}
	if out == nil {
		return nil, errors.New("no matching attestations")
	}
	return out, nil
}

func (a *recordingAttester) Close() {}

// promoteToProduction drives img1 through dev and staging into production
// with carol's and erin's approvals, and lands it there.
func promoteToProduction(t *testing.T, w *testWorld) {
	t.Helper()
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = []string{"LOW"}
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(landedIn("staging", img1, "c2")); err != nil {
		t.Fatal(err)
	}
	pr := w.record().State.Stage("production").Promotion
	if pr == nil || pr.Phase != promotion.PhaseAwaitingApproval {
		t.Fatalf("production = %+v", pr)
	}
	// dev-dora wrote the change: her approval is recorded as not counted.
	w.gl.approved[int64(pr.MR.IID)] = []gitlab.User{{ID: 30, Username: "dev-dora"}, {ID: 4, Username: "carol"}, {ID: 8, Username: "erin"}}
	_ = w.apply(promotion.Tick{})
	if w.phase("production") != promotion.PhaseMerged {
		t.Fatalf("production %s", w.phase("production"))
	}
	land := landedIn("production", img1, pr.MR.SHA)
	land.Head = "4e4d000000000000000000000000000000000001"
	_ = w.apply(land) // the record may fail; the caller looks
}

func recordAudits(w *testWorld) []string {
	w.records.mu.Lock()
	defer w.records.mu.Unlock()
	var out []string
	for _, r := range w.records.audit {
		if r.Kind == promotion.AuditRecord {
			out = append(out, r.Detail)
		}
	}
	return out
}

func TestPromotionRecordSignedOnce(t *testing.T) {
	w := newTestWorld(t)
	att := &recordingAttester{}
	eff := w.runner.effects.(*effects)
	eff.records = &records{attester: att, signedWith: "awskms:///alias/lotsed", now: func() time.Time { return w.now }}
	promoteToProduction(t, w)
	if w.phase("production") != promotion.PhaseLanded {
		t.Fatalf("production %s", w.phase("production"))
	}
	if out := w.outboxTypes(); len(out) != 0 {
		t.Fatalf("outbox = %v", out)
	}
	if len(att.calls) != 1 {
		t.Fatalf("attestations = %d, want 1", len(att.calls))
	}
	c := att.calls[0]
	if c.image != img1 || c.predicateType != "https://lotse.dev/promotion/v1" {
		t.Fatalf("attested %s as %s", c.image, c.predicateType)
	}
	validAgainstSchema(t, c.predicate)
	var rec promotion.Record
	if err := json.Unmarshal(c.predicate, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Stage != "production" || rec.MergeRequest.Project != "platform/gitops" || rec.MergeRequest.MergeCommit != "4e4d000000000000000000000000000000000001" {
		t.Fatalf("record = %s", c.predicate)
	}
	if len(rec.Approvals.Counted) != 2 || len(rec.Approvals.NotCounted) != 1 || rec.Approvals.NotCounted[0].User.ID != 30 {
		t.Fatalf("approvals = %+v", rec.Approvals)
	}
	v := rec.Verification
	if v == nil || !v.Signature.Verified || !strings.Contains(v.Signature.VerifiedBy, "k1.pub") || v.Scan == nil || v.Scan.MaxSeverity != "LOW" || v.Scan.Findings != 1 {
		t.Fatalf("verification = %+v", v)
	}
	if len(v.Attestations) != 1 || v.Attestations[0].Type != "vuln" || !strings.HasPrefix(v.Attestations[0].EnvelopeDigest, "sha256:") {
		t.Fatalf("attestations = %+v", v.Attestations)
	}
	if !strings.Contains(strings.Join(v.Notes, "\n"), "no verified SBOM attestation") {
		t.Fatalf("notes do not say the SBOM is missing: %v", v.Notes)
	}

	// Carried out again (a crash after attesting, another replica): no
	// second attestation, no second audit record.
	a := promotion.AttestPromotion{Stage: "production", Image: img1, Record: rec}
	a.Record.Verification = nil
	rebuilt, err := promotion.BuildRecord(w.snap.policies["shop"], w.record().State, "production")
	if err != nil {
		t.Fatal(err)
	}
	a.Record = rebuilt
	if _, err := eff.perform(context.Background(), w.snap, "shop", a); err != nil {
		t.Fatal(err)
	}
	if len(att.calls) != 1 {
		t.Fatalf("attestations after a second run = %d, want 1", len(att.calls))
	}
	audits := recordAudits(w)
	if len(audits) != 1 || !strings.Contains(audits[0], "signed with lotsed's key awskms:///alias/lotsed") || !strings.Contains(audits[0], `"stage":"production"`) {
		t.Fatalf("audit = %q", audits)
	}
	// A staging landing has no record.
	for _, c := range att.calls {
		if strings.Contains(string(c.predicate), `"stage":"staging"`) {
			t.Fatal("a staging promotion was recorded")
		}
	}
}

// A failed attestation is retried; the record is attached once.
func TestPromotionRecordRetried(t *testing.T) {
	w := newTestWorld(t)
	att := &recordingAttester{fail: 1}
	w.runner.effects.(*effects).records = &records{attester: att, signedWith: "cosign.key", now: func() time.Time { return w.now }}
	promoteToProduction(t, w)
	if out := w.outboxTypes(); len(out) == 0 || out[0] != "attest-promotion" {
		t.Fatalf("outbox after a failed attestation = %v, want the attest-promotion action kept", out)
	}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if len(att.calls) != 1 || len(recordAudits(w)) != 1 {
		t.Fatalf("attestations = %d, audit records = %d, want 1 and 1", len(att.calls), len(recordAudits(w)))
	}
}

// An attestation whose answer was lost is not attached again: lotsed reads
// back what it attached with its own key.
func TestPromotionRecordAnswerLost(t *testing.T) {
	w := newTestWorld(t)
	att := &recordingAttester{lost: 1}
	w.runner.effects.(*effects).records = &records{attester: att, signedWith: "cosign.key", now: func() time.Time { return w.now }}
	promoteToProduction(t, w)
	if out := w.outboxTypes(); len(out) == 0 || out[0] != "attest-promotion" {
		t.Fatalf("outbox = %v", out)
	}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if len(att.calls) != 1 || len(recordAudits(w)) != 1 {
		t.Fatalf("attestations = %d, audit records = %d, want 1 and 1", len(att.calls), len(recordAudits(w)))
	}
}

// A record that cannot be attached for an hour does not hold the app's
// outbox for ever: it goes to the audit log, saying why.
func TestPromotionRecordGivenUp(t *testing.T) {
	w := newTestWorld(t)
	att := &recordingAttester{fail: 1000}
	w.runner.effects.(*effects).records = &records{attester: att, signedWith: "cosign.key", now: func() time.Time { return w.now }}
	promoteToProduction(t, w)
	w.now = w.now.Add(30 * time.Minute)
	if err := w.apply(promotion.Tick{}); err == nil || len(recordAudits(w)) != 0 {
		t.Fatalf("after 30m: %v, audit %q; want still retrying", err, recordAudits(w))
	}
	w.now = w.now.Add(31 * time.Minute)
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if out := w.outboxTypes(); len(out) != 0 {
		t.Fatalf("outbox = %v", out)
	}
	if a := recordAudits(w); len(a) != 1 || !strings.Contains(a[0], "NOT attached") || !strings.Contains(a[0], "registry down") {
		t.Fatalf("audit = %q", a)
	}
}

// Without a signing key the record goes to the audit log, saying so.
func TestPromotionRecordUnsigned(t *testing.T) {
	w := newTestWorld(t)
	w.runner.effects.(*effects).records = nil
	promoteToProduction(t, w)
	audits := recordAudits(w)
	if len(audits) != 1 || !strings.Contains(audits[0], "NOT signed: lotsed has no --signing-key") {
		t.Fatalf("audit = %q", audits)
	}
	_, body, _ := strings.Cut(audits[0], ": {")
	validAgainstSchema(t, []byte("{"+body))
}

func TestRecordAttesterConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	a, err := recordAttester(&Config{}, Registry{}, func(string) string { return "" }, nil, log)
	if a != nil || err != nil {
		t.Fatalf("no key: %v %v", a, err)
	}
	if _, err := recordAttester(&Config{SigningKey: "k"}, Registry{}, func(string) string { return "" }, nil, log); err == nil {
		t.Fatal("a key without an attester was accepted")
	}
	var got SigningKey
	mk := func(k SigningKey, _ Registry, _ func(string) string) (Attester, error) {
		got = k
		return &recordingAttester{}, nil
	}
	env := func(v string) string {
		if v == "COSIGN_PASSWORD" {
			return "from-cosign"
		}
		return ""
	}
	if _, err := recordAttester(&Config{SigningKey: "k"}, Registry{}, env, mk, log); err != nil || string(got.Password) != "from-cosign" {
		t.Fatalf("COSIGN_PASSWORD fallback: %q %v", got.Password, err)
	}
	if _, err := recordAttester(&Config{SigningKey: "k", SigningKeyPassword: "own"}, Registry{}, env, mk, log); err != nil || string(got.Password) != "own" {
		t.Fatalf("signing-key-password: %q %v", got.Password, err)
	}
	cfg, err := LoadConfig("", map[string]string{"signing-key": "/etc/lotsed/cosign.key"}, func(v string) string {
		switch v {
		case "LOTSE_SIGNING_KEY_PASSWORD":
			return "pw"
		case "LOTSE_WEBHOOK_SECRET", "LOTSE_GITLAB_URL", "LOTSE_GITLAB_TOKEN", "LOTSE_GITOPS_PROJECT":
			return "x"
		}
		return ""
	}, nil)
	if err != nil || cfg.SigningKey != "/etc/lotsed/cosign.key" || cfg.SigningKeyPassword != "pw" {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
}

func validAgainstSchema(t *testing.T, b []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(promotion.RecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("record.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("record.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	if err := s.Validate(v); err != nil {
		t.Fatalf("record does not match the schema: %v\n%s", err, b)
	}
}
