package promotion

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// testUsers gives the people of the tests their GitLab user IDs.
var testUsers = map[string]int64{"lotse-bot": 1, "olga": 2, "oscar": 3, "carol": 4, "alice": 5, "bob": 6, "dave": 7, "erin": 8,
	"mallory": 9, "eve": 10, "frank": 11, "grace": 12, "dev": 13, "trent": 14, "root": 15}

// usr is the test user called name.
func usr(name string) User {
	id, ok := testUsers[name]
	if !ok {
		panic("no test user " + name)
	}
	return User{ID: id, Username: name}
}

// bot is lotse's own user in the tests.
var bot = usr("lotse-bot")

func sev(s vuln.Severity) *vuln.Severity { return &s }

// testPolicy is the lotse.yaml example: dev by commit, staging by merge
// request, production with two approvals.
func testPolicy() Policy {
	return Policy{
		App:       "shop",
		Bot:       usr("lotse-bot"),
		Operators: []User{usr("olga"), usr("oscar")},
		Stages: []StagePolicy{
			{Name: "dev", Mode: ModeCommit},
			{Name: "staging", Mode: ModeMergeRequest, RequireSignature: true, MaxSeverity: sev(vuln.High), Soak: 30 * time.Minute, RequireHealthy: true},
			{Name: "production", Mode: ModeApproval, Approvals: 2, RequireSignature: true, MaxSeverity: sev(vuln.Medium), Soak: time.Hour, RequireHealthy: true},
		},
	}
}

// plainPolicy has no gates at all.
func plainPolicy() Policy {
	return Policy{
		App:       "shop",
		Bot:       usr("lotse-bot"),
		Operators: []User{usr("olga")},
		Stages: []StagePolicy{
			{Name: "dev", Mode: ModeCommit},
			{Name: "staging", Mode: ModeMergeRequest},
			{Name: "production", Mode: ModeApproval, Approvals: 2},
		},
	}
}

const (
	img1 = "harbor.example.com/team/shop@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	img2 = "harbor.example.com/team/shop@sha256:2222222222222222222222222222222222222222222222222222222222222222"
	img3 = "harbor.example.com/team/shop@sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

var ok = Result{Checked: true, OK: true}

// clean is a verified scan attestation without findings.
var clean = ScanFacts{Checked: true}

func landed(stage, image, commit string) Landed {
	return Landed{Pusher: bot, Stage: stage, Image: image, SourceProject: "team/shop", SourceCommit: "src-" + image[len(image)-4:], ChangeAuthors: []User{usr("dave")}, Commit: commit}
}

// run drives Next through a scenario and checks after every event that the
// same event delivered again changes nothing and does nothing.
type run struct {
	t    *testing.T
	p    Policy
	s    State
	now  time.Time
	acts []Action
}

func newRun(t *testing.T, p Policy) *run { return &run{t: t, p: p, now: t0} }

func (r *run) at(d time.Duration) *run { r.now = t0.Add(d); return r }

func (r *run) do(e Event) []Action {
	r.t.Helper()
	s, acts, err := Next(r.p, r.s, e, r.now)
	if err != nil {
		r.t.Fatalf("Next(%#v): %v", e, err)
	}
	checkRoundTrip(r.t, s)
	again, acts2, err := Next(r.p, s, e, r.now)
	if err != nil {
		r.t.Fatalf("Next again (%#v): %v", e, err)
	}
	if !reflect.DeepEqual(again, s) {
		r.t.Fatalf("delivering %#v twice changed the state", e)
	}
	if acts2 = withoutReads(acts2); len(acts2) != 0 {
		r.t.Fatalf("delivering %#v twice did %v", e, describe(acts2))
	}
	r.s, r.acts = s, acts
	return acts
}

func (r *run) phase(stage string) Phase {
	r.t.Helper()
	st := r.s.Stage(stage)
	if st == nil || st.Promotion == nil {
		return ""
	}
	return st.Promotion.Phase
}

func (r *run) wantPhase(stage string, want Phase) {
	r.t.Helper()
	if got := r.phase(stage); got != want {
		r.t.Fatalf("phase of %s = %q, want %q (reason %q)", stage, got, want, r.s.Stage(stage).Promotion.Reason)
	}
}

// wantCore compares the actions that act on the world (everything but
// comments and audit records) with want.
func (r *run) wantCore(want ...Action) {
	r.t.Helper()
	got := core(r.acts)
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		r.t.Fatalf("actions:\n got %v\nwant %v", describe(got), describe(want))
	}
}

func (r *run) wantAudit(kinds ...string) {
	r.t.Helper()
	var got []string
	for _, a := range r.acts {
		if a, ok := a.(Audit); ok {
			got = append(got, a.Kind)
		}
	}
	if !reflect.DeepEqual(got, kinds) {
		r.t.Fatalf("audit kinds = %v, want %v", got, kinds)
	}
}

func core(acts []Action) []Action {
	var out []Action
	for _, a := range acts {
		switch a.(type) {
		case UpsertComment, Audit, Reconcile, AttestPromotion, Deploy: // records: record_test.go; Deploy: deploy_test.go
		default:
			out = append(out, a)
		}
	}
	return out
}

func only[T Action](acts []Action) []T {
	var out []T
	for _, a := range acts {
		if a, ok := a.(T); ok {
			out = append(out, a)
		}
	}
	return out
}

func describe(acts []Action) string {
	s := ""
	for _, a := range acts {
		if c, ok := a.(UpsertComment); ok {
			a = UpsertComment{Target: c.Target, Body: fmt.Sprintf("(%d bytes)", len(c.Body))}
		}
		s += fmt.Sprintf("\n  %T%+v", a, a)
	}
	return s
}

func checkRoundTrip(t *testing.T, s State) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal state: %v", err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("unmarshal state: %v", err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("JSON round trip changed the state:\n%s\n%+v\n%+v", b, s, back)
	}
}

func status(stage, state, desc, image string) SetStatus {
	return SetStatus{SourceProject: "team/shop", SourceCommit: "src-" + image[len(image)-4:], Name: "lotse/" + stage, State: state, Description: desc}
}

// toStaging lands img in dev and promotes it into staging up to an open MR
// (!11), with every gate passed.
func toStaging(r *run, image string, mr int) {
	r.t.Helper()
	r.do(landed("dev", image, "c-dev-"+image[len(image)-4:]))
	r.do(GatesChecked{Stage: "staging", Image: image, Signature: ok, Scan: clean})
	r.do(Health{Stage: "dev", Healthy: true, At: r.now})
	r.at(r.now.Sub(t0) + 30*time.Minute).do(Tick{})
	r.wantPhase("staging", PhaseOpening)
	r.do(MROpened{Stage: "staging", IID: mr, Author: usr("lotse-bot"), Image: image})
	r.wantPhase("staging", PhaseMerging)
}

// withoutReads drops the actions that only read facts back from GitLab,
// which every tick asks for again.
func withoutReads(acts []Action) []Action {
	var out []Action
	for _, a := range acts {
		switch a.(type) {
		case Reconcile, ReadAuthors:
		default:
			out = append(out, a)
		}
	}
	return out
}
