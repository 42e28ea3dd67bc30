package gitlab

import (
	"context"
	"errors"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// Note is a comment on a merge request.
type Note struct {
	ID        int64
	Body      string
	Author    User
	System    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

func toNote(n *gl.Note) Note {
	out := Note{ID: n.ID, Body: n.Body, System: n.System,
		Author: User{ID: n.Author.ID, Username: n.Author.Username, Name: n.Author.Name}}
	if n.CreatedAt != nil {
		out.CreatedAt = *n.CreatedAt
	}
	if n.UpdatedAt != nil {
		out.UpdatedAt = *n.UpdatedAt
	}
	return out
}

// Notes lists all notes of an MR, oldest first, system notes included.
func (c *Client) Notes(ctx context.Context, project string, iid int64) ([]Note, error) {
	var out []Note
	for page := int64(1); page > 0; {
		var ns []*gl.Note
		var next int64
		err := c.do(ctx, "list notes", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			ns, resp, err = c.api.Notes.ListMergeRequestNotes(project, iid, &gl.ListMergeRequestNotesOptions{
				Sort: gl.Ptr("asc"), OrderBy: gl.Ptr("created_at"), ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			out = append(out, toNote(n))
		}
		page = next
	}
	return out, nil
}

// CreateNote adds a note to an MR. After an unknown outcome it looks for a
// note with the same body by the token's user before re-sending.
func (c *Client) CreateNote(ctx context.Context, project string, iid int64, body string) (Note, error) {
	since := time.Now().Add(-reconcileWindow)
	var last error
	for range c.retry.attempts {
		var n *gl.Note
		err := c.do(ctx, "create note", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			n, resp, err = c.api.Notes.CreateMergeRequestNote(project, iid, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(body)}, o...)
			return resp, err
		})
		if err == nil {
			return toNote(n), nil
		}
		if !errors.Is(err, ErrUnknownOutcome) {
			return Note{}, err
		}
		last = err
		found, ok, rerr := c.findNote(ctx, project, iid, body, since)
		if rerr != nil {
			return Note{}, errors.Join(err, rerr)
		}
		if ok {
			return found, nil
		}
	}
	return Note{}, last
}

func (c *Client) findNote(ctx context.Context, project string, iid int64, body string, since time.Time) (Note, bool, error) {
	me, err := c.CurrentUser(ctx)
	if err != nil {
		return Note{}, false, err
	}
	var ns []*gl.Note
	err = c.do(ctx, "list notes", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		ns, resp, err = c.api.Notes.ListMergeRequestNotes(project, iid, &gl.ListMergeRequestNotesOptions{
			Sort: gl.Ptr("desc"), OrderBy: gl.Ptr("created_at"), ListOptions: gl.ListOptions{PerPage: 50}}, o...)
		return resp, err
	})
	if err != nil {
		return Note{}, false, err
	}
	for _, n := range ns {
		if !n.System && n.Author.ID == me.ID && n.Body == body && (n.CreatedAt == nil || n.CreatedAt.After(since)) {
			return toNote(n), true, nil
		}
	}
	return Note{}, false, nil
}

// UpdateNote replaces a note's body (only its author may; else ErrUnauthorized).
func (c *Client) UpdateNote(ctx context.Context, project string, iid, noteID int64, body string) (Note, error) {
	var n *gl.Note
	err := c.do(ctx, "update note", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		n, resp, err = c.api.Notes.UpdateMergeRequestNote(project, iid, noteID, &gl.UpdateMergeRequestNoteOptions{Body: gl.Ptr(body)}, o...)
		return resp, err
	})
	if err != nil {
		return Note{}, err
	}
	return toNote(n), nil
}

// StatusState is a commit status state.
type StatusState string

// Commit status states.
const (
	StatusPending  StatusState = "pending"
	StatusRunning  StatusState = "running"
	StatusSuccess  StatusState = "success"
	StatusFailed   StatusState = "failed"
	StatusCanceled StatusState = "canceled"
	StatusSkipped  StatusState = "skipped"
)

// Status is an external commit status ("pipeline job" of stage external).
type Status struct {
	State       StatusState
	Name        string
	TargetURL   string
	Description string
	Ref         string
}

// SetCommitStatus posts a commit status. Posting the state the status is
// already in returns an error wrapping ErrSameStatus, which callers treat as
// success. Re-posting is harmless, so server errors are retried.
func (c *Client) SetCommitStatus(ctx context.Context, project, sha string, st Status) error {
	opt := &gl.SetCommitStatusOptions{State: gl.BuildStateValue(st.State)}
	if st.Name != "" {
		opt.Name = gl.Ptr(st.Name)
	}
	if st.TargetURL != "" {
		opt.TargetURL = gl.Ptr(st.TargetURL)
	}
	if st.Description != "" {
		opt.Description = gl.Ptr(st.Description)
	}
	if st.Ref != "" {
		opt.Ref = gl.Ptr(st.Ref)
	}
	return c.do(ctx, "set commit status", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		_, resp, err := c.api.Commits.SetCommitStatus(project, sha, opt, o...)
		return resp, err
	})
}
