package webhook

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
)

// changeReader reads who made a change in an app's project: the MRs that
// contain a commit, their commits, and the users behind commit emails.
type changeReader interface {
	MRsForCommit(ctx context.Context, project, sha string) ([]gitlab.MR, error)
	MRCommits(ctx context.Context, project string, iid int64) ([]gitlab.Commit, error)
	UsersByEmail(ctx context.Context, email string) ([]gitlab.User, error)
}

// authorsReader finds the authors of a change: the authors of every MR
// that contains the source commit (forks included), and the authors and
// committers of every commit of those MRs, tied to GitLab users by email.
// They may not approve the change into an approval stage. When any of it
// cannot be read, the error says why and the engine counts no approval.
type authorsReader struct {
	gl changeReader
}

// read returns the change's authors, or why they are unknown.
func (r *authorsReader) read(ctx context.Context, project, sha string) ([]promotion.User, string) {
	if project == "" || sha == "" {
		return nil, "" // no source commit (a promotion of an image built elsewhere): nobody to exclude
	}
	users, err := r.users(ctx, project, sha)
	if err != nil {
		return nil, fmt.Sprintf("cannot read the change in %s: %v", project, err)
	}
	return users, ""
}

func (r *authorsReader) users(ctx context.Context, project, sha string) ([]promotion.User, error) {
	mrs, err := r.gl.MRsForCommit(ctx, project, sha)
	if err != nil {
		return nil, err
	}
	var out []promotion.User
	add := func(u gitlab.User) {
		if u.ID != 0 && !slices.ContainsFunc(out, func(x promotion.User) bool { return x.ID == u.ID }) {
			out = append(out, promotion.User{ID: u.ID, Username: u.Username})
		}
	}
	emails := map[string]bool{}
	for _, m := range mrs {
		add(m.Author)
		commits, err := r.gl.MRCommits(ctx, project, m.IID)
		if err != nil {
			return nil, fmt.Errorf("commits of !%d: %w", m.IID, err)
		}
		for _, c := range commits {
			for _, e := range []string{c.AuthorEmail, c.CommitterEmail} {
				if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
					emails[e] = true
				}
			}
		}
	}
	for _, e := range slices.Sorted(maps.Keys(emails)) {
		us, err := r.gl.UsersByEmail(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("users with email %s: %w", e, err)
		}
		for _, u := range us {
			add(u)
		}
	}
	return out, nil
}
