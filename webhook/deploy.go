package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// deploymentsAPI records deployments and environments in the apps' source
// projects.
type deploymentsAPI interface {
	GetProject(ctx context.Context, project string) (gitlab.Project, error)
	UpsertEnvironment(ctx context.Context, project string, req gitlab.EnvironmentRequest) (gitlab.Environment, error)
	CreateDeployment(ctx context.Context, project string, req gitlab.DeploymentRequest) (gitlab.Deployment, error)
	UpdateDeployment(ctx context.Context, project string, id int64, status gitlab.DeploymentStatus) (gitlab.Deployment, error)
	Deployments(ctx context.Context, project string, q gitlab.DeploymentQuery) ([]gitlab.Deployment, error)
}

// deploymentLog keeps the deployments lotsed saw: the facts of the DORA
// figures, and the id of the GitLab deployment of each.
type deploymentLog interface {
	FindDeployment(ctx context.Context, app, stage, key string) (store.Deployment, bool, error)
	RecordDeployment(ctx context.Context, d store.Deployment) error
}

// deployKey identifies a deployment within its app and stage: the GitOps
// commit that landed it, else its image and landing time.
func deployKey(a promotion.Deploy) string {
	if a.Commit != "" {
		return a.Commit
	}
	return fmt.Sprintf("%s@%d", a.Image, a.LandedAt.UnixMicro())
}

// deploy records a Deploy action in the store, then mirrors it as a GitLab
// deployment of the source project. Both are idempotent: the store keeps
// the first times, and the GitLab deployment is created once (a claim; a
// retry looks in the environment's deployment list for the one an earlier
// attempt may have created), then only moved.
func (s *effects) deploy(ctx context.Context, app string, a promotion.Deploy) error {
	if s.deployLog == nil || s.deploys == nil {
		return &permanentError{errors.New("lotsed is wired without its deployment log or GitLab deployments API")}
	}
	key := deployKey(a)
	rec, found, err := s.deployLog.FindDeployment(ctx, app, a.Stage, key)
	if err != nil {
		return err
	}
	if !found {
		landed := a.LandedAt
		if landed.IsZero() {
			landed = a.At
		}
		rec = store.Deployment{App: app, Stage: a.Stage, Key: key, Image: a.Image, SourceProject: a.SourceProject,
			SourceCommit: a.SourceCommit, Rollback: a.Rollback, LandedAt: landed}
		s.sourceFacts(ctx, &rec)
	}
	rec.Status = a.Status
	switch a.Status {
	case promotion.StatusSuccess:
		rec.RunningAt = a.At
	case promotion.StatusFailed:
		rec.FailedAt, rec.Failure = a.At, a.Cause
	case promotion.StatusCanceled:
		rec.CanceledAt = a.At
	}
	if err := s.deployLog.RecordDeployment(ctx, rec); err != nil {
		return err
	}
	if a.SourceProject == "" || a.SourceCommit == "" {
		return nil // nothing to deploy in GitLab
	}
	err = s.mirror(ctx, app, a, rec)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gitlab.ErrNotFound), errors.Is(err, gitlab.ErrUnauthorized), errors.Is(err, gitlab.ErrInvalid):
		// The source project is gone, lotse's user is no Developer there,
		// or GitLab refused the deployment: the promotion goes on, the
		// DORA facts are recorded; the GitLab deployment is a mirror.
		s.log.Warn("GitLab deployment not recorded", "app", app, "stage", a.Stage, "project", a.SourceProject, "status", a.Status, "err", err)
		return nil
	}
	return err
}

// sourceFacts reads what lead time needs and the GitLab deployment's ref:
// the merged MR that brought the source commit (its merge, its first
// commit, its source branch unless it lives in a fork) and the commit's
// time. What cannot be read stays unknown.
func (s *effects) sourceFacts(ctx context.Context, rec *store.Deployment) {
	if rec.SourceProject == "" || rec.SourceCommit == "" {
		return
	}
	if c, err := s.contents.GetCommit(ctx, rec.SourceProject, rec.SourceCommit); err == nil {
		rec.CommittedAt = c.CommittedAt
	}
	mrs, err := s.sources.MRsForCommit(ctx, rec.SourceProject, rec.SourceCommit)
	if err != nil {
		return
	}
	i := slices.IndexFunc(mrs, func(m gitlab.MR) bool { return m.State == "merged" && !m.MergedAt.IsZero() })
	if i < 0 {
		return
	}
	mr := mrs[i]
	rec.SourceMR, rec.MergedAt = mr.IID, mr.MergedAt
	if !mr.FromFork() {
		rec.Ref = mr.SourceBranch
	}
	commits, err := s.contents.MRCommits(ctx, rec.SourceProject, mr.IID)
	if err != nil {
		return
	}
	for _, c := range commits {
		if t := c.AuthoredAt; !t.IsZero() && (rec.FirstCommitAt.IsZero() || t.Before(rec.FirstCommitAt)) {
			rec.FirstCommitAt = t
		}
	}
}

// mirror creates the GitLab deployment of rec, or moves it to a's status.
func (s *effects) mirror(ctx context.Context, app string, a promotion.Deploy, rec store.Deployment) error {
	project, status := a.SourceProject, gitlab.DeploymentStatus(a.Status)
	if rec.GitLabID != 0 {
		_, err := s.deploys.UpdateDeployment(ctx, project, rec.GitLabID, status)
		return err
	}
	claim := "deploy:" + digestOf(app, a.Stage, rec.Key)
	first, err := s.claims.Once(ctx, claim)
	if err != nil {
		return err
	}
	if !first {
		// An earlier attempt may have created it (its answer lost, or it
		// stopped before recording the id): adopt it rather than make a
		// second one.
		ds, err := s.deploys.Deployments(ctx, project, gitlab.DeploymentQuery{Environment: a.Stage, OrderBy: "id", Desc: true, Limit: 20})
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(ds, func(d gitlab.Deployment) bool { return d.SHA == a.SourceCommit }); i >= 0 {
			if err := s.rememberDeployment(ctx, rec, ds[i].ID); err != nil {
				return err
			}
			if ds[i].Status != status {
				_, err = s.deploys.UpdateDeployment(ctx, project, ds[i].ID, status)
			}
			return err
		}
	}
	// The claim stays when creating fails: GitLab may have created it
	// all the same (a lost answer), and the retry looks for it first.
	id, err := s.createDeployment(ctx, a, rec.Ref, status)
	if err != nil {
		return err
	}
	return s.rememberDeployment(ctx, rec, id)
}

func (s *effects) createDeployment(ctx context.Context, a promotion.Deploy, ref string, status gitlab.DeploymentStatus) (int64, error) {
	project := a.SourceProject
	if _, err := s.deploys.UpsertEnvironment(ctx, project, gitlab.EnvironmentRequest{Name: a.Stage, ExternalURL: a.URL, Tier: a.Tier}); err != nil {
		return 0, fmt.Errorf("environment %s: %w", a.Stage, err)
	}
	defaultRef := func() (string, error) {
		p, err := s.deploys.GetProject(ctx, project)
		if err != nil {
			return "", err
		}
		if p.DefaultBranch == "" {
			return "", fmt.Errorf("project %s has no default branch: %w", project, gitlab.ErrInvalid)
		}
		return p.DefaultBranch, nil
	}
	fromMR := ref != ""
	if !fromMR {
		var err error
		if ref, err = defaultRef(); err != nil {
			return 0, err
		}
	}
	req := gitlab.DeploymentRequest{Environment: a.Stage, SHA: a.SourceCommit, Ref: ref, Status: status}
	d, err := s.deploys.CreateDeployment(ctx, project, req)
	if fromMR && errors.Is(err, gitlab.ErrInvalid) {
		// The MR's source branch was deleted when it merged: name the
		// default branch, where the commit now lives.
		if req.Ref, err = defaultRef(); err != nil {
			return 0, err
		}
		d, err = s.deploys.CreateDeployment(ctx, project, req)
	}
	if err != nil {
		return 0, err
	}
	return d.ID, nil
}

func (s *effects) rememberDeployment(ctx context.Context, rec store.Deployment, id int64) error {
	rec.GitLabID = id
	return s.deployLog.RecordDeployment(ctx, rec)
}
