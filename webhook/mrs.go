package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/writeback"
)

// The merge request effects. lotsed merges only merge requests it opened
// itself, fresh for each version, whose only commit is its own and whose
// diff is the one file it changed; it merges exactly that commit.

// branchOf is the promotion branch of an app's stage.
func branchOf(app, stage string) string { return "lotse/" + app + "/" + stage }

// openMR writes the image in a fresh MR of lotse's: open MRs on the branch
// are closed first (lotse's own of an earlier version; anybody else's,
// reported), the branch starts anew from the default branch.
func (s *effects) openMR(ctx context.Context, snap *snapshot, app string, a promotion.OpenMR) ([]promotion.Event, error) {
	img, err := gitops.ParseImageRef(a.Image)
	if err != nil {
		return nil, &permanentError{fmt.Errorf("open-mr: %w", err)}
	}
	mine, closed, err := s.clearBranch(ctx, branchOf(app, a.Stage), a.Image)
	if err != nil || mine != nil {
		return s.opened(ctx, a.Stage, a.Image, mine, closed, err)
	}
	res, err := snap.writer.Bump(ctx, writeback.Bump{App: app, Stage: a.Stage, Image: img, SourceProject: a.SourceProject,
		SourceCommit: a.SourceCommit, Pipeline: s.publicURL})
	if err != nil {
		return nil, err
	}
	if res.MR == nil {
		return nil, nil // a commit stage: the push hook reports the landing
	}
	return s.opened(ctx, a.Stage, a.Image, created(res), closed, nil)
}

// created is the MR a write opened, with lotse's commit as its head; nil
// when the writer did not open one (it never reuses one with FreshMRs).
func created(res writeback.Result) *gitlab.MR {
	if !res.MRCreated {
		return nil
	}
	mr := *res.MR
	mr.SHA = res.Commit
	return &mr
}

func (s *effects) rollback(ctx context.Context, snap *snapshot, app string, a promotion.Rollback) ([]promotion.Event, error) {
	mine, closed, err := s.clearBranch(ctx, branchOf(app, a.Stage), a.Image)
	if err != nil || mine != nil {
		return s.opened(ctx, a.Stage, a.Image, mine, closed, err)
	}
	res, err := snap.writer.Rollback(ctx, writeback.Rollback{App: app, Stage: a.Stage, To: a.Image, Pipeline: s.publicURL})
	if err != nil {
		return nil, err
	}
	if res.MR == nil {
		return nil, nil
	}
	return s.opened(ctx, a.Stage, a.Image, created(res), closed, nil)
}

// clearBranch closes every open MR of the promotion branch, so that lotse's
// new one is the only one: its own earlier ones as superseded, anybody
// else's as an attempt to take lotse's branch (described in closed). An
// open MR of lotse's for this very image is the one this action opened
// before (a crash, or another replica carrying out the same outbox entry):
// it is kept and returned as mine, so the action has one effect.
func (s *effects) clearBranch(ctx context.Context, branch, image string) (mine *gitlab.MR, closed []string, err error) {
	mrs, err := s.mrs.OpenMRs(ctx, s.project, branch)
	if err != nil {
		return nil, nil, fmt.Errorf("open merge requests of %s: %w", branch, err)
	}
	for _, mr := range mrs {
		if mr.Author.ID == s.bot.ID && mine == nil {
			c, err := s.contents.GetCommit(ctx, s.project, mr.SHA)
			if err != nil {
				return nil, nil, fmt.Errorf("head of !%d: %w", mr.IID, err)
			}
			if t, ok := gitops.ParseTrailers(c.Message); ok && t.Image == image {
				mine = &mr
				continue
			}
		}
		comment := fmt.Sprintf("Superseded by `%s`: lotse opens a new merge request for it. Approvals given here do not carry over.", image)
		if mr.Author.ID != s.bot.ID {
			comment = fmt.Sprintf("lotse closed this merge request: `%s` is lotse's promotion branch, and lotse merges only merge requests it opened itself. "+
				"Protect the `lotse/*` branches (*Allowed to push and merge: Maintainers*) so that nobody else can use them.", branch)
			closed = append(closed, fmt.Sprintf("!%d by %s", mr.IID, promotion.User{ID: mr.Author.ID, Username: mr.Author.Username}))
		}
		if err := s.closeMR(ctx, promotion.CloseMR{IID: int(mr.IID), Comment: comment}); err != nil {
			return nil, nil, err
		}
	}
	return mine, closed, nil
}

// opened reports the MR lotse opened, with the approvals it already has
// (given before lotsed recorded it), each tied to the head it was read at.
// Its head is lotse's commit: the engine merges only that.
func (s *effects) opened(ctx context.Context, stage, image string, mr *gitlab.MR, closed []string, err error) ([]promotion.Event, error) {
	if err != nil {
		return nil, err
	}
	if mr == nil || mr.Author.ID != s.bot.ID {
		return nil, &permanentError{fmt.Errorf("the writer did not open a merge request of lotse's own")}
	}
	approvers, err := s.mrs.Approvals(ctx, s.project, mr.IID)
	if err != nil {
		return nil, err
	}
	ev := promotion.MROpened{Stage: stage, IID: int(mr.IID), Author: promotion.User{ID: mr.Author.ID, Username: mr.Author.Username},
		Image: image, SHA: mr.SHA, Closed: closed}
	for _, u := range approvers {
		ev.Approvals = append(ev.Approvals, promotion.Approval{User: promotion.User{ID: u.ID, Username: u.Username}, SHA: mr.SHA})
	}
	return []promotion.Event{ev}, nil
}

// closeMR closes an MR with a comment, once.
func (s *effects) closeMR(ctx context.Context, a promotion.CloseMR) error {
	mr, err := s.mrs.GetMR(ctx, s.project, int64(a.IID))
	if err != nil {
		return fmt.Errorf("close !%d: %w", a.IID, err)
	}
	if mr.State != "opened" {
		return nil
	}
	if a.Comment != "" {
		if err := s.reply(ctx, promotion.Reply{IID: a.IID, Body: a.Comment}); err != nil {
			return err
		}
	}
	if _, err := s.mrs.UpdateMR(ctx, s.project, int64(a.IID), gitlab.UpdateMRRequest{StateEvent: "close"}); err != nil {
		return fmt.Errorf("close !%d: %w", a.IID, err)
	}
	return nil
}

// merge checks that the MR is exactly what lotse wrote and asks GitLab to
// merge exactly lotse's commit. Mergeability is computed asynchronously:
// while GitLab still checks, the answer is "not yet", and the state machine
// asks again on a later tick; an MR merged already is never merged again.
func (s *effects) merge(ctx context.Context, snap *snapshot, app string, a promotion.MergeMR) ([]promotion.Event, error) {
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
	why, err := s.tampered(ctx, snap, app, a, mr)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return result(promotion.MergeTampered, why), nil
	}
	if a.Pipeline {
		outcome, reason, err := s.pipeline(ctx, a)
		if err != nil || outcome != "" {
			return result(outcome, reason), err
		}
	}
	_, err = s.mrs.MergeMR(ctx, s.project, int64(a.IID), gitlab.MergeOptions{SHA: a.SHA})
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
		// The head moved between the check and the merge: GitLab refused
		// to merge anything but lotse's commit.
		return result(promotion.MergeTampered, fmt.Sprintf("the head of !%d moved away from lotse's commit %.8s while merging", a.IID, a.SHA)), nil
	}
	return nil, err
}

// tampered says how the MR differs from what lotse wrote; empty when it is
// lotse's own, from the GitOps project into the default branch, with
// lotse's commit as its only commit and the stage's values file as its
// only change.
func (s *effects) tampered(ctx context.Context, snap *snapshot, app string, a promotion.MergeMR, mr gitlab.MR) (string, error) {
	switch {
	case a.SHA == "":
		return "lotse has no record of its own commit on !" + fmt.Sprint(a.IID), nil
	case mr.Author.ID != s.bot.ID:
		return fmt.Sprintf("!%d was opened by %s, not by lotse", a.IID, mr.Author.Username), nil
	case mr.FromFork():
		return fmt.Sprintf("!%d comes from a fork", a.IID), nil
	case mr.TargetBranch != snap.config.GitLab.DefaultBranch:
		return fmt.Sprintf("!%d targets %s, not %s", a.IID, mr.TargetBranch, snap.config.GitLab.DefaultBranch), nil
	}
	commits, err := s.contents.MRCommits(ctx, s.project, int64(a.IID))
	if err != nil {
		return "", fmt.Errorf("commits of !%d: %w", a.IID, err)
	}
	var others []string
	for _, c := range commits {
		if c.SHA != a.SHA {
			others = append(others, fmt.Sprintf("%.8s by %s <%s>", c.SHA, c.AuthorName, c.AuthorEmail))
		}
	}
	if len(others) > 0 || len(commits) == 0 {
		return fmt.Sprintf("!%d has commits lotse did not write (%s) besides its own %.8s", a.IID, strings.Join(others, ", "), a.SHA), nil
	}
	if mr.SHA != a.SHA {
		return fmt.Sprintf("the head of !%d is %.8s, not lotse's commit %.8s", a.IID, mr.SHA, a.SHA), nil
	}
	cfgApp, err := snap.config.App(app)
	if err != nil {
		return "", &permanentError{err}
	}
	want := cfgApp.ValuesPath(a.Stage)
	diffs, err := s.contents.MRDiffs(ctx, s.project, int64(a.IID))
	if err != nil {
		return "", fmt.Errorf("diff of !%d: %w", a.IID, err)
	}
	var paths []string
	for _, d := range diffs {
		paths = append(paths, d.NewPath)
		if d.OldPath != d.NewPath {
			paths = append(paths, d.OldPath)
		}
	}
	slices.Sort(paths)
	if paths = slices.Compact(paths); len(paths) != 1 || paths[0] != want {
		return fmt.Sprintf("!%d changes %s, lotse changed only %s", a.IID, strings.Join(paths, ", "), want), nil
	}
	return "", nil
}

// reconcile reads a promotion's MR back from GitLab and reports what the
// webhooks would have: the engine drops what it knew already.
func (s *effects) reconcile(ctx context.Context, snap *snapshot, app string, a promotion.Reconcile) ([]promotion.Event, error) {
	mr, err := s.mrs.GetMR(ctx, s.project, int64(a.IID))
	if err != nil {
		return nil, fmt.Errorf("reconcile !%d: %w", a.IID, err)
	}
	switch mr.State {
	case "merged":
		return []promotion.Event{promotion.MRMerged{Stage: a.Stage, IID: a.IID}}, nil
	case "closed":
		return []promotion.Event{promotion.MRClosed{Stage: a.Stage, IID: a.IID}}, nil
	}
	// A new head is not reported here: the push's own webhook says who
	// pushed, and if it was lost, the check before merging finds the
	// commit (and nothing is merged).
	var ev []promotion.Event
	approvers, err := s.mrs.Approvals(ctx, s.project, mr.IID)
	if err != nil {
		return nil, fmt.Errorf("reconcile !%d: %w", a.IID, err)
	}
	var have []promotion.User
	for _, u := range approvers {
		who := promotion.User{ID: u.ID, Username: u.Username}
		have = append(have, who)
		ev = append(ev, promotion.MRApproved{Stage: a.Stage, IID: a.IID, User: who, SHA: mr.SHA})
	}
	ev = append(ev, promotion.Approvals{Stage: a.Stage, IID: a.IID, Users: have})
	return ev, nil
}

// pipeline reads the latest pipeline GitLab ran for lotse's commit on a
// push or for the MR: empty outcome when it succeeded.
func (s *effects) pipeline(ctx context.Context, a promotion.MergeMR) (promotion.MergeOutcome, string, error) {
	ps, err := s.contents.Pipelines(ctx, s.project, a.SHA)
	if err != nil {
		return "", "", fmt.Errorf("pipelines of %.8s: %w", a.SHA, err)
	}
	for _, p := range ps {
		if p.Source != "push" && p.Source != "merge_request_event" {
			continue // posted from outside (external) or started by hand
		}
		switch p.Status {
		case "success":
			return "", "", nil
		case "failed", "canceled", "skipped":
			return promotion.MergePipelineFailed, fmt.Sprintf("pipeline #%d for lotse's commit %.8s %s: %s", p.ID, a.SHA, p.Status, p.WebURL), nil
		}
		return promotion.MergeWaitPipeline, fmt.Sprintf("waiting for pipeline #%d for lotse's commit %.8s (%s): %s", p.ID, a.SHA, p.Status, p.WebURL), nil
	}
	return promotion.MergeWaitPipeline, fmt.Sprintf("waiting for a pipeline for lotse's commit %.8s (the stage requires one; none ran yet)", a.SHA), nil
}
