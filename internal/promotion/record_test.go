package promotion

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func recordSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(RecordSchema))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("promotion-record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("promotion-record.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

func validateRecord(t *testing.T, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("record is not JSON: %v", err)
	}
	return s.Validate(v)
}

// toProduction promotes img1 from staging into production up to the
// production MR !12 awaiting approval, every gate passed.
func toProduction(r *run) {
	r.t.Helper()
	toStaging(r, img1, 11)
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.at(31 * time.Minute).do(Landed{Pusher: bot, Stage: "staging", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "c2"})
	if n := len(only[AttestPromotion](r.acts)); n != 0 {
		r.t.Fatalf("a landing in staging (no approval stage) asked for %d records", n)
	}
	r.do(GatesChecked{Stage: "production", Image: img1, Signature: Result{Checked: true, OK: true, Reason: "signature verified: key"}, Scan: clean})
	r.at(40 * time.Minute).do(Health{Stage: "staging", Healthy: true, At: t0.Add(40 * time.Minute)})
	r.at(91 * time.Minute).do(Tick{})
	r.wantPhase("production", PhaseOpening)
	r.at(92 * time.Minute).do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "feed0001"})
	r.wantPhase("production", PhaseAwaitingApproval)
}

func TestRecordOfAProductionPromotion(t *testing.T) {
	r := newRun(t, testPolicy())
	toProduction(r)
	// dave wrote the change: his approval does not count; mallory approved
	// an earlier head; carol and erin count.
	r.at(93 * time.Minute).do(MRApproved{Stage: "production", IID: 12, User: usr("dave"), SHA: "feed0001"})
	r.at(94 * time.Minute).do(MRApproved{Stage: "production", IID: 12, User: usr("mallory"), SHA: "0ld0001"})
	r.at(95 * time.Minute).do(MRApproved{Stage: "production", IID: 12, User: usr("carol"), SHA: "feed0001"})
	r.at(96 * time.Minute).do(MRApproved{Stage: "production", IID: 12, User: usr("erin"), SHA: "feed0001"})
	r.wantPhase("production", PhaseMerging)
	r.at(97 * time.Minute).do(MergeResult{Stage: "production", IID: 12, Attempt: 1, Outcome: MergeDone})
	if n := len(only[AttestPromotion](r.acts)); n != 0 {
		t.Fatalf("a merge asked for %d records before the landing", n)
	}
	r.at(98 * time.Minute).do(Landed{Pusher: bot, Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111",
		Commit: "feed0001", Head: "beef0002"})
	r.wantPhase("production", PhaseLanded)
	recs := only[AttestPromotion](r.acts)
	if len(recs) != 1 {
		t.Fatalf("landing in production asked for %d records, want 1:%s", len(recs), describe(r.acts))
	}
	a := recs[0]
	rec := a.Record
	if a.Stage != "production" || a.Image != img1 || rec.Image != img1 || rec.Digest != "sha256:"+strings.Repeat("1", 64) ||
		rec.App != "shop" || rec.Stage != "production" || rec.From != "staging" || rec.PromotionID == 0 {
		t.Fatalf("record = %+v", rec)
	}
	if rec.MergeRequest.IID != 12 || rec.MergeRequest.Commit != "feed0001" || rec.MergeRequest.MergeCommit != "beef0002" ||
		rec.MergeRequest.Author.ID != bot.ID || rec.MergeRequest.MergedBy == nil || rec.MergeRequest.MergedBy.ID != bot.ID {
		t.Fatalf("merge request = %+v", rec.MergeRequest)
	}
	if rec.Source.Project != "team/shop" || rec.Source.Commit != "src-1111" || len(rec.Source.Authors) != 1 || rec.Source.Authors[0].Username != "dave" {
		t.Fatalf("source = %+v", rec.Source)
	}
	var counted []string
	for _, c := range rec.Approvals.Counted {
		counted = append(counted, c.User.Username)
	}
	if strings.Join(counted, ",") != "carol,erin" || rec.Approvals.Required != 2 {
		t.Fatalf("counted = %v (required %d)", counted, rec.Approvals.Required)
	}
	why := map[string]string{}
	for _, c := range rec.Approvals.NotCounted {
		why[c.User.Username] = c.Reason
	}
	if !strings.Contains(why["dave"], "author") || !strings.Contains(why["mallory"], "not on lotse's commit") || len(why) != 2 {
		t.Fatalf("not counted = %v", why)
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	tm := rec.Times
	for name, c := range map[string]struct {
		got  *time.Time
		want time.Time
	}{"opened": {tm.Opened, at(92)}, "approved": {tm.Approved, at(96)}, "merged": {tm.Merged, at(97)}, "landed": {tm.Landed, at(98)}} {
		if c.got == nil || !c.got.Equal(c.want) {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	for _, g := range rec.Gates {
		if g.Status != "passed" {
			t.Errorf("gate %s = %s (%s), want passed", g.Name, g.Status, g.Reason)
		}
	}

	schema := recordSchema(t)
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateRecord(t, schema, b); err != nil {
		t.Fatalf("the engine's record does not match the schema: %v\n%s", err, b)
	}
	scanned := at(10)
	full := rec.WithFacts(RecordFacts{GitOpsProject: "platform/gitops", SourceMRs: []int64{3},
		Verification: &RecordVerification{At: at(99), Signature: RecordSignature{Verified: true, VerifiedBy: "key /etc/lotse/cosign.pub"},
			Attestations: []RecordAttestation{{Type: "vuln", PredicateType: "https://cosign.sigstore.dev/attestation/vuln/v1",
				EnvelopeDigest: "sha256:" + strings.Repeat("a", 64), StatementDigest: "sha256:" + strings.Repeat("b", 64)}},
			Scan: &RecordScan{Findings: 1, MaxSeverity: "MEDIUM", ScannedAt: &scanned}}})
	if full.Verification.Scan.AgeSeconds == nil || *full.Verification.Scan.AgeSeconds != 89*60 {
		t.Fatalf("scan age = %v, want 89 minutes", full.Verification.Scan.AgeSeconds)
	}
	if rec.Verification != nil {
		t.Fatal("WithFacts changed the record it was called on")
	}
	b, err = json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateRecord(t, schema, b); err != nil {
		t.Fatalf("the full record does not match the schema: %v\n%s", err, b)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if !bytes.Equal(b, b2) {
		t.Fatalf("JSON round trip changed the record:\n%s\n%s", b, b2)
	}
	for _, want := range []string{"production", "platform/gitops!12", "carol", "not counted: @dave", "signature verified: true"} {
		if s := full.Summary(); !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}

	// Built again from the same state: the same record (pure).
	again, err := BuildRecord(r.p, r.s, "production")
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := json.Marshal(rec)
	b3, _ := json.Marshal(again)
	if !bytes.Equal(b1, b3) {
		t.Fatalf("BuildRecord is not deterministic:\n%s\n%s", b1, b3)
	}
}

// Changes that did not come through an approved MR of lotse's get no
// record: a record would vouch for an approval that never was.
func TestNoRecordWithoutLotsesApprovedMR(t *testing.T) {
	p := testPolicy()
	p.Writers = []User{usr("trent")}

	t.Run("out of band", func(t *testing.T) {
		r := newRun(t, p)
		r.do(Landed{Pusher: usr("mallory"), Stage: "production", Image: img2, Commit: "x1"})
		if n := len(only[AttestPromotion](r.acts)); n != 0 {
			t.Fatalf("an out-of-band change got %d records", n)
		}
	})
	t.Run("a writer's direct commit", func(t *testing.T) {
		r := newRun(t, p)
		r.do(Landed{Pusher: usr("trent"), Stage: "production", Image: img2, Commit: "x2"})
		if n := len(only[AttestPromotion](r.acts)); n != 0 {
			t.Fatalf("a direct commit got %d records", n)
		}
		if _, err := BuildRecord(r.p, r.s, "production"); err == nil {
			t.Fatal("BuildRecord wrote a record of a direct commit")
		}
	})
	t.Run("merged, not landed", func(t *testing.T) {
		r := newRun(t, p)
		toProduction(r)
		if _, err := BuildRecord(r.p, r.s, "production"); err == nil {
			t.Fatal("BuildRecord wrote a record of a promotion that did not land")
		}
		if _, err := BuildRecord(r.p, r.s, "staging"); err == nil {
			t.Fatal("BuildRecord wrote a record for a stage without approvals")
		}
	})
	t.Run("the same image committed by a writer", func(t *testing.T) {
		r := newRun(t, p)
		toProduction(r)
		r.do(Landed{Pusher: usr("trent"), Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "d1rect"})
		r.wantPhase("production", PhaseLanded)
		if n := len(only[AttestPromotion](r.acts)); n != 0 {
			t.Fatalf("a writer's commit of the MR's image got %d records", n)
		}
	})
	t.Run("another image landed", func(t *testing.T) {
		r := newRun(t, p)
		toProduction(r)
		r.do(Landed{Pusher: usr("trent"), Stage: "production", Image: img3, Commit: "x3"})
		if n := len(only[AttestPromotion](r.acts)); n != 0 {
			t.Fatalf("a direct commit of another image during a promotion got %d records", n)
		}
	})
}

// The schema refuses records an attacker or a bug might produce.
func TestRecordSchemaRefuses(t *testing.T) {
	schema := recordSchema(t)
	good := func() map[string]any {
		return map[string]any{
			"app": "shop", "stage": "production", "promotionID": 3,
			"image":  "r.example/shop@sha256:" + strings.Repeat("1", 64),
			"digest": "sha256:" + strings.Repeat("1", 64),
			"source": map[string]any{"authors": []any{}},
			"gates": []any{
				map[string]any{"name": "signature", "status": "passed"}, map[string]any{"name": "scan", "status": "passed"},
				map[string]any{"name": "soak", "status": "passed"}, map[string]any{"name": "health", "status": "passed"}},
			"approvals":    map[string]any{"required": 2, "counted": []any{}, "notCounted": []any{}},
			"mergeRequest": map[string]any{"iid": 12, "author": map[string]any{"id": 1}, "commit": "feed0001"},
			"times":        map[string]any{},
		}
	}
	check := func(name string, m map[string]any, wantOK bool) {
		t.Helper()
		b, _ := json.Marshal(m)
		err := validateRecord(t, schema, b)
		if (err == nil) != wantOK {
			t.Errorf("%s: valid = %v, want %v (%v)", name, err == nil, wantOK, err)
		}
	}
	check("good", good(), true)
	for name, mutate := range map[string]func(m map[string]any){
		"no approvals":        func(m map[string]any) { delete(m, "approvals") },
		"unknown field":       func(m map[string]any) { m["approvedByCEO"] = true },
		"tag, not digest":     func(m map[string]any) { m["image"] = "r.example/shop:latest" },
		"short digest":        func(m map[string]any) { m["digest"] = "sha256:1234" },
		"gate left out":       func(m map[string]any) { m["gates"] = m["gates"].([]any)[:3] },
		"unknown gate status": func(m map[string]any) { m["gates"].([]any)[0] = map[string]any{"name": "signature", "status": "ok"} },
		"rejection sans why": func(m map[string]any) {
			m["approvals"].(map[string]any)["notCounted"] = []any{map[string]any{"user": map[string]any{"id": 9}}}
		},
		"time not a time": func(m map[string]any) { m["times"] = map[string]any{"merged": "yesterday"} },
		"verification sans sig": func(m map[string]any) {
			m["verification"] = map[string]any{"at": "2026-01-01T00:00:00Z", "attestations": []any{}}
		},
	} {
		m := good()
		mutate(m)
		check(name, m, false)
	}
}

func TestReadRecords(t *testing.T) {
	subject := `[{"name":"harbor.example.com/team/shop","digest":{"sha256":"` + strings.Repeat("1", 64) + `"}}]`
	env := func(predicateType, predicate string) string {
		st := `{"_type":"https://in-toto.io/Statement/v1","subject":` + subject + `,"predicateType":"` + predicateType + `","predicate":` + predicate + `}`
		return `{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(st)) + `","signatures":[]}`
	}
	rec := `{"app":"shop","stage":"production","promotionID":3,"image":"` + img1 + `","digest":"sha256:` + strings.Repeat("1", 64) + `"}`
	otherImage := `{"app":"shop","stage":"production","promotionID":3,"image":"` + img2 + `","digest":"sha256:` + strings.Repeat("2", 64) + `"}`
	for _, tc := range []struct {
		name, in string
		want     int
		err      string
	}{
		{"one", env(RecordPredicateType, rec) + "\n", 1, ""},
		{"among others", env("https://cosign.sigstore.dev/attestation/vuln/v1", `{}`) + "\n\n" + env(RecordPredicateType, rec) + "\n" + env(RecordPredicateType, rec), 2, ""},
		{"none", env("https://cyclonedx.org/bom", `{}`), 0, "no promotion record"},
		{"not JSON", "garbage", 0, "attestation 1"},
		{"bad payload", `{"payload":"!!"}`, 0, "payload"},
		{"bad record", env(RecordPredicateType, `{"promotionID":"three"}`), 0, "promotion record"},
		{"empty", "", 0, "no promotion record"},
		{"record of another image", env(RecordPredicateType, otherImage), 0, "not about the image it is attached to"},
		{"record without digest", env(RecordPredicateType, `{"stage":"production"}`), 0, "about no digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadRecords([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.want || got[0].Stage != "production" || got[0].Image != img1 {
				t.Fatalf("ReadRecords = %+v, %v", got, err)
			}
		})
	}
}
