package gitlabsim

import (
	"context"
	"fmt"
	"strconv"
)

// Forks: a fork is a project with its own repository (a copy of the
// upstream's branches) and forkedFrom set. An MR from a fork lives in the
// upstream project with source_project_id = the fork; as GitLab does, the
// upstream fetches the fork's branch into refs/merge-requests/<iid>/head.

func (s *Sim) projectByID(id int) *project {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.projects[id]
}

// sourceHeadLocked returns the head of an MR's source branch. For an MR from
// a fork it first fetches the fork's branch into the upstream repository.
func (s *Sim) sourceHeadLocked(ctx context.Context, p *project, mr *mergeRequest) (string, error) {
	if mr.SourceProjectID == p.ID || mr.SourceProjectID == 0 {
		return p.repo.branchHead(ctx, mr.SourceBranch)
	}
	src := s.projectByID(mr.SourceProjectID)
	if src == nil {
		return "", errGitNotFound
	}
	if _, err := src.repo.branchHead(ctx, mr.SourceBranch); err != nil {
		return "", err
	}
	ref := "refs/merge-requests/" + strconv.Itoa(mr.IID) + "/head"
	if _, err := p.repo.git(ctx, nil, nil, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", src.repo.dir,
		"+refs/heads/"+mr.SourceBranch+":"+ref); err != nil {
		return "", fmt.Errorf("fetch source branch of !%d: %w", mr.IID, err)
	}
	return p.repo.resolve(ctx, ref)
}

// ForkSpec describes a fork to create.
type ForkSpec struct {
	// Path is the fork's path_with_namespace, e.g. "mallory/deploy". Required.
	Path string `json:"path"`
	// Username becomes the fork's Owner.
	Username string `json:"username"`
}

// ForkProject forks projectRef: a new project at spec.Path owned by
// spec.Username, with every branch of the upstream, its default branch and
// visibility, and GitLab's default protection of the default branch. The
// user must be able to read the upstream's repository.
func (s *Sim) ForkProject(projectRef string, spec ForkSpec) (Project, error) {
	up, err := s.lookupProject(projectRef)
	if err != nil {
		return Project{}, err
	}
	u, err := s.lookupUser(spec.Username)
	if err != nil {
		return Project{}, err
	}
	up.mu.Lock()
	readable := up.visibleTo(u) && up.canReadRepo(u)
	defBranch, vis, desc := up.defaultBranch, up.visibility, up.description
	up.mu.Unlock()
	if !readable {
		return Project{}, fmt.Errorf("fork %s as %s: %w", up.FullPath, u.Username, errMsg(403, "403 Forbidden"))
	}
	out, err := s.CreateProject(ProjectSpec{Path: spec.Path, DefaultBranch: defBranch, Visibility: vis, Description: desc,
		Members: []Member{{Username: u.Username, Role: RoleOwner}}, Empty: true})
	if err != nil {
		return Project{}, err
	}
	fork, err := s.lookupProject(spec.Path)
	if err != nil {
		return Project{}, err
	}
	fork.mu.Lock()
	defer fork.mu.Unlock()
	fork.forkedFrom = up
	if _, err := fork.repo.git(s.ctx, nil, nil, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", up.repo.dir, "+refs/heads/*:refs/heads/*"); err != nil {
		return Project{}, fmt.Errorf("copy branches of %s: %w", up.FullPath, err)
	}
	return out, nil
}

// forkedFromJSON is the project entity's forked_from_project (nil for non-forks).
func (s *Sim) forkedFromJSON(p *project, base string) map[string]any {
	up := p.forkedFrom
	if up == nil {
		return nil
	}
	return map[string]any{
		"id": up.ID, "name": up.name, "path": up.name, "path_with_namespace": up.FullPath,
		"name_with_namespace": up.FullPath, "web_url": base + "/" + up.FullPath,
		"http_url_to_repo": base + "/" + up.FullPath + ".git", "default_branch": up.defaultBranch,
	}
}
