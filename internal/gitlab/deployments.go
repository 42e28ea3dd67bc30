package gitlab

import (
	"context"
	"errors"
	"fmt"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// DeploymentStatus is a deployment's state.
type DeploymentStatus string

// Deployment states. GitLab moves created -> running -> success | failed |
// canceled; success, failed and canceled can be reached from any other state.
const (
	DeploymentCreated  DeploymentStatus = "created"
	DeploymentRunning  DeploymentStatus = "running"
	DeploymentSuccess  DeploymentStatus = "success"
	DeploymentFailed   DeploymentStatus = "failed"
	DeploymentCanceled DeploymentStatus = "canceled"
)

// Deployment is a record of a deployment to an environment.
type Deployment struct {
	ID          int64
	IID         int64
	Environment string
	Ref         string
	SHA         string
	Status      DeploymentStatus
	User        User
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func toDeployment(d *gl.Deployment) Deployment {
	out := Deployment{ID: d.ID, IID: d.IID, Ref: d.Ref, SHA: d.SHA, Status: DeploymentStatus(d.Status)}
	if d.Environment != nil {
		out.Environment = d.Environment.Name
	}
	if d.User != nil {
		out.User = User{ID: d.User.ID, Username: d.User.Username, Name: d.User.Name}
	}
	if d.CreatedAt != nil {
		out.CreatedAt = *d.CreatedAt
	}
	if d.UpdatedAt != nil {
		out.UpdatedAt = *d.UpdatedAt
	}
	return out
}

// DeploymentRequest records a deployment made outside GitLab CI/CD.
type DeploymentRequest struct {
	// Environment is created (tier guessed from its name) when missing.
	Environment string
	SHA         string
	// Ref is the branch (or, with Tag, the tag) that was deployed; it must exist.
	Ref    string
	Tag    bool
	Status DeploymentStatus
}

// CreateDeployment records a deployment (Developer role). GitLab returns the
// environment's last deployment instead of a new one when ref, tag, sha and
// status are the same, so re-sending after an unknown outcome is harmless
// and the call is retried like a read.
func (c *Client) CreateDeployment(ctx context.Context, project string, req DeploymentRequest) (Deployment, error) {
	st := gl.DeploymentStatusValue(req.Status)
	opt := &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr(req.Environment), SHA: gl.Ptr(req.SHA), Ref: gl.Ptr(req.Ref),
		Tag: gl.Ptr(req.Tag), Status: &st}
	var d *gl.Deployment
	err := c.do(ctx, "create deployment", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		d, resp, err = c.api.Deployments.CreateProjectDeployment(project, opt, o...)
		return resp, err
	})
	if err != nil {
		return Deployment{}, err
	}
	return toDeployment(d), nil
}

// UpdateDeployment moves a deployment to status. A deployment already in
// that status is success (GitLab refuses the transition with 400, also when
// an earlier attempt whose answer was lost did it); any other refused
// transition wraps ErrInvalid.
func (c *Client) UpdateDeployment(ctx context.Context, project string, id int64, status DeploymentStatus) (Deployment, error) {
	st := gl.DeploymentStatusValue(status)
	var last error
	for range c.retry.attempts {
		var d *gl.Deployment
		err := c.do(ctx, "update deployment", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			d, resp, err = c.api.Deployments.UpdateProjectDeployment(project, id, &gl.UpdateProjectDeploymentOptions{Status: &st}, o...)
			return resp, err
		})
		if err == nil {
			return toDeployment(d), nil
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownOutcome) {
			return Deployment{}, err
		}
		cur, gerr := c.deployment(ctx, project, id)
		if gerr != nil {
			return Deployment{}, errors.Join(err, gerr)
		}
		if cur.Status == status {
			return cur, nil
		}
		if errors.Is(err, ErrInvalid) {
			return Deployment{}, fmt.Errorf("%w (deployment %d is %s)", err, id, cur.Status)
		}
		last = err // it did not happen: send it again, now that the state is known
	}
	return Deployment{}, last
}

func (c *Client) deployment(ctx context.Context, project string, id int64) (Deployment, error) {
	var d *gl.Deployment
	err := c.do(ctx, "get deployment", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		d, resp, err = c.api.Deployments.GetProjectDeployment(project, id, o...)
		return resp, err
	})
	if err != nil {
		return Deployment{}, err
	}
	return toDeployment(d), nil
}

// DeploymentQuery filters and orders Deployments. Zero values: all
// deployments, by id ascending.
type DeploymentQuery struct {
	Environment string
	Status      DeploymentStatus
	// OrderBy is id, iid, created_at, updated_at, finished_at or ref.
	OrderBy string
	// Desc sorts newest first.
	Desc bool
	// Limit stops after this many (0: all).
	Limit int
}

// Deployments lists the project's deployments.
func (c *Client) Deployments(ctx context.Context, project string, q DeploymentQuery) ([]Deployment, error) {
	opt := &gl.ListProjectDeploymentsOptions{}
	if q.Environment != "" {
		opt.Environment = gl.Ptr(q.Environment)
	}
	if q.Status != "" {
		opt.Status = gl.Ptr(string(q.Status))
	}
	if q.OrderBy != "" {
		opt.OrderBy = gl.Ptr(q.OrderBy)
	}
	if q.Desc {
		opt.Sort = gl.Ptr("desc")
	}
	perPage := int64(100)
	if q.Limit > 0 && q.Limit < 100 {
		perPage = int64(q.Limit)
	}
	var out []Deployment
	for page := int64(1); page > 0; {
		var ds []*gl.Deployment
		var next int64
		opt.ListOptions = gl.ListOptions{Page: page, PerPage: perPage}
		err := c.do(ctx, "list deployments", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			ds, resp, err = c.api.Deployments.ListProjectDeployments(project, opt, o...)
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			out = append(out, toDeployment(d))
			if q.Limit > 0 && len(out) == q.Limit {
				return out, nil
			}
		}
		page = next
	}
	return out, nil
}

// Environment is a deployment target. GitLab's list does not carry the
// last deployment: ask Deployments for it.
type Environment struct {
	ID          int64
	Name        string
	Slug        string
	ExternalURL string
	// Tier is production, staging, testing, development or other.
	Tier  string
	State string // available, stopping, stopped
}

func toEnvironment(e *gl.Environment) Environment {
	return Environment{ID: e.ID, Name: e.Name, Slug: e.Slug, ExternalURL: e.ExternalURL, Tier: e.Tier, State: e.State}
}

// Environments lists the project's environments.
func (c *Client) Environments(ctx context.Context, project string) ([]Environment, error) {
	return listAll(ctx, c, "list environments", func(page int64, o ...gl.RequestOptionFunc) ([]Environment, *gl.Response, error) {
		es, resp, err := c.api.Environments.ListEnvironments(project, &gl.ListEnvironmentsOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]Environment, 0, len(es))
		for _, e := range es {
			out = append(out, toEnvironment(e))
		}
		return out, resp, err
	})
}

// EnvironmentRequest describes an environment for UpsertEnvironment.
type EnvironmentRequest struct {
	Name string
	// ExternalURL (http or https) and Tier are set when not empty.
	ExternalURL string
	Tier        string
}

// UpsertEnvironment creates the environment, or updates its external URL
// and tier when it exists and they differ (Developer role).
func (c *Client) UpsertEnvironment(ctx context.Context, project string, req EnvironmentRequest) (Environment, error) {
	for range 2 {
		cur, found, err := c.environmentByName(ctx, project, req.Name)
		if err != nil {
			return Environment{}, err
		}
		if found {
			if (req.ExternalURL == "" || req.ExternalURL == cur.ExternalURL) && (req.Tier == "" || req.Tier == cur.Tier) {
				return cur, nil
			}
			opt := &gl.EditEnvironmentOptions{}
			if req.ExternalURL != "" {
				opt.ExternalURL = gl.Ptr(req.ExternalURL)
			}
			if req.Tier != "" {
				opt.Tier = gl.Ptr(req.Tier)
			}
			var e *gl.Environment
			err := c.do(ctx, "update environment", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
				var resp *gl.Response
				var err error
				e, resp, err = c.api.Environments.EditEnvironment(project, cur.ID, opt, o...)
				return resp, err
			})
			if err != nil {
				return Environment{}, err
			}
			return toEnvironment(e), nil
		}
		opt := &gl.CreateEnvironmentOptions{Name: gl.Ptr(req.Name)}
		if req.ExternalURL != "" {
			opt.ExternalURL = gl.Ptr(req.ExternalURL)
		}
		if req.Tier != "" {
			opt.Tier = gl.Ptr(req.Tier)
		}
		var e *gl.Environment
		err = c.do(ctx, "create environment", nonIdempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
			var resp *gl.Response
			var err error
			e, resp, err = c.api.Environments.CreateEnvironment(project, opt, o...)
			return resp, err
		})
		if err == nil {
			return toEnvironment(e), nil
		}
		// Created meanwhile (by someone else, or by a try whose answer was
		// lost, or "has already been taken"): read it and update it.
		if !errors.Is(err, ErrUnknownOutcome) && !errors.Is(err, ErrInvalid) {
			return Environment{}, err
		}
		if _, found, ferr := c.environmentByName(ctx, project, req.Name); ferr != nil || !found {
			return Environment{}, errors.Join(err, ferr)
		}
	}
	return Environment{}, fmt.Errorf("gitlab upsert environment %s: changed concurrently: %w", req.Name, ErrConflict)
}

func (c *Client) environmentByName(ctx context.Context, project, name string) (Environment, bool, error) {
	var es []*gl.Environment
	err := c.do(ctx, "find environment", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		es, resp, err = c.api.Environments.ListEnvironments(project, &gl.ListEnvironmentsOptions{Name: gl.Ptr(name)}, o...)
		return resp, err
	})
	if err != nil {
		return Environment{}, false, err
	}
	for _, e := range es {
		if e.Name == name {
			return toEnvironment(e), true, nil
		}
	}
	return Environment{}, false, nil
}
