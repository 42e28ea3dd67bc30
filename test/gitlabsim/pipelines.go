package gitlabsim

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// pipeline is a CI pipeline: created through the admin API (to emit Pipeline
// Hooks and drive auto-merge) or implicitly by commit statuses (source external).
type pipeline struct {
	ID, IID    int
	SHA        string
	BeforeSHA  string
	Ref        string
	Status     string
	Source     string
	Name       string
	UserID     int
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	Builds     []Build
	Variables  map[string]string
	Upstream   *Upstream
	external   bool
}

// Upstream names the pipeline that triggered a multi-project pipeline (source_pipeline in hooks).
type Upstream struct {
	ProjectID  int `json:"project_id"`
	PipelineID int `json:"pipeline_id"`
	JobID      int `json:"job_id"`
}

// Build is a job of a simulated pipeline (it appears in Pipeline Hook builds[]).
type Build struct {
	Name        string `json:"name"`
	Stage       string `json:"stage"`
	Status      string `json:"status"`
	Environment string `json:"environment,omitempty"`
	Manual      bool   `json:"manual,omitempty"`
}

// PipelineSpec describes a pipeline to create.
type PipelineSpec struct {
	// Ref is the branch; default: the default branch.
	Ref string `json:"ref,omitempty"`
	// SHA defaults to the head of Ref.
	SHA string `json:"sha,omitempty"`
	// Status: created, pending, running, success, failed, canceled, skipped, manual. Default pending.
	Status string `json:"status,omitempty"`
	// Source: push (default), merge_request_event, web, api, schedule, ...
	Source string `json:"source,omitempty"`
	Name   string `json:"name,omitempty"`
	// Username triggers the pipeline; default the project's first maintainer or owner.
	Username  string            `json:"username,omitempty"`
	Builds    []Build           `json:"builds,omitempty"`
	Variables map[string]string `json:"variables,omitempty"`
	// Upstream makes this a multi-project pipeline triggered by another one.
	Upstream *Upstream `json:"upstream,omitempty"`
}

var activeStatuses = map[string]bool{"created": true, "waiting_for_resource": true, "preparing": true, "pending": true, "running": true, "scheduled": true}

func (pl *pipeline) active() bool { return activeStatuses[pl.Status] }

// latestPipeline returns the newest pipeline of sha (and ref when given).
func (p *project) latestPipeline(sha, ref string) *pipeline {
	for i := len(p.pipelines) - 1; i >= 0; i-- {
		pl := p.pipelines[i]
		if pl.SHA == sha && (ref == "" || pl.Ref == ref) {
			return pl
		}
	}
	return nil
}

func (p *project) pipeline(id int) *pipeline {
	for _, pl := range p.pipelines {
		if pl.ID == id {
			return pl
		}
	}
	return nil
}

type apiPipelineInfo struct {
	ID        int      `json:"id"`
	IID       int      `json:"iid"`
	ProjectID int      `json:"project_id"`
	Status    string   `json:"status"`
	Source    string   `json:"source"`
	Ref       string   `json:"ref"`
	SHA       string   `json:"sha"`
	WebURL    string   `json:"web_url"`
	CreatedAt *apiTime `json:"created_at"`
	UpdatedAt *apiTime `json:"updated_at"`
}

type apiPipeline struct {
	apiPipelineInfo
	Name           *string  `json:"name"`
	BeforeSHA      string   `json:"before_sha"`
	Tag            bool     `json:"tag"`
	User           apiUser  `json:"user"`
	StartedAt      *apiTime `json:"started_at"`
	FinishedAt     *apiTime `json:"finished_at"`
	CommittedAt    *apiTime `json:"committed_at"`
	Duration       *int     `json:"duration"`
	QueuedDuration *int     `json:"queued_duration"`
	Coverage       *string  `json:"coverage"`
	DetailedStatus any      `json:"detailed_status"`
}

func (pl *pipeline) info(p *project, base string) apiPipelineInfo {
	return apiPipelineInfo{ID: pl.ID, IID: pl.IID, ProjectID: p.ID, Status: pl.Status, Source: pl.Source, Ref: pl.Ref, SHA: pl.SHA,
		WebURL: base + "/" + p.FullPath + "/-/pipelines/" + strconv.Itoa(pl.ID), CreatedAt: tptr(pl.CreatedAt), UpdatedAt: tptr(pl.UpdatedAt)}
}

func (pl *pipeline) duration() *int {
	if pl.StartedAt.IsZero() || pl.FinishedAt.IsZero() {
		return nil
	}
	d := int(pl.FinishedAt.Sub(pl.StartedAt).Seconds())
	return &d
}

func (pl *pipeline) json(p *project, base string, s *Sim) apiPipeline {
	return apiPipeline{
		apiPipelineInfo: pl.info(p, base), Name: strp(pl.Name), BeforeSHA: pl.beforeSHA(),
		User: basicUser(s.userByID(pl.UserID), base), StartedAt: tptr(pl.StartedAt), FinishedAt: tptr(pl.FinishedAt),
		Duration: pl.duration(),
		DetailedStatus: map[string]any{"icon": "status_" + pl.Status, "text": pl.Status, "label": pl.Status, "group": pl.Status,
			"has_details": true, "details_path": "/" + p.FullPath + "/-/pipelines/" + strconv.Itoa(pl.ID)},
	}
}

func (pl *pipeline) beforeSHA() string {
	if pl.BeforeSHA == "" {
		return zeroSHA
	}
	return pl.BeforeSHA
}

// setPipelineStatusLocked changes a pipeline's status, emits a Pipeline Hook
// on change and lets waiting auto-merges proceed.
func (s *Sim) setPipelineStatusLocked(ctx context.Context, p *project, pl *pipeline, status string, u *user) {
	if pl.Status == status {
		return
	}
	now := s.now()
	pl.Status, pl.UpdatedAt = status, now
	if status == "running" && pl.StartedAt.IsZero() {
		pl.StartedAt = now
	}
	if !pl.active() && status != "manual" {
		if pl.StartedAt.IsZero() {
			pl.StartedAt = now
		}
		pl.FinishedAt = now
	}
	s.emitPipeline(ctx, p, pl, u)
	for _, mr := range p.mrs {
		if mr.State == "opened" && mr.SHA == pl.SHA {
			s.tryAutoMergeLocked(ctx, p, mr)
		}
	}
}

// CreatePipeline creates a pipeline and emits a Pipeline Hook. It returns the pipeline id.
func (s *Sim) CreatePipeline(projectRef string, spec PipelineSpec) (int, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := s.ctx
	if spec.Ref == "" {
		spec.Ref = p.defaultBranch
	}
	if spec.SHA == "" {
		sha, err := p.repo.branchHead(ctx, spec.Ref)
		if err != nil {
			return 0, fmt.Errorf("ref %q: %w", spec.Ref, ErrUnknown)
		}
		spec.SHA = sha
	} else if sha, err := p.repo.resolve(ctx, spec.SHA); err != nil {
		return 0, fmt.Errorf("sha %q: %w", spec.SHA, ErrUnknown)
	} else {
		spec.SHA = sha
	}
	if spec.Status == "" {
		spec.Status = "pending"
	}
	if spec.Source == "" {
		spec.Source = "push"
	}
	var u *user
	if spec.Username != "" {
		if u, err = s.lookupUser(spec.Username); err != nil {
			return 0, err
		}
	} else {
		u = s.firstMaintainer(p)
	}
	if len(spec.Builds) == 0 {
		spec.Builds = []Build{{Name: "build", Stage: "build", Status: spec.Status}}
	}
	now := s.now()
	pl := &pipeline{ID: s.newID("pipelines"), IID: len(p.pipelines) + 1, SHA: spec.SHA, Ref: spec.Ref, Status: "",
		Source: spec.Source, Name: spec.Name, CreatedAt: now, UpdatedAt: now, Builds: spec.Builds, Variables: spec.Variables, Upstream: spec.Upstream}
	if u != nil {
		pl.UserID = u.ID
	}
	if c, err := p.repo.commit(ctx, spec.SHA); err == nil && len(c.Parents) > 0 {
		pl.BeforeSHA = c.Parents[0]
	}
	p.pipelines = append(p.pipelines, pl)
	s.setPipelineStatusLocked(ctx, p, pl, spec.Status, u)
	return pl.ID, nil
}

// SetPipelineStatus changes a pipeline's status (emitting a Pipeline Hook).
// Builds without a final status follow the pipeline's.
func (s *Sim) SetPipelineStatus(projectRef string, id int, status string) error {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.pipeline(id)
	if pl == nil {
		return fmt.Errorf("pipeline %d: %w", id, ErrUnknown)
	}
	for i := range pl.Builds {
		if !finished(pl.Builds[i].Status) {
			pl.Builds[i].Status = status
		}
	}
	s.setPipelineStatusLocked(s.ctx, p, pl, status, s.userByID(pl.UserID))
	return nil
}

func (s *Sim) firstMaintainer(p *project) *user {
	best := 0
	for id, r := range p.members {
		if r >= RoleMaintainer && (best == 0 || id < best) {
			best = id
		}
	}
	return s.userByID(best)
}

// getPipeline serves GET /projects/:id/pipelines/:pipeline_id.
func (s *Sim) getPipeline(c *call, p *project) {
	id, _ := strconv.Atoi(c.r.PathValue("pipeline_id"))
	pl := p.pipeline(id)
	if pl == nil {
		c.message(http.StatusNotFound, "404 Not found")
		return
	}
	c.json(http.StatusOK, pl.json(p, c.base, s))
}

// listPipelines serves GET /projects/:id/pipelines (filters sha, ref, status), newest first.
func (s *Sim) listPipelines(c *call, p *project) {
	var sel []*pipeline
	for i := len(p.pipelines) - 1; i >= 0; i-- {
		pl := p.pipelines[i]
		switch {
		case c.params.has("sha") && pl.SHA != c.params.str("sha"):
		case c.params.has("ref") && pl.Ref != c.params.str("ref"):
		case c.params.has("status") && pl.Status != c.params.str("status"):
		default:
			sel = append(sel, pl)
		}
	}
	lo, hi := c.paginate(len(sel))
	out := []apiPipelineInfo{}
	for _, pl := range sel[lo:hi] {
		out = append(out, pl.info(p, c.base))
	}
	c.json(http.StatusOK, out)
}
