package promotion

import "time"

// Deploy asks the service to record a deployment of a version in a stage
// (the facts DORA is computed from) and to mirror it as a GitLab deployment
// in the app's source project: environment Stage (tier Tier, external URL
// URL), sha SourceCommit. The first Deploy of a deployment creates it, later
// ones move its status. Stage and Commit identify the deployment (Stage,
// Image and LandedAt when there is no commit).
type Deploy struct {
	Stage         string
	Tier          string // production, staging, testing, development or other
	URL           string // the environment's external URL; empty: none
	Image         string
	SourceProject string
	SourceCommit  string
	Commit        string    // the GitOps commit that landed it
	LandedAt      time.Time // when it landed
	Rollback      bool      // it puts an earlier version back
	// Status is StatusRunning (landed, not running yet), StatusSuccess
	// (it runs), StatusFailed or StatusCanceled.
	Status string
	Cause  string    // why it failed or was canceled: one of the Cause* values; empty otherwise
	Detail string    // what happened, for people
	At     time.Time // when the deployment reached Status
}

// Why a deployment failed or was canceled.
const (
	// CauseDegraded: ArgoCD reported the version Degraded.
	CauseDegraded = "degraded"
	// CauseRolledBack: a rollback put an earlier version back.
	CauseRolledBack = "rolled-back"
	// CauseSuperseded: a newer version landed before this one ran.
	CauseSuperseded = "superseded"
)

// tier is the GitLab environment tier of stage ti: lotse.yaml's, else the
// last stage is production, the first development and any other staging.
func (p Policy) tier(ti int) string {
	if t := p.Stages[ti].Tier; t != "" {
		return t
	}
	switch {
	case ti == len(p.Stages)-1:
		return "production"
	case ti == 0:
		return "development"
	}
	return "staging"
}

// deploy moves the deployment d of the stage to status, once: a canceled
// deployment stays canceled, and running only starts one (GitLab moves a
// deployment to running only from created).
func (en *engine) deploy(stage string, d *Deployment, status, cause, detail string, at time.Time) {
	if d.Deploy == status || d.Deploy == StatusCanceled || (status == StatusRunning && d.Deploy != "") {
		return
	}
	d.Deploy = status
	en.changed = true
	ti := en.p.stageIndex(stage)
	en.emit(Deploy{Stage: stage, Tier: en.p.tier(ti), URL: en.p.Stages[ti].URL, Image: d.Image,
		SourceProject: d.SourceProject, SourceCommit: d.SourceCommit, Commit: d.Commit, LandedAt: d.LandedAt,
		Rollback: d.Rollback, Status: status, Cause: cause, Detail: oneLine(detail, 200), At: at})
}

// deployed starts the deployment of a version that just landed: running
// while it waits for ArgoCD's manual sync, success at once elsewhere.
func (en *engine) deployed(stage string, d *Deployment, rollback bool) {
	d.Rollback = rollback
	if d.Sync == SyncWaiting {
		en.deploy(stage, d, StatusRunning, "", "merged; waiting for ArgoCD to sync "+stage, d.LandedAt)
		return
	}
	en.deploy(stage, d, StatusSuccess, "", "running in "+stage, d.LandedAt)
}

// replaced ends the deployment prev that next just replaced: a rollback
// fails it; a version that never ran is canceled; one that ran stays as
// it is (it was the environment's deployment until now).
func (en *engine) replaced(stage string, prev *Deployment, next Deployment, rollback bool) {
	if prev.Deploy == "" {
		return // landed before lotse recorded deployments
	}
	switch {
	case rollback:
		en.deploy(stage, prev, StatusFailed, CauseRolledBack, "rolled back to "+next.Image, next.LandedAt)
	case prev.Deploy == StatusRunning:
		en.deploy(stage, prev, StatusCanceled, CauseSuperseded, "superseded by "+next.Image+" before it ran", next.LandedAt)
	}
}

// deployHealth follows ArgoCD's reports about the current version: it runs
// (a manual-sync stage synced it, or any stage reports it healthy again
// after it degraded) or it is degraded.
func (en *engine) deployHealth(e Health, d *Deployment, at time.Time) {
	if d.Deploy == "" {
		return
	}
	switch {
	case d.Sync == SyncRunning || (d.Sync == "" && e.Healthy):
		en.deploy(e.Stage, d, StatusSuccess, "", "running in "+e.Stage, at)
	case d.Sync == SyncDegraded || (d.Sync == "" && e.Degraded):
		en.deploy(e.Stage, d, StatusFailed, CauseDegraded, "degraded in "+e.Stage+reasonSuffix(e.Reason), at)
	}
}
