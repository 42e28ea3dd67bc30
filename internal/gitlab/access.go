package gitlab

import (
	"context"
	"strings"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// AccessLevel is a GitLab role or protected-branch access level.
type AccessLevel int

// GitLab's access levels.
const (
	AccessNoOne      AccessLevel = 0
	AccessGuest      AccessLevel = 10
	AccessReporter   AccessLevel = 20
	AccessDeveloper  AccessLevel = 30
	AccessMaintainer AccessLevel = 40
	AccessOwner      AccessLevel = 50
	AccessAdmin      AccessLevel = 60
)

// UserByUsername resolves a username (case-insensitive, as GitLab compares
// them) to the user, so that people can be compared by id. An unknown name
// gives ErrNotFound.
func (c *Client) UserByUsername(ctx context.Context, username string) (User, error) {
	var us []*gl.User
	err := c.do(ctx, "find user", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		us, resp, err = c.api.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr(username)}, o...)
		return resp, err
	})
	if err != nil {
		return User{}, err
	}
	for _, u := range us {
		if u != nil && strings.EqualFold(u.Username, username) {
			return User{ID: u.ID, Username: u.Username, Name: u.Name}, nil
		}
	}
	return User{}, &APIError{Op: "find user", Kind: ErrNotFound, Message: "no user " + username}
}

// UsersByEmail returns the users GitLab finds for email (GET
// /users?search=): those whose public email it is, or for an administrator
// token any of their emails. Only exact matches are returned.
func (c *Client) UsersByEmail(ctx context.Context, email string) ([]User, error) {
	var us []*gl.User
	err := c.do(ctx, "find users by email", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		us, resp, err = c.api.Users.ListUsers(&gl.ListUsersOptions{Search: gl.Ptr(email)}, o...)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	var out []User
	for _, u := range us {
		if u != nil && (strings.EqualFold(u.Email, email) || strings.EqualFold(u.PublicEmail, email)) {
			out = append(out, User{ID: u.ID, Username: u.Username, Name: u.Name})
		}
	}
	return out, nil
}

// Member is a user's membership of a project, inherited ones included.
type Member struct {
	User        User
	AccessLevel AccessLevel
	State       string // active, blocked, ...
}

// Member returns userID's role in the project (GET .../members/all/:user_id);
// ErrNotFound when the user is not a member.
func (c *Client) Member(ctx context.Context, project string, userID int64) (Member, error) {
	var m *gl.ProjectMember
	err := c.do(ctx, "get member", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		m, resp, err = c.api.ProjectMembers.GetInheritedProjectMember(project, userID, o...)
		return resp, err
	})
	if err != nil {
		return Member{}, err
	}
	return Member{User: User{ID: m.ID, Username: m.Username, Name: m.Name}, AccessLevel: AccessLevel(m.AccessLevel), State: m.State}, nil
}

// Members lists the project's members with their roles, inherited ones
// included (GET .../members/all). Reading it needs the Reporter role or more.
func (c *Client) Members(ctx context.Context, project string) ([]Member, error) {
	return listAll(ctx, c, "list members", func(page int64, o ...gl.RequestOptionFunc) ([]Member, *gl.Response, error) {
		ms, resp, err := c.api.ProjectMembers.ListAllProjectMembers(project, &gl.ListProjectMembersOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]Member, 0, len(ms))
		for _, m := range ms {
			if m != nil {
				out = append(out, Member{User: User{ID: m.ID, Username: m.Username, Name: m.Name}, AccessLevel: AccessLevel(m.AccessLevel), State: m.State})
			}
		}
		return out, resp, err
	})
}

// BranchAccess is one entry of a protected branch's push or merge list: a
// role (Level), or on Premium a single user, group or deploy key.
type BranchAccess struct {
	Level       AccessLevel
	UserID      int64
	GroupID     int64
	DeployKeyID int64
}

// ProtectedBranch is a protection rule; Name may be a wildcard like lotse/*.
type ProtectedBranch struct {
	Name           string
	Push           []BranchAccess
	Merge          []BranchAccess
	AllowForcePush bool
}

// Matches reports whether the rule applies to branch, with GitLab's wildcard
// rule: each * matches any characters, slashes included.
func (p ProtectedBranch) Matches(branch string) bool {
	if !strings.Contains(p.Name, "*") {
		return p.Name == branch
	}
	parts := strings.Split(p.Name, "*")
	if !strings.HasPrefix(branch, parts[0]) {
		return false
	}
	rest := branch[len(parts[0]):]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	last := parts[len(parts)-1]
	return len(rest) >= len(last) && strings.HasSuffix(rest, last)
}

func toBranchAccess(ds []*gl.BranchAccessDescription) []BranchAccess {
	out := make([]BranchAccess, 0, len(ds))
	for _, d := range ds {
		if d != nil {
			out = append(out, BranchAccess{Level: AccessLevel(d.AccessLevel), UserID: d.UserID, GroupID: d.GroupID, DeployKeyID: d.DeployKeyID})
		}
	}
	return out
}

// ProtectedBranches lists the project's protection rules as defined
// (wildcards are returned as patterns, not expanded).
func (c *Client) ProtectedBranches(ctx context.Context, project string) ([]ProtectedBranch, error) {
	return listAll(ctx, c, "list protected branches", func(page int64, o ...gl.RequestOptionFunc) ([]ProtectedBranch, *gl.Response, error) {
		pbs, resp, err := c.api.ProtectedBranches.ListProtectedBranches(project, &gl.ListProtectedBranchesOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]ProtectedBranch, 0, len(pbs))
		for _, pb := range pbs {
			out = append(out, ProtectedBranch{Name: pb.Name, Push: toBranchAccess(pb.PushAccessLevels), Merge: toBranchAccess(pb.MergeAccessLevels), AllowForcePush: pb.AllowForcePush})
		}
		return out, resp, err
	})
}

// Hook is a project webhook and the events it is subscribed to.
type Hook struct {
	ID                     int64
	URL                    string
	PushEvents             bool
	PushEventsBranchFilter string
	TagPushEvents          bool
	MergeRequestsEvents    bool
	NoteEvents             bool
	PipelineEvents         bool
	JobEvents              bool
	DeploymentEvents       bool
	EnableSSLVerification  bool
	// AlertStatus is executable, or temporarily_disabled / disabled after failures.
	AlertStatus string
}

// Hooks lists the project's webhooks (Maintainer role needed).
func (c *Client) Hooks(ctx context.Context, project string) ([]Hook, error) {
	return listAll(ctx, c, "list hooks", func(page int64, o ...gl.RequestOptionFunc) ([]Hook, *gl.Response, error) {
		hs, resp, err := c.api.Projects.ListProjectHooks(project, &gl.ListProjectHooksOptions{ListOptions: gl.ListOptions{Page: page, PerPage: 100}}, o...)
		out := make([]Hook, 0, len(hs))
		for _, h := range hs {
			out = append(out, Hook{ID: h.ID, URL: h.URL, PushEvents: h.PushEvents, PushEventsBranchFilter: h.PushEventsBranchFilter,
				TagPushEvents: h.TagPushEvents, MergeRequestsEvents: h.MergeRequestsEvents, NoteEvents: h.NoteEvents,
				PipelineEvents: h.PipelineEvents, JobEvents: h.JobEvents, DeploymentEvents: h.DeploymentEvents,
				EnableSSLVerification: h.EnableSSLVerification, AlertStatus: h.AlertStatus})
		}
		return out, resp, err
	})
}
