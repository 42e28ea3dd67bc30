package gitlab

import (
	"context"
	"errors"
	"fmt"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// MR is a merge request.
type MR struct {
	ID  int64
	IID int64
	// ProjectID is the project the MR lives in (its target project).
	ProjectID int64
	// SourceProjectID differs from TargetProjectID for an MR from a fork.
	SourceProjectID int64
	TargetProjectID int64
	Title           string
	Description     string
	State           string // opened, closed, merged, locked
	SourceBranch    string
	TargetBranch    string
	Labels          []string
	Author          User
	// SHA is the head of the source branch.
	SHA            string
	MergeCommitSHA string
	// DetailedMergeStatus: checking, mergeable, not_approved, conflict, ci_still_running, ...
	DetailedMergeStatus string
	// AutoMerge is set when GitLab will merge once the checks pass.
	AutoMerge    bool
	HasConflicts bool
	Draft        bool
	WebURL       string
	// HeadPipelineStatus is the status of the head pipeline, "" when none (single-MR reads only).
	HeadPipelineStatus string
	// DiffRefs are the commits the MR's diff is computed between (single-MR reads only).
	DiffRefs DiffRefs
	// MergedAt is when the MR was merged; zero when it is not.
	MergedAt time.Time
}

// FromFork reports whether the MR's source branch lives in another project.
func (m MR) FromFork() bool { return m.SourceProjectID != m.TargetProjectID }

// DiffRefs are the commits of an MR's current diff: BaseSHA is the merge
// base, StartSHA the target head when it was computed, HeadSHA the source head.
type DiffRefs struct {
	BaseSHA  string
	StartSHA string
	HeadSHA  string
}

func toMR(m *gl.MergeRequest) MR {
	out := fromBasicMR(&m.BasicMergeRequest)
	if m.HeadPipeline != nil {
		out.HeadPipelineStatus = m.HeadPipeline.Status
	}
	out.DiffRefs = DiffRefs{BaseSHA: m.DiffRefs.BaseSha, StartSHA: m.DiffRefs.StartSha, HeadSHA: m.DiffRefs.HeadSha}
	return out
}

func fromBasicMR(m *gl.BasicMergeRequest) MR {
	return MR{ID: m.ID, IID: m.IID, ProjectID: m.ProjectID, SourceProjectID: m.SourceProjectID, TargetProjectID: m.TargetProjectID, Title: m.Title, Description: m.Description, State: m.State,
		SourceBranch: m.SourceBranch, TargetBranch: m.TargetBranch, Labels: []string(m.Labels), Author: basicUser(m.Author),
		SHA: m.SHA, MergeCommitSHA: m.MergeCommitSHA, DetailedMergeStatus: m.DetailedMergeStatus,
		AutoMerge: m.MergeWhenPipelineSucceeds, HasConflicts: m.HasConflicts, Draft: m.Draft, WebURL: m.WebURL, MergedAt: timeOf(m.MergedAt)}
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// CreateMRRequest describes a new merge request.
type CreateMRRequest struct {
	SourceBranch       string
	TargetBranch       string
	Title              string
	Description        string
	Labels             []string
	RemoveSourceBranch bool
	Squash             bool
}

// CreateMR opens a merge request. If another open MR uses the source branch
// the error wraps ErrAlreadyExists with APIError.ExistingIID. When the outcome
// is unknown the open MR of the source branch is looked up before re-sending.
func (c *Client) CreateMR(ctx context.Context, project string, req CreateMRRequest) (MR, error) {
	opt := &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr(req.SourceBranch), TargetBranch: gl.Ptr(req.TargetBranch),
		Title: gl.Ptr(req.Title), Description: gl.Ptr(req.Description),
		RemoveSourceBranch: gl.Ptr(req.RemoveSourceBranch), Squash: gl.Ptr(req.Squash)}
	if len(req.Labels) > 0 {
		l := gl.LabelOptions(req.Labels)
		opt.Labels = &l
	}
	var last error
	for range c.retry.attempts {
		var m *gl.MergeRequest
		err := c.do(ctx, "create merge request", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			m, resp, err = c.api.MergeRequests.CreateMergeRequest(project, opt, o...)
			return resp, err
		})
		if err == nil {
			return toMR(m), nil
		}
		if !errors.Is(err, ErrUnknownOutcome) {
			return MR{}, err
		}
		last = err
		found, ferr := c.FindOpenMR(ctx, project, req.SourceBranch)
		switch {
		case ferr == nil && found.TargetBranch == req.TargetBranch:
			return found, nil
		case ferr == nil:
			return MR{}, &APIError{Op: "create merge request", Kind: ErrAlreadyExists, ExistingIID: found.IID,
				Message: fmt.Sprintf("open merge request !%d targets %s", found.IID, found.TargetBranch)}
		case !errors.Is(ferr, ErrNotFound):
			return MR{}, errors.Join(err, ferr)
		}
	}
	return MR{}, last
}

// FindOpenMR returns the open MR from the project's own branch sourceBranch,
// or ErrNotFound. MRs from forks are never returned, whatever their source
// branch is called: anyone who can fork may name a branch like lotsed's.
func (c *Client) FindOpenMR(ctx context.Context, project, sourceBranch string) (MR, error) {
	var ms []*gl.BasicMergeRequest
	err := c.do(ctx, "find open merge request", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		ms, resp, err = c.api.MergeRequests.ListProjectMergeRequests(project, &gl.ListProjectMergeRequestsOptions{
			State: gl.Ptr("opened"), SourceBranch: gl.Ptr(sourceBranch)}, o...)
		return resp, err
	})
	if err != nil {
		return MR{}, err
	}
	for _, m := range ms {
		if mr := fromBasicMR(m); mr.SourceBranch == sourceBranch && !mr.FromFork() {
			return mr, nil
		}
	}
	return MR{}, &APIError{Op: "find open merge request", Kind: ErrNotFound, Message: "no open merge request from " + sourceBranch}
}

// OpenMRs lists the open merge requests whose source is sourceBranch of
// project itself (MRs from forks are left out), oldest first.
func (c *Client) OpenMRs(ctx context.Context, project, sourceBranch string) ([]MR, error) {
	var ms []*gl.BasicMergeRequest
	err := c.do(ctx, "list open merge requests", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		ms, resp, err = c.api.MergeRequests.ListProjectMergeRequests(project, &gl.ListProjectMergeRequestsOptions{
			State: gl.Ptr("opened"), SourceBranch: gl.Ptr(sourceBranch), OrderBy: gl.Ptr("created_at"), Sort: gl.Ptr("asc")}, o...)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	var out []MR
	for _, m := range ms {
		if mr := fromBasicMR(m); mr.SourceBranch == sourceBranch && !mr.FromFork() {
			out = append(out, mr)
		}
	}
	return out, nil
}

// GetMR reads one merge request.
func (c *Client) GetMR(ctx context.Context, project string, iid int64) (MR, error) {
	var m *gl.MergeRequest
	err := c.do(ctx, "get merge request", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		m, resp, err = c.api.MergeRequests.GetMergeRequest(project, iid, nil, o...)
		return resp, err
	})
	if err != nil {
		return MR{}, err
	}
	return toMR(m), nil
}

// UpdateMRRequest changes an MR; nil fields stay unchanged.
type UpdateMRRequest struct {
	Title       *string
	Description *string
	// Labels replaces all labels.
	Labels       *[]string
	AddLabels    []string
	RemoveLabels []string
	// StateEvent is "close" or "reopen"; empty leaves the state.
	StateEvent string
}

// UpdateMR changes title, description or labels (an idempotent PUT).
func (c *Client) UpdateMR(ctx context.Context, project string, iid int64, req UpdateMRRequest) (MR, error) {
	opt := &gl.UpdateMergeRequestOptions{Title: req.Title, Description: req.Description}
	if req.Labels != nil {
		l := gl.LabelOptions(*req.Labels)
		opt.Labels = &l
	}
	if len(req.AddLabels) > 0 {
		l := gl.LabelOptions(req.AddLabels)
		opt.AddLabels = &l
	}
	if len(req.RemoveLabels) > 0 {
		l := gl.LabelOptions(req.RemoveLabels)
		opt.RemoveLabels = &l
	}
	if req.StateEvent != "" {
		opt.StateEvent = gl.Ptr(req.StateEvent)
	}
	var m *gl.MergeRequest
	err := c.do(ctx, "update merge request", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		m, resp, err = c.api.MergeRequests.UpdateMergeRequest(project, iid, opt, o...)
		return resp, err
	})
	if err != nil {
		return MR{}, err
	}
	return toMR(m), nil
}

// MergeOptions are the parameters of MergeMR.
type MergeOptions struct {
	// SHA must equal the source branch head (else ErrConflict); empty skips the check.
	SHA string
	// AutoMerge lets GitLab merge once the checks pass when the MR is not yet mergeable.
	AutoMerge          bool
	RemoveSourceBranch bool
}

// MergeMR merges (or sets auto-merge on) an MR. Refusals wrap ErrNotMergeable with
// the MR's detailed_merge_status; a moved source branch wraps ErrConflict; a
// user who may not merge gets ErrUnauthorized. After an unknown outcome the MR
// is re-read: merged (or auto-merge set, when asked) counts as success.
func (c *Client) MergeMR(ctx context.Context, project string, iid int64, opts MergeOptions) (MR, error) {
	opt := &gl.AcceptMergeRequestOptions{ShouldRemoveSourceBranch: gl.Ptr(opts.RemoveSourceBranch)}
	if opts.SHA != "" {
		opt.SHA = gl.Ptr(opts.SHA)
	}
	if opts.AutoMerge {
		opt.AutoMerge = gl.Ptr(true)
	}
	var last error
	for range c.retry.attempts {
		var m *gl.MergeRequest
		err := c.do(ctx, "merge merge request", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			m, resp, err = c.api.MergeRequests.AcceptMergeRequest(project, iid, opt, o...)
			return resp, err
		})
		if err == nil {
			return toMR(m), nil
		}
		var ae *APIError
		if errors.As(err, &ae) && (ae.StatusCode == 405 || ae.StatusCode == 422) {
			ae.Kind = ErrNotMergeable
			if cur, gerr := c.GetMR(ctx, project, iid); gerr == nil {
				ae.DetailedMergeStatus = cur.DetailedMergeStatus
			}
			return MR{}, ae
		}
		if !errors.Is(err, ErrUnknownOutcome) {
			return MR{}, err
		}
		last = err
		cur, gerr := c.GetMR(ctx, project, iid)
		if gerr != nil {
			return MR{}, errors.Join(err, gerr)
		}
		if cur.State == "merged" || (opts.AutoMerge && cur.AutoMerge) {
			return cur, nil
		}
	}
	return MR{}, last
}

// Approvals returns the users who approved the MR, with their ids. GitLab
// does not say which commit an approval was given on: callers match approvals
// against the MR's system notes ("approved this merge request" after the
// last "added N commits") or the approval webhooks' last_commit.
func (c *Client) Approvals(ctx context.Context, project string, iid int64) ([]User, error) {
	var a *gl.MergeRequestApprovals
	err := c.do(ctx, "get approvals", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		a, resp, err = c.api.MergeRequestApprovals.GetConfiguration(project, iid, o...)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	out := []User{}
	for _, u := range a.ApprovedBy {
		if u != nil && u.User != nil {
			out = append(out, basicUser(u.User))
		}
	}
	return out, nil
}

// ResetApprovals drops every approval of the MR (GitLab Free, where pushes
// do not reset approvals). GitLab allows it to bot users only: project or
// group access tokens; other tokens get ErrUnauthorized.
func (c *Client) ResetApprovals(ctx context.Context, project string, iid int64) error {
	return c.do(ctx, "reset approvals", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		return c.api.MergeRequestApprovals.ResetApprovalsOfMergeRequest(project, iid, o...)
	})
}

// reconcileWindow is how far back re-reads look for a write whose outcome was unknown.
const reconcileWindow = 5 * time.Minute

// MRsForCommit lists the merge requests that contain the commit sha: how
// lotsed finds the app's MR whose change it promotes. MRs from forks are
// included (check MR.FromFork): a fork's branch can contain any commit.
func (c *Client) MRsForCommit(ctx context.Context, project, sha string) ([]MR, error) {
	var ms []*gl.BasicMergeRequest
	err := c.do(ctx, "list merge requests of a commit", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		ms, resp, err = c.api.Commits.ListMergeRequestsByCommit(project, sha, o...)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]MR, 0, len(ms))
	for _, m := range ms {
		out = append(out, fromBasicMR(m))
	}
	return out, nil
}

// MRCommits lists the commits of an MR (not on its target), newest first.
// Authors and committers are names and emails as written in git: GitLab
// ties no user id to them.
func (c *Client) MRCommits(ctx context.Context, project string, iid int64) ([]Commit, error) {
	return listAll(ctx, c, "list merge request commits", func(page int64, o ...gl.RequestOptionFunc) ([]Commit, *gl.Response, error) {
		cs, resp, err := c.api.MergeRequests.GetMergeRequestCommits(project, iid, &gl.GetMergeRequestCommitsOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]Commit, 0, len(cs))
		for _, cm := range cs {
			out = append(out, toCommit(cm))
		}
		return out, resp, err
	})
}

// Diff is one file of an MR's diff.
type Diff struct {
	OldPath, NewPath string
	// AMode and BMode are the git file modes before and after ("0" when absent).
	AMode, BMode string
	// Diff is the unified diff from the first hunk header ("" for binary files).
	Diff                              string
	NewFile, RenamedFile, DeletedFile bool
}

// MRDiffs lists the file diffs of an MR between its merge base and source
// head (GET .../diffs, the successor of the deprecated .../changes).
func (c *Client) MRDiffs(ctx context.Context, project string, iid int64) ([]Diff, error) {
	return listAll(ctx, c, "list merge request diffs", func(page int64, o ...gl.RequestOptionFunc) ([]Diff, *gl.Response, error) {
		ds, resp, err := c.api.MergeRequests.ListMergeRequestDiffs(project, iid, &gl.ListMergeRequestDiffsOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]Diff, 0, len(ds))
		for _, d := range ds {
			out = append(out, Diff{OldPath: d.OldPath, NewPath: d.NewPath, AMode: d.AMode, BMode: d.BMode, Diff: d.Diff,
				NewFile: d.NewFile, RenamedFile: d.RenamedFile, DeletedFile: d.DeletedFile})
		}
		return out, resp, err
	})
}

// listAll reads every page of a list (pages of 100) with the read retry policy.
func listAll[T any](ctx context.Context, c *Client, op string, page func(page int64, o ...gl.RequestOptionFunc) ([]T, *gl.Response, error)) ([]T, error) {
	out := []T{}
	for p := int64(1); p > 0; {
		var items []T
		var next int64
		err := c.do(ctx, op, idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			items, resp, err = page(p, o...)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		p = next
	}
	return out, nil
}
