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
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// mergeRequests are the GitOps project's MRs lotsed opens, closes, merges
// and counts.
type mergeRequests interface {
	GetMR(ctx context.Context, project string, iid int64) (gitlab.MR, error)
	OpenMRs(ctx context.Context, project, sourceBranch string) ([]gitlab.MR, error)
	UpdateMR(ctx context.Context, project string, iid int64, req gitlab.UpdateMRRequest) (gitlab.MR, error)
	MergeMR(ctx context.Context, project string, iid int64, opts gitlab.MergeOptions) (gitlab.MR, error)
	Approvals(ctx context.Context, project string, iid int64) ([]gitlab.User, error)
}

// mrContents are what an MR would merge: its commits, its diff and the
// pipelines that ran for its head.
type mrContents interface {
	GetCommit(ctx context.Context, project, sha string) (gitlab.Commit, error)
	MRCommits(ctx context.Context, project string, iid int64) ([]gitlab.Commit, error)
	MRDiffs(ctx context.Context, project string, iid int64) ([]gitlab.Diff, error)
	Pipelines(ctx context.Context, project, sha string) ([]gitlab.Pipeline, error)
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
	bot       promotion.User
	publicURL string
	mrs       mergeRequests
	contents  mrContents
	authors   *authorsReader
	notes     noteWriter
	statuses  statusWriter
	sources   sourceMRs
	claims    claims
	audit     auditLog
	gates     *gates
	metrics   *metrics
	log       *slog.Logger
	records   *records // promotion records (record.go)
	// deploys and deployLog mirror deployments in GitLab and record them
	// (deploy.go); both are required.
	deploys   deploymentsAPI
	deployLog deploymentLog
}

// perform carries out one action and returns what it learned as events.
func (s *effects) perform(ctx context.Context, snap *snapshot, app string, a promotion.Action) ([]promotion.Event, error) {
	switch a := a.(type) {
	case promotion.OpenMR:
		return s.openMR(ctx, snap, app, a)
	case promotion.Rollback:
		return s.rollback(ctx, snap, app, a)
	case promotion.MergeMR:
		return s.merge(ctx, snap, app, a)
	case promotion.CloseMR:
		return nil, s.closeMR(ctx, a)
	case promotion.Reconcile:
		return s.reconcile(ctx, snap, app, a)
	case promotion.ReadAuthors:
		authors, why := s.authors.read(ctx, a.SourceProject, a.SourceCommit)
		return []promotion.Event{promotion.AuthorsRead{Stage: a.Stage, Image: a.Image, Authors: authors, Err: why}}, nil
	case promotion.CheckGates:
		return s.checkGates(ctx, snap, app, a), nil
	case promotion.SetStatus:
		return nil, s.setStatus(ctx, a)
	case promotion.UpsertComment:
		return nil, s.upsertComment(ctx, a)
	case promotion.Reply:
		return nil, s.reply(ctx, a)
	case promotion.Audit:
		return nil, s.record(ctx, app, a)
	case promotion.AttestPromotion:
		return nil, s.attestPromotion(ctx, snap, app, a)
	case promotion.Deploy:
		return nil, s.deploy(ctx, app, a)
	}
	return nil, &permanentError{fmt.Errorf("%w: no effect for action %T", errUndecodable, a)}
}

func (s *effects) checkGates(ctx context.Context, snap *snapshot, app string, a promotion.CheckGates) []promotion.Event {
	ev := promotion.GatesChecked{Stage: a.Stage, Image: a.Image}
	if a.Signature {
		ev.Signature = s.gates.signature(ctx, snap.keys, a.Image)
	}
	if a.Scan {
		ev.Scan = s.gates.scan(ctx, snap.keys, a.Image)
	}
	s.metrics.gatesChecked(snap, app, a, ev)
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
			if n.Author.ID == s.bot.ID && strings.HasPrefix(n.Body, marker) {
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
	claim := "audit:" + digestOf(a.App, a.Kind, a.Stage, a.Image, actorName(a.Actor), a.Detail, a.At.String())
	first, err := s.claims.Once(ctx, claim)
	if err != nil || !first {
		return err
	}
	s.metrics.audited(a)
	err = s.audit.Audit(ctx, store.AuditRecord{At: a.At, App: a.App, Stage: a.Stage, Image: a.Image, Actor: actorName(a.Actor), Kind: a.Kind, Detail: a.Detail})
	if err != nil {
		_ = s.claims.Forget(ctx, claim) // the retry writes it
	}
	return err
}

// actorName is how the audit log names a person: username and GitLab user
// ID (the ID stays when the username changes); empty for lotse itself.
func actorName(u promotion.User) string {
	if u.ID == 0 {
		return u.Username
	}
	return fmt.Sprintf("%s (#%d)", u.Username, u.ID)
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
