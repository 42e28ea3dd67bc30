package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/writeback"
)

// mergeRequests are the GitOps project's MRs lotsed merges and counts.
type mergeRequests interface {
	GetMR(ctx context.Context, project string, iid int64) (gitlab.MR, error)
	MergeMR(ctx context.Context, project string, iid int64, opts gitlab.MergeOptions) (gitlab.MR, error)
	Approvals(ctx context.Context, project string, iid int64) ([]gitlab.User, error)
}

// noteWriter keeps lotsed's comments on MRs.
type noteWriter interface {
	Notes(ctx context.Context, project string, iid int64) ([]gitlab.Note, error)
	CreateNote(ctx context.Context, project string, iid int64, body string) (gitlab.Note, error)
	UpdateNote(ctx context.Context, project string, iid, noteID int64, body string) (gitlab.Note, error)
}

// statusWriter posts commit statuses on the apps' source commits.
type statusWriter interface {
	SetCommitStatus(ctx context.Context, project, sha string, st gitlab.Status) error
}

// sourceMRs finds the app MRs that contain a source commit.
type sourceMRs interface {
	MRsForCommit(ctx context.Context, project, sha string) ([]gitlab.MR, error)
}

// claims record effects that must happen once: the first to claim a key
// does the effect, and forgets the claim when it fails.
type claims interface {
	Once(ctx context.Context, key string) (first bool, err error)
	Forget(ctx context.Context, key string) error
}

// auditLog appends to the audit log.
type auditLog interface {
	Audit(ctx context.Context, r store.AuditRecord) error
}

// effects carry out the engine's actions against GitLab, the registry and
// the store. Every action is idempotent: after a crash it may be carried
// out again with one effect.
type effects struct {
	project   string // the GitOps project
	bot       string
	publicURL string
	mrs       mergeRequests
	notes     noteWriter
	statuses  statusWriter
	sources   sourceMRs
	claims    claims
	audit     auditLog
	gates     *gates
	metrics   *metrics
	log       *slog.Logger
}

// perform carries out one action and returns what it learned as events.
func (s *effects) perform(ctx context.Context, snap *snapshot, app string, a promotion.Action) ([]promotion.Event, error) {
	switch a := a.(type) {
	case promotion.OpenMR:
		return s.openMR(ctx, snap, app, a)
	case promotion.Rollback:
		return s.rollback(ctx, snap, app, a)
	case promotion.MergeMR:
		return s.merge(ctx, a)
	case promotion.CheckGates:
		return s.checkGates(ctx, snap, a), nil
	case promotion.SetStatus:
		return nil, s.setStatus(ctx, a)
	case promotion.UpsertComment:
		return nil, s.upsertComment(ctx, a)
	case promotion.Reply:
		return nil, s.reply(ctx, a)
	case promotion.Audit:
		return nil, s.record(ctx, app, a)
	}
	return nil, &permanentError{fmt.Errorf("%w: no effect for action %T", errUndecodable, a)}
}

func (s *effects) openMR(ctx context.Context, snap *snapshot, app string, a promotion.OpenMR) ([]promotion.Event, error) {
	img, err := gitops.ParseImageRef(a.Image)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("open-mr: %w", err)}
	}
	res, err := snap.writer.Bump(ctx, writeback.Bump{App: app, Stage: a.Stage, Image: img, SourceProject: a.SourceProject,
		SourceCommit: a.SourceCommit, Pipeline: s.publicURL})
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
func (s *effects) opened(ctx context.Context, stage, image string, mr *gitlab.MR) ([]promotion.Event, error) {
	ev := []promotion.Event{promotion.MROpened{Stage: stage, IID: int(mr.IID), Author: mr.Author.Username, Image: image, SHA: mr.SHA}}
	approvers, err := s.mrs.Approvals(ctx, s.project, mr.IID)
	if err != nil {
		return nil, err
	}
	for _, u := range approvers {
		ev = append(ev, promotion.MRApproved{Stage: stage, IID: int(mr.IID), User: u.Username})
	}
	return ev, nil
}

func (s *effects) rollback(ctx context.Context, snap *snapshot, app string, a promotion.Rollback) ([]promotion.Event, error) {
	res, err := snap.writer.Rollback(ctx, writeback.Rollback{App: app, Stage: a.Stage, To: a.Image, Pipeline: s.publicURL})
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
func (s *effects) merge(ctx context.Context, a promotion.MergeMR) ([]promotion.Event, error) {
	result := func(o promotion.MergeOutcome, reason string) []promotion.Event {
		return []promotion.Event{promotion.MergeResult{Stage: a.Stage, IID: a.IID, Attempt: a.Attempt, Outcome: o, Reason: reason}}
	}
	mr, err := s.mrs.GetMR(ctx, s.project, int64(a.IID))
	if err != nil {
		return nil, err
	}
	switch mr.State {
	case "merged":
		return result(promotion.MergeAlreadyMerged, "merged already"), nil
	case "closed":
		return result(promotion.MergeNotMergeable, "the MR is closed"), nil
	}
	_, err = s.mrs.MergeMR(ctx, s.project, int64(a.IID), gitlab.MergeOptions{SHA: mr.SHA})
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

func (s *effects) checkGates(ctx context.Context, snap *snapshot, a promotion.CheckGates) []promotion.Event {
	ev := promotion.GatesChecked{Stage: a.Stage, Image: a.Image}
	if a.Signature {
		ev.Signature = s.gates.signature(ctx, snap.keys, a.Image)
	}
	if a.Scan {
		ev.Scan = s.gates.scan(ctx, snap.keys, a.Image)
	}
	return []promotion.Event{ev}
}

func (s *effects) setStatus(ctx context.Context, a promotion.SetStatus) error {
	if a.SourceProject == "" || a.SourceCommit == "" {
		return nil
	}
	err := s.statuses.SetCommitStatus(ctx, a.SourceProject, a.SourceCommit, gitlab.Status{
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

func (s *effects) boardURL() string {
	if s.publicURL == "" {
		return ""
	}
	return strings.TrimRight(s.publicURL, "/") + "/board"
}

// upsertComment keeps one comment per MR: found by its hidden marker (the
// body's first line) and updated in place.
func (s *effects) upsertComment(ctx context.Context, a promotion.UpsertComment) error {
	project, iid := s.project, int64(a.Target.IID)
	if a.Target.IID == 0 {
		if a.Target.SourceProject == "" || a.Target.SourceCommit == "" {
			return nil
		}
		mrs, err := s.sources.MRsForCommit(ctx, a.Target.SourceProject, a.Target.SourceCommit)
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
		notes, err := s.notes.Notes(ctx, project, iid)
		if err != nil {
			return err
		}
		for _, n := range notes {
			if n.Author.Username == s.bot && strings.HasPrefix(n.Body, marker) {
				if n.Body == a.Body {
					return nil
				}
				_, err := s.notes.UpdateNote(ctx, project, iid, n.ID, a.Body)
				return err
			}
		}
		first, err := s.claims.Once(ctx, claim)
		if err != nil {
			return err
		}
		if first || attempt >= 20 {
			if _, err := s.notes.CreateNote(ctx, project, iid, a.Body); err != nil {
				_ = s.claims.Forget(ctx, claim) // let the next attempt create it
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

func (s *effects) reply(ctx context.Context, a promotion.Reply) error {
	project := a.Project
	if project == "" {
		project = s.project
	}
	first, err := s.claims.Once(ctx, "reply:"+digestOf(project, fmt.Sprint(a.IID), a.Body))
	if err != nil || !first {
		return err
	}
	if _, err = s.notes.CreateNote(ctx, project, int64(a.IID), a.Body); err != nil {
		_ = s.claims.Forget(ctx, "reply:"+digestOf(project, fmt.Sprint(a.IID), a.Body)) // let the retry answer
	}
	return err
}

func (s *effects) record(ctx context.Context, app string, a promotion.Audit) error {
	if a.App == "" {
		a.App = app
	}
	claim := "audit:" + digestOf(a.App, a.Kind, a.Stage, a.Image, a.Actor, a.Detail, a.At.String())
	first, err := s.claims.Once(ctx, claim)
	if err != nil || !first {
		return err
	}
	if a.Kind == promotion.AuditLanded {
		s.metrics.landedIn(a.Stage)
	}
	err = s.audit.Audit(ctx, store.AuditRecord{At: a.At, App: a.App, Stage: a.Stage, Image: a.Image, Actor: a.Actor, Kind: a.Kind, Detail: a.Detail})
	if err != nil {
		_ = s.claims.Forget(ctx, claim) // the retry writes it
	}
	return err
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
