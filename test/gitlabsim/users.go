package gitlabsim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ---- users: rename, lookup by name, search ----

// RenameUser changes a user's username, keeping its id, token and
// memberships (GitLab lets users rename themselves; ids never change).
func (s *Sim) RenameUser(id int, username string) error {
	if username == "" {
		return errors.New("gitlabsim: username is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.users[id]
	if !ok {
		return fmt.Errorf("user %d: %w", id, ErrUnknown)
	}
	if other, ok := s.byUsername[username]; ok && other.ID != id {
		return fmt.Errorf("user %q: %w", username, ErrExists)
	}
	// Copy on write: requests in flight keep reading the old value.
	u := *old
	u.Username = username
	delete(s.byUsername, old.Username)
	s.users[id] = &u
	s.byUsername[username] = &u
	s.tokens[u.Token] = &u
	for _, j := range s.jobTokens {
		if j.User.ID == id {
			j.User = &u
		}
	}
	return nil
}

// userByUsernameFold finds a user by username, ignoring case as GitLab does.
func (s *Sim) userByUsernameFold(name string) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.byUsername[name]; ok {
		return u
	}
	for _, u := range s.users {
		if strings.EqualFold(u.Username, name) {
			return u
		}
	}
	return nil
}

// listUsers serves GET /users: username= (exact, case-insensitive) or search=
// (username or name containing it, or an exact email: the public email for
// everyone, private emails for admins only, as GitLab's UsersFinder does).
func (s *Sim) listUsers(c *call) {
	var sel []*user
	switch {
	case c.params.has("username"):
		if u := s.userByUsernameFold(c.params.str("username")); u != nil {
			sel = append(sel, u)
		}
	default:
		q := strings.ToLower(strings.TrimSpace(c.params.str("search")))
		s.mu.Lock()
		for _, u := range s.users {
			if q == "" || strings.Contains(strings.ToLower(u.Username), q) || strings.Contains(strings.ToLower(u.Name), q) ||
				(u.PublicEmail != "" && strings.EqualFold(u.PublicEmail, q)) || (c.user.Admin && strings.EqualFold(u.Email, q)) {
				sel = append(sel, u)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(sel, func(a, b *user) int { return b.ID - a.ID }) // GitLab orders by id desc
	lo, hi := c.paginate(len(sel))
	out := []apiUser{}
	for _, u := range sel[lo:hi] {
		out = append(out, s.userJSON(u, c))
	}
	c.json(http.StatusOK, out)
}

// userJSON is the user entity: basic fields, plus public_email, and the
// private email for admins.
func (s *Sim) userJSON(u *user, c *call) apiUser {
	out := basicUser(u, c.base)
	out.CreatedAt = tptr(u.Created)
	pe := u.PublicEmail
	out.PublicEmail = &pe
	if c.user.Admin {
		out.Email = u.Email
	}
	out.Bot = &u.Bot
	return out
}

// getUser serves GET /users/:user_id.
func (s *Sim) getUser(c *call) {
	id, err := strconv.Atoi(c.r.PathValue("user_id"))
	u := s.userByID(id)
	if err != nil || u == nil {
		c.notFound("User")
		return
	}
	c.json(http.StatusOK, s.userJSON(u, c))
}

// ---- members ----

type apiMember struct {
	apiUser
	AccessLevel     int      `json:"access_level"`
	ExpiresAt       *apiTime `json:"expires_at"`
	MembershipState string   `json:"membership_state"`
}

// getMember serves GET /projects/:id/members/all/:user_id (direct and
// inherited members; the simulator has only direct ones). 404 for non-members.
func (s *Sim) getMember(c *call) {
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	id, _ := strconv.Atoi(c.r.PathValue("user_id"))
	u := s.userByID(id)
	level, ok := p.members[id]
	if u == nil || !ok {
		c.message(http.StatusNotFound, "404 Not found")
		return
	}
	c.json(http.StatusOK, apiMember{apiUser: basicUser(u, c.base), AccessLevel: level, MembershipState: "active"})
}

// listMembers serves GET /projects/:id/members/all.
func (s *Sim) listMembers(c *call) {
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	ids := make([]int, 0, len(p.members))
	for id := range p.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	lo, hi := c.paginate(len(ids))
	out := []apiMember{}
	for _, id := range ids[lo:hi] {
		if u := s.userByID(id); u != nil {
			out = append(out, apiMember{apiUser: basicUser(u, c.base), AccessLevel: p.members[id], MembershipState: "active"})
		}
	}
	c.json(http.StatusOK, out)
}

// ---- protected branches ----

type apiAccessLevel struct {
	ID                     int    `json:"id"`
	AccessLevel            int    `json:"access_level"`
	AccessLevelDescription string `json:"access_level_description"`
	DeployKeyID            *int   `json:"deploy_key_id"`
	UserID                 *int   `json:"user_id"`
	GroupID                *int   `json:"group_id"`
}

type apiProtectedBranch struct {
	ID                        int              `json:"id"`
	Name                      string           `json:"name"`
	PushAccessLevels          []apiAccessLevel `json:"push_access_levels"`
	MergeAccessLevels         []apiAccessLevel `json:"merge_access_levels"`
	UnprotectAccessLevels     []apiAccessLevel `json:"unprotect_access_levels"`
	AllowForcePush            bool             `json:"allow_force_push"`
	CodeOwnerApprovalRequired bool             `json:"code_owner_approval_required"`
	Inherited                 bool             `json:"inherited"`
}

func accessDescription(level int) string {
	switch level {
	case AccessNoOne:
		return "No one"
	case AccessDevelopers:
		return "Developers + Maintainers"
	case AccessMaintainers:
		return "Maintainers"
	case 60:
		return "Admins"
	}
	return strconv.Itoa(level)
}

// protectedBranchJSON renders rule i of the project; ids are stable per position.
func protectedBranchJSON(p *project, i int) apiProtectedBranch {
	pb := p.protected[i]
	id := p.ID*1000 + i + 1
	level := func(n, l int) []apiAccessLevel {
		return []apiAccessLevel{{ID: id*10 + n, AccessLevel: l, AccessLevelDescription: accessDescription(l)}}
	}
	return apiProtectedBranch{ID: id, Name: pb.Name,
		PushAccessLevels: level(1, pb.PushAccessLevel), MergeAccessLevels: level(2, pb.MergeAccessLevel),
		UnprotectAccessLevels: []apiAccessLevel{}}
}

// listProtectedBranches serves GET /projects/:id/protected_branches (names as
// defined, wildcards included; search= filters by substring).
func (s *Sim) listProtectedBranches(c *call, p *project) {
	var idx []int
	for i, pb := range p.protected {
		if !c.params.has("search") || strings.Contains(pb.Name, c.params.str("search")) {
			idx = append(idx, i)
		}
	}
	lo, hi := c.paginate(len(idx))
	out := []apiProtectedBranch{}
	for _, i := range idx[lo:hi] {
		out = append(out, protectedBranchJSON(p, i))
	}
	c.json(http.StatusOK, out)
}

// getProtectedBranch serves GET /projects/:id/protected_branches/:name (the
// rule's own name: a wildcard is asked for by its pattern).
func (s *Sim) getProtectedBranch(c *call, p *project) {
	name := c.r.PathValue("name")
	for i, pb := range p.protected {
		if pb.Name == name {
			c.json(http.StatusOK, protectedBranchJSON(p, i))
			return
		}
	}
	c.notFound("Protected Branch")
}
