package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/sign"
)

// TestPromotionRecord: the production promotion's record is signed with
// lotsed's own key and attached to the image once; `lotse verify --type
// promotion` (internal/sign) and the cosign CLI verify it with lotsed's
// public key, and it says where and how the image was promoted.
func TestPromotionRecord(t *testing.T) {
	w := newWorld(t)
	// lotsed's own key pair, not the release key.
	priv, pub, err := sign.GenerateKeyPair([]byte("lotsed-secret"))
	must(t, err)
	lotsedKey, lotsedPub := filepath.Join(w.keys, "lotsed.key"), filepath.Join(w.keys, "lotsed.pub")
	must(t, os.WriteFile(lotsedKey, priv, 0o600))
	must(t, os.WriteFile(lotsedPub, pub, 0o644))
	w.extraEnv = map[string]string{"LOTSE_SIGNING_KEY": lotsedKey, "LOTSE_SIGNING_KEY_PASSWORD": "lotsed-secret"}
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]

	w.bumpDev(img)
	eventually(t, "the image to land in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(img), w.describeStatuses()
	})
	mr := waitMR(t, w, "production")
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "dev1")) // the change's author: recorded, not counted
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "bob"))
	eventually(t, "production to get the image", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), stickyComment(t, w, mr.IID)
	})

	ctx := context.Background()
	lotsedVerify := sign.VerifyOptions{Options: sign.Options{Offline: true, Insecure: true}, Key: lotsedPub}
	var out []byte
	eventually(t, "the promotion record to be attached", 30*time.Second, func() (bool, string) {
		out, err = sign.VerifyAttestation(ctx, img, sign.Promotion, lotsedVerify)
		return err == nil, fmt.Sprint(err)
	})
	// Later ticks and re-deliveries attach no second record.
	time.Sleep(2 * time.Second)
	out, err = sign.VerifyAttestation(ctx, img, sign.Promotion, lotsedVerify)
	must(t, err)
	recs, err := promotion.ReadRecords(out)
	must(t, err)
	if len(recs) != 1 {
		t.Fatalf("%d promotion records attached, want 1", len(recs))
	}
	r := recs[0]
	// The record a production change needs for an auditor.
	user := func(name string) promotion.RecordUser {
		return promotion.RecordUser{ID: int64(w.users[name].ID), Username: name}
	}
	if r.App != "shop" || r.Stage != "production" || r.From != "staging" || r.Image != img || r.Digest != digestOf(img) {
		t.Errorf("record: %s %s from %s, %s (%s)", r.App, r.Stage, r.From, r.Image, r.Digest)
	}
	if len(r.Approvals.Counted) != 2 || r.Approvals.Counted[0].User != user("alice") && r.Approvals.Counted[1].User != user("alice") || r.Approvals.Required != 2 {
		t.Errorf("counted approvals = %+v", r.Approvals.Counted)
	}
	if len(r.Approvals.NotCounted) != 1 || r.Approvals.NotCounted[0].User != user("dev1") || !strings.Contains(r.Approvals.NotCounted[0].Reason, "author") {
		t.Errorf("approvals not counted = %+v", r.Approvals.NotCounted)
	}
	if r.Source.Project != appProject || r.Source.Commit != w.source || len(r.Source.MergeRequests) != 1 {
		t.Errorf("source = %+v", r.Source)
	}
	authors := fmt.Sprint(r.Source.Authors)
	if !strings.Contains(authors, "dev1") {
		t.Errorf("authors = %s", authors)
	}
	if r.MergeRequest.Project != gitopsProject || int64(r.MergeRequest.IID) != mr.IID || r.MergeRequest.Commit == "" || r.MergeRequest.MergeCommit == "" ||
		r.MergeRequest.MergedBy == nil || *r.MergeRequest.MergedBy != user("lotse-bot") {
		t.Errorf("merge request = %+v", r.MergeRequest)
	}
	tm := r.Times
	if tm.Opened == nil || tm.Approved == nil || tm.Merged == nil || tm.Landed == nil || tm.Merged.Before(*tm.Approved) || tm.Approved.Before(*tm.Opened) {
		t.Errorf("times = %+v", tm)
	}
	for _, g := range r.Gates {
		want := "passed"
		if g.Name == "soak" || g.Name == "health" {
			want = "not-required"
		}
		if g.Status != want {
			t.Errorf("gate %s = %s (%s)", g.Name, g.Status, g.Reason)
		}
	}
	v := r.Verification
	if v == nil || !v.Signature.Verified || !strings.HasPrefix(v.Signature.VerifiedBy, "public key sha256:") {
		t.Fatalf("verification = %+v", v)
	}
	if len(v.Attestations) != 1 || v.Attestations[0].Type != "vuln" || !strings.HasPrefix(v.Attestations[0].EnvelopeDigest, "sha256:") {
		t.Errorf("attestations = %+v", v.Attestations)
	}
	if v.Scan == nil || v.Scan.MaxSeverity != "MEDIUM" || v.Scan.Findings != 1 || v.Scan.ScannedAt == nil ||
		!v.Scan.ScannedAt.Equal(time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)) || v.Scan.AgeSeconds == nil || *v.Scan.AgeSeconds <= 0 {
		t.Errorf("scan = %+v", v.Scan)
	}
	// The attested predicate matches the published schema.
	payload := predicateOf(t, out)
	validateRecordSchema(t, payload)
	if s := r.Summary(); !strings.Contains(s, "into production from staging") || !strings.Contains(s, "not counted: @dev1") {
		t.Errorf("lotse verify would print:\n%s", s)
	}

	// Signed by lotsed's key only: the release key does not verify it.
	if _, err := sign.VerifyAttestation(ctx, img, sign.Promotion, sign.VerifyOptions{Options: lotsedVerify.Options, Key: filepath.Join(w.keys, "cosign.pub")}); err == nil {
		t.Error("the promotion record verified with the release key")
	}
	// The audit log has it once, signed.
	var audit []struct{ Kind, Detail string }
	apiGet(t, base, "/api/v1/audit?app=shop&kind="+promotion.AuditRecord, &audit)
	if len(audit) != 1 || !strings.Contains(audit[0].Detail, "signed with lotsed's key") {
		t.Errorf("audit = %+v", audit)
	}
	// Staging has no record.
	if _, err := sign.VerifyAttestation(ctx, w.images["high"], sign.Promotion, lotsedVerify); err == nil {
		t.Error("an image never promoted to production has a record")
	}

	cosign, err := exec.LookPath("cosign")
	if err != nil {
		t.Log("cosign CLI not on PATH (make test builds bin/cosign): the record was verified with lotse's code only")
		return
	}
	cmd := exec.Command(cosign, "verify-attestation", "--key", lotsedPub, "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry",
		"--type", promotion.RecordPredicateType, img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cosign verify-attestation: %v\n%s", err, stderr.String())
	}
	if got, err := promotion.ReadRecords(stdout.Bytes()); err != nil || len(got) != 1 || got[0].PromotionID != r.PromotionID {
		t.Fatalf("cosign's output: %v, %v", got, err)
	}
}

// predicateOf returns the predicate of the only envelope in out.
func predicateOf(t *testing.T, out []byte) []byte {
	t.Helper()
	recs, err := promotion.ReadRecords(out)
	must(t, err)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	line := bytes.TrimSpace(bytes.SplitN(bytes.TrimSpace(out), []byte("\n"), 2)[0])
	var env struct{ Payload []byte }
	must(t, json.Unmarshal(line, &env))
	var st struct{ Predicate json.RawMessage }
	must(t, json.Unmarshal(env.Payload, &st))
	return st.Predicate
}

func validateRecordSchema(t *testing.T, b []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(promotion.RecordSchema))
	must(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	must(t, c.AddResource("record.json", doc))
	s, err := c.Compile("record.json")
	must(t, err)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	must(t, err)
	if err := s.Validate(v); err != nil {
		t.Fatalf("the attested record does not match the schema: %v\n%s", err, b)
	}
}
