package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/test/gitlabsim"
)

// TestPromotionFlow: dev → staging (automatic, gated) → production (two
// approvals, four-eyes), with statuses, sticky comments and the audit log.
func TestPromotionFlow(t *testing.T) {
	w := newWorld(t)
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]

	w.bumpDev(img)

	// staging: gates pass (signed, MEDIUM < critical), lotsed opens and merges the MR.
	eventually(t, "the image to land in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(img), w.describeStatuses()
	})
	// production: an MR waits for two approvals.
	var mr = waitMR(t, w, "production")
	if got := w.valuesDigest("production"); got == digestOf(img) {
		t.Fatal("production changed without approvals")
	}

	// The change's author and lotse's own user do not count; alice does.
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "dev1"))
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	time.Sleep(1500 * time.Millisecond) // several ticks: still not enough
	if got := w.valuesDigest("production"); got == digestOf(img) {
		t.Fatal("merged with one valid approval (dev1 is the change's author)")
	}
	comment := stickyComment(t, w, mr.IID)
	for _, want := range []string{"alice", "dev1"} {
		if !strings.Contains(comment, want) {
			t.Errorf("sticky comment does not mention %s:\n%s", want, comment)
		}
	}
	// An unapproval revokes: alice withdraws, bob approves: still one.
	must(t, w.sim.Unapprove(gitopsProject, int(mr.IID), "alice"))
	time.Sleep(1 * time.Second)
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "bob"))
	time.Sleep(1500 * time.Millisecond)
	if got := w.valuesDigest("production"); got == digestOf(img) {
		t.Fatal("merged although alice withdrew her approval")
	}
	must(t, w.sim.Approve(gitopsProject, int(mr.IID), "alice"))
	eventually(t, "production to get the image after two valid approvals", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), stickyComment(t, w, mr.IID)
	})

	// Statuses on the app's commit, one per stage.
	eventually(t, "commit statuses lotse/<stage> = success", 15*time.Second, func() (bool, string) {
		st := w.statuses()
		return st["lotse/dev"] == "success" && st["lotse/staging"] == "success" && st["lotse/production"] == "success", fmt.Sprint(st)
	})
	// One sticky comment per MR, and one on the app's MR.
	for _, iid := range []int64{mr.IID} {
		if n := countMarked(t, w, gitopsProject, iid); n != 1 {
			t.Errorf("MR !%d has %d sticky comments, want 1", iid, n)
		}
	}
	if n := countMarked(t, w, appProject, 1); n != 1 {
		t.Errorf("the app's MR has %d sticky comments, want 1", n)
	}

	// The audit log and the status API tell the story.
	var audit []struct{ Kind, Stage, Actor string }
	apiGet(t, base, "/api/v1/audit?app=shop", &audit)
	landed := map[string]bool{}
	approvers := map[string]bool{}
	for _, a := range audit {
		if a.Kind == promotion.AuditLanded {
			landed[a.Stage] = true
		}
		if a.Kind == promotion.AuditApproved {
			approvers[a.Actor] = true
		}
	}
	if !landed["dev"] || !landed["staging"] || !landed["production"] {
		t.Errorf("audit lacks landings: %+v", audit)
	}
	if !approvers[fmt.Sprintf("alice (#%d)", w.users["alice"].ID)] || !approvers[fmt.Sprintf("bob (#%d)", w.users["bob"].ID)] {
		t.Errorf("audit lacks approvals: %+v", audit)
	}
	var status []struct {
		App    string
		Stages []struct{ Stage, Image string }
	}
	apiGet(t, base, "/api/v1/status", &status)
	if len(status) != 1 || len(status[0].Stages) != 3 || status[0].Stages[2].Image != img {
		t.Errorf("status = %+v", status)
	}
	checkDeployments(t, w, base, img)
}

// checkDeployments: each landing is a GitLab deployment in the app's
// project (environment = stage, tier by position, sha = the source
// commit, ref = the source MR's branch); ArgoCD reporting production
// Degraded fails its deployment; the DORA figures count it.
func checkDeployments(t *testing.T, w *world, base, img string) {
	t.Helper()
	want := map[string]string{"dev": "success", "staging": "success", "production": "success"}
	describe := func() (map[string][]gitlabsim.Deployment, string) {
		ds, err := w.sim.Deployments(appProject)
		must(t, err)
		by := map[string][]gitlabsim.Deployment{}
		for _, d := range ds {
			by[d.Environment] = append(by[d.Environment], d)
		}
		return by, fmt.Sprintf("%+v", ds)
	}
	eventually(t, "one successful deployment per stage in "+appProject, 15*time.Second, func() (bool, string) {
		by, desc := describe()
		for env, st := range want {
			if len(by[env]) != 1 || by[env][0].Status != st {
				return false, desc
			}
		}
		return true, desc
	})
	by, _ := describe()
	for env := range want {
		d := by[env][0]
		if d.SHA != w.source || d.Ref != "feature" || d.Username != "lotse-bot" {
			t.Errorf("deployment in %s = %+v, want sha %s, ref feature, by lotse-bot", env, d, w.source)
		}
	}
	envs, err := w.client("alice").Environments(context.Background(), appProject)
	must(t, err)
	tiers := map[string]string{}
	for _, e := range envs {
		tiers[e.Name] = e.Tier
	}
	if tiers["dev"] != "development" || tiers["staging"] != "staging" || tiers["production"] != "production" {
		t.Errorf("environment tiers = %v", tiers)
	}

	// ArgoCD: production is Degraded.
	body := fmt.Sprintf(`{"app":"shop","stage":"production","health":"Degraded","sync":"Synced","images":[%q],"message":"CrashLoopBackOff"}`, img)
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/argocd", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+argocdToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("ArgoCD notification: %s", resp.Status)
	}
	want["production"] = "failed"
	eventually(t, "the production deployment to fail", 15*time.Second, func() (bool, string) {
		by, desc := describe()
		return len(by["production"]) == 1 && by["production"][0].Status == "failed", desc
	})

	var figures []dora.Figures
	apiGet(t, base, "/api/v1/dora?app=shop&days=7", &figures)
	if len(figures) != 3 {
		t.Fatalf("dora = %+v", figures)
	}
	for i, stage := range []string{"dev", "staging", "production"} {
		f := figures[i]
		if f.App != "shop" || f.Stage != stage || f.Deployments != 1 || len(f.Samples) != 1 || f.Samples[0].Image != img ||
			f.LeadTimeFromMerge.Samples != 1 || f.LeadTimeFromFirstCommit.Samples != 1 {
			t.Errorf("dora %s = %+v", stage, f)
		}
	}
	if p := figures[2]; p.Failures != 1 || p.ChangeFailureRate != 1 || p.Samples[0].Failure != dora.FailDegraded || p.TimeToRestore.Samples != 0 {
		t.Errorf("dora production = %+v", p)
	}
	if d := figures[0]; d.Failures != 0 || d.ChangeFailureRate != 0 {
		t.Errorf("dora dev = %+v", d)
	}
}

// waitMR waits for the open MR of a stage, and has the GitOps project's
// pipeline succeed on its head (approval stages require it).
func waitMR(t *testing.T, w *world, stage string) (mr struct{ IID int64 }) {
	t.Helper()
	var sha string
	// A liveness bound, not a speed target: with injected 429s (each with
	// Retry-After: 1) and 502s, on a busy CI machine, the staging MR's merge
	// and the production MR's opening took over 30 s once.
	eventually(t, "the "+stage+" MR", 90*time.Second, func() (bool, string) {
		m, ok := w.openMR(stage)
		mr.IID, sha = m.IID, m.SHA
		return ok, w.describeStatuses()
	})
	w.greenPipeline("lotse/shop/"+stage, sha)
	return mr
}

// greenPipeline records a successful push pipeline for sha.
func (w *world) greenPipeline(ref, sha string) {
	_, err := w.sim.CreatePipeline(gitopsProject, gitlabsim.PipelineSpec{Ref: ref, SHA: sha, Status: "success", Source: "push", Name: "guardrails"})
	must(w.t, err)
}

func stickyComment(t *testing.T, w *world, iid int64) string {
	t.Helper()
	notes, err := w.client("alice").Notes(context.Background(), gitopsProject, iid)
	must(t, err)
	for _, n := range notes {
		if strings.HasPrefix(n.Body, "<!-- lotse") {
			return n.Body
		}
	}
	return ""
}

func countMarked(t *testing.T, w *world, project string, iid int64) int {
	t.Helper()
	notes, err := w.client("alice").Notes(context.Background(), project, iid)
	must(t, err)
	n := 0
	for _, note := range notes {
		if strings.HasPrefix(note.Body, "<!-- lotse") {
			n++
		}
	}
	return n
}
