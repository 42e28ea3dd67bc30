package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// StageView is one cell of the board: what runs in a stage, per Git, and
// the promotion into it that is under way, per lotsed.
type StageView struct {
	Stage         string    `json:"stage"`
	Image         string    `json:"image,omitempty"`
	Since         time.Time `json:"since,omitempty"`
	SourceProject string    `json:"source_project,omitempty"`
	SourceCommit  string    `json:"source_commit,omitempty"`
	Promotion     string    `json:"promotion,omitempty"` // e.g. "awaiting-approval: sha256:ab12… (!7)"
	// Phase, Reason, Gates, Approvals and MRURL detail the promotion under
	// way for the board.
	Phase     promotion.Phase `json:"phase,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Gates     []GateBadge     `json:"gates,omitempty"`
	Approvals string          `json:"approvals,omitempty"` // "1 of 2"
	MRURL     string          `json:"mr_url,omitempty"`
	// OutOfBand is a change of the stage not made by lotse or its writers,
	// e.g. "commit 1a2b3c4d by @mallory: pushed by @mallory, who is neither
	// lotse nor one of its writers".
	OutOfBand string `json:"out_of_band,omitempty"`
	// Sync is where the version is in a stage ArgoCD syncs by hand:
	// waiting-for-sync, running or degraded.
	Sync string `json:"sync,omitempty"`
}

// AppView is one row of the board.
type AppView struct {
	App    string      `json:"app"`
	Stages []StageView `json:"stages"`
	// UpdatedAt is the time of the latest change lotsed recorded for the
	// app: how fresh the row is.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// viewStore is what the read models read of the store.
type viewStore interface {
	LoadState(ctx context.Context, app string) (data []byte, version int64, err error)
	AuditLog(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error)
	Deployments(ctx context.Context, f store.DeploymentFilter) ([]store.Deployment, error)
}

// views are the read models of the API and the board.
type views struct {
	config    *configSource
	store     viewStore
	now       func() time.Time
	gitlabURL string        // GitLab's web URL, for links to MRs
	project   string        // the GitOps project
	fixWindow time.Duration // DORA: a deployment followed by the next within it failed
}

// mrURL links a merge request of the GitOps project; empty without a
// GitLab URL.
func (s *views) mrURL(iid int) string {
	if s.gitlabURL == "" || s.project == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/-/merge_requests/%d", strings.TrimRight(strings.TrimSuffix(strings.TrimRight(s.gitlabURL, "/"), "/api/v4"), "/"), s.project, iid)
}

// Status is GET /api/v1/status: apps × stages, from lotsed's own records
// (kept current by the webhooks and each tick's reconciliation): no GitLab
// call per request. A stage shows what lotsed saw land there.
func (s *views) Status(ctx context.Context) (any, error) {
	snap, err := s.config.current(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AppView, 0, len(snap.config.Apps))
	for _, app := range snap.apps() {
		pol, _ := snap.policy(app)
		var state promotion.State
		if data, _, err := s.store.LoadState(ctx, app); err != nil {
			return nil, err
		} else if len(data) > 0 {
			var r record
			if err := json.Unmarshal(data, &r); err != nil {
				return nil, fmt.Errorf("stored state of %s: %w", app, err)
			}
			state = r.State
		}
		av := AppView{App: app, Stages: []StageView{}}
		for _, sp := range pol.Stages {
			v := StageView{Stage: sp.Name}
			st := state.Stage(sp.Name)
			if st != nil && st.Current != nil {
				d := st.Current
				v.Image, v.Since, v.SourceProject, v.SourceCommit, v.Sync = d.Image, d.LandedAt, d.SourceProject, d.SourceCommit, d.Sync
				av.UpdatedAt = later(av.UpdatedAt, d.LandedAt)
				if d.Health != nil {
					av.UpdatedAt = later(av.UpdatedAt, d.Health.At)
				}
			}
			v.Promotion = describe(st)
			if st != nil && st.Promotion != nil {
				pr := st.Promotion
				av.UpdatedAt = later(av.UpdatedAt, pr.UpdatedAt)
				v.Phase, v.Reason, v.Gates = pr.Phase, pr.Reason, badges(pr.Gates)
				if pr.MR != nil {
					v.MRURL = s.mrURL(pr.MR.IID)
				}
				if sp.Mode == promotion.ModeApproval && !pr.Phase.IsTerminal() && pr.Phase != promotion.PhaseMerged {
					v.Approvals = fmt.Sprintf("%d of %d", len(promotion.ValidApprovers(pol, state, sp.Name)), sp.Approvals)
				}
			}
			if st != nil && st.OutOfBand != nil {
				o := st.OutOfBand
				v.OutOfBand = fmt.Sprintf("commit %.8s by %s: %s", o.Commit, o.Pusher, o.Reason)
				av.UpdatedAt = later(av.UpdatedAt, o.At)
			}
			av.Stages = append(av.Stages, v)
		}
		out = append(out, av)
	}
	return out, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// describe summarises the promotion under way into a stage.
func describe(st *promotion.StageState) string {
	if st == nil || st.Promotion == nil {
		return ""
	}
	p := st.Promotion
	s := string(p.Phase)
	if p.Image != "" {
		s += ": " + shortImage(p.Image)
	}
	if p.MR != nil && p.MR.IID > 0 {
		s += fmt.Sprintf(" (!%d)", p.MR.IID)
	}
	return s
}

func shortImage(img string) string {
	if i := strings.Index(img, "@sha256:"); i >= 0 && len(img) >= i+20 {
		return img[i+1 : i+20]
	}
	return img
}

// Audit is GET /api/v1/audit.
func (s *views) Audit(ctx context.Context, f audit.Filter) (any, error) {
	recs, err := s.store.AuditLog(ctx, f)
	if recs == nil && err == nil {
		recs = []audit.Record{}
	}
	return recs, err
}

// DORA is GET /api/v1/dora: the figures of every app (or just app) and
// stage, in lotse.yaml's order, over the deployments since since
// (internal/dora has the definitions).
func (s *views) DORA(ctx context.Context, app string, since time.Time) (any, error) {
	snap, err := s.config.current(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := []dora.Figures{}
	found := false
	for _, a := range snap.config.Apps {
		if app != "" && a.Name != app {
			continue
		}
		found = true
		stages, err := snap.config.StagesFor(a.Name)
		if err != nil {
			continue
		}
		for _, st := range stages {
			recs, err := s.store.Deployments(ctx, store.DeploymentFilter{App: a.Name, Stage: st.Name})
			if err != nil {
				return nil, err
			}
			ds := make([]dora.Deployment, len(recs))
			for i, r := range recs {
				ds[i] = dora.Deployment{Image: r.Image, SourceCommit: r.SourceCommit, Rollback: r.Rollback, LandedAt: r.LandedAt,
					RunningAt: r.RunningAt, FailedAt: r.FailedAt, Failure: r.Failure, MergedAt: r.MergedAt, FirstCommitAt: r.FirstCommitAt}
			}
			f := dora.Compute(ds, dora.Options{Since: since, Until: now, FixWindow: s.fixWindow})
			f.App, f.Stage = a.Name, st.Name
			out = append(out, f)
		}
	}
	if app != "" && !found {
		return nil, &badRequest{reason: "app " + app + " is not in lotse.yaml"}
	}
	return out, nil
}
