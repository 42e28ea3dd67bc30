package gitlab

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// File is a repository file read at a ref.
type File struct {
	Path    string
	Content []byte
	// LastCommitID is the last commit that changed the file: pass it as
	// FileAction.LastCommitID to detect concurrent changes.
	LastCommitID string
	BlobID       string
	// CommitID is the commit the ref pointed to.
	CommitID string
}

// File reads path at ref (branch, tag or SHA).
func (c *Client) File(ctx context.Context, project, path, ref string) (File, error) {
	var f *gl.File
	err := c.do(ctx, "get file", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		f, resp, err = c.api.RepositoryFiles.GetFile(project, path, &gl.GetFileOptions{Ref: gl.Ptr(ref)}, o...)
		return resp, err
	})
	if err != nil {
		return File{}, err
	}
	content, err := base64.StdEncoding.DecodeString(f.Content)
	if err != nil {
		return File{}, fmt.Errorf("gitlab get file %s: decode content: %w", path, err)
	}
	return File{Path: f.FilePath, Content: content, LastCommitID: f.LastCommitID, BlobID: f.BlobID, CommitID: f.CommitID}, nil
}

// Action is a commit action kind.
type Action string

// Commit actions.
const (
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
	ActionMove   Action = "move"
)

// FileAction is one file change of a commit.
type FileAction struct {
	Action       Action
	Path         string
	PreviousPath string // for ActionMove
	Content      []byte
	// LastCommitID makes update/delete/move fail with ErrConflict when the
	// file changed after this commit (use File.LastCommitID).
	LastCommitID string
}

// CommitRequest is an atomic multi-file commit.
type CommitRequest struct {
	Branch string
	// StartBranch creates Branch from it when Branch does not exist.
	StartBranch string
	// Force resets an existing Branch to StartBranch before committing.
	Force       bool
	Message     string
	AuthorName  string
	AuthorEmail string
	Actions     []FileAction
}

// Commit is a git commit as GitLab reports it.
type Commit struct {
	SHA            string
	Title          string
	Message        string
	ParentIDs      []string
	AuthorName     string
	AuthorEmail    string
	CommitterName  string
	CommitterEmail string
	AuthoredAt     time.Time
	CommittedAt    time.Time
	WebURL         string
}

func toCommit(c *gl.Commit) Commit {
	out := Commit{SHA: c.ID, Title: c.Title, Message: c.Message, ParentIDs: c.ParentIDs,
		AuthorName: c.AuthorName, AuthorEmail: c.AuthorEmail, CommitterName: c.CommitterName, CommitterEmail: c.CommitterEmail, WebURL: c.WebURL}
	if c.AuthoredDate != nil {
		out.AuthoredAt = *c.AuthoredDate
	}
	if c.CommittedDate != nil {
		out.CommittedAt = *c.CommittedDate
	}
	return out
}

// Commit creates a commit. A stale LastCommitID gives ErrConflict, creating an
// existing file ErrAlreadyExists. When the outcome of the request is unknown
// (5xx, timeout), the branch is re-read: if the commit landed it is returned,
// else the request is sent again.
func (c *Client) Commit(ctx context.Context, project string, req CommitRequest) (Commit, error) {
	if req.Branch == "" || req.Message == "" || len(req.Actions) == 0 {
		return Commit{}, fmt.Errorf("gitlab create commit: branch, message and actions are required: %w", ErrInvalid)
	}
	opt := &gl.CreateCommitOptions{Branch: gl.Ptr(req.Branch), CommitMessage: gl.Ptr(req.Message)}
	if req.StartBranch != "" {
		opt.StartBranch = gl.Ptr(req.StartBranch)
	}
	if req.Force {
		opt.Force = gl.Ptr(true)
	}
	if req.AuthorName != "" {
		opt.AuthorName = gl.Ptr(req.AuthorName)
	}
	if req.AuthorEmail != "" {
		opt.AuthorEmail = gl.Ptr(req.AuthorEmail)
	}
	for _, a := range req.Actions {
		ca := &gl.CommitActionOptions{Action: gl.Ptr(gl.FileActionValue(a.Action)), FilePath: gl.Ptr(a.Path)}
		if a.Action != ActionDelete && (a.Content != nil || a.Action != ActionMove) {
			ca.Content = gl.Ptr(base64.StdEncoding.EncodeToString(a.Content))
			ca.Encoding = gl.Ptr("base64")
		}
		if a.PreviousPath != "" {
			ca.PreviousPath = gl.Ptr(a.PreviousPath)
		}
		if a.LastCommitID != "" {
			ca.LastCommitID = gl.Ptr(a.LastCommitID)
		}
		opt.Actions = append(opt.Actions, ca)
	}
	since := time.Now().Add(-reconcileWindow)
	var last error
	for range c.retry.attempts {
		var cm *gl.Commit
		err := c.do(ctx, "create commit", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			cm, resp, err = c.api.Commits.CreateCommit(project, opt, o...)
			return resp, err
		})
		if err == nil {
			return toCommit(cm), nil
		}
		if !errors.Is(err, ErrUnknownOutcome) {
			return Commit{}, err
		}
		last = err
		found, ok, rerr := c.findCommit(ctx, project, req.Branch, req.Message, since)
		if rerr != nil {
			return Commit{}, errors.Join(err, rerr)
		}
		if ok {
			return found, nil
		}
	}
	return Commit{}, last
}

// findCommit looks for a commit with message among the newest commits of branch.
func (c *Client) findCommit(ctx context.Context, project, branch, message string, since time.Time) (Commit, bool, error) {
	var cs []*gl.Commit
	err := c.do(ctx, "list commits", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		cs, resp, err = c.api.Commits.ListCommits(project, &gl.ListCommitsOptions{RefName: gl.Ptr(branch), Since: gl.Ptr(since), ListOptions: gl.ListOptions{PerPage: 20}}, o...)
		return resp, err
	})
	if errors.Is(err, ErrNotFound) {
		return Commit{}, false, nil // the branch does not exist: the commit did not happen
	}
	if err != nil {
		return Commit{}, false, err
	}
	for _, cm := range cs {
		if strings.TrimSpace(cm.Message) == strings.TrimSpace(message) {
			return toCommit(cm), true, nil
		}
	}
	return Commit{}, false, nil
}

// FileHistory lists up to limit commits of ref that touched path, newest
// first, with full messages (to read trailers). limit <= 0 lists all.
func (c *Client) FileHistory(ctx context.Context, project, path, ref string, limit int) ([]Commit, error) {
	perPage := 100
	if limit > 0 && limit < perPage {
		perPage = limit
	}
	var out []Commit
	for page := int64(1); page > 0; {
		var cs []*gl.Commit
		var next int64
		err := c.do(ctx, "list file history", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			cs, resp, err = c.api.Commits.ListCommits(project, &gl.ListCommitsOptions{RefName: gl.Ptr(ref), Path: gl.Ptr(path),
				ListOptions: gl.ListOptions{Page: page, PerPage: int64(perPage)}}, o...)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, cm := range cs {
			out = append(out, toCommit(cm))
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
		page = next
	}
	return out, nil
}

// GetCommit reads one commit (sha, branch or tag).
func (c *Client) GetCommit(ctx context.Context, project, sha string) (Commit, error) {
	var cm *gl.Commit
	err := c.do(ctx, "get commit", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		cm, resp, err = c.api.Commits.GetCommit(project, sha, nil, o...)
		return resp, err
	})
	if err != nil {
		return Commit{}, err
	}
	return toCommit(cm), nil
}

// BranchHead returns the SHA a branch points to.
func (c *Client) BranchHead(ctx context.Context, project, branch string) (string, error) {
	var b *gl.Branch
	err := c.do(ctx, "get branch", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		b, resp, err = c.api.Branches.GetBranch(project, branch, o...)
		return resp, err
	})
	if err != nil {
		return "", err
	}
	if b.Commit == nil {
		return "", fmt.Errorf("gitlab get branch %s: no commit in answer: %w", branch, ErrInvalid)
	}
	return b.Commit.ID, nil
}
