package gitlab

import (
	"context"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// Pipeline is a CI pipeline of a project.
type Pipeline struct {
	ID     int64
	SHA    string
	Ref    string
	Status string // created, pending, running, success, failed, canceled, skipped, manual, ...
	Source string // push, merge_request_event, web, api, schedule, external, ...
	WebURL string
}

// Pipelines lists the pipelines that ran for sha, newest first.
func (c *Client) Pipelines(ctx context.Context, project, sha string) ([]Pipeline, error) {
	var ps []*gl.PipelineInfo
	err := c.do(ctx, "list pipelines", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		ps, resp, err = c.api.Pipelines.ListProjectPipelines(project, &gl.ListProjectPipelinesOptions{SHA: gl.Ptr(sha),
			OrderBy: gl.Ptr("id"), Sort: gl.Ptr("desc")}, o...)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Pipeline, 0, len(ps))
	for _, p := range ps {
		if p != nil {
			out = append(out, Pipeline{ID: p.ID, SHA: p.SHA, Ref: p.Ref, Status: p.Status, Source: p.Source, WebURL: p.WebURL})
		}
	}
	return out, nil
}
