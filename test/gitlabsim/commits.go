package gitlabsim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// apiError is an HTTP answer produced by an operation shared by the REST and Go APIs.
type apiError struct {
	Status int
	Body   any
}

func (e *apiError) Error() string {
	b, _ := json.Marshal(e.Body)
	return fmt.Sprintf("gitlabsim: %d %s", e.Status, b)
}

func errMsg(status int, msg any) *apiError {
	return &apiError{Status: status, Body: map[string]any{"message": msg}}
}

func (c *call) fail(err *apiError) { c.json(err.Status, err.Body) }

// FileAction is one change of a commit (the actions[] of the Commits API).
type FileAction struct {
	Action          string `json:"action"` // create, update, delete, move, chmod
	FilePath        string `json:"file_path"`
	PreviousPath    string `json:"previous_path,omitempty"`
	Content         string `json:"content,omitempty"`
	Encoding        string `json:"encoding,omitempty"` // text (default) or base64
	LastCommitID    string `json:"last_commit_id,omitempty"`
	ExecuteFilemode *bool  `json:"execute_filemode,omitempty"`
	hasContent      bool
}

// CommitSpec is a commit made through the Go or admin API (same rules as POST .../repository/commits).
type CommitSpec struct {
	Branch      string       `json:"branch"`
	StartBranch string       `json:"start_branch,omitempty"`
	StartSHA    string       `json:"start_sha,omitempty"`
	Message     string       `json:"commit_message"`
	AuthorName  string       `json:"author_name,omitempty"`
	AuthorEmail string       `json:"author_email,omitempty"`
	Force       bool         `json:"force,omitempty"`
	Actions     []FileAction `json:"actions"`
	// Files is a shorthand: each path is created or updated with the content.
	Files map[string]string `json:"files,omitempty"`
	// Delete lists paths to delete.
	Delete []string `json:"delete,omitempty"`
}

// Commit makes a commit as username (who needs push rights, like on the API).
// It returns the new commit SHA.
func (s *Sim) Commit(projectRef, username string, spec CommitSpec) (string, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return "", err
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return "", err
	}
	if err := s.expandShorthand(p, &spec); err != nil {
		return "", err
	}
	for i := range spec.Actions {
		spec.Actions[i].hasContent = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.canPush(u, spec.Branch) {
		return "", errMsg(http.StatusForbidden, "403 Forbidden - You are not allowed to push into this branch")
	}
	c, aerr := s.commitLocked(s.ctx, p, u, spec)
	if aerr != nil {
		return "", aerr
	}
	return c.SHA, nil
}

// expandShorthand turns Files/Delete into create/update/delete actions.
func (s *Sim) expandShorthand(p *project, spec *CommitSpec) error {
	if len(spec.Files) == 0 && len(spec.Delete) == 0 {
		return nil
	}
	ref := spec.StartBranch
	if ref == "" {
		ref = spec.Branch
	}
	p.mu.Lock()
	head, err := p.repo.resolve(s.ctx, "refs/heads/"+ref)
	p.mu.Unlock()
	for _, path := range sortedKeys(spec.Files) {
		act := "create"
		if err == nil {
			p.mu.Lock()
			if _, e := p.repo.entry(s.ctx, head, path); e == nil {
				act = "update"
			}
			p.mu.Unlock()
		}
		spec.Actions = append(spec.Actions, FileAction{Action: act, FilePath: path, Content: spec.Files[path]})
	}
	for _, path := range spec.Delete {
		spec.Actions = append(spec.Actions, FileAction{Action: "delete", FilePath: path})
	}
	return nil
}

// commitLocked validates and writes a commit, moves the branch and runs the
// push side effects (push hook, MR refresh). p.mu must be held.
func (s *Sim) commitLocked(ctx context.Context, p *project, u *user, spec CommitSpec) (gitCommit, *apiError) {
	if spec.StartBranch != "" && spec.StartSHA != "" {
		return gitCommit{}, errMsg(400, "start_branch, start_sha are mutually exclusive")
	}
	branchHead, branchErr := p.repo.branchHead(ctx, spec.Branch)
	var base string // commit the new one builds on ("" for the first commit)
	switch {
	case spec.StartSHA != "":
		sha, err := p.repo.resolve(ctx, spec.StartSHA)
		if err != nil {
			return gitCommit{}, errMsg(400, "Invalid reference name: "+spec.StartSHA)
		}
		base = sha
	case spec.StartBranch != "" && spec.StartBranch != spec.Branch:
		sha, err := p.repo.branchHead(ctx, spec.StartBranch)
		if err != nil {
			return gitCommit{}, errMsg(400, "Invalid reference name: "+spec.StartBranch)
		}
		base = sha
	default:
		if branchErr != nil {
			if heads, _ := p.repo.branches(ctx); len(heads) > 0 {
				return gitCommit{}, errMsg(400, "You can only create or edit files when you are on a branch")
			}
		}
		base = branchHead
	}
	if branchErr == nil && base != branchHead && !spec.Force {
		return gitCommit{}, errMsg(400, fmt.Sprintf("A branch called '%s' already exists. Switch to that branch in order to make changes", spec.Branch))
	}
	if !validBranchName(spec.Branch) {
		return gitCommit{}, errMsg(400, "Branch name is invalid")
	}

	edits, aerr := s.validateActions(ctx, p, base, spec.Actions)
	if aerr != nil {
		return gitCommit{}, aerr
	}
	tree, err := p.repo.buildTree(ctx, base, edits)
	if err != nil {
		return gitCommit{}, errMsg(500, "500 Internal Server Error")
	}
	now := s.now().Truncate(time.Second) // git stores seconds
	committer := gitIdent{Name: u.Name, Email: u.Email, When: now}
	author := committer
	if spec.AuthorName != "" {
		author.Name = spec.AuthorName
	}
	if spec.AuthorEmail != "" {
		author.Email = spec.AuthorEmail
	}
	var parents []string
	if base != "" {
		parents = []string{base}
	}
	sha, err := p.repo.commitTree(ctx, tree, parents, spec.Message, author, committer)
	if err != nil {
		return gitCommit{}, errMsg(500, "500 Internal Server Error")
	}
	old := ""
	if branchErr == nil {
		old = branchHead
	}
	if err := p.repo.updateRef(ctx, "refs/heads/"+spec.Branch, sha, old); err != nil {
		return gitCommit{}, errMsg(400, "Could not update branch "+spec.Branch+": the branch moved, try again")
	}
	s.afterPushLocked(ctx, p, u, spec.Branch, old, sha)
	if parents == nil {
		parents = []string{}
	}
	msg := strings.TrimRight(spec.Message, "\n")
	return gitCommit{SHA: sha, Parents: parents, Author: author, Committer: committer, Message: msg, Trailers: messageTrailers(msg)}, nil
}

// messageTrailers parses "Key: value" lines of the last paragraph, like git interpret-trailers.
func messageTrailers(msg string) map[string]string {
	m := map[string]string{}
	paras := strings.Split(strings.TrimSpace(msg), "\n\n")
	if len(paras) < 2 {
		return m
	}
	for line := range strings.SplitSeq(paras[len(paras)-1], "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return map[string]string{}
		}
		m[k] = strings.TrimSpace(v)
	}
	return m
}

func validBranchName(b string) bool {
	if b == "" || strings.HasPrefix(b, "-") || strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".lock") ||
		strings.Contains(b, "..") || strings.ContainsAny(b, " ~^:?*[\\") || strings.Contains(b, "@{") {
		return false
	}
	return true
}

// validateActions applies GitLab's per-action checks in order and returns tree edits.
func (s *Sim) validateActions(ctx context.Context, p *project, base string, actions []FileAction) ([]treeEdit, *apiError) {
	if len(actions) == 0 {
		return nil, &apiError{400, map[string]any{"error": "actions is empty"}}
	}
	type state struct {
		exists bool
		mode   string
		blob   string
	}
	cur := map[string]state{} // overlay of paths touched so far
	lookup := func(path string) state {
		if st, ok := cur[path]; ok {
			return st
		}
		if base == "" {
			return state{}
		}
		e, err := p.repo.entry(ctx, base, path)
		if err != nil {
			return state{}
		}
		return state{exists: true, mode: e.Mode, blob: e.Blob}
	}
	// fileHasChanged is Files::BaseService#file_has_changed? (api.md §5.1).
	fileHasChanged := func(path, commitID string) bool {
		if commitID == "" || base == "" || commitID == base {
			return false
		}
		fromBranch, err := p.repo.lastCommitFor(ctx, base, path)
		if err != nil {
			return false
		}
		if _, err := p.repo.resolve(ctx, commitID); err != nil {
			return false
		}
		fromCommit, err := p.repo.lastCommitFor(ctx, commitID, path)
		if err != nil {
			return false
		}
		return fromBranch != fromCommit
	}
	var edits []treeEdit
	for i, a := range actions {
		field := func(f string) string { return fmt.Sprintf("actions[%d][%s]", i, f) }
		if a.FilePath == "" {
			return nil, &apiError{400, map[string]any{"error": field("file_path") + " is missing"}}
		}
		var content []byte
		if a.hasContent {
			content = []byte(a.Content)
			if a.Encoding == "base64" {
				b, err := base64.StdEncoding.DecodeString(a.Content)
				if err != nil {
					return nil, errMsg(400, "Invalid base64 content for "+a.FilePath)
				}
				content = b
			} else if a.Encoding != "" && a.Encoding != "text" {
				return nil, &apiError{400, map[string]any{"error": field("encoding") + " does not have a valid value"}}
			}
		}
		st := lookup(a.FilePath)
		switch a.Action {
		case "create":
			if st.exists {
				return nil, errMsg(400, "A file with this name already exists")
			}
			mode := "100644"
			if a.ExecuteFilemode != nil && *a.ExecuteFilemode {
				mode = "100755"
			}
			if content == nil {
				content = []byte{}
			}
			edits = append(edits, treeEdit{Path: a.FilePath, Content: content, Mode: mode})
			cur[a.FilePath] = state{exists: true, mode: mode}
		case "update":
			if !a.hasContent {
				return nil, &apiError{400, map[string]any{"error": field("content") + " is required for update action"}}
			}
			if !st.exists {
				return nil, errMsg(400, "A file with this name doesn't exist")
			}
			if fileHasChanged(a.FilePath, a.LastCommitID) {
				return nil, errMsg(400, "The file has changed since you started editing it: "+a.FilePath)
			}
			edits = append(edits, treeEdit{Path: a.FilePath, Content: content, Mode: st.mode})
			cur[a.FilePath] = state{exists: true, mode: st.mode}
		case "delete":
			if !st.exists {
				return nil, errMsg(400, "A file with this name doesn't exist")
			}
			if fileHasChanged(a.FilePath, a.LastCommitID) {
				return nil, errMsg(400, "The file has changed since you started editing it: "+a.FilePath)
			}
			edits = append(edits, treeEdit{Path: a.FilePath, Delete: true})
			cur[a.FilePath] = state{}
		case "move":
			if a.PreviousPath == "" {
				return nil, &apiError{400, map[string]any{"error": field("previous_path") + " is missing"}}
			}
			prev := lookup(a.PreviousPath)
			if !prev.exists {
				return nil, errMsg(400, "A file with this name doesn't exist")
			}
			if st.exists {
				return nil, errMsg(400, "A file with this name already exists")
			}
			if fileHasChanged(a.PreviousPath, a.LastCommitID) {
				return nil, errMsg(400, "The file has changed since you started editing it: "+a.PreviousPath)
			}
			e := treeEdit{Path: a.FilePath, Mode: prev.mode, Blob: prev.blob}
			if a.hasContent && a.Content != "" {
				e.Content, e.Blob = content, ""
			}
			if e.Blob == "" && e.Content == nil {
				// previous file was created in this commit: its blob is unknown here
				return nil, errMsg(400, "A file with this name doesn't exist")
			}
			edits = append(edits, treeEdit{Path: a.PreviousPath, Delete: true}, e)
			cur[a.PreviousPath] = state{}
			cur[a.FilePath] = state{exists: true, mode: prev.mode}
		case "chmod":
			if a.ExecuteFilemode == nil {
				return nil, &apiError{400, map[string]any{"error": field("execute_filemode") + " is missing"}}
			}
			if !st.exists || st.blob == "" {
				return nil, errMsg(400, "A file with this name doesn't exist")
			}
			mode := "100644"
			if *a.ExecuteFilemode {
				mode = "100755"
			}
			edits = append(edits, treeEdit{Path: a.FilePath, Blob: st.blob, Mode: mode})
			cur[a.FilePath] = state{exists: true, mode: mode, blob: st.blob}
		default:
			return nil, &apiError{400, map[string]any{"error": field("action") + " must be one of: create, update, move, delete, chmod"}}
		}
	}
	return edits, nil
}

// ---- REST ----

// postCommit serves POST /projects/:id/repository/commits.
func (s *Sim) postCommit(c *call) {
	if !c.requireParams("branch", "commit_message", "actions") {
		return
	}
	spec := CommitSpec{
		Branch: c.params.str("branch"), StartBranch: c.params.str("start_branch"), StartSHA: c.params.str("start_sha"),
		Message: c.params.str("commit_message"), AuthorName: c.params.str("author_name"), AuthorEmail: c.params.str("author_email"),
		Force: c.params.boolOr("force", false),
	}
	raw, ok := c.params["actions"].([]any)
	if !ok {
		c.errorJSON(400, "error", "actions is invalid")
		return
	}
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			c.errorJSON(400, "error", "actions is invalid")
			return
		}
		ap := params(m)
		a := FileAction{
			Action: ap.str("action"), FilePath: ap.str("file_path"), PreviousPath: ap.str("previous_path"),
			Content: ap.str("content"), Encoding: ap.str("encoding"), LastCommitID: ap.str("last_commit_id"),
			hasContent: ap.has("content"),
		}
		if b, ok := ap.bool("execute_filemode"); ok {
			a.ExecuteFilemode = &b
		}
		spec.Actions = append(spec.Actions, a)
	}
	p := c.repoProject()
	if p == nil {
		return
	}
	if !p.canPush(c.user, spec.Branch) {
		p.mu.Unlock()
		c.forbidden("You are not allowed to push into this branch")
		return
	}
	commit, aerr := s.commitLocked(c.r.Context(), p, c.user, spec)
	p.mu.Unlock()
	if aerr != nil {
		c.fail(aerr)
		return
	}
	out := s.commitJSON(c.r.Context(), p, commit, c.base, true)
	c.json(http.StatusCreated, out)
}

type apiStats struct {
	Additions int `json:"additions"`
	Deletions int `json:"deletions"`
	Total     int `json:"total"`
}

type apiCommit struct {
	ID             string            `json:"id"`
	ShortID        string            `json:"short_id"`
	CreatedAt      *apiTime          `json:"created_at"`
	ParentIDs      []string          `json:"parent_ids"`
	Title          string            `json:"title"`
	Message        string            `json:"message"`
	AuthorName     string            `json:"author_name"`
	AuthorEmail    string            `json:"author_email"`
	AuthoredDate   *apiTime          `json:"authored_date"`
	CommitterName  string            `json:"committer_name"`
	CommitterEmail string            `json:"committer_email"`
	CommittedDate  *apiTime          `json:"committed_date"`
	Trailers       map[string]string `json:"trailers"`
	WebURL         string            `json:"web_url"`
	Stats          *apiStats         `json:"stats,omitempty"`
	Status         *string           `json:"status,omitempty"`
	LastPipeline   *apiPipelineInfo  `json:"last_pipeline,omitempty"`
	ProjectID      int               `json:"project_id,omitempty"`
}

func (s *Sim) commitJSON(ctx context.Context, p *project, c gitCommit, base string, stats bool) apiCommit {
	out := apiCommit{
		ID: c.SHA, ShortID: c.SHA[:8], CreatedAt: tptr(c.Committer.When), ParentIDs: c.Parents,
		Title: c.Title(), Message: c.Message,
		AuthorName: c.Author.Name, AuthorEmail: c.Author.Email, AuthoredDate: tptr(c.Author.When),
		CommitterName: c.Committer.Name, CommitterEmail: c.Committer.Email, CommittedDate: tptr(c.Committer.When),
		Trailers: c.Trailers, WebURL: base + "/" + p.FullPath + "/-/commit/" + c.SHA,
	}
	if stats {
		a, d := p.repo.numstat(ctx, c.SHA)
		out.Stats = &apiStats{Additions: a, Deletions: d, Total: a + d}
	}
	return out
}

// listCommits serves GET /projects/:id/repository/commits (no x-total headers).
func (s *Sim) listCommits(c *call, p *project) {
	ctx := c.r.Context()
	ref := c.params.str("ref_name")
	if ref == "" {
		ref = p.defaultBranch
	}
	if c.params.boolOr("all", false) {
		ref = "--all"
	} else if _, err := p.repo.resolve(ctx, ref); err != nil {
		c.notFound("Commit")
		return
	}
	page, perPage := c.pageParams()
	cs, err := p.repo.log(ctx, logQuery{
		Ref: ref, Path: c.params.str("path"), Skip: (page - 1) * perPage, Limit: perPage + 1,
		Since: c.params.time("since"), Until: c.params.time("until"), FirstParent: c.params.boolOr("first_parent", false),
	})
	if err != nil {
		c.notFound("Commit")
		return
	}
	next := 0
	if len(cs) > perPage {
		cs, next = cs[:perPage], page+1
	}
	c.pageHeaders(page, perPage, next, -1, 0)
	withStats := c.params.boolOr("with_stats", false)
	out := make([]apiCommit, 0, len(cs))
	for _, gc := range cs {
		out = append(out, s.commitJSON(ctx, p, gc, c.base, withStats))
	}
	c.json(http.StatusOK, out)
}

// getCommit serves GET /projects/:id/repository/commits/:sha.
func (s *Sim) getCommit(c *call, p *project) {
	ctx := c.r.Context()
	sha, err := p.repo.resolve(ctx, c.r.PathValue("sha"))
	if err != nil {
		c.notFound("Commit")
		return
	}
	gc, err := p.repo.commit(ctx, sha)
	if err != nil {
		c.notFound("Commit")
		return
	}
	out := s.commitJSON(ctx, p, gc, c.base, c.params.boolOr("stats", true))
	out.ProjectID = p.ID
	if pl := p.latestPipeline(sha, ""); pl != nil {
		info := pl.info(p, c.base)
		out.LastPipeline = &info
		st := pl.Status
		out.Status = &st
	}
	c.json(http.StatusOK, out)
}

// commitMergeRequests serves GET /projects/:id/repository/commits/:sha/merge_requests.
func (s *Sim) commitMergeRequests(c *call, p *project) {
	ctx := c.r.Context()
	sha, err := p.repo.resolve(ctx, c.r.PathValue("sha"))
	if err != nil {
		c.notFound("Commit")
		return
	}
	out := []apiMergeRequest{}
	for _, mr := range p.mrs {
		if mr.containsCommit(sha) {
			out = append(out, s.mrJSON(ctx, p, mr, c.base, nil))
		}
	}
	lo, hi := c.paginate(len(out))
	c.json(http.StatusOK, out[lo:hi])
}

// ---- branches ----

type apiBranch struct {
	Name               string    `json:"name"`
	Commit             apiCommit `json:"commit"`
	Merged             bool      `json:"merged"`
	Protected          bool      `json:"protected"`
	Default            bool      `json:"default"`
	DevelopersCanPush  bool      `json:"developers_can_push"`
	DevelopersCanMerge bool      `json:"developers_can_merge"`
	CanPush            bool      `json:"can_push"`
	WebURL             string    `json:"web_url"`
}

func (s *Sim) branchJSON(ctx context.Context, p *project, name, sha, base string, u *user) apiBranch {
	gc, _ := p.repo.commit(ctx, sha)
	b := apiBranch{Name: name, Commit: s.commitJSON(ctx, p, gc, base, false), Default: name == p.defaultBranch,
		CanPush: p.canPush(u, name), WebURL: base + "/" + p.FullPath + "/-/tree/" + name}
	if name != p.defaultBranch {
		if head, err := p.repo.branchHead(ctx, p.defaultBranch); err == nil {
			b.Merged = p.repo.isAncestor(ctx, sha, head)
		}
	}
	if pb := p.protection(name); pb != nil {
		b.Protected = true
		b.DevelopersCanPush = pb.PushAccessLevel == AccessDevelopers
		b.DevelopersCanMerge = pb.MergeAccessLevel == AccessDevelopers
	}
	return b
}

func (s *Sim) getBranch(c *call, p *project) {
	name := c.r.PathValue("branch")
	sha, err := p.repo.branchHead(c.r.Context(), name)
	if err != nil {
		c.notFound("Branch")
		return
	}
	c.json(http.StatusOK, s.branchJSON(c.r.Context(), p, name, sha, c.base, c.user))
}

func (s *Sim) listBranches(c *call, p *project) {
	ctx := c.r.Context()
	bs, err := p.repo.branches(ctx)
	if err != nil {
		c.message(500, "500 Internal Server Error")
		return
	}
	search := c.params.str("search")
	var names []string
	for _, n := range sortedKeys(bs) {
		if search == "" || strings.Contains(n, search) {
			names = append(names, n)
		}
	}
	lo, hi := c.paginate(len(names))
	out := []apiBranch{}
	for _, n := range names[lo:hi] {
		out = append(out, s.branchJSON(ctx, p, n, bs[n], c.base, c.user))
	}
	c.json(http.StatusOK, out)
}

// createBranch serves POST /projects/:id/repository/branches (branch, ref).
func (s *Sim) createBranch(c *call) {
	if !c.requireParams("branch", "ref") {
		return
	}
	p := c.repoProject()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	ctx := c.r.Context()
	name, ref := c.params.str("branch"), c.params.str("ref")
	if p.role(c.user) < RoleDeveloper {
		c.forbidden("")
		return
	}
	if !validBranchName(name) {
		c.badRequest("Branch name is invalid")
		return
	}
	// Creating a branch a rule protects needs push or merge rights on it
	// (Gitlab::Checks::BranchCheck: protected branch creation).
	if p.protection(name) != nil && !p.canPush(c.user, name) && !p.canMerge(c.user, name) {
		c.forbidden("You are not allowed to create protected branches on this project.")
		return
	}
	if _, err := p.repo.branchHead(ctx, name); err == nil {
		c.badRequest("Branch already exists")
		return
	}
	sha, err := p.repo.resolve(ctx, ref)
	if err != nil {
		c.badRequest("Invalid reference name: " + ref)
		return
	}
	if err := p.repo.updateRef(ctx, "refs/heads/"+name, sha, ""); err != nil {
		c.badRequest("Branch already exists")
		return
	}
	s.afterPushLocked(ctx, p, c.user, name, "", sha)
	c.json(http.StatusCreated, s.branchJSON(ctx, p, name, sha, c.base, c.user))
}

// deleteBranch serves DELETE /projects/:id/repository/branches/:branch.
func (s *Sim) deleteBranch(c *call, p *project) {
	ctx := c.r.Context()
	name := c.r.PathValue("branch")
	sha, err := p.repo.branchHead(ctx, name)
	if err != nil {
		c.notFound("Branch")
		return
	}
	if name == p.defaultBranch {
		c.badRequest("The default branch of a project cannot be deleted.")
		return
	}
	if p.role(c.user) < RoleDeveloper || (p.protection(name) != nil && p.role(c.user) < RoleMaintainer) {
		c.forbidden("")
		return
	}
	if err := s.deleteBranchLocked(ctx, p, c.user, name, sha); err != nil {
		c.message(500, "500 Internal Server Error")
		return
	}
	c.w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) deleteBranchLocked(ctx context.Context, p *project, u *user, name, sha string) error {
	if err := p.repo.updateRef(ctx, "refs/heads/"+name, "", sha); err != nil {
		return err
	}
	s.afterPushLocked(ctx, p, u, name, sha, "")
	return nil
}

// afterPushLocked runs the side effects of a branch moving from before to after
// ("" for creation or deletion): the Push Hook and merge request refreshes.
func (s *Sim) afterPushLocked(ctx context.Context, p *project, u *user, branch, before, after string) {
	s.emitPush(ctx, p, u, branch, before, after)
	s.refreshMRsLocked(ctx, p, p.ID, u, branch, after)
	if up := p.forkedFrom; up != nil {
		// MRs from this fork live in the upstream project (lock order: fork, then upstream).
		up.mu.Lock()
		s.refreshMRsLocked(ctx, up, p.ID, u, branch, after)
		up.mu.Unlock()
	}
}
