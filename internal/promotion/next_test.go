package promotion

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

func TestHappyPathDevStagingProduction(t *testing.T) {
	r := newRun(t, testPolicy())

	// dev lands: success on the source commit, staging starts with its gates.
	r.do(landed("dev", img1, "c1"))
	r.wantCore(
		status("dev", StatusSuccess, "running in dev", img1),
		CheckGates{Stage: "staging", Image: img1, Signature: true, Scan: true},
		status("staging", StatusPending, "checking gates", img1),
	)
	r.wantAudit(AuditLanded, AuditStarted)
	r.wantPhase("staging", PhaseChecking)
	if got := r.s.Stage("dev").Current; got.Image != img1 || !got.LandedAt.Equal(t0) || got.SourceCommit != "src-1111" {
		t.Fatalf("dev current = %+v", got)
	}
	if cs := only[UpsertComment](r.acts); len(cs) != 1 || cs[0].Target.SourceCommit != "src-1111" {
		t.Fatalf("comments = %v, want the source MR's", describe(r.acts))
	}

	// gates pass, but staging needs 30m soak and a healthy dev: nothing yet.
	r.at(time.Minute).do(GatesChecked{Stage: "staging", Image: img1, Signature: ok, Scan: clean})
	r.wantCore()
	r.wantPhase("staging", PhaseWaiting)
	r.at(2 * time.Minute).do(Health{Stage: "dev", Healthy: true, At: t0.Add(2 * time.Minute)})
	r.wantCore()
	r.wantPhase("staging", PhaseWaiting)

	// soaked: the MR is opened; lotsed merges it once it exists.
	r.at(30 * time.Minute).do(Tick{})
	r.wantCore(
		OpenMR{Stage: "staging", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111"},
		status("staging", StatusRunning, "opening the merge request", img1),
	)
	r.do(MROpened{Stage: "staging", IID: 11, Author: usr("lotse-bot"), Image: img1})
	r.wantCore(MergeMR{Stage: "staging", IID: 11, Attempt: 1})
	r.wantPhase("staging", PhaseMerging)
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.wantPhase("staging", PhaseMerged)
	r.do(MRMerged{Stage: "staging", IID: 11, By: usr("lotse-bot")})
	r.wantCore()

	// staging lands: production starts.
	r.at(31 * time.Minute).do(Landed{Pusher: bot, Stage: "staging", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "c2"})
	r.wantPhase("staging", PhaseLanded)
	r.wantCore(
		status("staging", StatusSuccess, "running in staging", img1),
		CheckGates{Stage: "production", Image: img1, Signature: true, Scan: true},
		status("production", StatusPending, "checking gates", img1),
	)
	if got := r.s.Stage("staging").Current.ChangeAuthors; !reflect.DeepEqual(got, []User{usr("dave")}) {
		t.Fatalf("staging change authors = %v, want carried from the promotion", got)
	}
	r.do(GatesChecked{Stage: "production", Image: img1, Signature: ok, Scan: clean})
	r.at(40 * time.Minute).do(Health{Stage: "staging", Healthy: true, At: t0.Add(40 * time.Minute)})
	r.at(91 * time.Minute).do(Tick{})
	r.wantPhase("production", PhaseOpening)
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img1})
	r.wantPhase("production", PhaseAwaitingApproval)
	r.wantCore() // the status is running since the MR was asked for

	// two valid approvals: lotsed merges.
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol")})
	r.wantCore()
	r.wantPhase("production", PhaseAwaitingApproval)
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin")})
	r.wantCore(MergeMR{Stage: "production", IID: 12, Attempt: 1})
	r.wantPhase("production", PhaseMerging)
	r.do(MRMerged{Stage: "production", IID: 12, By: usr("lotse-bot")})
	r.wantPhase("production", PhaseMerged)
	r.at(95 * time.Minute).do(Landed{Pusher: bot, Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "c3"})
	r.wantPhase("production", PhaseLanded)
	r.wantCore(status("production", StatusSuccess, "running in production", img1))
	if r.s.Seq == 0 || r.s.App != "shop" {
		t.Fatalf("state = %+v", r.s)
	}
}

func TestCommitStageIsLeftToCI(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].Mode = ModeCommit
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.wantCore(status("dev", StatusSuccess, "running in dev", img1))
	if r.phase("staging") != "" {
		t.Fatal("lotsed started a promotion into a commit stage")
	}
	// staging lands from CI: production (approval) starts, without gates.
	r.do(landed("staging", img1, "c2"))
	r.wantCore(
		status("staging", StatusSuccess, "running in staging", img1),
		status("production", StatusPending, "waiting for gates", img1),
		OpenMR{Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111"},
		status("production", StatusRunning, "opening the merge request", img1),
	)
}

func TestFourEyes(t *testing.T) {
	renamed := User{ID: usr("dave").ID, Username: "dave-renamed"}
	for _, tc := range []struct {
		name      string
		trigger   string // promote by ChatOps as this operator first
		approvers []User
		unapprove []User
		merge     bool
		counted   []User
	}{
		{name: "two distinct reviewers", approvers: []User{usr("carol"), usr("erin")}, merge: true, counted: []User{usr("carol"), usr("erin")}},
		{name: "one reviewer is not enough", approvers: []User{usr("carol")}, counted: []User{usr("carol")}},
		{name: "approving twice counts once", approvers: []User{usr("carol"), usr("carol")}, counted: []User{usr("carol")}},
		{name: "change author does not count", approvers: []User{usr("carol"), usr("dave")}, counted: []User{usr("carol")}},
		{name: "a renamed change author still does not count", approvers: []User{usr("carol"), renamed}, counted: []User{usr("carol")}},
		{name: "another user taking the author's old name counts", approvers: []User{usr("carol"), {ID: 99, Username: "dave"}}, merge: true,
			counted: []User{usr("carol"), {ID: 99, Username: "dave"}}},
		{name: "bot does not count", approvers: []User{usr("carol"), bot}, counted: []User{usr("carol")}},
		{name: "operator who asked does not count", trigger: "olga", approvers: []User{usr("carol"), usr("olga")}, counted: []User{usr("carol")}},
		{name: "third valid reviewer completes", approvers: []User{usr("dave"), bot, usr("carol"), usr("erin")}, merge: true, counted: []User{usr("carol"), usr("erin")}},
		{name: "unapprove revokes", approvers: []User{usr("carol")}, unapprove: []User{usr("carol")}, counted: nil},
		{name: "unapprove of someone who never approved is a no-op", approvers: []User{usr("carol")}, unapprove: []User{usr("erin")}, counted: []User{usr("carol")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, plainPolicy())
			r.do(landed("dev", img1, "c1"))
			r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
			r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
			r.do(landed("staging", img1, "c2"))
			if tc.trigger != "" {
				// as if the automatic promotion had never started: the
				// operator starts it by ChatOps
				r.s.Stages["production"].Promotion = nil
				r.do(Command{Stage: "production", IID: 5, NoteID: 1, User: usr(tc.trigger), Text: "/lotse promote production"})
			}
			r.wantPhase("production", PhaseOpening)
			r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "lotse-sha"})
			var merges []MergeMR
			for _, u := range tc.approvers {
				r.do(MRApproved{Stage: "production", IID: 12, User: u, SHA: "lotse-sha"})
				merges = append(merges, only[MergeMR](r.acts)...)
			}
			for _, u := range tc.unapprove {
				r.do(MRUnapproved{Stage: "production", IID: 12, User: u})
				merges = append(merges, only[MergeMR](r.acts)...)
			}
			if got := len(merges) > 0; got != tc.merge {
				t.Fatalf("merged = %v, want %v", got, tc.merge)
			}
			if len(merges) > 1 {
				t.Fatalf("merged %d times", len(merges))
			}
			if len(merges) == 1 && merges[0].SHA != "lotse-sha" {
				t.Fatalf("merge not pinned to lotse's commit: %+v", merges[0])
			}
			if got := ValidApprovers(r.p, r.s, "production"); !reflect.DeepEqual(got, tc.counted) {
				t.Fatalf("valid approvers = %v, want %v", got, tc.counted)
			}
		})
	}
}

func TestUnapproveWhileMergingDefersTheMerge(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img1})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol")})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin")})
	r.wantPhase("production", PhaseMerging)
	r.do(MergeResult{Stage: "production", IID: 12, Attempt: 1, Outcome: MergeNotYet})
	r.do(MRUnapproved{Stage: "production", IID: 12, User: usr("erin")})
	r.wantPhase("production", PhaseAwaitingApproval)
	r.wantAudit(AuditUnapproved, AuditMergeDeferred)
	r.at(time.Minute).do(Tick{})
	r.wantCore() // no retry without two approvals
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("frank")})
	r.wantCore(MergeMR{Stage: "production", IID: 12, Attempt: 2})
}

// A push onto lotse's merge request (a Developer pushing to lotse/<app>/
// <stage> after the approvals) stops the promotion as tampered: the MR is
// closed unmerged, the status fails, the audit says who pushed.
func TestPushOntoLotsesMRIsTampering(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "aaa"})
	r.do(MRUpdated{Stage: "production", IID: 12, SHA: "aaa"}) // GitLab's hook for lotse's own commit
	r.wantCore()
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol"), SHA: "aaa"})
	r.do(MRUpdated{Stage: "production", IID: 12, SHA: "bbb", Pusher: usr("mallory")})
	r.wantPhase("production", PhaseTampered)
	r.wantAudit(AuditTampered)
	closes := only[CloseMR](r.acts)
	if len(closes) != 1 || closes[0].IID != 12 || !strings.Contains(closes[0].Comment, "closed this merge request unmerged") {
		t.Fatalf("close = %+v", closes)
	}
	if a := only[Audit](r.acts); a[0].Actor != usr("mallory") || !strings.Contains(a[0].Detail, "@mallory pushed commit bbb onto lotse's commit aaa") {
		t.Fatalf("audit = %+v", a)
	}
	// A late approval, GitLab's merge answer or a tick merge nothing.
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin"), SHA: "bbb"})
	r.at(time.Hour).do(Tick{})
	if m := only[MergeMR](r.acts); len(m) != 0 {
		t.Fatalf("merged after tampering: %+v", m)
	}
	// An operator opens a clean one.
	r.do(Command{Stage: "production", IID: 12, NoteID: 9, User: usr("olga"), Text: "/lotse retry"})
	if o := only[OpenMR](r.acts); len(o) != 1 || o[0].Image != img1 {
		t.Fatalf("retry: %+v", r.acts)
	}
	if pr := r.s.Stage("production").Promotion; pr.MR != nil || pr.Phase != PhaseOpening {
		t.Fatalf("after retry: %+v", pr)
	}
}

func TestGateFailureBlocksAndRetry(t *testing.T) {
	bad := func(reason string) Result { return Result{Checked: true, Reason: reason} }
	for _, tc := range []struct {
		name   string
		sig    Result
		scan   ScanFacts
		health *bool
		reason string
	}{
		{name: "signature", sig: bad("no signature matches keys/cosign.pub"), scan: clean, reason: "signature: no signature matches keys/cosign.pub"},
		{name: "scan", sig: ok, scan: ScanFacts{Checked: true, Findings: 2, Highest: vuln.High},
			reason: "scan: scan attestation: 2 finding(s), highest HIGH, at or above the stage's maximum HIGH"},
		{name: "scan not checked", sig: ok, scan: ScanFacts{Reason: "no verified vuln attestation"}, reason: "scan: not checked: no verified vuln attestation"},
		{name: "not checked", sig: Result{Reason: "registry unreachable"}, scan: clean, reason: "signature: not checked: registry unreachable"},
		{name: "both", sig: bad("bad sig"), scan: ScanFacts{Checked: true, Findings: 1, Highest: vuln.Critical},
			reason: "signature: bad sig; scan: scan attestation: 1 finding(s), highest CRITICAL, at or above the stage's maximum HIGH"},
		{name: "health", sig: ok, scan: clean, health: new(false), reason: "health: dev reported unhealthy: Degraded: 0/2 pods ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, testPolicy())
			r.do(landed("dev", img1, "c1"))
			if tc.health != nil {
				r.do(Health{Stage: "dev", Healthy: *tc.health, Reason: "Degraded: 0/2 pods ready"})
			}
			r.do(GatesChecked{Stage: "staging", Image: img1, Signature: tc.sig, Scan: tc.scan})
			r.wantPhase("staging", PhaseBlocked)
			pr := r.s.Stage("staging").Promotion
			if pr.Reason != tc.reason {
				t.Fatalf("reason = %q, want %q", pr.Reason, tc.reason)
			}
			r.wantCore(status("staging", StatusFailed, tc.reason, img1))
			if a := only[Audit](r.acts); a[len(a)-1].Kind != AuditBlocked || a[len(a)-1].Detail != tc.reason {
				t.Fatalf("audit = %+v", a)
			}
			body := RenderComment(r.p, r.s, "staging", r.now)
			if !strings.Contains(body, "❌ failed") || !strings.Contains(body, "/lotse retry") {
				t.Fatalf("comment does not say why:\n%s", body)
			}
			// a blocked promotion stays blocked on ticks
			r.at(time.Hour).do(Tick{})
			r.wantCore()
			// retry re-runs the gates
			r.do(Command{Stage: "staging", IID: 11, NoteID: 7, User: usr("olga"), Text: "/lotse retry"})
			r.wantPhase("staging", PhaseChecking)
			r.wantCore(
				CheckGates{Stage: "staging", Image: img1, Signature: true, Scan: true},
				status("staging", StatusPending, "checking gates", img1),
				Reply{IID: 11, Body: "@olga checking the gates of " + img1 + " for staging again."},
			)
			r.do(Health{Stage: "dev", Healthy: true, Reason: "all pods ready"})
			r.do(GatesChecked{Stage: "staging", Image: img1, Signature: ok, Scan: clean})
			r.wantPhase("staging", PhaseOpening)
		})
	}
}

func TestSoak(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].Soak = 30 * time.Minute
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.wantPhase("staging", PhaseWaiting)
	r.wantCore(status("dev", StatusSuccess, "running in dev", img1), status("staging", StatusPending, "waiting for gates", img1))
	for _, m := range []time.Duration{1, 12, 29} {
		r.at(m * time.Minute).do(Tick{})
		r.wantCore()
		r.wantPhase("staging", PhaseWaiting)
	}
	body := RenderComment(r.p, r.s, "staging", t0.Add(12*time.Minute))
	if !strings.Contains(body, "soaking: 12m of 30m") {
		t.Fatalf("comment does not show the soak:\n%s", body)
	}
	if got := r.s.Seq; got != 1 {
		t.Fatalf("ticks while soaking changed the state (seq %d)", got)
	}
	r.at(30 * time.Minute).do(Tick{})
	r.wantPhase("staging", PhaseOpening)
	if g := r.s.Stage("staging").Promotion.Gates.Soak; g.Status != GatePassed || g.Reason != "soaked 30m in dev" {
		t.Fatalf("soak gate = %+v", g)
	}
}

func TestSoakCountsFromLandingNotFromStart(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].Soak = 30 * time.Minute
	r := newRun(t, p)
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img1, SourceCommit: "s1", Commit: "c1", At: t0.Add(-time.Hour)})
	r.wantPhase("staging", PhaseOpening) // it landed an hour before lotsed heard of it
}

func TestHealth(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].RequireHealthy = true
	r := newRun(t, p)
	r.do(landed("dev", img0(), "c0"))
	r.at(time.Minute).do(Health{Stage: "dev", Healthy: true, At: t0.Add(time.Minute)})
	r.at(2 * time.Minute).do(landed("dev", img1, "c1"))
	r.wantPhase("staging", PhaseWaiting)
	// a report older than the landing is about the version before
	r.do(Health{Stage: "dev", Healthy: true, At: t0.Add(time.Minute)})
	r.wantPhase("staging", PhaseWaiting)
	r.wantCore()
	r.at(3 * time.Minute).do(Health{Stage: "dev", Healthy: true, Reason: "Healthy", At: t0.Add(3 * time.Minute)})
	r.wantPhase("staging", PhaseOpening)
	if g := r.s.Stage("staging").Promotion.Gates.Health; g.Reason != "dev healthy: Healthy" {
		t.Fatalf("health gate = %+v", g)
	}
	// health of a stage without anything running is ignored
	s, acts, err := Next(p, State{}, Health{Stage: "production", Healthy: true}, t0)
	if err != nil || len(acts) != 0 || s.Seq != 0 {
		t.Fatalf("health of an empty stage: %v %v %+v", err, acts, s)
	}
}

func img0() string { return strings.Replace(img1, "1111", "0000", 1) }

func TestSupersede(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img1})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol")})
	oldID := r.s.Stage("production").Promotion.ID

	// img2 lands in staging while img1 waits for approvals in production.
	r.do(landed("dev", img2, "c3"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 13, Image: img2})
	r.do(MergeResult{Stage: "staging", IID: 13, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img2, "c4"))
	r.wantAudit(AuditLanded, AuditSuperseded, AuditStarted)
	r.wantCore(
		status("staging", StatusSuccess, "running in staging", img2),
		status("production", StatusCanceled, "superseded by a newer version", img1),
		CloseMR{Stage: "production", IID: 12, Comment: "Superseded by `" + img2 + "`: lotse opens a new merge request for it. Approvals given here do not carry over."},
		status("production", StatusPending, "waiting for gates", img2),
		OpenMR{Stage: "production", Image: img2, SourceProject: "team/shop", SourceCommit: "src-2222"},
		status("production", StatusRunning, "opening the merge request", img2),
	)
	pr := r.s.Stage("production").Promotion
	if pr.ID == oldID || pr.Image != img2 || pr.Phase != PhaseOpening {
		t.Fatalf("production promotion = %+v", pr)
	}
	// the late open hook of the old image's MR does not attach
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img1})
	r.wantCore()
	r.wantPhase("production", PhaseOpening)
	// the reused MR: carol's approval was for img1 and counts no more
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img2})
	r.wantPhase("production", PhaseAwaitingApproval)
	if got := ValidApprovers(r.p, r.s, "production"); got != nil {
		t.Fatalf("approvers carried over: %v", got)
	}
	// the superseded version's source MR says so
	body := RenderSourceComment(r.p, r.s, "team/shop", "src-1111", r.now)
	if !strings.Contains(body, "| staging | `"+img2) || !strings.Contains(body, "superseded") {
		t.Fatalf("source comment:\n%s", body)
	}
}

func TestMergeOutcomes(t *testing.T) {
	setup := func(t *testing.T) *run {
		r := newRun(t, plainPolicy())
		r.do(landed("dev", img1, "c1"))
		r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
		r.wantCore(MergeMR{Stage: "staging", IID: 11, Attempt: 1})
		return r
	}
	t.Run("not yet retries on tick, bounded", func(t *testing.T) {
		r := setup(t)
		for i := 1; i <= DefaultMergeAttempts; i++ {
			r.do(MergeResult{Stage: "staging", IID: 11, Attempt: i, Outcome: MergeNotYet, Reason: "checking"})
			if i == DefaultMergeAttempts {
				break
			}
			r.wantPhase("staging", PhaseMerging)
			r.wantCore()
			r.at(time.Duration(i) * time.Minute).do(Tick{})
			r.wantCore(MergeMR{Stage: "staging", IID: 11, Attempt: i + 1})
			// the answer to the earlier attempt, re-delivered, is ignored
			r.do(MergeResult{Stage: "staging", IID: 11, Attempt: i, Outcome: MergeNotYet})
			r.wantCore()
		}
		r.wantPhase("staging", PhaseBlocked)
		if !strings.Contains(r.s.Stage("staging").Promotion.Reason, "after 10 attempts") {
			t.Fatalf("reason = %q", r.s.Stage("staging").Promotion.Reason)
		}
		r.do(Command{Stage: "staging", IID: 11, NoteID: 1, User: usr("olga"), Text: "/lotse retry"})
		r.wantCore(MergeMR{Stage: "staging", IID: 11, Attempt: 1}, status("staging", StatusRunning, "merging", img1), Reply{IID: 11, Body: "@olga retrying the merge into staging."})
	})
	t.Run("already merged never loops", func(t *testing.T) {
		r := setup(t)
		r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeAlreadyMerged})
		r.wantPhase("staging", PhaseMerged)
		r.wantCore()
		for i := 1; i < 5; i++ {
			r.at(time.Duration(i) * time.Minute).do(Tick{})
			r.wantCore()
		}
		r.do(MergeResult{Stage: "staging", IID: 11, Outcome: MergeNotYet})
		r.wantCore()
		r.do(MRMerged{Stage: "staging", IID: 11, By: usr("lotse-bot")})
		r.wantCore()
		r.do(landed("staging", img1, "c2"))
		r.wantPhase("staging", PhaseLanded)
	})
	t.Run("not mergeable blocks", func(t *testing.T) {
		r := setup(t)
		r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeNotMergeable, Reason: "conflict"})
		r.wantPhase("staging", PhaseBlocked)
		r.wantCore(status("staging", StatusFailed, "GitLab cannot merge !11: conflict", img1))
	})
	t.Run("merged by hook before the answer", func(t *testing.T) {
		r := setup(t)
		r.do(MRMerged{Stage: "staging", IID: 11, By: usr("lotse-bot")})
		r.wantPhase("staging", PhaseMerged)
		r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
		r.wantCore()
		r.wantPhase("staging", PhaseMerged)
	})
	t.Run("closed cancels", func(t *testing.T) {
		r := setup(t)
		r.do(MRClosed{Stage: "staging", IID: 11})
		r.wantPhase("staging", PhaseCancelled)
		r.wantCore(status("staging", StatusCanceled, "merge request !11 was closed", img1))
	})
}

func TestMergedOutsideLotseIsAudited(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Image: img1, Author: usr("lotse-bot")})
	r.do(MRMerged{Stage: "production", IID: 12, By: usr("root")})
	a := only[Audit](r.acts)
	if len(a) != 1 || !strings.Contains(a[0].Detail, "WITHOUT four-eyes (0 of 2") || a[0].Actor != usr("root") {
		t.Fatalf("audit = %+v", a)
	}
}

// TestDuplicateDelivery delivers every event type twice at each point of a
// full run; run.do fails when the second delivery changes anything.
func TestDuplicateDelivery(t *testing.T) {
	r := newRun(t, testPolicy())
	toStaging(r, img1, 11)
	r.do(MRUpdated{Stage: "staging", IID: 11, SHA: "abc"})
	r.do(MRApproved{Stage: "staging", IID: 11, User: usr("carol")})
	r.do(MRUnapproved{Stage: "staging", IID: 11, User: usr("carol")})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeNotYet})
	r.do(Tick{})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 2, Outcome: MergeDone})
	r.do(MRMerged{Stage: "staging", IID: 11, By: usr("lotse-bot")})
	r.do(landed("staging", img1, "c2"))
	r.do(Health{Stage: "staging", Healthy: false, Reason: "Progressing"})
	r.do(Command{Stage: "production", IID: 12, NoteID: 9, User: usr("eve"), Text: "/lotse promote production"})
	r.wantAudit(AuditDenied)
	r.do(Command{Stage: "production", IID: 12, NoteID: 10, User: usr("olga"), Text: "/lotse retry"})
	r.do(MRClosed{Stage: "staging", IID: 11})
	r.do(GatesChecked{Stage: "production", Image: img1, Signature: ok, Scan: clean})
	// without a note id a command cannot be recognised again; a note without a
	// command is a no-op anyway
	r.do(Command{Stage: "production", IID: 12, User: usr("olga"), Text: "looks good to me"})
	r.wantCore()
}

func TestChatOps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cmd   Command
		reply string // the Reply body; "" for none
		audit []string
		phase Phase // production's phase afterwards
	}{
		{name: "not a command", cmd: Command{User: usr("olga"), Text: "please /lotse promote production"}, phase: PhaseLanded},
		{name: "lotse's own note", cmd: Command{User: usr("lotse-bot"), Text: "/lotse retry"}, phase: PhaseLanded},
		{name: "unauthorized", cmd: Command{User: usr("eve"), Text: "/lotse promote production"}, reply: "@eve you are not allowed to run lotse commands for shop; ask one of its operators.", audit: []string{AuditDenied}, phase: PhaseLanded},
		{name: "unknown verb", cmd: Command{User: usr("olga"), Text: "/lotse deploy"}, reply: "@olga unknown command \"deploy\"; " + usage, phase: PhaseLanded},
		{name: "unknown stage", cmd: Command{User: usr("olga"), Text: "/lotse promote qa"}, reply: `@olga shop has no stage "qa" (stages: dev, staging, production).`, phase: PhaseLanded},
		{name: "promote the first stage", cmd: Command{User: usr("olga"), Text: "/lotse promote dev"}, reply: "@olga dev is the first stage: CI writes it.", audit: []string{AuditCommand}, phase: PhaseLanded},
		{name: "promote a commit stage", cmd: Command{User: usr("olga"), Text: "/lotse promote staging"}, reply: "@olga staging is a commit stage: `lotse bump` in CI writes it, lotsed opens no merge request.", audit: []string{AuditCommand}, phase: PhaseLanded},
		{name: "promote production", cmd: Command{User: usr("olga"), Text: "thanks!\n/lotse promote production\n"}, reply: "@olga promoting " + img2 + " from staging to production.", audit: []string{AuditCommand, AuditPromoted, AuditStarted}, phase: PhaseOpening},
		{name: "retry with nothing to retry", cmd: Command{Stage: "production", User: usr("olga"), Text: "/lotse retry"}, reply: "@olga nothing to retry: the promotion of " + img1 + " into production is landed.", audit: []string{AuditCommand}, phase: PhaseLanded},
		{name: "retry off a lotse MR", cmd: Command{User: usr("olga"), Text: "/lotse retry"}, reply: "@olga name the stage (not on a lotse merge request); " + usage, phase: PhaseLanded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := landedEverywhere(t)
			tc.cmd.IID, tc.cmd.NoteID = 42, 100
			r.do(tc.cmd)
			var replies []string
			for _, a := range only[Reply](r.acts) {
				replies = append(replies, a.Body)
			}
			if tc.reply == "" && replies != nil || tc.reply != "" && !reflect.DeepEqual(replies, []string{tc.reply}) {
				t.Fatalf("replies = %q, want %q", replies, tc.reply)
			}
			r.wantAudit(tc.audit...)
			r.wantPhase("production", tc.phase)
		})
	}
}

// landedEverywhere runs img1 through all stages without gates and lands
// img2 in dev and staging by CI.
func landedEverywhere(t *testing.T) *run {
	p := plainPolicy()
	p.Stages[1].Mode = ModeCommit
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Author: usr("lotse-bot"), Image: img1})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol")})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin")})
	r.do(MRMerged{Stage: "production", IID: 12, By: usr("lotse-bot")})
	r.do(landed("production", img1, "c3"))
	// img2 reaches staging; a human closes its production MR
	r.do(landed("dev", img2, "c4"))
	r.do(landed("staging", img2, "c5"))
	r.do(MROpened{Stage: "production", IID: 13, Author: usr("lotse-bot"), Image: img2})
	r.do(MRClosed{Stage: "production", IID: 13})
	// put a landed promotion back as the latest, as after a finished run
	r.s.Stages["production"].Promotion = &Promotion{ID: 99, Image: img1, From: "staging", Phase: PhaseLanded, StartedAt: t0, UpdatedAt: t0}
	return r
}

func TestRollback(t *testing.T) {
	setup := func(t *testing.T) *run {
		r := newRun(t, plainPolicy())
		for i, img := range []string{img1, img2, img3} {
			c := string(rune('a' + i))
			r.do(landed("dev", img, "d"+c))
			r.do(MROpened{Author: bot, Stage: "staging", IID: 10 + i, Image: img})
			r.do(MergeResult{Stage: "staging", IID: 10 + i, Attempt: 1, Outcome: MergeDone})
			r.do(landed("staging", img, "s"+c))
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		text  string
		image string // the image rolled back to; "" for none
		reply string
	}{
		{name: "previous image", text: "/lotse rollback staging", image: img2, reply: "@olga rolling staging back to " + img2 + "."},
		{name: "given digest", text: "/lotse rollback staging sha256:1111111111111111111111111111111111111111111111111111111111111111", image: img1, reply: "@olga rolling staging back to " + img1 + "."},
		{name: "digest not in history", text: "/lotse rollback staging sha256:9999", reply: "@olga sha256:9999 is not in the history of staging; pick one of: `" + img2 + "`, `" + img1 + "`."},
		{name: "digest running now", text: "/lotse rollback staging sha256:3333333333333333333333333333333333333333333333333333333333333333", reply: "@olga staging already runs " + img3 + "."},
		{name: "nothing ran before", text: "/lotse rollback production", reply: "@olga nothing runs in production: nothing to roll back."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := setup(t)
			r.do(Command{Stage: "staging", IID: 20, NoteID: 1, User: usr("olga"), Text: tc.text})
			if rb := only[Rollback](r.acts); tc.image == "" && len(rb) != 0 || tc.image != "" && (len(rb) != 1 || rb[0].Image != tc.image || rb[0].Stage != "staging") {
				t.Fatalf("rollback actions = %v, want %s", describe(r.acts), tc.image)
			}
			if rp := only[Reply](r.acts); len(rp) != 1 || rp[0].Body != tc.reply {
				t.Fatalf("replies = %v, want %q", describe(r.acts), tc.reply)
			}
			if tc.image == "" {
				return
			}
			// the rollback MR is merged by lotsed (merge-request stage), lands, and
			// is not promoted further.
			r.wantPhase("staging", PhaseOpening)
			pr := r.s.Stage("staging").Promotion
			if !pr.Rollback || !pr.Gates.Passed() {
				t.Fatalf("rollback promotion = %+v", pr)
			}
			r.do(MROpened{Author: bot, Stage: "staging", IID: 30, Image: tc.image})
			r.wantCore(MergeMR{Stage: "staging", IID: 30, Attempt: 1})
			r.do(MergeResult{Stage: "staging", IID: 30, Attempt: 1, Outcome: MergeDone})
			prodBefore := r.s.Stage("production").Promotion
			r.do(landed("staging", tc.image, "rb"))
			r.wantPhase("staging", PhaseLanded)
			if !reflect.DeepEqual(r.s.Stage("production").Promotion, prodBefore) {
				t.Fatal("a rollback was promoted further")
			}
		})
	}
}

func TestRollbackOnApprovalStageNeedsFourEyes(t *testing.T) {
	r := newRun(t, plainPolicy())
	for i, img := range []string{img1, img2} {
		c := string(rune('a' + i))
		r.do(landed("dev", img, "d"+c))
		r.do(MROpened{Author: bot, Stage: "staging", IID: 10 + i, Image: img})
		r.do(MergeResult{Stage: "staging", IID: 10 + i, Attempt: 1, Outcome: MergeDone})
		r.do(landed("staging", img, "s"+c))
		r.do(MROpened{Stage: "production", IID: 20 + i, Image: img, Author: usr("lotse-bot")})
		r.do(MRApproved{Stage: "production", IID: 20 + i, User: usr("carol")})
		r.do(MRApproved{Stage: "production", IID: 20 + i, User: usr("erin")})
		r.do(MergeResult{Stage: "production", IID: 20 + i, Attempt: 1, Outcome: MergeDone})
		r.do(landed("production", img, "p"+c))
	}
	r.do(Command{Stage: "production", IID: 22, NoteID: 1, User: usr("olga"), Text: "/lotse rollback production"})
	r.wantCore(Rollback{Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111"},
		status("production", StatusRunning, "rolling back", img1),
		Reply{IID: 22, Body: "@olga rolling production back to " + img1 + "."})
	r.do(MROpened{Stage: "production", IID: 23, Image: img1, Author: usr("lotse-bot")})
	r.wantPhase("production", PhaseAwaitingApproval)
	r.do(MRApproved{Stage: "production", IID: 23, User: usr("olga")}) // asked for it: does not count
	r.do(MRApproved{Stage: "production", IID: 23, User: usr("carol")})
	r.wantCore()
	r.do(MRApproved{Stage: "production", IID: 23, User: usr("erin")})
	r.wantCore(MergeMR{Stage: "production", IID: 23, Attempt: 1})
}

func TestMalformedInput(t *testing.T) {
	p := testPolicy()
	bad := p
	bad.Stages = append([]StagePolicy(nil), p.Stages...)
	bad.Stages[2].Approvals = 0
	for _, tc := range []struct {
		name string
		p    Policy
		s    State
		e    Event
		want error
	}{
		{name: "nil event", p: p, e: nil, want: ErrMalformed},
		{name: "unknown stage", p: p, e: Landed{Pusher: bot, Stage: "qa", Image: img1}, want: ErrUnknownStage},
		{name: "landing without image", p: p, e: Landed{Pusher: bot, Stage: "dev"}, want: ErrMalformed},
		{name: "MR without IID", p: p, e: MRApproved{Stage: "staging", User: usr("carol")}, want: ErrMalformed},
		{name: "approval without user", p: p, e: MRApproved{Stage: "staging", IID: 1}, want: ErrMalformed},
		{name: "unknown merge outcome", p: p, e: MergeResult{Stage: "staging", IID: 1, Outcome: "maybe"}, want: ErrMalformed},
		{name: "command on unknown stage", p: p, e: Command{Stage: "qa", User: usr("olga"), Text: "/lotse retry"}, want: ErrUnknownStage},
		{name: "invalid policy", p: bad, e: Tick{}, want: ErrInvalidPolicy},
		{name: "empty policy", p: Policy{}, e: Tick{}, want: ErrMalformed},
		{name: "state of another app", p: p, s: State{App: "cart"}, e: Tick{}, want: ErrMalformed},
		{name: "gate results without image", p: p, e: GatesChecked{Stage: "staging"}, want: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, acts, err := Next(tc.p, tc.s, tc.e, t0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if acts != nil || !reflect.DeepEqual(s, tc.s) {
				t.Fatalf("an error changed something: %+v %v", s, acts)
			}
		})
	}
}

func TestNextDoesNotChangeItsInput(t *testing.T) {
	r := newRun(t, testPolicy())
	toStaging(r, img1, 11)
	before := r.s.clone()
	_, _, _ = Next(r.p, r.s, MRMerged{Stage: "staging", IID: 11}, t0.Add(time.Hour))
	_, _, _ = Next(r.p, r.s, landed("dev", img2, "c9"), t0.Add(time.Hour))
	if !reflect.DeepEqual(before, r.s) {
		t.Fatal("Next changed the state it was given")
	}
}

func TestStaleLandingIsIgnored(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img1, Commit: "c1", At: t0})
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img2, Commit: "c2", At: t0.Add(time.Minute)})
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img1, Commit: "c1", At: t0})
	r.wantCore()
	if r.s.Stage("dev").Current.Image != img2 {
		t.Fatal("an old landing re-delivered replaced the newer one")
	}
}

func TestHistoryIsBounded(t *testing.T) {
	r := newRun(t, Policy{App: "shop", Bot: bot, Stages: []StagePolicy{{Name: "dev", Mode: ModeCommit}}})
	for i := range MaxHistory + 5 {
		r.at(time.Duration(i) * time.Minute).do(Landed{Pusher: bot, Stage: "dev", Image: img1 + string(rune('a'+i)), Commit: "c" + string(rune('a'+i))})
	}
	if n := len(r.s.Stage("dev").History); n != MaxHistory {
		t.Fatalf("history has %d entries", n)
	}
}

func TestPhaseIsTerminal(t *testing.T) {
	for ph, want := range map[Phase]bool{
		PhaseChecking: false, PhaseWaiting: false, PhaseOpening: false, PhaseAwaitingApproval: false,
		PhaseMerging: false, PhaseMerged: false,
		PhaseLanded: true, PhaseBlocked: true, PhaseSuperseded: true, PhaseCancelled: true,
	} {
		if ph.IsTerminal() != want {
			t.Errorf("%s.IsTerminal() = %v", ph, !want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		text string
		ok   bool
		want ParsedCommand
	}{
		{text: "LGTM", ok: false},
		{text: "see /lotse retry", ok: false},
		{text: "/lotsefoo", ok: false},
		{text: "/lotse retry", ok: true, want: ParsedCommand{Verb: VerbRetry, Line: "/lotse retry"}},
		{text: "  /lotse   retry   staging ", ok: true, want: ParsedCommand{Verb: VerbRetry, Stage: "staging", Line: "/lotse retry staging"}},
		{text: "hi\n/lotse promote production\n/lotse retry", ok: true, want: ParsedCommand{Verb: VerbPromote, Stage: "production", Line: "/lotse promote production"}},
		{text: "/lotse rollback production sha256:abc", ok: true, want: ParsedCommand{Verb: VerbRollback, Stage: "production", Digest: "sha256:abc", Line: "/lotse rollback production sha256:abc"}},
		{text: "/lotse", ok: true, want: ParsedCommand{Line: "/lotse", Err: "no command given"}},
		{text: "/lotse promote", ok: true, want: ParsedCommand{Line: "/lotse promote", Err: "promote takes a stage, and --break-glass with a reason to merge despite a freeze"}},
		{text: "/lotse rollback a b c", ok: true, want: ParsedCommand{Line: "/lotse rollback a b c", Err: "rollback takes a stage and an optional digest"}},
		{text: "/lotse retry a b", ok: true, want: ParsedCommand{Line: "/lotse retry a b", Err: "retry takes at most a stage"}},
	} {
		got, ok := ParseCommand(tc.text)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v, %v", tc.text, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	good := testPolicy()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Policy){
		"no app":            func(p *Policy) { p.App = "" },
		"no stages":         func(p *Policy) { p.Stages = nil },
		"unnamed stage":     func(p *Policy) { p.Stages[0].Name = "" },
		"duplicate stage":   func(p *Policy) { p.Stages[1].Name = "dev" },
		"unknown mode":      func(p *Policy) { p.Stages[1].Mode = "auto" },
		"approvals on MR":   func(p *Policy) { p.Stages[1].Approvals = 1 },
		"approval stage 0":  func(p *Policy) { p.Stages[2].Approvals = 0 },
		"negative soak":     func(p *Policy) { p.Stages[1].Soak = -time.Second },
		"negative attempts": func(p *Policy) { p.MergeAttempts = -1 },
	} {
		p := testPolicy()
		mod(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// The service reports what the attestation holds; the engine alone compares
// it with the stage's maximum, so one set of facts passes one stage and
// blocks a stricter one.
func TestScanFactsJudgedByPolicy(t *testing.T) {
	facts := ScanFacts{Checked: true, Findings: 3, Highest: vuln.Medium}
	for _, tc := range []struct {
		max  vuln.Severity
		want GateStatus
	}{
		{vuln.Critical, GatePassed},
		{vuln.High, GatePassed},
		{vuln.Medium, GateFailed},
		{vuln.Low, GateFailed},
	} {
		t.Run(tc.max.String(), func(t *testing.T) {
			p := testPolicy()
			p.Stages[1].MaxSeverity = sev(tc.max)
			r := newRun(t, p)
			r.do(landed("dev", img1, "c1"))
			r.do(GatesChecked{Stage: "staging", Image: img1, Signature: ok, Scan: facts})
			if g := r.s.Stage("staging").Promotion.Gates.Scan; g.Status != tc.want {
				t.Fatalf("scan gate at max %s = %+v, want %s", tc.max, g, tc.want)
			}
		})
	}
}

// A Healthy report about the previous version (its revision or its images)
// does not pass the health gate of the next one, however late it arrives;
// a report naming the new version does.
func TestHealthBoundToTheVersion(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].RequireHealthy = true
	r := newRun(t, p)
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img0(), Commit: "c0", Head: "h0"})
	r.at(time.Minute).do(Landed{Pusher: bot, Stage: "dev", Image: img1, Commit: "c1", Head: "h1"})
	r.wantPhase("staging", PhaseWaiting)
	for _, stale := range []Health{
		{Stage: "dev", Healthy: true, Revision: "h0", At: t0.Add(time.Hour)},
		{Stage: "dev", Healthy: true, Revision: "c0", At: t0.Add(time.Hour)},
		{Stage: "dev", Healthy: true, Images: []string{img0()}, Revision: "h1", At: t0.Add(time.Hour)},
	} {
		r.at(time.Hour).do(stale)
		r.wantPhase("staging", PhaseWaiting)
	}
	r.do(Health{Stage: "dev", Healthy: true, Revision: "h1", At: t0.Add(time.Hour)})
	r.wantPhase("staging", PhaseOpening)

	r = newRun(t, p)
	r.do(Landed{Pusher: bot, Stage: "dev", Image: img1, Commit: "c1", Head: "h1"})
	r.do(Health{Stage: "dev", Healthy: true, Images: []string{"harbor.example.com/team/shop:1.0@" + img1[strings.Index(img1, "@")+1:]}})
	r.wantPhase("staging", PhaseOpening)
}

// In a stage ArgoCD syncs by hand, a merged version is not running: its
// status says it waits for the sync until ArgoCD reports it Synced and
// Healthy at that version; a Degraded report fails it.
func TestManualSyncStage(t *testing.T) {
	p := plainPolicy()
	p.Stages[2].ManualSync = true
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.do(landed("staging", img1, "c2"))
	r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "s"})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol"), SHA: "s"})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin"), SHA: "s"})
	r.do(MergeResult{Stage: "production", IID: 12, Attempt: 1, Outcome: MergeDone})
	r.do(Landed{Pusher: bot, Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "c3", Head: "h3"})
	// The status stays running (GitLab keeps a running status running), not
	// success: merged is not running.
	r.wantCore()
	if d := r.s.Stage("production").Current; d.Sync != SyncWaiting {
		t.Fatalf("sync = %q", d.Sync)
	}
	r.do(Health{Stage: "production", Healthy: true, Revision: "h2"}) // the previous version
	r.wantCore()
	r.do(Health{Stage: "production", Healthy: true, Revision: "h3"})
	r.wantCore(status("production", StatusSuccess, "running in production", img1))
	r.wantAudit(AuditHealth, AuditRunning)
	r.do(Health{Stage: "production", Degraded: true, Reason: "Degraded: CrashLoopBackOff", Revision: "h3"})
	r.wantCore(status("production", StatusFailed, "degraded in production: Degraded: CrashLoopBackOff", img1))
	if d := r.s.Stage("production").Current; d.Sync != SyncDegraded {
		t.Fatalf("sync = %q", d.Sync)
	}
}

// A freeze holds the merge of an approved, gated promotion: a lotse.yaml
// window until it ends, an operator's stop-the-line until it is lifted;
// an operator's break-glass merges despite it, recorded in the audit log.
func TestFreezes(t *testing.T) {
	toApproved := func(r *run) {
		r.do(landed("dev", img1, "c1"))
		r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
		r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
		r.do(landed("staging", img1, "c2"))
		r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "s"})
		r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol"), SHA: "s"})
		r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin"), SHA: "s"})
	}
	t.Run("window", func(t *testing.T) {
		p := plainPolicy()
		p.Freezes = []FreezeWindow{{Stages: []string{"production"}, Reason: "year-end", From: t0, Until: t0.Add(2 * time.Hour)}}
		r := newRun(t, p)
		toApproved(r)
		if m := only[MergeMR](r.acts); len(m) != 0 {
			t.Fatal("merged in a freeze window")
		}
		if pr := r.s.Stage("production").Promotion; !strings.Contains(pr.Reason, "frozen until 2026-05-04 12:00 UTC: year-end") {
			t.Fatalf("reason = %q", pr.Reason)
		}
		r.at(time.Hour).do(Tick{})
		r.wantCore()
		r.at(2 * time.Hour).do(Tick{})
		r.wantCore(MergeMR{Stage: "production", IID: 12, SHA: "s", Attempt: 1})
	})
	t.Run("stop the line and break glass", func(t *testing.T) {
		r := newRun(t, plainPolicy())
		r.do(Command{Stage: "production", IID: 1, NoteID: 1, User: usr("olga"), Text: "/lotse freeze production incident 42"})
		toApproved(r)
		if m := only[MergeMR](r.acts); len(m) != 0 {
			t.Fatal("merged while frozen")
		}
		r.do(Command{Stage: "production", IID: 12, NoteID: 2, User: usr("mallory"), Text: "/lotse promote production --break-glass hotfix"})
		if m := only[MergeMR](r.acts); len(m) != 0 {
			t.Fatal("a non-operator broke the glass")
		}
		r.do(Command{Stage: "production", IID: 12, NoteID: 3, User: usr("olga"), Text: "/lotse promote production --break-glass hotfix for incident 42"})
		r.wantCore(MergeMR{Stage: "production", IID: 12, SHA: "s", Attempt: 1},
			Reply{IID: 12, Body: "@olga break-glass for " + img1 + " into production: it merges despite the freeze once approvals and gates allow."})
		if a := only[Audit](r.acts); len(a) == 0 || a[len(a)-2].Kind != AuditBreakGlass && a[len(a)-1].Kind != AuditBreakGlass {
			t.Fatalf("audit = %+v", a)
		}
	})
}
