package gitlabsim

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// commitStatus is an external job posted with POST /projects/:id/statuses/:sha.
type commitStatus struct {
	ID          int
	SHA         string
	Ref         string
	Name        string
	Status      string
	TargetURL   string
	Description string
	Coverage    *float64
	AuthorID    int
	PipelineID  int
	Retried     bool
	CreatedAt   time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
}

func finished(status string) bool {
	return status == "success" || status == "failed" || status == "canceled" || status == "skipped"
}

// statusEvent maps a requested state to GitLab's state machine events.
var statusEvent = map[string]string{
	"pending": "enqueue", "running": "run", "success": "success",
	"failed": "drop", "canceled": "cancel", "skipped": "skip",
}

// transitions lists for each event the states it may start from.
var transitions = map[string][]string{
	"enqueue": {"created", "skipped", "manual", "scheduled", "waiting_for_resource", "preparing"},
	"run":     {"pending"},
	"success": {"created", "waiting_for_resource", "preparing", "pending", "running"},
	"drop":    {"created", "waiting_for_resource", "preparing", "pending", "running", "manual", "scheduled"},
	"cancel":  {"created", "waiting_for_resource", "preparing", "pending", "running", "manual", "scheduled"},
	"skip":    {"created", "waiting_for_resource", "preparing", "pending"},
}

// transition applies CreateCommitStatusService's bang calls to from and
// returns the new state or GitLab's "Cannot transition" message.
func transition(from, state string) (string, string) {
	cur := from
	if state == "running" && slices.Contains(transitions["enqueue"], cur) {
		cur = "pending" // enqueue (non-bang) first
	}
	ev := statusEvent[state]
	if !slices.Contains(transitions[ev], cur) {
		return from, fmt.Sprintf("Cannot transition status via :%s from :%s (Reason(s): Status cannot transition via \"%s\")", ev, cur, ev)
	}
	return state, ""
}

type apiCommitStatus struct {
	ID           int      `json:"id"`
	SHA          string   `json:"sha"`
	Ref          string   `json:"ref"`
	Status       string   `json:"status"`
	Name         string   `json:"name"`
	TargetURL    *string  `json:"target_url"`
	Description  *string  `json:"description"`
	CreatedAt    *apiTime `json:"created_at"`
	StartedAt    *apiTime `json:"started_at"`
	FinishedAt   *apiTime `json:"finished_at"`
	AllowFailure bool     `json:"allow_failure"`
	Coverage     *float64 `json:"coverage"`
	PipelineID   int      `json:"pipeline_id"`
	Author       apiUser  `json:"author"`
}

func (s *Sim) statusJSON(st *commitStatus, base string) apiCommitStatus {
	return apiCommitStatus{
		ID: st.ID, SHA: st.SHA, Ref: st.Ref, Status: st.Status, Name: st.Name,
		TargetURL: strp(st.TargetURL), Description: strp(st.Description),
		CreatedAt: tptr(st.CreatedAt), StartedAt: tptr(st.StartedAt), FinishedAt: tptr(st.FinishedAt),
		Coverage: st.Coverage, PipelineID: st.PipelineID, Author: basicUser(s.userByID(st.AuthorID), base),
	}
}

// postStatus serves POST /projects/:id/statuses/:sha.
func (s *Sim) postStatus(c *call, p *project) {
	ctx := c.r.Context()
	if !c.params.has("state") {
		c.badRequest("State is required")
		return
	}
	state := c.params.str("state")
	if _, ok := statusEvent[state]; !ok {
		c.badRequest("invalid state")
		return
	}
	sha, err := p.repo.resolve(ctx, c.r.PathValue("sha"))
	if err != nil {
		c.notFound("Commit")
		return
	}
	if p.role(c.user) < RoleDeveloper {
		c.forbidden("")
		return
	}
	ref := c.params.str("ref")
	if ref == "" {
		ref = s.refForSHA(ctx, p, sha)
		if ref == "" {
			c.notFound("References for commit")
			return
		}
	}
	if p.protection(ref) != nil && !p.canPush(c.user, ref) && !p.canMerge(c.user, ref) {
		c.forbidden("")
		return
	}
	targetURL := c.params.str("target_url")
	if targetURL != "" {
		u, err := url.Parse(targetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			c.badRequest(map[string]any{"target_url": []string{"is blocked: Only allowed schemes are http, https"}})
			return
		}
	}
	name := c.params.str("name")
	if name == "" {
		name = c.params.str("context")
	}
	if name == "" {
		name = "default"
	}
	var pl *pipeline
	if c.params.has("pipeline_id") {
		id := c.params.int("pipeline_id", 0)
		for _, x := range p.pipelines {
			if x.ID == id && x.SHA == sha && x.Ref == ref {
				pl = x
			}
		}
		if pl == nil {
			c.notFound("Pipeline for pipeline_id, sha and ref")
			return
		}
	} else {
		pl = p.latestPipeline(sha, ref)
	}
	now := s.now()
	newPipeline := pl == nil
	if newPipeline {
		pl = &pipeline{ID: s.newID("pipelines"), IID: len(p.pipelines) + 1, SHA: sha, Ref: ref, Status: "created",
			Source: "external", UserID: c.user.ID, CreatedAt: now, UpdatedAt: now, external: true}
	}
	var st *commitStatus
	for _, x := range p.statuses {
		if x.PipelineID == pl.ID && x.SHA == sha && x.Ref == ref && x.Name == name && x.AuthorID == c.user.ID &&
			!x.Retried && (x.Status == "pending" || x.Status == "running") {
			st = x
		}
	}
	from := "created"
	if st != nil {
		from = st.Status
	}
	next, msg := transition(from, state)
	if msg != "" {
		c.badRequest(msg)
		return
	}
	if newPipeline {
		p.pipelines = append(p.pipelines, pl)
	}
	if st == nil {
		for _, x := range p.statuses {
			if x.SHA == sha && x.Ref == ref && x.Name == name && !x.Retried {
				x.Retried = true
			}
		}
		st = &commitStatus{ID: s.newID("jobs"), SHA: sha, Ref: ref, Name: name, AuthorID: c.user.ID, PipelineID: pl.ID, CreatedAt: now}
		p.statuses = append(p.statuses, st)
	}
	if c.params.has("target_url") {
		st.TargetURL = targetURL
	}
	if c.params.has("description") {
		st.Description = c.params.str("description")
	}
	if c.params.has("coverage") {
		if f, err := strconv.ParseFloat(c.params.str("coverage"), 64); err == nil {
			st.Coverage = &f
		}
	}
	st.Status = next
	if next == "running" && st.StartedAt.IsZero() {
		st.StartedAt = now
	}
	if finished(next) {
		st.FinishedAt = now
	}
	if pl.external {
		s.setPipelineStatusLocked(ctx, p, pl, p.compositeStatus(pl), c.user)
	}
	c.json(http.StatusCreated, s.statusJSON(st, c.base))
}

// refForSHA picks the ref of the newest pipeline of sha, else a branch containing it (default branch first).
func (s *Sim) refForSHA(ctx context.Context, p *project, sha string) string {
	if pl := p.latestPipeline(sha, ""); pl != nil {
		return pl.Ref
	}
	heads, err := p.repo.branches(ctx)
	if err != nil {
		return ""
	}
	if h, ok := heads[p.defaultBranch]; ok && p.repo.isAncestor(ctx, sha, h) {
		return p.defaultBranch
	}
	for _, b := range sortedKeys(heads) {
		if p.repo.isAncestor(ctx, sha, heads[b]) {
			return b
		}
	}
	return ""
}

// compositeStatus derives an external pipeline's status from its latest statuses.
func (p *project) compositeStatus(pl *pipeline) string {
	counts := map[string]int{}
	n := 0
	for _, st := range p.statuses {
		if st.PipelineID == pl.ID && !st.Retried {
			counts[st.Status]++
			n++
		}
	}
	switch {
	case n == 0:
		return "created"
	case counts["success"]+counts["skipped"] == n && counts["success"] > 0:
		return "success"
	case counts["skipped"] == n:
		return "skipped"
	case counts["running"] > 0 || (counts["pending"] > 0 && counts["pending"] < n):
		return "running"
	case counts["pending"] > 0:
		return "pending"
	case counts["failed"] > 0:
		return "failed"
	case counts["canceled"] > 0:
		return "canceled"
	}
	return "success"
}

// listStatuses serves GET /projects/:id/repository/commits/:sha/statuses.
func (s *Sim) listStatuses(c *call, p *project) {
	sha, err := p.repo.resolve(c.r.Context(), c.r.PathValue("sha"))
	if err != nil {
		c.notFound("Commit")
		return
	}
	all := c.params.boolOr("all", false)
	var sel []*commitStatus
	for _, st := range p.statuses {
		switch {
		case st.SHA != sha:
		case st.Retried && !all:
		case c.params.has("ref") && st.Ref != c.params.str("ref"):
		case c.params.has("name") && st.Name != c.params.str("name"):
		case c.params.has("stage") && c.params.str("stage") != "external":
		case c.params.has("pipeline_id") && st.PipelineID != c.params.int("pipeline_id", 0):
		default:
			sel = append(sel, st)
		}
	}
	if c.params.str("sort") == "desc" {
		slices.Reverse(sel)
	}
	lo, hi := c.paginate(len(sel))
	out := []apiCommitStatus{}
	for _, st := range sel[lo:hi] {
		out = append(out, s.statusJSON(st, c.base))
	}
	c.json(http.StatusOK, out)
}

// CommitStatus is a commit status as tests see it.
type CommitStatus struct {
	Name, Ref, Status, TargetURL, Description string
	Retried                                   bool
}

// Statuses lists all commit statuses of sha, oldest first, retried ones included.
func (s *Sim) Statuses(projectRef, sha string) ([]CommitStatus, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []CommitStatus
	for _, st := range p.statuses {
		if st.SHA == sha {
			out = append(out, CommitStatus{Name: st.Name, Ref: st.Ref, Status: st.Status, TargetURL: st.TargetURL, Description: st.Description, Retried: st.Retried})
		}
	}
	return out, nil
}
