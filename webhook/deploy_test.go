package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/trust"
)

// withStage rewrites the world's lotse.yaml stage line old to new.
func (w *testWorld) withStage(old, new string) {
	w.t.Helper()
	y := strings.Replace(worldYAML, old, new, 1)
	if y == worldYAML {
		w.t.Fatalf("worldYAML has no %q", old)
	}
	cfg, err := gitops.ParseConfig([]byte(y), "lotse.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	w.writer.cfg = cfg
	w.snap = snapshotOf(cfg, w.writer, gateKeys{signer: trust.Signer{Key: "/keys/k1.pub"}})
}

func (w *testWorld) wantOutboxEmpty() {
	w.t.Helper()
	if out := w.outboxTypes(); len(out) != 0 {
		w.t.Fatalf("outbox = %v", out)
	}
}

// Each landing is a GitLab deployment in the app's source project
// (environment = stage, tier by position, ref = the source MR's branch,
// sha = the source commit) and a record with the lead-time facts; a
// degraded report fails it.
func TestDeployMirrorsLandings(t *testing.T) {
	w := newTestWorld(t)
	w.gl.branches = []string{"feature-shop"}
	first := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	w.gl.commits[7] = []gitlab.Commit{{SHA: "b", AuthoredAt: first.Add(time.Hour)}, {SHA: "a", AuthoredAt: first}}
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	ds := w.gl.deploymentsOf("team/shop")
	if len(ds) != 1 || ds[0].Environment != "dev" || ds[0].Ref != "feature-shop" || ds[0].SHA != "src-1111" || ds[0].Status != gitlab.DeploymentSuccess {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	if e, ok := w.gl.environment("team/shop", "dev"); !ok || e.Tier != "development" || e.ExternalURL != "" {
		t.Fatalf("environment = %+v %v", e, ok)
	}
	recs := w.records.deployments()
	if len(recs) != 1 {
		t.Fatalf("records = %+v", recs)
	}
	r := recs[0]
	if r.App != "shop" || r.Stage != "dev" || r.Key != "c1" || r.Status != "success" || !r.RunningAt.Equal(w.now) || !r.LandedAt.Equal(w.now) ||
		r.SourceMR != 7 || !r.MergedAt.Equal(sourceMergedAt) || !r.FirstCommitAt.Equal(first) || r.CommittedAt.IsZero() || r.Ref != "feature-shop" || r.GitLabID != ds[0].ID {
		t.Fatalf("record = %+v", r)
	}
	w.now = w.now.Add(time.Hour)
	if err := w.apply(landedIn("dev", img2, "c2")); err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(time.Hour)
	if err := w.apply(promotion.Health{Stage: "dev", Degraded: true, Reason: "CrashLoopBackOff", Revision: "c2"}); err != nil {
		t.Fatal(err)
	}
	ds = w.gl.deploymentsOf("team/shop")
	if len(ds) != 2 || ds[0].Status != gitlab.DeploymentSuccess || ds[1].SHA != "src-2222" || ds[1].Status != gitlab.DeploymentFailed {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	recs = w.records.deployments()
	if len(recs) != 2 || recs[1].Failure != promotion.CauseDegraded || !recs[1].FailedAt.Equal(w.now) || recs[1].Status != "failed" {
		t.Fatalf("records = %+v", recs)
	}
	if n := w.gl.count("create-deployment"); n != 2 {
		t.Fatalf("create-deployment calls = %d", n)
	}
	w.wantOutboxEmpty()
}

// A manual-sync stage: running until ArgoCD reports it synced and healthy;
// a version superseded before it ran is canceled. lotse.yaml's tier and
// URL name the environment; the MR's deleted branch gives way to the
// default branch.
func TestDeployManualSync(t *testing.T) {
	w := newTestWorld(t)
	w.withStage("  - {name: dev, promotion: commit}", `  - {name: dev, promotion: commit, sync: manual, tier: testing, url: "https://{app}.dev.example.com"}`)
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	ds := w.gl.deploymentsOf("team/shop")
	if len(ds) != 1 || ds[0].Status != gitlab.DeploymentRunning || ds[0].Ref != "main" {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	if e, _ := w.gl.environment("team/shop", "dev"); e.Tier != "testing" || e.ExternalURL != "https://shop.dev.example.com" {
		t.Fatalf("environment = %+v", e)
	}
	synced := w.now.Add(10 * time.Minute)
	w.now = synced
	if err := w.apply(promotion.Health{Stage: "dev", Healthy: true, Revision: "c1"}); err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(time.Hour)
	if err := w.apply(landedIn("dev", img2, "c2")); err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(time.Minute)
	if err := w.apply(landedIn("dev", img3(), "c3")); err != nil {
		t.Fatal(err)
	}
	ds = w.gl.deploymentsOf("team/shop")
	want := []gitlab.DeploymentStatus{gitlab.DeploymentSuccess, gitlab.DeploymentCanceled, gitlab.DeploymentRunning}
	if len(ds) != len(want) {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	for i, d := range ds {
		if d.Status != want[i] || d.Environment != "dev" {
			t.Fatalf("deployment %d = %+v, want %s", i, d, want[i])
		}
	}
	recs := w.records.deployments()
	if !recs[0].RunningAt.Equal(synced) || !recs[1].RunningAt.IsZero() || recs[1].CanceledAt.IsZero() || recs[2].Status != "running" {
		t.Fatalf("records = %+v", recs)
	}
	w.wantOutboxEmpty()
}

func img3() string {
	return "harbor.example.com/team/shop@sha256:3333333333333333333333333333333333333333333333333333333333333333"
}

// GitLab created the deployment but the answer was lost: the retry finds
// it in the list instead of creating a second one; GitLab down: the Deploy
// waits at the head of the outbox and is carried out once.
func TestDeployRetriesMakeOneDeployment(t *testing.T) {
	w := newTestWorld(t)
	w.gl.branches = []string{"feature-shop"}
	w.gl.lost["create-deployment"] = 1
	if err := w.apply(landedIn("dev", img1, "c1")); !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("apply = %v, want the lost answer's error", err)
	}
	if out := w.outboxTypes(); len(out) == 0 || out[0] != "deploy" {
		t.Fatalf("outbox = %v, want the deploy at its head", out)
	}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	ds := w.gl.deploymentsOf("team/shop")
	if len(ds) != 1 || ds[0].Status != gitlab.DeploymentSuccess {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	if recs := w.records.deployments(); len(recs) != 1 || recs[0].GitLabID != ds[0].ID {
		t.Fatalf("records = %+v", recs)
	}
	if n := w.gl.count("create-deployment"); n != 1 {
		t.Fatalf("create-deployment calls = %d, want 1 (the retry adopts it)", n)
	}

	w.gl.failNext("create-deployment", 2)
	w.now = w.now.Add(time.Hour)
	if err := w.apply(landedIn("dev", img2, "c2")); !errors.Is(err, gitlab.ErrUnavailable) {
		t.Fatalf("apply = %v", err)
	}
	_ = w.apply(promotion.Tick{})
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if ds := w.gl.deploymentsOf("team/shop"); len(ds) != 2 {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	w.wantOutboxEmpty()
}

// A source project lotse cannot see: the DORA facts are recorded, the
// promotion goes on, no GitLab deployment.
func TestDeploySourceProjectGone(t *testing.T) {
	w := newTestWorld(t)
	w.gl.gone["team/shop"] = true
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	if ds := w.gl.deploymentsOf("team/shop"); len(ds) != 0 {
		t.Fatalf("GitLab deployments = %+v", ds)
	}
	if recs := w.records.deployments(); len(recs) != 1 || recs[0].GitLabID != 0 || recs[0].Status != "success" {
		t.Fatalf("records = %+v", recs)
	}
	w.wantOutboxEmpty()
}
