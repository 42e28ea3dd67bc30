package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/audit"
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
	Landings(ctx context.Context, f store.LandingFilter) ([]store.Landing, error)
}

// views are the read models of the API and the board.
type views struct {
	config    *configSource
	store     viewStore
	now       func() time.Time
	gitlabURL string // GitLab's web URL, for links to MRs
	project   string // the GitOps project
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

// DORAFigures are the four DORA metrics of the last stage (production).
type DORAFigures struct {
	Stage           string  `json:"stage"`
	Since           string  `json:"since"`
	Deployments     int     `json:"deployments"`
	PerDay          float64 `json:"deployments_per_day"`
	LeadTimeHours   float64 `json:"lead_time_median_hours"`
	ChangeFailure   float64 `json:"change_failure_rate"`
	RestoreHours    float64 `json:"time_to_restore_median_hours"`
	LeadTimeSamples int     `json:"lead_time_samples"`
}

// DORA is GET /api/v1/dora: figures per app for the last stage, from the
// recorded landings.
func (s *views) DORA(ctx context.Context, since time.Time) (any, error) {
	snap, err := s.config.current(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]DORAFigures{}
	now := s.now()
	for _, a := range snap.config.Apps {
		stages, err := snap.config.StagesFor(a.Name)
		if err != nil || len(stages) == 0 {
			continue
		}
		last := stages[len(stages)-1].Name
		ls, err := s.store.Landings(ctx, store.LandingFilter{App: a.Name, Stage: last})
		if err != nil {
			return nil, err
		}
		out[a.Name] = dora(ls, last, since, now)
	}
	return out, nil
}

// dora computes the figures from a stage's landings, oldest first.
func dora(ls []store.Landing, stage string, since, now time.Time) DORAFigures {
	f := DORAFigures{Stage: stage, Since: since.UTC().Format(time.RFC3339)}
	var lead, restore []float64
	failures := 0
	for i, l := range ls {
		if l.LandedAt.Before(since) {
			continue
		}
		f.Deployments++
		if !l.CommittedAt.IsZero() && !l.Rollback {
			lead = append(lead, l.LandedAt.Sub(l.CommittedAt).Hours())
		}
		if l.Rollback {
			failures++
			if i > 0 {
				restore = append(restore, l.LandedAt.Sub(ls[i-1].LandedAt).Hours())
			}
		}
	}
	if days := now.Sub(since).Hours() / 24; days > 0 {
		f.PerDay = float64(f.Deployments) / days
	}
	if n := f.Deployments - failures; n > 0 {
		f.ChangeFailure = float64(failures) / float64(n)
	}
	f.LeadTimeHours, f.LeadTimeSamples = median(lead), len(lead)
	f.RestoreHours = median(restore)
	return f
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}
