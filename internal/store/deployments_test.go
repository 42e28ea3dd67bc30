package store

import (
	"testing"
	"time"
)

// A deployment is stored once per app, stage and key; later statuses add
// their first times and keep what was set; lists are oldest landing first.
func TestDeployments(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		d := Deployment{App: "shop", Stage: "production", Key: "c1", Image: "r/shop@sha256:1", SourceProject: "team/shop", SourceCommit: "abc",
			Status: "running", LandedAt: t0, Ref: "feature", SourceMR: 7, CommittedAt: t0.Add(-3 * time.Hour), MergedAt: t0.Add(-time.Hour), FirstCommitAt: t0.Add(-5 * time.Hour)}
		if err := db.RecordDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "production", Key: "c1", Image: d.Image, LandedAt: t0, Status: "success", RunningAt: t0.Add(time.Minute), GitLabID: 42}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "production", Key: "c1", Image: d.Image, LandedAt: t0, Status: "failed", FailedAt: t0.Add(time.Hour), Failure: "degraded", GitLabID: 43}); err != nil {
			t.Fatal(err)
		}
		// again, later: the first failure counts.
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "production", Key: "c1", Image: d.Image, LandedAt: t0, Status: "failed", FailedAt: t0.Add(2 * time.Hour), Failure: "rolled-back"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "production", Key: "c0", Image: "r/shop@sha256:0", LandedAt: t0.Add(-time.Hour), Status: "success", RunningAt: t0.Add(-time.Hour), Rollback: true}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "staging", Key: "c2", Image: "r/shop@sha256:2", LandedAt: t0, Status: "success"}); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordDeployment(ctx, Deployment{App: "shop", Stage: "staging", Key: "c3", Image: "r/shop@sha256:2"}); err == nil {
			t.Error("a deployment without a landing time was stored")
		}
		got, found, err := db.FindDeployment(ctx, "shop", "production", "c1")
		if err != nil || !found {
			t.Fatalf("FindDeployment: %v %v", found, err)
		}
		want := d
		want.Status, want.RunningAt, want.FailedAt, want.Failure, want.GitLabID = "failed", t0.Add(time.Minute), t0.Add(time.Hour), "degraded", 42
		if got != want {
			t.Errorf("deployment =\n%+v\nwant\n%+v", got, want)
		}
		if _, found, err := db.FindDeployment(ctx, "shop", "production", "nope"); err != nil || found {
			t.Errorf("FindDeployment of an unknown key: %v %v", found, err)
		}
		prod, err := db.Deployments(ctx, DeploymentFilter{App: "shop", Stage: "production"})
		if err != nil || len(prod) != 2 || prod[0].Key != "c0" || !prod[0].Rollback || prod[1].Key != "c1" {
			t.Errorf("production deployments = %+v, %v", prod, err)
		}
		recent, err := db.Deployments(ctx, DeploymentFilter{Since: t0})
		if err != nil || len(recent) != 2 {
			t.Errorf("deployments since t0 = %+v, %v", recent, err)
		}
	})
}
