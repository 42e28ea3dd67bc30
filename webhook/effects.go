package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/vuln"
	"github.com/lotse/lotse/internal/writeback"
)

// perform carries out one action against GitLab, the registry or the store
// and returns what it learned as events. Every action is idempotent: after a
// crash it may be carried out again.
func (s *service) perform(ctx context.Context, app string, a promotion.Action) ([]promotion.Event, error) {
	switch a := a.(type) {
	case promotion.OpenMR:
		return s.openMR(ctx, app, a)
	case promotion.Rollback:
		return s.rollback(ctx, app, a)
	case promotion.MergeMR:
		return s.merge(ctx, app, a)
	case promotion.CheckGates:
		return s.checkGates(ctx, app, a), nil
	case promotion.SetStatus:
		return nil, s.setStatus(ctx, a)
	case promotion.UpsertComment:
		return nil, s.upsertComment(ctx, a)
	case promotion.Reply:
		return nil, s.reply(ctx, a)
	case promotion.Audit:
		return nil, s.audit(ctx, app, a)
	case nil:
		return nil, nil // an action of an older lotsed: nothing to do
	}
	return nil, fmt.Errorf("unknown action %T", a)
}

func (s *service) openMR(ctx context.Context, app string, a promotion.OpenMR) ([]promotion.Event, error) {
	w, err := s.config(ctx)
	if err != nil {
		return nil, err
	}
	img, err := gitops.ParseImageRef(a.Image)
	if err != nil {
		return nil, err
	}
	res, err := w.Bump(ctx, writeback.Bump{App: app, Stage: a.Stage, Image: img, SourceProject: a.SourceProject,
		SourceCommit: a.SourceCommit, Pipeline: s.cfg.PublicURL})
	if err != nil {
		return nil, err
	}
	if res.MR == nil {
		return nil, nil // a commit stage: the push hook reports the landing
	}
	return s.opened(ctx, a.Stage, a.Image, res.MR)
}

// opened reports an MR lotsed opened or reused, with the approvals it
// already has: webhooks of approvals given before lotsed recorded the MR
// (after a restart, or a slow worker) would otherwise be lost to the count.
func (s *service) opened(ctx context.Context, stage, image string, mr *gitlab.MR) ([]promotion.Event, error) {
	ev := []promotion.Event{promotion.MROpened{Stage: stage, IID: int(mr.IID), Author: mr.Author.Username, Image: image, SHA: mr.SHA}}
	approvers, err := s.gl.Approvals(ctx, s.cfg.GitOpsProject, mr.IID)
	if err != nil {
		return nil, err
	}
	for _, u := range approvers {
		ev = append(ev, promotion.MRApproved{Stage: stage, IID: int(mr.IID), User: u.Username})
	}
	return ev, nil
}

func (s *service) rollback(ctx context.Context, app string, a promotion.Rollback) ([]promotion.Event, error) {
	w, err := s.config(ctx)
	if err != nil {
		return nil, err
	}
	res, err := w.Rollback(ctx, writeback.Rollback{App: app, Stage: a.Stage, To: a.Image, Pipeline: s.cfg.PublicURL})
	if err != nil {
		return nil, err
	}
	if res.MR == nil {
		return nil, nil
	}
	return s.opened(ctx, a.Stage, a.Image, res.MR)
}

// merge asks GitLab to merge. Mergeability is computed asynchronously: while
// GitLab still checks, the answer is "not yet", and the state machine asks
// again on a later tick; an MR that is merged already is never merged again.
func (s *service) merge(ctx context.Context, app string, a promotion.MergeMR) ([]promotion.Event, error) {
	result := func(o promotion.MergeOutcome, reason string) []promotion.Event {
		return []promotion.Event{promotion.MergeResult{Stage: a.Stage, IID: a.IID, Attempt: a.Attempt, Outcome: o, Reason: reason}}
	}
	mr, err := s.gl.GetMR(ctx, s.cfg.GitOpsProject, int64(a.IID))
	if err != nil {
		return nil, err
	}
	switch mr.State {
	case "merged":
		return result(promotion.MergeAlreadyMerged, "merged already"), nil
	case "closed":
		return result(promotion.MergeNotMergeable, "the MR is closed"), nil
	}
	_, err = s.gl.MergeMR(ctx, s.cfg.GitOpsProject, int64(a.IID), gitlab.MergeOptions{SHA: mr.SHA})
	var ae *gitlab.APIError
	switch {
	case err == nil:
		return result(promotion.MergeDone, ""), nil
	case errors.Is(err, gitlab.ErrNotMergeable) && errors.As(err, &ae):
		switch ae.DetailedMergeStatus {
		case "checking", "unchecked", "ci_still_running", "preparing", "approvals_syncing":
			return result(promotion.MergeNotYet, "GitLab: "+ae.DetailedMergeStatus), nil
		case "merged":
			return result(promotion.MergeAlreadyMerged, "merged already"), nil
		}
		return result(promotion.MergeNotMergeable, "GitLab: "+ae.DetailedMergeStatus+": "+ae.Message), nil
	case errors.Is(err, gitlab.ErrConflict):
		return result(promotion.MergeNotYet, "the MR changed while merging"), nil
	}
	return nil, err
}

func (s *service) checkGates(ctx context.Context, app string, a promotion.CheckGates) []promotion.Event {
	ev := promotion.GatesChecked{Stage: a.Stage, Image: a.Image}
	if a.Signature {
		ok, reason := s.gates.signature(ctx, a.Image)
		ev.Signature = promotion.Result{Checked: true, OK: ok, Reason: reason}
	}
	if a.Scan {
		max := s.maxSeverity(ctx, app, a.Stage)
		sev, n, err := s.gates.scan(ctx, a.Image)
		switch {
		case err != nil:
			ev.Scan = promotion.Result{Checked: true, OK: false, Reason: err.Error()}
		case max != nil && n > 0 && sev >= *max:
			ev.Scan = promotion.Result{Checked: true, OK: false, Reason: fmt.Sprintf("scan attestation: %d finding(s), highest %s, at or above the stage's maximum %s", n, sev, *max)}
		default:
			ev.Scan = promotion.Result{Checked: true, OK: true, Reason: fmt.Sprintf("scan attestation: %d finding(s), none at or above the maximum", n)}
		}
	}
	return []promotion.Event{ev}
}

func (s *service) maxSeverity(ctx context.Context, app, stage string) *vuln.Severity {
	w, err := s.config(ctx)
	if err != nil {
		return nil
	}
	p, ok := s.policy(w.Config(), app)
	if !ok {
		return nil
	}
	for _, st := range p.Stages {
		if st.Name == stage {
			return st.MaxSeverity
		}
	}
	return nil
}

func (s *service) setStatus(ctx context.Context, a promotion.SetStatus) error {
	if a.SourceProject == "" || a.SourceCommit == "" {
		return nil
	}
	err := s.gl.SetCommitStatus(ctx, a.SourceProject, a.SourceCommit, gitlab.Status{
		State: gitlab.StatusState(a.State), Name: a.Name, Description: truncate(a.Description, 255), TargetURL: s.boardURL()})
	switch {
	case err == nil, errors.Is(err, gitlab.ErrSameStatus):
		return nil
	case errors.Is(err, gitlab.ErrNotFound), errors.Is(err, gitlab.ErrUnauthorized):
		// The source project is gone or lotse's user cannot see it: the
		// promotion goes on; the status is cosmetic.
		s.log.Warn("commit status not posted", "project", a.SourceProject, "commit", a.SourceCommit, "err", err)
		return nil
	}
	return err
}

func (s *service) boardURL() string {
	if s.cfg.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/board"
}

// upsertComment keeps one comment per MR: found by its hidden marker (the
// body's first line) and updated in place.
func (s *service) upsertComment(ctx context.Context, a promotion.UpsertComment) error {
	project, iid := s.cfg.GitOpsProject, int64(a.Target.IID)
	if a.Target.IID == 0 {
		if a.Target.SourceProject == "" || a.Target.SourceCommit == "" {
			return nil
		}
		mrs, err := s.gl.MRsForCommit(ctx, a.Target.SourceProject, a.Target.SourceCommit)
		if err != nil || len(mrs) == 0 {
			return nil // the change came without an MR: nowhere to comment
		}
		project, iid = a.Target.SourceProject, mrs[0].IID
	}
	marker, _, _ := strings.Cut(a.Body, "\n")
	// Replicas may upsert the same comment at once: the first to claim its
	// creation creates it, the others wait for it and update it.
	claim := "comment:" + digestOf(project, fmt.Sprint(iid), marker)
	for attempt := 0; ; attempt++ {
		notes, err := s.gl.Notes(ctx, project, iid)
		if err != nil {
			return err
		}
		for _, n := range notes {
			if n.Author.Username == s.bot && strings.HasPrefix(n.Body, marker) {
				if n.Body == a.Body {
					return nil
				}
				_, err := s.gl.UpdateNote(ctx, project, iid, n.ID, a.Body)
				return err
			}
		}
		first, err := s.db.Once(ctx, claim)
		if err != nil {
			return err
		}
		if first || attempt >= 20 {
			if _, err := s.gl.CreateNote(ctx, project, iid, a.Body); err != nil {
				_ = s.db.Forget(ctx, claim) // let the next attempt create it
				return err
			}
			return nil
		}
		select { // another worker is creating it
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *service) reply(ctx context.Context, a promotion.Reply) error {
	project := a.Project
	if project == "" {
		project = s.cfg.GitOpsProject
	}
	first, err := s.db.Once(ctx, "reply:"+digestOf(project, fmt.Sprint(a.IID), a.Body))
	if err != nil || !first {
		return err
	}
	_, err = s.gl.CreateNote(ctx, project, int64(a.IID), a.Body)
	return err
}

func (s *service) audit(ctx context.Context, app string, a promotion.Audit) error {
	if a.App == "" {
		a.App = app
	}
	first, err := s.db.Once(ctx, "audit:"+digestOf(a.App, a.Kind, a.Stage, a.Image, a.Actor, a.Detail, a.At.String()))
	if err != nil || !first {
		return err
	}
	if a.Kind == promotion.AuditLanded {
		s.server.metrics.landedIn(a.Stage)
	}
	return s.db.Audit(ctx, store.AuditRecord{At: a.At, App: a.App, Stage: a.Stage, Image: a.Image, Actor: a.Actor, Kind: a.Kind, Detail: a.Detail})
}

func digestOf(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
