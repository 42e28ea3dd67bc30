package gitlabsim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// project is one GitLab project with its repository and everything attached to it.
// mu guards every field below it and serialises writes to the repository.
type project struct {
	ID       int
	FullPath string // path_with_namespace
	repo     *repo
	created  time.Time

	mu            sync.Mutex
	name          string
	description   string
	defaultBranch string
	visibility    string
	members       map[int]int // user id -> access level
	protected     []ProtectedBranch
	settings      ProjectSettings
	mrs           []*mergeRequest // by iid-1
	labels        map[string]*label
	statuses      []*commitStatus
	pipelines     []*pipeline
	hooks         []*hook
	environments  []*environment
	deployments   []*deployment
	// forkedFrom is the upstream project of a fork (nil otherwise). Locks
	// go from a fork to its upstream, never back.
	forkedFrom *project
	// checking overrides Options.Checking when non-nil.
	checking *Checking
}

// ProjectSettings are the per-project merge and approval settings.
type ProjectSettings struct {
	// ApprovalsRequired approvals before an MR is mergeable (0: none).
	ApprovalsRequired int `json:"approvals_required"`
	// AuthorApproval lets an MR author approve their own MR (merge_requests_author_approval).
	AuthorApproval bool `json:"merge_requests_author_approval"`
	// ResetApprovalsOnPush drops approvals when the source branch gets new
	// commits. It is a Premium setting: off by default, as on GitLab Free.
	ResetApprovalsOnPush bool `json:"reset_approvals_on_push"`
	// MergeMethod is merge (default), rebase_merge or ff.
	MergeMethod string `json:"merge_method"`
	// OnlyAllowMergeIfPipelineSucceeds blocks merging until the head pipeline succeeded.
	OnlyAllowMergeIfPipelineSucceeds bool `json:"only_allow_merge_if_pipeline_succeeds"`
	// RemoveSourceBranchAfterMerge is the project default for new MRs.
	RemoveSourceBranchAfterMerge bool `json:"remove_source_branch_after_merge"`
}

// ProtectedBranch protects branches matching Name (a glob like release/*).
type ProtectedBranch struct {
	Name string `json:"name"`
	// PushAccessLevel: 0 no one, 30 developers and maintainers, 40 maintainers.
	PushAccessLevel int `json:"push_access_level"`
	// MergeAccessLevel: 0 no one, 30 developers and maintainers, 40 maintainers.
	MergeAccessLevel int `json:"merge_access_level"`
}

// Member gives a user a role in a project.
type Member struct {
	Username string `json:"username"`
	Role     int    `json:"role"`
}

// ProjectSpec describes a project to create.
type ProjectSpec struct {
	// Path is path_with_namespace, e.g. "team/deploy". Required.
	Path          string   `json:"path"`
	DefaultBranch string   `json:"default_branch,omitempty"` // default main
	Visibility    string   `json:"visibility,omitempty"`     // private (default), internal, public
	Description   string   `json:"description,omitempty"`
	Members       []Member `json:"members,omitempty"`
	// Protected branches; when empty the default branch is protected with
	// push and merge for Maintainers, unless Unprotected is set.
	Protected   []ProtectedBranch `json:"protected_branches,omitempty"`
	Unprotected bool              `json:"unprotected,omitempty"`
	Settings    *ProjectSettings  `json:"settings,omitempty"`
	// Checking overrides the simulator's mergeability check timing for this project.
	Checking *Checking `json:"checking,omitempty"`
	// Files are committed as the first commit; empty: a README.md. Set Empty for no commit.
	Files map[string]string `json:"files,omitempty"`
	Empty bool              `json:"empty,omitempty"`
}

// Project describes a created project.
type Project struct {
	ID                int    `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	DefaultBranch     string `json:"default_branch"`
	WebURL            string `json:"web_url"`
	Repo              string `json:"repo"`
}

// CreateProject creates a project with a bare git repository.
func (s *Sim) CreateProject(spec ProjectSpec) (Project, error) {
	spec.Path = strings.Trim(spec.Path, "/")
	if spec.Path == "" || !strings.Contains(spec.Path, "/") {
		return Project{}, errors.New("gitlabsim: project path must be namespace/name")
	}
	if spec.DefaultBranch == "" {
		spec.DefaultBranch = "main"
	}
	if spec.Visibility == "" {
		spec.Visibility = "private"
	}
	// GitLab Free: approvals survive pushes (reset_approvals_on_push is Premium).
	settings := ProjectSettings{MergeMethod: "merge"}
	if spec.Settings != nil {
		settings = *spec.Settings
		if settings.MergeMethod == "" {
			settings.MergeMethod = "merge"
		}
	}
	members := map[int]int{}
	for _, m := range spec.Members {
		u, err := s.lookupUser(m.Username)
		if err != nil {
			return Project{}, err
		}
		members[u.ID] = m.Role
	}
	protected := spec.Protected
	if len(protected) == 0 && !spec.Unprotected {
		protected = []ProtectedBranch{{Name: spec.DefaultBranch, PushAccessLevel: AccessMaintainers, MergeAccessLevel: AccessMaintainers}}
	}
	if _, err := s.lookupProject(spec.Path); err == nil {
		return Project{}, fmt.Errorf("project %q: %w", spec.Path, ErrExists)
	}
	id := s.newID("projects")
	r, err := initRepo(s.ctx, repoDir(s.opts.Dir, id), spec.DefaultBranch)
	if err != nil {
		return Project{}, fmt.Errorf("create repository of %s: %w", spec.Path, err)
	}
	p := &project{
		ID: id, FullPath: spec.Path, created: s.now(), repo: r,
		name: path.Base(spec.Path), description: spec.Description,
		defaultBranch: spec.DefaultBranch, visibility: spec.Visibility,
		members: members, protected: protected, settings: settings,
		labels: map[string]*label{}, checking: spec.Checking,
	}
	// The project becomes visible only once complete: lock it while it is seeded.
	p.mu.Lock()
	s.mu.Lock()
	if _, ok := s.byPath[spec.Path]; ok {
		s.mu.Unlock()
		p.mu.Unlock()
		return Project{}, fmt.Errorf("project %q: %w", spec.Path, ErrExists)
	}
	s.projects[id] = p
	s.byPath[spec.Path] = p
	s.mu.Unlock()
	defer p.mu.Unlock()
	if !spec.Empty {
		files := spec.Files
		if len(files) == 0 {
			files = map[string]string{"README.md": "# " + p.name + "\n"}
		}
		var edits []treeEdit
		for _, k := range sortedKeys(files) {
			edits = append(edits, treeEdit{Path: k, Content: []byte(files[k])})
		}
		when := s.now()
		sys := gitIdent{Name: "Administrator", Email: "admin@example.com", When: when}
		tree, err := r.buildTree(s.ctx, "", edits)
		if err != nil {
			return Project{}, err
		}
		sha, err := r.commitTree(s.ctx, tree, nil, "Initial commit", sys, sys)
		if err != nil {
			return Project{}, err
		}
		if err := r.updateRef(s.ctx, "refs/heads/"+spec.DefaultBranch, sha, ""); err != nil {
			return Project{}, err
		}
	}
	return Project{ID: id, PathWithNamespace: p.FullPath, DefaultBranch: spec.DefaultBranch, WebURL: s.BaseURL() + "/" + p.FullPath, Repo: r.dir}, nil
}

// AddMember sets a user's role in a project (RoleNone removes them).
func (s *Sim) AddMember(projectRef, username string, role int) error {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return err
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if role == RoleNone {
		delete(p.members, u.ID)
	} else {
		p.members[u.ID] = role
	}
	return nil
}

// UpdateProject changes settings, protected branches or check timing of a project.
// Nil arguments leave the value unchanged.
func (s *Sim) UpdateProject(projectRef string, settings *ProjectSettings, protected []ProtectedBranch, checking *Checking) error {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if settings != nil {
		p.settings = *settings
		if p.settings.MergeMethod == "" {
			p.settings.MergeMethod = "merge"
		}
	}
	if protected != nil {
		p.protected = protected
	}
	if checking != nil {
		p.checking = checking
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---- permissions (callers hold p.mu or accept a racy read of members) ----

func (p *project) role(u *user) int {
	if u == nil {
		return RoleNone
	}
	if u.Admin {
		return RoleOwner
	}
	return p.members[u.ID]
}

func (p *project) visibleTo(u *user) bool {
	return p.visibility != "private" || p.role(u) >= RoleGuest
}

func (p *project) canReadRepo(u *user) bool {
	return p.visibility != "private" || p.role(u) >= RoleReporter
}

// protections returns every protected branch rule matching branch.
func (p *project) protections(branch string) []*ProtectedBranch {
	var out []*ProtectedBranch
	for i := range p.protected {
		if refMatches(p.protected[i].Name, branch) {
			out = append(out, &p.protected[i])
		}
	}
	return out
}

// protection returns the first rule protecting branch, or nil.
func (p *project) protection(branch string) *ProtectedBranch {
	if pbs := p.protections(branch); len(pbs) > 0 {
		return pbs[0]
	}
	return nil
}

// refMatches applies GitLab's RefMatcher: a name without * matches exactly;
// each * matches any run of characters, slashes included (lotse/* protects
// lotse/a/b as well).
func refMatches(pattern, ref string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == ref
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(ref, parts[0]) {
		return false
	}
	rest := ref[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return len(rest) >= len(last) && strings.HasSuffix(rest, last)
}

func allowed(level, role int) bool {
	return level != AccessNoOne && role >= level
}

// permits reports whether role may act on branch under the rules matching it:
// when several rules match, the most permissive one wins (GitLab's rule).
func (p *project) permits(branch string, role int, level func(*ProtectedBranch) int) bool {
	if role < RoleDeveloper {
		return false
	}
	pbs := p.protections(branch)
	if len(pbs) == 0 {
		return true
	}
	for _, pb := range pbs {
		if allowed(level(pb), role) {
			return true
		}
	}
	return false
}

func (p *project) canPush(u *user, branch string) bool {
	return p.permits(branch, p.role(u), func(pb *ProtectedBranch) int { return pb.PushAccessLevel })
}

func (p *project) canMerge(u *user, branch string) bool {
	return p.permits(branch, p.role(u), func(pb *ProtectedBranch) int { return pb.MergeAccessLevel })
}

func (p *project) checkingConfig(def Checking) Checking {
	if p.checking != nil {
		return *p.checking
	}
	return def
}

// ---- REST: projects, user, version ----

// project resolves :id and checks visibility; it answers 404 and returns nil on failure.
// The returned project is locked; callers must call p.mu.Unlock.
func (c *call) project() *project {
	p, err := c.s.lookupProject(c.r.PathValue("id"))
	if err != nil {
		c.notFound("Project")
		return nil
	}
	if c.job != nil && c.job.ProjectID != p.ID {
		c.notFound("Project")
		return nil
	}
	p.mu.Lock()
	if !p.visibleTo(c.user) {
		p.mu.Unlock()
		c.notFound("Project")
		return nil
	}
	return p
}

// repoProject is project() plus read access to the repository.
func (c *call) repoProject() *project {
	p := c.project()
	if p == nil {
		return nil
	}
	if !p.canReadRepo(c.user) {
		p.mu.Unlock()
		c.forbidden("")
		return nil
	}
	return p
}

type apiNamespace struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	Kind     string `json:"kind"`
	FullPath string `json:"full_path"`
	WebURL   string `json:"web_url"`
}

type apiProject struct {
	ID                               int            `json:"id"`
	Name                             string         `json:"name"`
	NameWithNamespace                string         `json:"name_with_namespace"`
	Path                             string         `json:"path"`
	PathWithNamespace                string         `json:"path_with_namespace"`
	Description                      string         `json:"description"`
	DefaultBranch                    string         `json:"default_branch"`
	Visibility                       string         `json:"visibility"`
	WebURL                           string         `json:"web_url"`
	HTTPURLToRepo                    string         `json:"http_url_to_repo"`
	SSHURLToRepo                     string         `json:"ssh_url_to_repo"`
	ReadmeURL                        string         `json:"readme_url"`
	CreatedAt                        *apiTime       `json:"created_at"`
	LastActivityAt                   *apiTime       `json:"last_activity_at"`
	Namespace                        apiNamespace   `json:"namespace"`
	EmptyRepo                        bool           `json:"empty_repo"`
	Archived                         bool           `json:"archived"`
	MergeMethod                      string         `json:"merge_method"`
	SquashOption                     string         `json:"squash_option"`
	OnlyAllowMergeIfPipelineSucceeds bool           `json:"only_allow_merge_if_pipeline_succeeds"`
	RemoveSourceBranchAfterMerge     bool           `json:"remove_source_branch_after_merge"`
	MergeRequestsEnabled             bool           `json:"merge_requests_enabled"`
	Permissions                      map[string]any `json:"permissions"`
	ForkedFromProject                map[string]any `json:"forked_from_project,omitempty"`
}

func (s *Sim) projectJSON(ctx context.Context, p *project, base string, u *user) apiProject {
	ns, name, _ := strings.Cut(p.FullPath, "/")
	if i := strings.LastIndex(p.FullPath, "/"); i >= 0 {
		ns, name = p.FullPath[:i], p.FullPath[i+1:]
	}
	_, err := p.repo.branchHead(ctx, p.defaultBranch)
	var access any
	if r := p.role(u); r > 0 {
		access = map[string]any{"access_level": r, "notification_level": 3}
	}
	return apiProject{
		ID: p.ID, Name: name, NameWithNamespace: strings.ReplaceAll(p.FullPath, "/", " / "),
		Path: name, PathWithNamespace: p.FullPath, Description: p.description,
		DefaultBranch: p.defaultBranch, Visibility: p.visibility,
		WebURL: base + "/" + p.FullPath, HTTPURLToRepo: base + "/" + p.FullPath + ".git",
		SSHURLToRepo: "git@" + hostOf(base) + ":" + p.FullPath + ".git",
		ReadmeURL:    base + "/" + p.FullPath + "/-/blob/" + p.defaultBranch + "/README.md",
		CreatedAt:    tptr(p.created), LastActivityAt: tptr(p.created),
		Namespace:   apiNamespace{ID: 1000 + p.ID, Name: path.Base(ns), Path: path.Base(ns), Kind: "group", FullPath: ns, WebURL: base + "/groups/" + ns},
		EmptyRepo:   err != nil,
		MergeMethod: p.settings.MergeMethod, SquashOption: "default_off",
		OnlyAllowMergeIfPipelineSucceeds: p.settings.OnlyAllowMergeIfPipelineSucceeds,
		RemoveSourceBranchAfterMerge:     p.settings.RemoveSourceBranchAfterMerge,
		MergeRequestsEnabled:             true,
		Permissions:                      map[string]any{"project_access": access, "group_access": nil},
		ForkedFromProject:                s.forkedFromJSON(p, base),
	}
}

func hostOf(base string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	h, _, _ = strings.Cut(h, ":")
	return h
}

func (s *Sim) getProject(c *call) {
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	c.json(http.StatusOK, s.projectJSON(c.r.Context(), p, c.base, c.user))
}

type apiUser struct {
	ID          int      `json:"id"`
	Username    string   `json:"username"`
	Name        string   `json:"name"`
	State       string   `json:"state"`
	Locked      bool     `json:"locked"`
	AvatarURL   string   `json:"avatar_url"`
	WebURL      string   `json:"web_url"`
	CreatedAt   *apiTime `json:"created_at,omitempty"`
	Email       string   `json:"email,omitempty"`
	PublicEmail *string  `json:"public_email,omitempty"`
	IsAdmin     *bool    `json:"is_admin,omitempty"`
	Bot         *bool    `json:"bot,omitempty"`
}

func basicUser(u *user, base string) apiUser {
	if u == nil {
		return apiUser{}
	}
	return apiUser{ID: u.ID, Username: u.Username, Name: u.Name, State: "active", AvatarURL: avatarURL(u), WebURL: base + "/" + u.Username}
}

func avatarURL(u *user) string {
	return "https://www.gravatar.com/avatar/" + fmt.Sprintf("%032x", u.ID) + "?s=80&d=identicon"
}

func (s *Sim) getCurrentUser(c *call) {
	u := basicUser(c.user, c.base)
	u.CreatedAt = tptr(c.user.Created)
	u.Email = c.user.Email
	u.IsAdmin = &c.user.Admin
	u.Bot = &c.user.Bot
	c.json(http.StatusOK, u)
}

func (s *Sim) getVersion(c *call) {
	c.json(http.StatusOK, map[string]any{"version": s.version, "revision": "gitlabsim", "kas": map[string]any{"enabled": false}, "enterprise": false})
}
