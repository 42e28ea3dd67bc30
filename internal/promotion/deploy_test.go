package promotion

import (
	"testing"
	"time"
)

// deploys are the Deploy actions of acts without their details, for
// comparing: stage, image, status, cause, rollback, commit, at.
func deploys(acts []Action) []Deploy {
	var out []Deploy
	for _, d := range only[Deploy](acts) {
		out = append(out, Deploy{Stage: d.Stage, Tier: d.Tier, Image: d.Image, Commit: d.Commit, Status: d.Status, Cause: d.Cause, Rollback: d.Rollback, At: d.At})
	}
	return out
}

func (r *run) wantDeploys(want ...Deploy) {
	r.t.Helper()
	got := deploys(r.acts)
	if len(got) != len(want) {
		r.t.Fatalf("deploys = %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			r.t.Fatalf("deploy %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// Every landing is a deployment of its stage: success at once in a stage
// ArgoCD syncs itself, running until ArgoCD reports it synced and healthy
// in a manual-sync stage; a degraded report fails it; a version superseded
// before it ran is canceled; a rollback fails the version it undoes.
func TestDeployments(t *testing.T) {
	p := plainPolicy()
	p.Stages[2].ManualSync = true
	p.Stages[1].Tier = "testing"
	p.Stages[2].URL = "https://shop.example.com"
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.wantDeploys(Deploy{Stage: "dev", Tier: "development", Image: img1, Commit: "c1", Status: StatusSuccess, At: t0})
	if d := only[Deploy](r.acts)[0]; d.SourceProject != "team/shop" || d.SourceCommit != "src-1111" || d.LandedAt != t0 || d.URL != "" {
		t.Fatalf("deploy = %+v", d)
	}
	r.do(MROpened{Author: bot, Stage: "staging", IID: 11, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 11, Attempt: 1, Outcome: MergeDone})
	r.at(time.Minute).do(landed("staging", img1, "c2"))
	r.wantDeploys(Deploy{Stage: "staging", Tier: "testing", Image: img1, Commit: "c2", Status: StatusSuccess, At: t0.Add(time.Minute)})

	// production syncs by hand: running, then success on ArgoCD's word.
	r.do(MROpened{Stage: "production", IID: 12, Author: bot, Image: img1, SHA: "s"})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("carol"), SHA: "s"})
	r.do(MRApproved{Stage: "production", IID: 12, User: usr("erin"), SHA: "s"})
	r.do(MergeResult{Stage: "production", IID: 12, Attempt: 1, Outcome: MergeDone})
	r.at(2 * time.Minute).do(Landed{Pusher: bot, Stage: "production", Image: img1, SourceProject: "team/shop", SourceCommit: "src-1111", Commit: "c3", Head: "h3"})
	r.wantDeploys(Deploy{Stage: "production", Tier: "production", Image: img1, Commit: "c3", Status: StatusRunning, At: t0.Add(2 * time.Minute)})
	if d := only[Deploy](r.acts)[0]; d.URL != "https://shop.example.com" {
		t.Fatalf("url = %q", d.URL)
	}
	r.at(3 * time.Minute).do(Health{Stage: "production", Healthy: false, Reason: "Progressing", Revision: "h3"})
	r.wantDeploys()
	r.at(5 * time.Minute).do(Health{Stage: "production", Healthy: true, Revision: "h3"})
	r.wantDeploys(Deploy{Stage: "production", Tier: "production", Image: img1, Commit: "c3", Status: StatusSuccess, At: t0.Add(5 * time.Minute)})
	r.at(9 * time.Minute).do(Health{Stage: "production", Degraded: true, Reason: "CrashLoopBackOff", Revision: "h3"})
	r.wantDeploys(Deploy{Stage: "production", Tier: "production", Image: img1, Commit: "c3", Status: StatusFailed, Cause: CauseDegraded, At: t0.Add(9 * time.Minute)})

	// a stage ArgoCD syncs itself: degraded fails the deployment, healthy
	// again makes it a success again.
	r.at(10 * time.Minute).do(Health{Stage: "staging", Degraded: true, Reason: "OOMKilled", Revision: "c2"})
	r.wantDeploys(Deploy{Stage: "staging", Tier: "testing", Image: img1, Commit: "c2", Status: StatusFailed, Cause: CauseDegraded, At: t0.Add(10 * time.Minute)})
	r.at(11 * time.Minute).do(Health{Stage: "staging", Healthy: true, Revision: "c2"})
	r.wantDeploys(Deploy{Stage: "staging", Tier: "testing", Image: img1, Commit: "c2", Status: StatusSuccess, At: t0.Add(11 * time.Minute)})

	// img2 lands in production and is superseded by img3 before ArgoCD
	// synced it: canceled.
	r.s.Stage("production").Promotion = nil // the promotions themselves are tested elsewhere
	r.at(20 * time.Minute).do(Landed{Pusher: bot, Stage: "production", Image: img2, Commit: "c4", Head: "h4"})
	r.wantDeploys(Deploy{Stage: "production", Tier: "production", Image: img2, Commit: "c4", Status: StatusRunning, At: t0.Add(20 * time.Minute)})
	r.at(21 * time.Minute).do(Landed{Pusher: bot, Stage: "production", Image: img3, Commit: "c5", Head: "h5"})
	r.wantDeploys(
		Deploy{Stage: "production", Tier: "production", Image: img2, Commit: "c4", Status: StatusCanceled, Cause: CauseSuperseded, At: t0.Add(21 * time.Minute)},
		Deploy{Stage: "production", Tier: "production", Image: img3, Commit: "c5", Status: StatusRunning, At: t0.Add(21 * time.Minute)})
	// a health report of img2 after it was superseded changes nothing.
	r.at(22 * time.Minute).do(Health{Stage: "production", Healthy: true, Revision: "h4"})
	r.wantDeploys()
}

// A rollback fails the deployment it undoes and is itself a deployment
// marked as a rollback.
func TestDeploymentRolledBack(t *testing.T) {
	r := newRun(t, plainPolicy())
	for i, img := range []string{img1, img2} {
		c := string(rune('a' + i))
		r.do(landed("dev", img, "d"+c))
		r.do(MROpened{Author: bot, Stage: "staging", IID: 10 + i, Image: img})
		r.do(MergeResult{Stage: "staging", IID: 10 + i, Attempt: 1, Outcome: MergeDone})
		r.at(time.Duration(i) * time.Hour).do(landed("staging", img, "s"+c))
	}
	r.at(2 * time.Hour).do(Command{Stage: "staging", IID: 11, NoteID: 1, User: usr("olga"), Text: "/lotse rollback staging"})
	r.do(MROpened{Author: bot, Stage: "staging", IID: 30, Image: img1})
	r.do(MergeResult{Stage: "staging", IID: 30, Attempt: 1, Outcome: MergeDone})
	r.at(3 * time.Hour).do(landed("staging", img1, "rb"))
	r.wantDeploys(
		Deploy{Stage: "staging", Tier: "staging", Image: img2, Commit: "sb", Status: StatusFailed, Cause: CauseRolledBack, At: t0.Add(3 * time.Hour)},
		Deploy{Stage: "staging", Tier: "staging", Image: img1, Commit: "rb", Status: StatusSuccess, Rollback: true, At: t0.Add(3 * time.Hour)})
}

// Versions that landed before lotse recorded deployments are left alone:
// no GitLab deployment is made up for them.
func TestDeploymentsLeaveOlderVersionsAlone(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	r.s.Stage("dev").Current.Deploy = "" // as stored by an older lotsed
	r.do(Health{Stage: "dev", Degraded: true, Reason: "x"})
	r.wantDeploys()
	r.at(time.Minute).do(landed("dev", img2, "c2"))
	r.wantDeploys(Deploy{Stage: "dev", Tier: "development", Image: img2, Commit: "c2", Status: StatusSuccess, At: t0.Add(time.Minute)})
}

// What an attacker would try: a commit with lotse trailers pushed by
// someone who is neither lotse nor a writer, or whose change is not what
// its trailers say, is out of band: no deployment, so it neither shows in
// GitLab's environments nor counts in the DORA figures.
func TestNoDeploymentForOutOfBandChanges(t *testing.T) {
	r := newRun(t, plainPolicy())
	r.do(landed("dev", img1, "c1"))
	forged := landed("dev", img2, "c2")
	forged.Pusher = usr("mallory")
	r.at(time.Minute).do(forged)
	r.wantDeploys()
	mismatch := landed("dev", img3, "c3")
	mismatch.Mismatch = "apps/shop/envs/dev/values.yaml holds another image"
	r.at(2 * time.Minute).do(mismatch)
	r.wantDeploys()
	if cur := r.s.Stage("dev").Current; cur.Image != img1 || cur.Deploy != StatusSuccess {
		t.Fatalf("dev runs %+v", cur)
	}
	// ArgoCD reporting the forged version degraded does not fail the
	// version lotse deployed.
	r.at(3 * time.Minute).do(Health{Stage: "dev", Degraded: true, Images: []string{img2}})
	r.wantDeploys()
}
