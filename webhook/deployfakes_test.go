package webhook

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/store"
)

// The deployments API of the fake GitLab: environments and deployments
// per project, GitLab's state machine (running only from created), refs
// that must exist (the default branch "main" and f.branches), and "lost"
// answers: the call happens, the answer does not arrive.

func (f *fakeGitLab) GetProject(_ context.Context, project string) (gitlab.Project, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("get-project"); err != nil {
		return gitlab.Project{}, err
	}
	if f.gone[project] {
		return gitlab.Project{}, gitlab.ErrNotFound
	}
	return gitlab.Project{PathWithNamespace: project, DefaultBranch: "main"}, nil
}

func (f *fakeGitLab) UpsertEnvironment(_ context.Context, project string, req gitlab.EnvironmentRequest) (gitlab.Environment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("upsert-environment"); err != nil {
		return gitlab.Environment{}, err
	}
	if f.gone[project] {
		return gitlab.Environment{}, gitlab.ErrNotFound
	}
	if f.envs == nil {
		f.envs = map[string]gitlab.Environment{}
	}
	k := project + "/" + req.Name
	e := f.envs[k]
	e.Name = req.Name
	if req.ExternalURL != "" {
		e.ExternalURL = req.ExternalURL
	}
	if req.Tier != "" {
		e.Tier = req.Tier
	}
	f.envs[k] = e
	return e, nil
}

func (f *fakeGitLab) CreateDeployment(_ context.Context, project string, req gitlab.DeploymentRequest) (gitlab.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("create-deployment"); err != nil {
		return gitlab.Deployment{}, err
	}
	if f.gone[project] {
		return gitlab.Deployment{}, gitlab.ErrNotFound
	}
	if _, ok := f.envs[project+"/"+req.Environment]; !ok {
		return gitlab.Deployment{}, fmt.Errorf("create deployment: no environment %s: %w", req.Environment, gitlab.ErrInvalid)
	}
	if req.Ref != "main" && !slices.Contains(f.branches, req.Ref) {
		return gitlab.Deployment{}, fmt.Errorf("create deployment: ref %s: the branch or tag does not exist: %w", req.Ref, gitlab.ErrInvalid)
	}
	f.nextID++
	d := gitlab.Deployment{ID: 1000 + f.nextID, Environment: req.Environment, Ref: req.Ref, SHA: req.SHA, Status: req.Status}
	if f.deployments == nil {
		f.deployments = map[string][]gitlab.Deployment{}
	}
	f.deployments[project] = append(f.deployments[project], d)
	if f.lost["create-deployment"] > 0 {
		f.lost["create-deployment"]--
		return gitlab.Deployment{}, fmt.Errorf("create deployment: %w", gitlab.ErrUnavailable)
	}
	return d, nil
}

func (f *fakeGitLab) UpdateDeployment(_ context.Context, project string, id int64, status gitlab.DeploymentStatus) (gitlab.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("update-deployment"); err != nil {
		return gitlab.Deployment{}, err
	}
	ds := f.deployments[project]
	for i := range ds {
		if ds[i].ID != id {
			continue
		}
		switch {
		case ds[i].Status == status:
			return ds[i], nil // the client reads back a transition already made
		case status == gitlab.DeploymentRunning && ds[i].Status != gitlab.DeploymentCreated:
			return gitlab.Deployment{}, fmt.Errorf("update deployment: cannot transition from %s to running: %w", ds[i].Status, gitlab.ErrInvalid)
		}
		ds[i].Status = status
		return ds[i], nil
	}
	return gitlab.Deployment{}, gitlab.ErrNotFound
}

func (f *fakeGitLab) Deployments(_ context.Context, project string, q gitlab.DeploymentQuery) ([]gitlab.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("deployments"); err != nil {
		return nil, err
	}
	var out []gitlab.Deployment
	for _, d := range f.deployments[project] {
		if q.Environment == "" || d.Environment == q.Environment {
			out = append(out, d)
		}
	}
	if q.Desc {
		slices.Reverse(out)
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (f *fakeGitLab) deploymentsOf(project string) []gitlab.Deployment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deployments[project])
}

func (f *fakeGitLab) environment(project, name string) (gitlab.Environment, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.envs[project+"/"+name]
	return e, ok
}

// The store's deployments, as RecordDeployment keeps them: the first
// times and facts stay.
func (m *memRecords) FindDeployment(_ context.Context, app, stage, key string) (store.Deployment, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.deps {
		if d.App == app && d.Stage == stage && d.Key == key {
			return d, true, nil
		}
	}
	return store.Deployment{}, false, nil
}

func (m *memRecords) RecordDeployment(_ context.Context, d store.Deployment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.deps {
		if x.App != d.App || x.Stage != d.Stage || x.Key != d.Key {
			continue
		}
		x.Status = d.Status
		keepT := func(p *time.Time, v time.Time) {
			if p.IsZero() {
				*p = v
			}
		}
		keepT(&x.RunningAt, d.RunningAt)
		keepT(&x.FailedAt, d.FailedAt)
		keepT(&x.CanceledAt, d.CanceledAt)
		keepT(&x.CommittedAt, d.CommittedAt)
		keepT(&x.MergedAt, d.MergedAt)
		keepT(&x.FirstCommitAt, d.FirstCommitAt)
		if x.Failure == "" {
			x.Failure = d.Failure
		}
		if x.Ref == "" {
			x.Ref = d.Ref
		}
		if x.SourceMR == 0 {
			x.SourceMR = d.SourceMR
		}
		if x.GitLabID == 0 {
			x.GitLabID = d.GitLabID
		}
		m.deps[i] = x
		return nil
	}
	m.deps = append(m.deps, d)
	return nil
}

func (m *memRecords) deployments() []store.Deployment {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.deps)
}
