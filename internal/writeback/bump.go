package writeback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
)

// Bump asks for an image to be written into one stage of one app.
type Bump struct {
	App, Stage    string
	Image         gitops.ImageRef
	SourceProject string // GitLab project that built the image; default: the app's sourceProject
	SourceCommit  string // commit SHA the image was built from
	Pipeline      string // URL of the pipeline that asks for the bump
}

// Result says what a write did.
type Result struct {
	App, Stage string
	Image      gitops.ImageRef
	Path       string           // the values file
	Promotion  gitops.Promotion // how the stage is written
	// Changed is false when the values file already held the image (on the
	// default branch, or on the open MR's branch): nothing was committed.
	Changed bool
	Branch  string // branch committed to (or that already held the image)
	Commit  string // SHA of the new commit, "" when nothing was committed
	// MR is the merge request of the stage branch, nil for direct commits.
	MR        *gitlab.MR
	MRCreated bool // a new MR was opened (else an open one was reused)
	// Retries counts how often the edit was re-read and re-applied because
	// the file or branch changed under it.
	Retries int
}

// change is one write, however it was asked for.
type change struct {
	app      *gitops.App
	stage    *gitops.Stage
	image    gitops.ImageRef
	trailers gitops.Trailers
	subject  string
	body     string
	viaMR    bool     // write through the stage branch and an MR
	labels   []string // MR labels
	drop     []string // labels to remove from a reused MR
	merge    bool     // ask GitLab to merge (auto-merge) the MR
}

// Bump writes b.Image into the values file of b.App for b.Stage, the way the
// stage's promotion says: a direct commit to the default branch (commit), or
// a commit on lotse/<app>/<stage> and its MR (merge-request, with auto-merge;
// approval, left for approvers). It is a no-op when the file already holds
// the image. Unknown names give a *NameError and a values file that cannot
// be edited an error, both before anything is written.
func (w *Writer) Bump(ctx context.Context, b Bump) (Result, error) {
	a, s, err := lookup(w.cfg, b.App, b.Stage)
	if err != nil {
		return Result{}, err
	}
	if b.SourceProject == "" {
		b.SourceProject = a.SourceProject
	}
	c := change{
		app: a, stage: s, image: b.Image,
		trailers: gitops.Trailers{App: a.Name, Stage: s.Name, Image: b.Image.String(),
			SourceProject: b.SourceProject, SourceCommit: b.SourceCommit, Pipeline: b.Pipeline},
		subject: fmt.Sprintf("Promote %s to %s: %s", a.Name, s.Name, short(b.Image)),
		viaMR:   s.Promotion != gitops.PromotionCommit,
		labels:  s.Labels,
		drop:    []string{RollbackLabel},
		merge:   s.Promotion == gitops.PromotionMergeRequest,
	}
	return w.apply(ctx, c)
}

// Promote moves the image that the stage before to currently holds (on the
// default branch) into stage to, through to's promotion. The source project
// and commit come from the trailers of the commit that brought the image
// into the previous stage, when lotse wrote it. pipeline is recorded as the
// pipeline of the promotion.
func (w *Writer) Promote(ctx context.Context, app, to, pipeline string) (Result, error) {
	a, _, err := lookup(w.cfg, app, to)
	if err != nil {
		return Result{}, err
	}
	prev, ok, err := w.cfg.PrevStage(app, to)
	if err != nil {
		return Result{}, &NameError{err}
	}
	if !ok {
		return Result{}, &NameError{fmt.Errorf("%s is the first stage of app %q: there is nothing to promote from; use bump", to, app)}
	}
	st, err := w.stageStatus(ctx, a, prev, newFileCache())
	if err != nil {
		return Result{}, err
	}
	if !st.Deployed {
		return Result{}, fmt.Errorf("app %q has no image in stage %s (%s) to promote", app, prev.Name, st.Path)
	}
	if st.Image.Digest == "" {
		return Result{}, fmt.Errorf("app %q: stage %s holds %s without a digest; lotse promotes digests only", app, prev.Name, st.Image)
	}
	return w.Bump(ctx, Bump{App: app, Stage: to, Image: st.Image,
		SourceProject: st.SourceProject, SourceCommit: st.SourceCommit, Pipeline: pipeline})
}

// RollbackLabel marks rollback merge requests.
const RollbackLabel = "rollback"

// apply performs one change with conflict retries.
func (w *Writer) apply(ctx context.Context, c change) (Result, error) {
	edits, err := c.app.Edits(c.image)
	if err != nil {
		return Result{}, err
	}
	def := w.cfg.GitLab.DefaultBranch
	res := Result{App: c.app.Name, Stage: c.stage.Name, Image: c.image, Path: c.app.ValuesPath(c.stage.Name),
		Promotion: c.stage.Promotion, Branch: def}
	if c.viaMR {
		res.Branch = gitops.BranchName(c.app.Name, c.stage.Name)
	}
	body := fmt.Sprintf("Set %s in %s.", c.image, res.Path)
	if c.body != "" {
		body = c.body + "\n\n" + body
	}
	msg := gitops.CommitMessage(c.subject, body, c.trailers)
	for {
		done, err := w.attempt(ctx, c, edits, msg, &res)
		if err == nil && done {
			break
		}
		if err != nil && !retryable(err) {
			return res, err
		}
		if res.Retries >= w.opts.MaxRetries {
			return res, fmt.Errorf("%s: still changing after %d retries: %w", res.Path, res.Retries, err)
		}
		res.Retries++
		if err := w.sleep(ctx, res.Retries-1); err != nil {
			return res, err
		}
	}
	if !c.viaMR || res.MR == nil && !res.Changed {
		return res, nil
	}
	if err := w.ensureMR(ctx, c, &res); err != nil {
		return res, err
	}
	if c.merge && !w.opts.CallerMerges {
		if err := w.autoMerge(ctx, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// retryable reports whether a failed attempt is worth re-reading and
// re-applying: the file or branch moved, the outcome of a write is unknown
// (the re-read tells), or GitLab kept answering 429 or 5xx through the
// client's own retries.
func retryable(err error) bool {
	return errors.Is(err, gitlab.ErrConflict) || errors.Is(err, gitlab.ErrAlreadyExists) || gitlab.Retryable(err)
}

// attempt reads, edits and commits once. done false with a nil error never
// happens; a retryable error asks for another attempt.
func (w *Writer) attempt(ctx context.Context, c change, edits []gitops.Edit, msg string, res *Result) (bool, error) {
	def := w.cfg.GitLab.DefaultBranch
	main, err := w.readValues(ctx, res.Path, def)
	if err != nil {
		return false, err
	}
	req := gitlab.CommitRequest{Branch: def, Message: msg, AuthorName: w.opts.AuthorName, AuthorEmail: w.opts.AuthorEmail}
	base := main
	if c.viaMR {
		req.Branch = res.Branch
		exists, open, err := w.branchState(ctx, res.Branch)
		if err != nil {
			return false, err
		}
		switch {
		case !exists:
			req.StartBranch = def
		case open != nil && w.opts.FreshMRs:
			return false, fmt.Errorf("%s: !%d by %s: %w", res.Branch, open.IID, open.Author.Username, ErrBranchTaken)
		case open != nil:
			// Update the open MR on its branch.
			res.MR = open
			base, err = w.readValues(ctx, res.Path, res.Branch)
			if err != nil {
				return false, err
			}
		default:
			// A branch left over without an open MR: start it again from
			// the default branch, so the MR shows this change only.
			req.StartBranch, req.Force = def, true
		}
	}
	out, changed, err := gitops.SetValues(base.Content, edits)
	if err != nil {
		return false, fmt.Errorf("edit %s: %w", res.Path, err)
	}
	if !changed {
		res.Changed = false
		if c.viaMR && res.MR == nil {
			res.Branch = def // already on the default branch, no MR needed
		}
		if c.viaMR && res.MR != nil && bytes.Equal(base.Content, main.Content) {
			res.MR = nil // the open MR changes nothing of this file; leave it alone
		}
		return true, nil
	}
	req.Actions = []gitlab.FileAction{{Action: gitlab.ActionUpdate, Path: res.Path, Content: out, LastCommitID: base.LastCommitID}}
	cm, err := w.gl.Commit(ctx, w.project, req)
	if err != nil {
		return false, fmt.Errorf("commit %s to %s: %w", res.Path, req.Branch, err)
	}
	res.Changed, res.Commit = true, cm.SHA
	return true, nil
}

// readValues reads a values file at ref.
func (w *Writer) readValues(ctx context.Context, path, ref string) (gitlab.File, error) {
	f, err := w.gl.File(ctx, w.project, path, ref)
	if errors.Is(err, gitlab.ErrNotFound) {
		return f, fmt.Errorf("values file %s does not exist on %s of %s; lotse edits existing files only: %w", path, ref, w.project, err)
	}
	if err != nil {
		return f, fmt.Errorf("read %s at %s: %w", path, ref, err)
	}
	return f, nil
}

// branchState says whether branch exists and returns its open MR, if any.
func (w *Writer) branchState(ctx context.Context, branch string) (exists bool, open *gitlab.MR, err error) {
	if _, err := w.gl.BranchHead(ctx, w.project, branch); err != nil {
		if errors.Is(err, gitlab.ErrNotFound) {
			return false, nil, nil
		}
		return false, nil, fmt.Errorf("read branch %s: %w", branch, err)
	}
	mr, err := w.gl.FindOpenMR(ctx, w.project, branch)
	if errors.Is(err, gitlab.ErrNotFound) {
		return true, nil, nil
	}
	if err != nil {
		return true, nil, fmt.Errorf("find the open merge request of %s: %w", branch, err)
	}
	return true, &mr, nil
}

// ensureMR opens the MR of the stage branch, or updates the open one: there
// is never a second open MR for a branch.
func (w *Writer) ensureMR(ctx context.Context, c change, res *Result) error {
	title := c.subject
	desc := description(c, res)
	if res.MR == nil {
		mr, err := w.gl.FindOpenMR(ctx, w.project, res.Branch)
		switch {
		case err == nil && w.opts.FreshMRs:
			return fmt.Errorf("%s: !%d by %s: %w", res.Branch, mr.IID, mr.Author.Username, ErrBranchTaken)
		case err == nil:
			res.MR = &mr
		case !errors.Is(err, gitlab.ErrNotFound):
			return fmt.Errorf("find the open merge request of %s: %w", res.Branch, err)
		default:
			mr, err := w.gl.CreateMR(ctx, w.project, gitlab.CreateMRRequest{SourceBranch: res.Branch,
				TargetBranch: w.cfg.GitLab.DefaultBranch, Title: title, Description: desc, Labels: c.labels,
				RemoveSourceBranch: true})
			var ae *gitlab.APIError
			switch {
			case err == nil:
				res.MR, res.MRCreated = &mr, true
				return nil
			case errors.Is(err, gitlab.ErrAlreadyExists) && w.opts.FreshMRs:
				return fmt.Errorf("open a merge request from %s: %w", res.Branch, ErrBranchTaken)
			case errors.Is(err, gitlab.ErrAlreadyExists) && errors.As(err, &ae) && ae.ExistingIID > 0:
				res.MR = &gitlab.MR{IID: ae.ExistingIID} // opened meanwhile: reuse it
			default:
				return fmt.Errorf("open a merge request from %s: %w", res.Branch, err)
			}
		}
	}
	drop := slices.DeleteFunc(slices.Clone(c.drop), func(l string) bool { return slices.Contains(c.labels, l) })
	mr, err := w.gl.UpdateMR(ctx, w.project, res.MR.IID, gitlab.UpdateMRRequest{Title: &title, Description: &desc,
		AddLabels: c.labels, RemoveLabels: drop})
	if err != nil {
		return fmt.Errorf("update merge request !%d: %w", res.MR.IID, err)
	}
	res.MR = &mr
	return nil
}

// autoMerge asks GitLab to merge the MR once its checks pass. While GitLab
// still computes mergeability it may refuse, or set auto-merge and then find
// the MR mergeable before anything triggers the merge; lotse polls the MR a
// few times, asks again when that helps, and then leaves it to GitLab (or
// lotsed).
func (w *Writer) autoMerge(ctx context.Context, res *Result) error {
	iid := res.MR.IID
	var last error
	for i := range 6 {
		if i > 0 {
			t := time.NewTimer(time.Duration(25<<i) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			cur, err := w.gl.GetMR(ctx, w.project, iid)
			if err != nil {
				return fmt.Errorf("merge request !%d: %w", iid, err)
			}
			res.MR = &cur
			switch {
			case cur.State != "opened":
				return nil // merged (or closed by someone)
			case cur.AutoMerge && stillChecking(cur.DetailedMergeStatus):
				continue // GitLab will merge once it is done
			case cur.AutoMerge && cur.DetailedMergeStatus != "mergeable":
				return nil // waits for approvals or a pipeline
			}
		}
		mr, err := w.gl.MergeMR(ctx, w.project, iid, gitlab.MergeOptions{AutoMerge: true, RemoveSourceBranch: true})
		if err == nil {
			res.MR = &mr
			if mr.State != "opened" || !stillChecking(mr.DetailedMergeStatus) && mr.DetailedMergeStatus != "mergeable" {
				return nil
			}
			continue
		}
		var ae *gitlab.APIError
		if !errors.Is(err, gitlab.ErrNotMergeable) || !errors.As(err, &ae) || !stillChecking(ae.DetailedMergeStatus) && ae.DetailedMergeStatus != "not_open" {
			return fmt.Errorf("merge request !%d: auto-merge: %w", iid, err)
		}
		last = err
	}
	if res.MR.AutoMerge || res.MR.State != "opened" || last == nil {
		return nil
	}
	return fmt.Errorf("merge request !%d: GitLab still checks whether it can be merged; run lotse again or merge it by hand: %w", iid, last)
}

func stillChecking(s string) bool {
	switch s {
	case "checking", "unchecked", "preparing", "approvals_syncing", "":
		return true
	}
	return false
}

// short names an image in a title: the tag when there is one, and the
// digest cut to 12 hex digits.
func short(r gitops.ImageRef) string {
	d := r.Digest
	if len(d) > len("sha256:")+12 {
		d = d[:len("sha256:")+12] + "…"
	}
	switch {
	case r.Tag != "" && d != "":
		return r.Tag + " (" + d + ")"
	case r.Tag != "":
		return r.Tag
	}
	return d
}

func description(c change, res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", c.subject)
	fmt.Fprintf(&b, "| | |\n|---|---|\n| app | `%s` |\n| stage | `%s` (%s) |\n| image | `%s` |\n| values file | `%s` |\n",
		c.app.Name, c.stage.Name, c.stage.Promotion, c.image, res.Path)
	if t := c.trailers; t.SourceProject != "" {
		src := t.SourceProject
		if t.SourceCommit != "" {
			src += "@" + t.SourceCommit
		}
		fmt.Fprintf(&b, "| source | `%s` |\n", src)
	}
	if c.trailers.Pipeline != "" {
		fmt.Fprintf(&b, "| pipeline | %s |\n", c.trailers.Pipeline)
	}
	switch c.stage.Promotion {
	case gitops.PromotionApproval:
		fmt.Fprintf(&b, "\nNeeds %d approval(s); lotse merges it once the gates pass.\n", c.stage.Approvals)
	case gitops.PromotionMergeRequest:
		b.WriteString("\nGitLab merges it automatically once its checks pass.\n")
	}
	b.WriteString("\n_Written by lotse._\n")
	return b.String()
}
