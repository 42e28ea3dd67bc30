package gitlab

import (
	"context"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// Project is the part of a project lotse compares.
type Project struct {
	ID                int64
	PathWithNamespace string
	DefaultBranch     string // empty for a project without commits
}

// GetProject reads a project by numeric id or path (GET /projects/:id);
// ErrNotFound when it does not exist or the token's user cannot see it.
func (c *Client) GetProject(ctx context.Context, project string) (Project, error) {
	var p *gl.Project
	err := c.do(ctx, "get project", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		p, resp, err = c.api.Projects.GetProject(project, nil, o...)
		return resp, err
	})
	if err != nil {
		return Project{}, err
	}
	return Project{ID: p.ID, PathWithNamespace: p.PathWithNamespace, DefaultBranch: p.DefaultBranch}, nil
}
