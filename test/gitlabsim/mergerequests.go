package gitlabsim

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mergeRequest is one MR. Its fields are guarded by the project mutex.
type mergeRequest struct {
	ID, IID                 int
	Title, Description      string
	SourceBranch            string
	TargetBranch            string
	SourceProjectID         int // the project itself, or a fork of it
	AuthorID                int
	AssigneeIDs             []int
	ReviewerIDs             []int
	Labels                  []string
	State                   string // opened, closed, merged
	ForceRemoveSourceBranch bool
	Squash                  bool
	CreatedAt, UpdatedAt    time.Time
	MergedAt, ClosedAt      time.Time
	LastEditedAt            time.Time
	LastEditedByID          int
	UpdatedByID             int
	MergeUserID, ClosedByID int
	MergeCommitSHA          string
	SquashCommitSHA         string
	SHA                     string // head of the source branch
	BaseSHA                 string // merge base with the target
	StartSHA                string // head of the target branch
	commits                 []string
	everCommits             map[string]bool
	conflict                bool
	canFastForward          bool
	changesCount            int
	approvals               []approval
	notes                   []*note
	autoMerge               bool
	autoMergeUserID         int
	autoMergeOpts           MergeSpec
	checkReads              int
	checkUntil              time.Time
}

type approval struct {
	UserID int
	At     time.Time
}

var draftRE = regexp.MustCompile(`(?i)^\s*(\[draft\]|\(draft\)|draft:|draft\s-\s|draft\s)`)

func (mr *mergeRequest) draft() bool { return draftRE.MatchString(mr.Title) }

func (mr *mergeRequest) containsCommit(sha string) bool {
	return sha == mr.SHA || sha == mr.MergeCommitSHA || sha == mr.SquashCommitSHA || mr.everCommits[sha]
}

func (mr *mergeRequest) approvedBy(uid int) bool {
	return slices.ContainsFunc(mr.approvals, func(a approval) bool { return a.UserID == uid })
}

func (p *project) mr(iid int) *mergeRequest {
	if iid < 1 || iid > len(p.mrs) {
		return nil
	}
	return p.mrs[iid-1]
}

func (p *project) approvalsLeft(mr *mergeRequest) int {
	return max(0, p.settings.ApprovalsRequired-len(mr.approvals))
}

// refreshLocked recomputes the MR's diff refs, commits and mergeability from git.
func (s *Sim) refreshLocked(ctx context.Context, p *project, mr *mergeRequest) {
	if sha, err := s.sourceHeadLocked(ctx, p, mr); err == nil {
		mr.SHA = sha
	}
	target, err := p.repo.branchHead(ctx, mr.TargetBranch)
	if err != nil || mr.SHA == "" {
		mr.conflict = true
		return
	}
	mr.StartSHA = target
	mr.BaseSHA, _ = p.repo.mergeBase(ctx, target, mr.SHA)
	cs, _ := p.repo.log(ctx, logQuery{Ref: mr.SHA, Exclude: target})
	mr.commits = mr.commits[:0]
	if mr.everCommits == nil {
		mr.everCommits = map[string]bool{}
	}
	for _, c := range cs {
		mr.commits = append(mr.commits, c.SHA)
		mr.everCommits[c.SHA] = true
	}
	_, conflict, err := p.repo.mergeTree(ctx, target, mr.SHA)
	mr.conflict = conflict || err != nil
	mr.canFastForward = p.repo.isAncestor(ctx, target, mr.SHA)
	mr.changesCount = 0
	if mr.BaseSHA != "" {
		if d, err := p.repo.diff(ctx, mr.BaseSHA, mr.SHA); err == nil {
			mr.changesCount = len(d)
		}
	}
}

// startChecking makes the MR report "checking" for the configured reads/time.
func (s *Sim) startChecking(p *project, mr *mergeRequest) {
	cfg := p.checkingConfig(s.defaultChecking())
	mr.checkReads = cfg.Reads
	mr.checkUntil = time.Time{}
	if cfg.Duration > 0 {
		mr.checkUntil = s.opts.Now().Add(cfg.Duration)
		iid := mr.IID
		time.AfterFunc(cfg.Duration+time.Millisecond, func() {
			if s.ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if m := p.mr(iid); m != nil {
				s.tryAutoMergeLocked(s.ctx, p, m)
			}
		})
	}
}

func (s *Sim) isChecking(mr *mergeRequest) bool {
	return mr.checkReads > 0 || s.opts.Now().Before(mr.checkUntil)
}

// readLocked counts one read of the MR towards finishing its mergeability check.
func (s *Sim) readLocked(ctx context.Context, p *project, mr *mergeRequest) {
	if mr.checkReads > 0 {
		mr.checkReads--
		if !s.isChecking(mr) {
			s.tryAutoMergeLocked(ctx, p, mr)
		}
	}
}

// detailedStatus computes detailed_merge_status.
func (s *Sim) detailedStatus(p *project, mr *mergeRequest) string {
	switch {
	case mr.State != "opened":
		return "not_open"
	case s.isChecking(mr):
		return "checking"
	case mr.draft():
		return "draft_status"
	case mr.conflict:
		return "conflict"
	case p.settings.MergeMethod != "merge" && !mr.canFastForward:
		return "need_rebase"
	case p.approvalsLeft(mr) > 0:
		return "not_approved"
	}
	if p.settings.OnlyAllowMergeIfPipelineSucceeds {
		pl := p.latestPipeline(mr.SHA, "")
		switch {
		case pl == nil:
			return "ci_must_pass"
		case pl.active():
			return "ci_still_running"
		case pl.Status != "success" && pl.Status != "skipped":
			return "ci_must_pass"
		}
	}
	return "mergeable"
}

func (s *Sim) mergeStatus(mr *mergeRequest) string {
	switch {
	case mr.State == "opened" && s.isChecking(mr):
		return "checking"
	case mr.conflict && mr.State == "opened":
		return "cannot_be_merged"
	}
	return "can_be_merged"
}

// ---- JSON ----

type apiReferences struct {
	Short    string `json:"short"`
	Relative string `json:"relative"`
	Full     string `json:"full"`
}

type apiDiffRefs struct {
	BaseSHA  string `json:"base_sha"`
	HeadSHA  string `json:"head_sha"`
	StartSHA string `json:"start_sha"`
}

type apiMergeRequest struct {
	ID                          int              `json:"id"`
	IID                         int              `json:"iid"`
	ProjectID                   int              `json:"project_id"`
	Title                       string           `json:"title"`
	Description                 string           `json:"description"`
	State                       string           `json:"state"`
	CreatedAt                   *apiTime         `json:"created_at"`
	UpdatedAt                   *apiTime         `json:"updated_at"`
	MergedBy                    *apiUser         `json:"merged_by"`
	MergeUser                   *apiUser         `json:"merge_user"`
	MergedAt                    *apiTime         `json:"merged_at"`
	ClosedBy                    *apiUser         `json:"closed_by"`
	ClosedAt                    *apiTime         `json:"closed_at"`
	TargetBranch                string           `json:"target_branch"`
	SourceBranch                string           `json:"source_branch"`
	UserNotesCount              int              `json:"user_notes_count"`
	Upvotes                     int              `json:"upvotes"`
	Downvotes                   int              `json:"downvotes"`
	Author                      apiUser          `json:"author"`
	Assignees                   []apiUser        `json:"assignees"`
	Assignee                    *apiUser         `json:"assignee"`
	Reviewers                   []apiUser        `json:"reviewers"`
	SourceProjectID             int              `json:"source_project_id"`
	TargetProjectID             int              `json:"target_project_id"`
	Labels                      []string         `json:"labels"`
	Draft                       bool             `json:"draft"`
	WorkInProgress              bool             `json:"work_in_progress"`
	Milestone                   any              `json:"milestone"`
	MergeWhenPipelineSucceeds   bool             `json:"merge_when_pipeline_succeeds"`
	MergeStatus                 string           `json:"merge_status"`
	DetailedMergeStatus         string           `json:"detailed_merge_status"`
	MergeAfter                  *apiTime         `json:"merge_after"`
	SHA                         string           `json:"sha"`
	MergeCommitSHA              *string          `json:"merge_commit_sha"`
	SquashCommitSHA             *string          `json:"squash_commit_sha"`
	DiscussionLocked            *bool            `json:"discussion_locked"`
	ShouldRemoveSourceBranch    *bool            `json:"should_remove_source_branch"`
	ForceRemoveSourceBranch     bool             `json:"force_remove_source_branch"`
	PreparedAt                  *apiTime         `json:"prepared_at"`
	Reference                   string           `json:"reference"`
	References                  apiReferences    `json:"references"`
	WebURL                      string           `json:"web_url"`
	TimeStats                   map[string]any   `json:"time_stats"`
	Squash                      bool             `json:"squash"`
	SquashOnMerge               bool             `json:"squash_on_merge"`
	TaskCompletionStatus        map[string]int   `json:"task_completion_status"`
	HasConflicts                bool             `json:"has_conflicts"`
	BlockingDiscussionsResolved bool             `json:"blocking_discussions_resolved"`
	Imported                    bool             `json:"imported"`
	ImportedFrom                string           `json:"imported_from"`
	Subscribed                  *bool            `json:"subscribed,omitempty"`
	ChangesCount                *string          `json:"changes_count,omitempty"`
	LatestBuildStartedAt        *apiTime         `json:"latest_build_started_at,omitempty"`
	LatestBuildFinishedAt       *apiTime         `json:"latest_build_finished_at,omitempty"`
	FirstDeployedToProduction   *apiTime         `json:"first_deployed_to_production_at,omitempty"`
	Pipeline                    *apiPipelineInfo `json:"pipeline,omitempty"`
	HeadPipeline                *apiPipeline     `json:"head_pipeline,omitempty"`
	DiffRefs                    *apiDiffRefs     `json:"diff_refs,omitempty"`
	MergeError                  *string          `json:"merge_error,omitempty"`
	User                        map[string]bool  `json:"user,omitempty"`
	DivergedCommitsCount        *int             `json:"diverged_commits_count,omitempty"`
	RebaseInProgress            *bool            `json:"rebase_in_progress,omitempty"`
	FirstContribution           *bool            `json:"first_contribution,omitempty"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Sim) userJSONPtr(id int, base string) *apiUser {
	u := s.userByID(id)
	if u == nil {
		return nil
	}
	j := basicUser(u, base)
	return &j
}

// mrJSON renders an MR; the single-MR representation adds changes_count, head_pipeline and more.
// A non-nil viewer marks the single-MR representation and fills user.can_merge.
func (s *Sim) mrJSON(ctx context.Context, p *project, mr *mergeRequest, base string, viewer *user) apiMergeRequest {
	author := basicUser(s.userByID(mr.AuthorID), base)
	shouldRemove := mr.ForceRemoveSourceBranch
	labels := append([]string{}, mr.Labels...)
	out := apiMergeRequest{
		ID: mr.ID, IID: mr.IID, ProjectID: p.ID, Title: mr.Title, Description: mr.Description, State: mr.State,
		CreatedAt: tptr(mr.CreatedAt), UpdatedAt: tptr(mr.UpdatedAt),
		MergedBy: s.userJSONPtr(mr.MergeUserID, base), MergeUser: s.userJSONPtr(mr.MergeUserID, base), MergedAt: tptr(mr.MergedAt),
		ClosedBy: s.userJSONPtr(mr.ClosedByID, base), ClosedAt: tptr(mr.ClosedAt),
		TargetBranch: mr.TargetBranch, SourceBranch: mr.SourceBranch, UserNotesCount: mr.userNotes(),
		Author: author, Assignees: s.apiUsers(mr.AssigneeIDs, base), Reviewers: s.apiUsers(mr.ReviewerIDs, base),
		SourceProjectID: mr.SourceProjectID, TargetProjectID: p.ID, Labels: labels,
		Draft: mr.draft(), WorkInProgress: mr.draft(),
		MergeWhenPipelineSucceeds: mr.autoMerge,
		MergeStatus:               s.mergeStatus(mr), DetailedMergeStatus: s.detailedStatus(p, mr),
		SHA: mr.SHA, MergeCommitSHA: strp(mr.MergeCommitSHA), SquashCommitSHA: strp(mr.SquashCommitSHA),
		ShouldRemoveSourceBranch: &shouldRemove, ForceRemoveSourceBranch: mr.ForceRemoveSourceBranch,
		PreparedAt: tptr(mr.CreatedAt), Reference: "!" + strconv.Itoa(mr.IID),
		References: apiReferences{Short: "!" + strconv.Itoa(mr.IID), Relative: "!" + strconv.Itoa(mr.IID), Full: p.FullPath + "!" + strconv.Itoa(mr.IID)},
		WebURL:     base + "/" + p.FullPath + "/-/merge_requests/" + strconv.Itoa(mr.IID),
		TimeStats:  map[string]any{"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": nil, "human_total_time_spent": nil},
		Squash:     mr.Squash, SquashOnMerge: mr.Squash,
		TaskCompletionStatus: map[string]int{"count": 0, "completed_count": 0},
		HasConflicts:         mr.conflict && mr.State == "opened", BlockingDiscussionsResolved: true,
		ImportedFrom: "none",
	}
	if mr.State != "merged" {
		out.ShouldRemoveSourceBranch = nil
	}
	if len(mr.AssigneeIDs) > 0 {
		out.Assignee = &out.Assignees[0]
	}
	if viewer != nil {
		f := false
		cc := strconv.Itoa(mr.changesCount)
		out.Subscribed = &f
		out.ChangesCount = &cc
		out.DiffRefs = &apiDiffRefs{BaseSHA: mr.BaseSHA, HeadSHA: mr.SHA, StartSHA: mr.StartSHA}
		out.User = map[string]bool{"can_merge": p.canMerge(viewer, mr.TargetBranch)}
		div := 0
		out.DivergedCommitsCount = &div
		out.RebaseInProgress = &f
		out.FirstContribution = &f
		if pl := p.latestPipeline(mr.SHA, ""); pl != nil {
			info := pl.info(p, base)
			out.Pipeline = &info
			full := pl.json(p, base, s)
			out.HeadPipeline = &full
		}
	}
	return out
}

func (s *Sim) apiUsers(ids []int, base string) []apiUser {
	out := []apiUser{}
	for _, id := range ids {
		if u := s.userByID(id); u != nil {
			out = append(out, basicUser(u, base))
		}
	}
	return out
}

func (mr *mergeRequest) userNotes() int {
	n := 0
	for _, nt := range mr.notes {
		if !nt.System {
			n++
		}
	}
	return n
}

// ---- REST: create, list, get, update ----

// createMR serves POST /projects/:id/merge_requests. :id is the source
// project; target_project_id names its upstream for an MR from a fork.
func (s *Sim) createMR(c *call) {
	if !c.requireParams("source_branch", "target_branch", "title") {
		return
	}
	p := c.repoProject()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	spec := MergeRequestSpec{
		SourceBranch: c.params.str("source_branch"), TargetBranch: c.params.str("target_branch"),
		Title: c.params.str("title"), Description: c.params.str("description"),
		TargetProject: c.params.str("target_project_id"), Squash: c.params.boolOr("squash", false),
	}
	if v, ok := c.params.bool("remove_source_branch"); ok {
		spec.RemoveSourceBranch = &v
	}
	spec.Labels, _ = c.params.list("labels")
	assignees, reviewers := s.userIDs(c.params, "assignee_ids", "assignee_id"), s.userIDs(c.params, "reviewer_ids")
	tgt, mr, aerr := s.createMRLocked(c.r.Context(), p, c.user, spec, assignees, reviewers)
	if aerr != nil {
		c.fail(aerr)
		return
	}
	if tgt != p {
		defer tgt.mu.Unlock()
	}
	c.json(http.StatusCreated, s.mrJSON(c.r.Context(), tgt, mr, c.base, c.user))
}

// MergeRequestSpec describes a merge request to open (the parameters of
// POST /projects/:id/merge_requests).
type MergeRequestSpec struct {
	SourceBranch string   `json:"source_branch"`
	TargetBranch string   `json:"target_branch"`
	Title        string   `json:"title"`
	Description  string   `json:"description,omitempty"`
	Labels       []string `json:"labels,omitempty"`
	// TargetProject is the upstream project (id or path) of an MR from a
	// fork; empty: the source project itself.
	TargetProject      string `json:"target_project,omitempty"`
	RemoveSourceBranch *bool  `json:"remove_source_branch,omitempty"`
	Squash             bool   `json:"squash,omitempty"`
}

// createMRLocked opens an MR from src (locked). It returns the target
// project, which it has locked too when it is not src (the caller unlocks).
func (s *Sim) createMRLocked(ctx context.Context, src *project, u *user, spec MergeRequestSpec, assignees, reviewers []int) (*project, *mergeRequest, *apiError) {
	if src.role(u) < RoleDeveloper {
		return nil, nil, errMsg(http.StatusForbidden, "403 Forbidden")
	}
	p := src
	if tp := spec.TargetProject; tp != "" && tp != strconv.Itoa(src.ID) && tp != src.FullPath {
		up, err := s.lookupProject(tp)
		if err != nil || up != src.forkedFrom {
			return nil, nil, errMsg(http.StatusUnprocessableEntity, []string{"Validate fork Source project is not a fork of the target project"})
		}
		// Locks go from a fork to its upstream.
		up.mu.Lock()
		if !up.visibleTo(u) || !up.canReadRepo(u) {
			up.mu.Unlock()
			return nil, nil, errMsg(http.StatusForbidden, "403 Forbidden")
		}
		p = up
	}
	fail := func(e *apiError) (*project, *mergeRequest, *apiError) {
		if p != src {
			p.mu.Unlock()
		}
		return nil, nil, e
	}
	srcBranch, tgt, title := spec.SourceBranch, spec.TargetBranch, strings.TrimSpace(spec.Title)
	if title == "" {
		return fail(errMsg(http.StatusBadRequest, map[string]any{"title": []string{"can't be blank"}}))
	}
	if srcBranch == tgt && p == src {
		return fail(errMsg(http.StatusUnprocessableEntity, []string{"You can't use same project/branch for source and target"}))
	}
	if _, err := src.repo.branchHead(ctx, srcBranch); err != nil {
		return fail(errMsg(http.StatusUnprocessableEntity, []string{fmt.Sprintf("Source branch \"%s\" does not exist", srcBranch)}))
	}
	if _, err := p.repo.branchHead(ctx, tgt); err != nil {
		return fail(errMsg(http.StatusUnprocessableEntity, []string{fmt.Sprintf("Target branch \"%s\" does not exist", tgt)}))
	}
	for _, other := range p.mrs {
		// MergeRequest#validate_branches: same source project, source and target branch.
		if other.State == "opened" && other.SourceBranch == srcBranch && other.SourceProjectID == src.ID && other.TargetBranch == tgt {
			return fail(errMsg(http.StatusConflict, []string{fmt.Sprintf("Another open merge request already exists for this source branch: !%d", other.IID)}))
		}
	}
	now := s.now()
	remove := p.settings.RemoveSourceBranchAfterMerge
	if spec.RemoveSourceBranch != nil {
		remove = *spec.RemoveSourceBranch
	}
	mr := &mergeRequest{
		ID: s.newID("merge_requests"), IID: len(p.mrs) + 1, Title: title, Description: spec.Description,
		SourceBranch: srcBranch, TargetBranch: tgt, SourceProjectID: src.ID, AuthorID: u.ID, State: "opened",
		ForceRemoveSourceBranch: remove, Squash: spec.Squash, CreatedAt: now, UpdatedAt: now,
		AssigneeIDs: assignees, ReviewerIDs: reviewers,
	}
	if len(spec.Labels) > 0 {
		mr.Labels = p.ensureLabels(s, spec.Labels)
	}
	p.mrs = append(p.mrs, mr)
	s.refreshLocked(ctx, p, mr)
	s.startChecking(p, mr)
	s.emitMR(ctx, p, mr, u, "open", mrOpenChanges(mr, u, p))
	return p, mr, nil
}

// CreateMergeRequest opens an MR from projectRef as username, with the REST
// API's rules; spec.TargetProject opens it from a fork into its upstream.
// It returns the MR's iid in the target project.
func (s *Sim) CreateMergeRequest(projectRef, username string, spec MergeRequestSpec) (int, error) {
	src, err := s.lookupProject(projectRef)
	if err != nil {
		return 0, err
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return 0, err
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	tgt, mr, aerr := s.createMRLocked(s.ctx, src, u, spec, nil, nil)
	if aerr != nil {
		return 0, aerr
	}
	if tgt != src {
		tgt.mu.Unlock()
	}
	return mr.IID, nil
}

// listMRs serves GET /projects/:id/merge_requests.
func (s *Sim) listMRs(c *call, p *project) {
	ctx := c.r.Context()
	state := c.params.str("state")
	if state == "" {
		state = "all"
	}
	wantLabels, _ := c.params.list("labels")
	iids, _ := c.params.list("iids")
	var sel []*mergeRequest
	for _, mr := range p.mrs {
		switch {
		case state != "all" && mr.State != state:
		case c.params.has("source_branch") && mr.SourceBranch != c.params.str("source_branch"):
		case c.params.has("target_branch") && mr.TargetBranch != c.params.str("target_branch"):
		case c.params.has("author_id") && strconv.Itoa(mr.AuthorID) != c.params.str("author_id"):
		case c.params.has("author_username") && userName(s.userByID(mr.AuthorID)) != c.params.str("author_username"):
		case len(iids) > 0 && !slices.Contains(iids, strconv.Itoa(mr.IID)):
		case !labelsMatch(mr.Labels, wantLabels):
		case c.params.has("search") && !strings.Contains(mr.Title+" "+mr.Description, c.params.str("search")):
		default:
			sel = append(sel, mr)
		}
	}
	sortListed(c, sel, func(mr *mergeRequest) (time.Time, time.Time, int) { return mr.CreatedAt, mr.UpdatedAt, mr.IID })
	lo, hi := c.paginate(len(sel))
	out := []apiMergeRequest{}
	for _, mr := range sel[lo:hi] {
		out = append(out, s.mrJSON(ctx, p, mr, c.base, nil))
		s.readLocked(ctx, p, mr)
	}
	c.json(http.StatusOK, out)
}

// userIDs reads user id list parameters, keeping known users only.
func (s *Sim) userIDs(p params, names ...string) []int {
	var out []int
	for _, n := range names {
		ids, _ := p.list(n)
		for _, v := range ids {
			id, err := strconv.Atoi(v)
			if err == nil && s.userByID(id) != nil && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

func userName(u *user) string {
	if u == nil {
		return ""
	}
	return u.Username
}

func labelsMatch(have, want []string) bool {
	if len(want) == 1 && strings.EqualFold(want[0], "none") {
		return len(have) == 0
	}
	if len(want) == 1 && strings.EqualFold(want[0], "any") {
		return len(have) > 0
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// mrParam resolves :merge_request_iid; it answers 404 and returns nil when unknown.
func (c *call) mrParam(p *project) *mergeRequest {
	iid, err := strconv.Atoi(c.r.PathValue("iid"))
	if err != nil {
		c.notFound("Merge Request")
		return nil
	}
	mr := p.mr(iid)
	if mr == nil {
		c.notFound("Merge Request")
	}
	return mr
}

// getMR serves GET /projects/:id/merge_requests/:iid. Each read advances the mergeability check.
func (s *Sim) getMR(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	ctx := c.r.Context()
	out := s.mrJSON(ctx, p, mr, c.base, c.user)
	s.readLocked(ctx, p, mr)
	c.json(http.StatusOK, out)
}

// updateMR serves PUT /projects/:id/merge_requests/:iid.
func (s *Sim) updateMR(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	ctx := c.r.Context()
	if p.role(c.user) < RoleDeveloper && c.user.ID != mr.AuthorID {
		c.forbidden("")
		return
	}
	changes := map[string]any{}
	set := func(key string, prev, cur any) { changes[key] = map[string]any{"previous": prev, "current": cur} }
	now := s.now()
	if c.params.has("title") {
		t := strings.TrimSpace(c.params.str("title"))
		if t == "" {
			c.badRequest(map[string]any{"title": []string{"can't be blank"}})
			return
		}
		if t != mr.Title {
			wasDraft := mr.draft()
			set("title", mr.Title, t)
			mr.Title = t
			if wasDraft != mr.draft() {
				set("draft", wasDraft, mr.draft())
			}
		}
	}
	if c.params.has("description") && c.params.str("description") != mr.Description {
		set("description", mr.Description, c.params.str("description"))
		mr.Description = c.params.str("description")
		set("last_edited_at", hookTime(mr.LastEditedAt), hookTime(now))
		set("last_edited_by_id", nilIfZero(mr.LastEditedByID), c.user.ID)
		mr.LastEditedAt, mr.LastEditedByID = now, c.user.ID
	}
	newLabels := append([]string{}, mr.Labels...)
	if ls, ok := c.params.list("labels"); ok {
		newLabels = ls
	}
	if ls, ok := c.params.list("add_labels"); ok {
		for _, l := range ls {
			if !slices.Contains(newLabels, l) {
				newLabels = append(newLabels, l)
			}
		}
	}
	if ls, ok := c.params.list("remove_labels"); ok {
		newLabels = slices.DeleteFunc(newLabels, func(l string) bool { return slices.Contains(ls, l) })
	}
	newLabels = p.ensureLabels(s, newLabels)
	if !slices.Equal(newLabels, mr.Labels) {
		changes["labels"] = map[string]any{"previous": p.labelsJSON(mr.Labels), "current": p.labelsJSON(newLabels)}
		mr.Labels = newLabels
	}
	if c.params.has("target_branch") && c.params.str("target_branch") != mr.TargetBranch {
		tb := c.params.str("target_branch")
		if _, err := p.repo.branchHead(ctx, tb); err != nil {
			c.message(http.StatusUnprocessableEntity, []string{fmt.Sprintf("Target branch \"%s\" does not exist", tb)})
			return
		}
		set("target_branch", mr.TargetBranch, tb)
		mr.TargetBranch = tb
		s.refreshLocked(ctx, p, mr)
		s.startChecking(p, mr)
	}
	if v, ok := c.params.bool("remove_source_branch"); ok && v != mr.ForceRemoveSourceBranch {
		mr.ForceRemoveSourceBranch = v
	}
	if v, ok := c.params.bool("squash"); ok && v != mr.Squash {
		set("squash", mr.Squash, v)
		mr.Squash = v
	}
	action := "update"
	switch c.params.str("state_event") {
	case "close":
		if mr.State == "opened" {
			set("state_id", 1, 2)
			mr.State, mr.ClosedAt, mr.ClosedByID = "closed", now, c.user.ID
			mr.autoMerge = false
			s.addSystemNote(p, mr, c.user, "closed")
			action = "close"
		}
	case "reopen":
		if mr.State == "closed" {
			for _, other := range p.mrs {
				if other != mr && other.State == "opened" && other.SourceBranch == mr.SourceBranch && other.SourceProjectID == mr.SourceProjectID && other.TargetBranch == mr.TargetBranch {
					c.message(http.StatusConflict, []string{fmt.Sprintf("Another open merge request already exists for this source branch: !%d", other.IID)})
					return
				}
			}
			set("state_id", 2, 1)
			mr.State, mr.ClosedAt, mr.ClosedByID = "opened", time.Time{}, 0
			s.refreshLocked(ctx, p, mr)
			s.startChecking(p, mr)
			s.addSystemNote(p, mr, c.user, "reopened")
			action = "reopen"
		}
	}
	if len(changes) > 0 {
		set("updated_at", hookTime(mr.UpdatedAt), hookTime(now))
		set("updated_by_id", nilIfZero(mr.UpdatedByID), c.user.ID)
		mr.UpdatedAt, mr.UpdatedByID = now, c.user.ID
		s.emitMR(ctx, p, mr, c.user, action, changes)
	}
	c.json(http.StatusOK, s.mrJSON(ctx, p, mr, c.base, c.user))
}

func nilIfZero(id int) any {
	if id == 0 {
		return nil
	}
	return id
}

// refreshMRsLocked updates MRs of p after branch of project srcID (p itself
// or a fork of it) moved to after ("" when deleted).
func (s *Sim) refreshMRsLocked(ctx context.Context, p *project, srcID int, u *user, branch, after string) {
	for _, mr := range p.mrs {
		if mr.State != "opened" {
			continue
		}
		switch {
		case mr.SourceProjectID == srcID && mr.SourceBranch == branch && after != "":
			oldrev := mr.SHA
			s.refreshLocked(ctx, p, mr)
			if oldrev == mr.SHA {
				continue
			}
			// GitLab's system note: "added N commits", one "<short sha> - <title>"
			// per new commit, and a link to compare with the previous version.
			cs, _ := p.repo.log(ctx, logQuery{Ref: mr.SHA, Exclude: oldrev})
			plural := "commit"
			if len(cs) != 1 {
				plural = "commits"
			}
			var items strings.Builder
			for i := len(cs) - 1; i >= 0; i-- {
				fmt.Fprintf(&items, "<li>%s - %s</li>", cs[i].SHA[:8], cs[i].Title())
			}
			compare := s.BaseURL() + "/" + p.FullPath + "/-/merge_requests/" + strconv.Itoa(mr.IID) + "/diffs?start_sha=" + oldrev
			s.addSystemNote(p, mr, u, fmt.Sprintf("added %d %s\n\n<ul>%s</ul>\n\n[Compare with previous version](%s)", len(cs), plural, items.String(), compare))
			if p.settings.ResetApprovalsOnPush && len(mr.approvals) > 0 {
				mr.approvals = nil
			}
			s.startChecking(p, mr)
			now := s.now()
			// GitLab sends two MR hooks for a push to the source branch: the
			// refresh with oldrev, then the update of the merge status.
			ch := map[string]any{"updated_at": map[string]any{"previous": hookTime(mr.UpdatedAt), "current": hookTime(now)}}
			mr.UpdatedAt = now
			s.emitMRWithOldrev(ctx, p, mr, u, "update", ch, oldrev)
			s.emitMR(ctx, p, mr, u, "update", map[string]any{"updated_at": map[string]any{"previous": hookTime(now), "current": hookTime(now)}})
		case srcID == p.ID && mr.TargetBranch == branch:
			s.refreshLocked(ctx, p, mr)
			s.startChecking(p, mr)
		}
	}
}

// ---- merge ----

// MergeSpec are the parameters of a merge (PUT .../merge).
type MergeSpec struct {
	SHA                      string `json:"sha,omitempty"`
	AutoMerge                bool   `json:"auto_merge,omitempty"`
	Squash                   *bool  `json:"squash,omitempty"`
	ShouldRemoveSourceBranch *bool  `json:"should_remove_source_branch,omitempty"`
	MergeCommitMessage       string `json:"merge_commit_message,omitempty"`
	SquashCommitMessage      string `json:"squash_commit_message,omitempty"`
}

// acceptLocked runs GitLab's accept logic (lib/api/merge_requests.rb) and
// returns the HTTP error, whether auto-merge was set instead of merging.
func (s *Sim) acceptLocked(ctx context.Context, p *project, mr *mergeRequest, u *user, spec MergeSpec) (autoSet bool, aerr *apiError) {
	if !p.canMerge(u, mr.TargetBranch) {
		return false, errMsg(http.StatusUnauthorized, "401 Unauthorized")
	}
	if mr.State != "opened" {
		return false, errMsg(http.StatusMethodNotAllowed, "405 Method Not Allowed")
	}
	status := s.detailedStatus(p, mr)
	s.readLocked(ctx, p, mr)
	waitable := map[string]bool{"checking": true, "not_approved": true, "ci_still_running": true, "ci_must_pass": true, "draft_status": true}
	immediate := status == "mergeable"
	automatic := spec.AutoMerge && waitable[status]
	if spec.AutoMerge && status == "mergeable" {
		if pl := p.latestPipeline(mr.SHA, ""); pl != nil && pl.active() {
			automatic, immediate = true, false
		}
	}
	if !immediate && !automatic {
		if status == "conflict" || status == "need_rebase" {
			return false, errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
		return false, errMsg(http.StatusMethodNotAllowed, "405 Method Not Allowed")
	}
	if spec.SHA != "" && spec.SHA != mr.SHA {
		return false, errMsg(http.StatusConflict, "SHA does not match HEAD of source branch: "+mr.SHA)
	}
	if automatic {
		if !mr.autoMerge {
			mr.autoMerge, mr.autoMergeUserID, mr.autoMergeOpts = true, u.ID, spec
			s.addSystemNote(p, mr, u, "enabled an automatic merge when all merge checks for "+mr.SHA[:8]+" pass")
		}
		return true, nil
	}
	if err := s.mergeLocked(ctx, p, mr, u, spec); err != nil {
		return false, err
	}
	return false, nil
}

// tryAutoMergeLocked merges an MR with auto-merge set once it is mergeable.
func (s *Sim) tryAutoMergeLocked(ctx context.Context, p *project, mr *mergeRequest) {
	if !mr.autoMerge || mr.State != "opened" || s.detailedStatus(p, mr) != "mergeable" {
		return
	}
	if pl := p.latestPipeline(mr.SHA, ""); pl != nil && pl.active() {
		return
	}
	u := s.userByID(mr.autoMergeUserID)
	if u == nil || !p.canMerge(u, mr.TargetBranch) {
		return
	}
	spec := mr.autoMergeOpts
	spec.SHA = ""
	if err := s.mergeLocked(ctx, p, mr, u, spec); err != nil {
		s.log.Debug("auto-merge failed", "project", p.FullPath, "iid", mr.IID, "err", err)
	}
}

// mergeLocked writes the merge to the target branch and records it.
func (s *Sim) mergeLocked(ctx context.Context, p *project, mr *mergeRequest, u *user, spec MergeSpec) *apiError {
	s.refreshLocked(ctx, p, mr)
	target, err := p.repo.branchHead(ctx, mr.TargetBranch)
	if err != nil || mr.SHA == "" {
		return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
	}
	now := s.now()
	author := s.userByID(mr.AuthorID)
	me := gitIdent{Name: u.Name, Email: u.Email, When: now}
	head := mr.SHA
	squash := mr.Squash
	if spec.Squash != nil {
		squash = *spec.Squash
	}
	if squash && len(mr.commits) > 1 {
		tree, err := p.repo.treeOf(ctx, mr.SHA)
		if err != nil {
			return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
		msg := spec.SquashCommitMessage
		if msg == "" {
			msg = mr.Title
		}
		a := me
		if author != nil {
			a = gitIdent{Name: author.Name, Email: author.Email, When: now}
		}
		sq, err := p.repo.commitTree(ctx, tree, []string{mr.BaseSHA}, msg, a, me)
		if err != nil {
			return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
		mr.SquashCommitSHA, head = sq, sq
	}
	newHead := head
	if p.settings.MergeMethod == "ff" {
		if !p.repo.isAncestor(ctx, target, head) {
			return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
	} else {
		tree, conflict, err := p.repo.mergeTree(ctx, target, head)
		if err != nil || conflict {
			return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
		msg := spec.MergeCommitMessage
		if msg == "" {
			msg = fmt.Sprintf("Merge branch '%s' into '%s'\n\n%s\n\nSee merge request %s!%d", mr.SourceBranch, mr.TargetBranch, mr.Title, p.FullPath, mr.IID)
		}
		mc, err := p.repo.commitTree(ctx, tree, []string{target, head}, msg, me, me)
		if err != nil {
			return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
		}
		newHead = mc
		mr.MergeCommitSHA = mc
	}
	if err := p.repo.updateRef(ctx, "refs/heads/"+mr.TargetBranch, newHead, target); err != nil {
		return errMsg(http.StatusUnprocessableEntity, "Branch cannot be merged")
	}
	prevState := mr.State
	mr.State, mr.MergedAt, mr.MergeUserID, mr.UpdatedAt = "merged", now, u.ID, now
	mr.autoMerge = false
	s.addSystemNote(p, mr, u, "merged")
	s.afterPushLocked(ctx, p, u, mr.TargetBranch, target, newHead)
	s.emitMR(ctx, p, mr, u, "merge", map[string]any{
		"state_id":   map[string]any{"previous": stateID(prevState), "current": stateID("merged")},
		"updated_at": map[string]any{"previous": hookTime(now), "current": hookTime(now)},
	})
	remove := mr.ForceRemoveSourceBranch
	if spec.ShouldRemoveSourceBranch != nil {
		remove = *spec.ShouldRemoveSourceBranch
	}
	if remove {
		mr.ForceRemoveSourceBranch = true
		if sha, err := p.repo.branchHead(ctx, mr.SourceBranch); err == nil && mr.SourceProjectID == p.ID && mr.SourceBranch != p.defaultBranch && p.protection(mr.SourceBranch) == nil {
			_ = s.deleteBranchLocked(ctx, p, u, mr.SourceBranch, sha)
		}
	}
	return nil
}

func stateID(state string) int {
	switch state {
	case "opened":
		return 1
	case "closed":
		return 2
	case "merged":
		return 3
	case "locked":
		return 4
	}
	return 0
}

// mergeMR serves PUT /projects/:id/merge_requests/:iid/merge.
func (s *Sim) mergeMR(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	ctx := c.r.Context()
	spec := MergeSpec{
		SHA:                 c.params.str("sha"),
		AutoMerge:           c.params.boolOr("auto_merge", false) || c.params.boolOr("merge_when_pipeline_succeeds", false),
		MergeCommitMessage:  c.params.str("merge_commit_message"),
		SquashCommitMessage: c.params.str("squash_commit_message"),
	}
	if v, ok := c.params.bool("squash"); ok {
		spec.Squash = &v
	}
	if v, ok := c.params.bool("should_remove_source_branch"); ok {
		spec.ShouldRemoveSourceBranch = &v
	}
	autoSet, aerr := s.acceptLocked(ctx, p, mr, c.user, spec)
	if aerr != nil {
		c.fail(aerr)
		return
	}
	out := s.mrJSON(ctx, p, mr, c.base, c.user)
	c.json(http.StatusOK, out)
	if autoSet {
		s.tryAutoMergeLocked(ctx, p, mr)
	}
}

// cancelAutoMerge serves POST .../cancel_merge_when_pipeline_succeeds.
func (s *Sim) cancelAutoMerge(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	if !p.canMerge(c.user, mr.TargetBranch) {
		c.unauthorized()
		return
	}
	if mr.State != "opened" || !mr.autoMerge {
		c.notAllowed()
		return
	}
	mr.autoMerge = false
	s.addSystemNote(p, mr, c.user, "canceled the automatic merge")
	c.json(http.StatusCreated, s.mrJSON(c.r.Context(), p, mr, c.base, c.user))
}

// MergeRequest is a snapshot of an MR for tests.
type MergeRequest struct {
	IID                 int
	SourceProjectID     int
	State               string
	Title               string
	Description         string
	SourceBranch        string
	TargetBranch        string
	Labels              []string
	SHA                 string
	MergeCommitSHA      string
	DetailedMergeStatus string
	AutoMerge           bool
	ApprovedBy          []string
	Notes               []string // bodies, oldest first, system notes included
}

// MergeRequest returns a snapshot of an MR without counting as a read.
func (s *Sim) MergeRequest(projectRef string, iid int) (MergeRequest, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return MergeRequest{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	mr := p.mr(iid)
	if mr == nil {
		return MergeRequest{}, fmt.Errorf("merge request !%d: %w", iid, ErrUnknown)
	}
	out := MergeRequest{IID: mr.IID, SourceProjectID: mr.SourceProjectID, State: mr.State, Title: mr.Title, Description: mr.Description,
		SourceBranch: mr.SourceBranch, TargetBranch: mr.TargetBranch, Labels: append([]string{}, mr.Labels...),
		SHA: mr.SHA, MergeCommitSHA: mr.MergeCommitSHA, DetailedMergeStatus: s.detailedStatus(p, mr), AutoMerge: mr.autoMerge}
	for _, a := range mr.approvals {
		out.ApprovedBy = append(out.ApprovedBy, userName(s.userByID(a.UserID)))
	}
	for _, n := range mr.notes {
		out.Notes = append(out.Notes, n.Body)
	}
	return out, nil
}

// Merge merges (or sets auto-merge on) an MR as username, with the REST API's rules.
func (s *Sim) Merge(projectRef string, iid int, username string, spec MergeSpec) error {
	p, mr, u, err := s.lookupMR(projectRef, iid, username)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	autoSet, aerr := s.acceptLocked(s.ctx, p, mr, u, spec)
	if aerr != nil {
		return aerr
	}
	if autoSet {
		s.tryAutoMergeLocked(s.ctx, p, mr)
	}
	return nil
}

// lookupMR resolves project, MR and user for the Go API; on success p is locked.
func (s *Sim) lookupMR(projectRef string, iid int, username string) (*project, *mergeRequest, *user, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return nil, nil, nil, err
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return nil, nil, nil, err
	}
	p.mu.Lock()
	mr := p.mr(iid)
	if mr == nil {
		p.mu.Unlock()
		return nil, nil, nil, fmt.Errorf("merge request !%d: %w", iid, ErrUnknown)
	}
	return p, mr, u, nil
}

// ---- labels ----

type label struct {
	ID          int
	Title       string
	Color       string
	Description string
	Created     time.Time
}

var labelColors = []string{"#6699cc", "#ed9121", "#009966", "#8fbc8f", "#cd5b45", "#dc143c", "#9400d3"}

// ensureLabels creates missing project labels and returns the titles deduplicated.
func (p *project) ensureLabels(s *Sim, titles []string) []string {
	var out []string
	for _, t := range titles {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(out, t) {
			continue
		}
		if _, ok := p.labels[t]; !ok {
			id := s.newID("labels")
			p.labels[t] = &label{ID: id, Title: t, Color: labelColors[id%len(labelColors)], Created: s.now()}
		}
		out = append(out, t)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func (p *project) labelsJSON(titles []string) []map[string]any {
	out := []map[string]any{}
	for _, t := range titles {
		l := p.labels[t]
		if l == nil {
			continue
		}
		out = append(out, map[string]any{
			"id": l.ID, "title": l.Title, "color": l.Color, "project_id": p.ID,
			"created_at": hookTime(l.Created), "updated_at": hookTime(l.Created),
			"template": false, "description": nil, "type": "ProjectLabel", "group_id": nil,
		})
	}
	return out
}
