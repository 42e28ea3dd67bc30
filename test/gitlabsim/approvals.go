package gitlabsim

import (
	"context"
	"net/http"
	"slices"
)

type apiApprover struct {
	User apiUser `json:"user"`
}

type apiApprovals struct {
	ID                             int           `json:"id"`
	IID                            int           `json:"iid"`
	ProjectID                      int           `json:"project_id"`
	Title                          string        `json:"title"`
	Description                    string        `json:"description"`
	State                          string        `json:"state"`
	CreatedAt                      *apiTime      `json:"created_at"`
	UpdatedAt                      *apiTime      `json:"updated_at"`
	MergeStatus                    string        `json:"merge_status"`
	Approved                       bool          `json:"approved"`
	ApprovalsRequired              int           `json:"approvals_required"`
	ApprovalsLeft                  int           `json:"approvals_left"`
	RequirePasswordToApprove       bool          `json:"require_password_to_approve"`
	ApprovedBy                     []apiApprover `json:"approved_by"`
	SuggestedApprovers             []apiUser     `json:"suggested_approvers"`
	Approvers                      []apiApprover `json:"approvers"`
	ApproverGroups                 []any         `json:"approver_groups"`
	UserHasApproved                bool          `json:"user_has_approved"`
	UserCanApprove                 bool          `json:"user_can_approve"`
	ApprovalRulesLeft              []any         `json:"approval_rules_left"`
	HasApprovalRules               bool          `json:"has_approval_rules"`
	MergeRequestApproversAvailable bool          `json:"merge_request_approvers_available"`
	MultipleApprovalRulesAvailable bool          `json:"multiple_approval_rules_available"`
}

func (s *Sim) approvalsJSON(p *project, mr *mergeRequest, viewer *user, base string) apiApprovals {
	out := apiApprovals{
		ID: mr.ID, IID: mr.IID, ProjectID: p.ID, Title: mr.Title, Description: mr.Description, State: mr.State,
		CreatedAt: tptr(mr.CreatedAt), UpdatedAt: tptr(mr.UpdatedAt), MergeStatus: s.mergeStatus(mr),
		ApprovalsRequired: p.settings.ApprovalsRequired, ApprovalsLeft: p.approvalsLeft(mr),
		ApprovedBy: []apiApprover{}, SuggestedApprovers: []apiUser{}, Approvers: []apiApprover{},
		ApproverGroups: []any{}, ApprovalRulesLeft: []any{},
	}
	out.Approved = out.ApprovalsLeft == 0
	for _, a := range mr.approvals {
		out.ApprovedBy = append(out.ApprovedBy, apiApprover{User: basicUser(s.userByID(a.UserID), base)})
	}
	if viewer != nil {
		out.UserHasApproved = mr.approvedBy(viewer.ID)
		out.UserCanApprove = s.canApprove(p, mr, viewer) == nil
	}
	return out
}

// canApprove applies the approval rules: Developer+, not twice, author only if allowed.
func (s *Sim) canApprove(p *project, mr *mergeRequest, u *user) *apiError {
	switch {
	case mr.State != "opened":
		return errMsg(http.StatusUnauthorized, "401 Unauthorized")
	case p.role(u) < RoleDeveloper:
		return errMsg(http.StatusUnauthorized, "401 Unauthorized")
	case mr.approvedBy(u.ID):
		return errMsg(http.StatusUnauthorized, "401 Unauthorized")
	case u.ID == mr.AuthorID && !p.settings.AuthorApproval:
		return errMsg(http.StatusUnauthorized, "401 Unauthorized")
	}
	return nil
}

func (s *Sim) approveLocked(ctx context.Context, p *project, mr *mergeRequest, u *user, sha string) *apiError {
	if err := s.canApprove(p, mr, u); err != nil {
		return err
	}
	if sha != "" && sha != mr.SHA {
		return errMsg(http.StatusConflict, "SHA does not match HEAD of source branch: "+mr.SHA)
	}
	mr.approvals = append(mr.approvals, approval{UserID: u.ID, At: s.now()})
	s.addSystemNote(p, mr, u, "approved this merge request")
	action := "approval"
	if p.approvalsLeft(mr) == 0 {
		action = "approved"
	}
	s.emitMR(ctx, p, mr, u, action, map[string]any{})
	s.tryAutoMergeLocked(ctx, p, mr)
	return nil
}

func (s *Sim) unapproveLocked(ctx context.Context, p *project, mr *mergeRequest, u *user) *apiError {
	if !mr.approvedBy(u.ID) {
		return errMsg(http.StatusNotFound, "404 Not Found")
	}
	wasApproved := p.approvalsLeft(mr) == 0
	mr.approvals = slices.DeleteFunc(mr.approvals, func(a approval) bool { return a.UserID == u.ID })
	s.addSystemNote(p, mr, u, "unapproved this merge request")
	action := "unapproval"
	if wasApproved && p.approvalsLeft(mr) > 0 {
		action = "unapproved"
	}
	s.emitMR(ctx, p, mr, u, action, map[string]any{})
	return nil
}

// getApprovals serves GET /projects/:id/merge_requests/:iid/approvals.
func (s *Sim) getApprovals(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	c.json(http.StatusOK, s.approvalsJSON(p, mr, c.user, c.base))
}

// approveMR serves POST /projects/:id/merge_requests/:iid/approve (201; 401 when not allowed or already approved).
func (s *Sim) approveMR(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	if err := s.approveLocked(c.r.Context(), p, mr, c.user, c.params.str("sha")); err != nil {
		c.fail(err)
		return
	}
	c.json(http.StatusCreated, s.approvalsJSON(p, mr, c.user, c.base))
}

// unapproveMR serves POST /projects/:id/merge_requests/:iid/unapprove (404 when not approved by the caller).
func (s *Sim) unapproveMR(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	if err := s.unapproveLocked(c.r.Context(), p, mr, c.user); err != nil {
		c.fail(err)
		return
	}
	c.json(http.StatusCreated, s.approvalsJSON(p, mr, c.user, c.base))
}

// Approve approves an MR as username, with the REST API's rules.
func (s *Sim) Approve(projectRef string, iid int, username string) error {
	p, mr, u, err := s.lookupMR(projectRef, iid, username)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	if aerr := s.approveLocked(s.ctx, p, mr, u, ""); aerr != nil {
		return aerr
	}
	return nil
}

// Unapprove withdraws username's approval of an MR.
func (s *Sim) Unapprove(projectRef string, iid int, username string) error {
	p, mr, u, err := s.lookupMR(projectRef, iid, username)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	if aerr := s.unapproveLocked(s.ctx, p, mr, u); aerr != nil {
		return aerr
	}
	return nil
}

// resetApprovals serves PUT /projects/:id/merge_requests/:iid/reset_approvals
// (GitLab Free): only bot users (project or group access tokens) with the
// right to update the MR may, else 401; 202 with no body. No hook, no note.
func (s *Sim) resetApprovals(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	if !c.user.Bot || p.role(c.user) < RoleDeveloper {
		c.unauthorized()
		return
	}
	mr.approvals = nil
	c.w.WriteHeader(http.StatusAccepted)
}
