package gitlabsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Environments and deployments (Free tier): deployments made outside GitLab
// CI/CD, recorded through the API, as doc/api/deployments.md and
// doc/api/environments.md describe them.

type environment struct {
	ID          int
	Name        string
	Slug        string
	Description string
	ExternalURL string
	Tier        string
	State       string // available, stopping, stopped
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

type deployment struct {
	ID, IID    int
	EnvID      int
	Ref, SHA   string
	Tag        bool
	Status     string // created, running, success, failed, canceled, blocked, skipped
	UserID     int
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
}

var tiers = []string{"production", "staging", "testing", "development", "other"}

var (
	tierDevelopment = regexp.MustCompile(`(?i)(dev|review|trunk)`)
	tierTesting     = regexp.MustCompile(`(?i)(test|tst|int|ac(ce|)pt|qa|qc|control|quality)`)
	tierStaging     = regexp.MustCompile(`(?i)(st(a|)g|mod(e|)l|pre|demo|non)`)
	tierProduction  = regexp.MustCompile(`(?i)(pr(o|)d|live)`)
	// envNameRE is GitLab's environment_name_regex.
	envNameRE = regexp.MustCompile(`^[a-zA-Z0-9 _/${}.-]+$`)
)

// guessTier is GitLab's Environment#guess_tier.
func guessTier(name string) string {
	switch {
	case tierDevelopment.MatchString(name):
		return "development"
	case tierTesting.MatchString(name):
		return "testing"
	case tierStaging.MatchString(name):
		return "staging"
	case tierProduction.MatchString(name):
		return "production"
	}
	return "other"
}

// envSlug makes GitLab's environment slug: lower case, [a-z0-9-], at most 24
// characters, with a 6-character suffix when the name had to be changed.
func envSlug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	slug := strings.Trim(b.String(), "-")
	if slug == "" || slug[0] < 'a' || slug[0] > 'z' {
		slug = "env-" + slug
	}
	if slug != name || len(slug) > 24 {
		sum := sha256.Sum256([]byte(name))
		slug = strings.Trim(slug[:min(len(slug), 17)], "-") + "-" + hex.EncodeToString(sum[:])[:6]
	}
	return slug
}

func validEnvName(name string) bool {
	return name != "" && len(name) <= 255 && envNameRE.MatchString(name) && !strings.HasPrefix(name, "/") && !strings.HasSuffix(name, "/")
}

func validExternalURL(u string) bool {
	if u == "" {
		return true
	}
	pu, err := url.Parse(u)
	return err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != ""
}

func (p *project) environmentByName(name string) *environment {
	for _, e := range p.environments {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func (p *project) environmentByID(id int) *environment {
	for _, e := range p.environments {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// lastDeployment is the environment's newest successful deployment.
func (p *project) lastDeployment(env *environment) *deployment {
	var last *deployment
	for _, d := range p.deployments {
		if d.EnvID == env.ID && d.Status == "success" {
			last = d
		}
	}
	return last
}

// ---- JSON ----

type apiEnvironmentBasic struct {
	ID          int      `json:"id"`
	Name        string   `json:"name"`
	Slug        string   `json:"slug"`
	ExternalURL *string  `json:"external_url"`
	CreatedAt   *apiTime `json:"created_at"`
	UpdatedAt   *apiTime `json:"updated_at"`
}

type apiEnvironment struct {
	apiEnvironmentBasic
	Description                string         `json:"description"`
	State                      string         `json:"state"`
	Tier                       string         `json:"tier"`
	EnableAdvancedLogsQuerying bool           `json:"enable_advanced_logs_querying"`
	LogsAPIPath                string         `json:"logs_api_path"`
	AutoStopAt                 *apiTime       `json:"auto_stop_at"`
	KubernetesNamespace        *string        `json:"kubernetes_namespace"`
	FluxResourcePath           *string        `json:"flux_resource_path"`
	AutoStopSetting            string         `json:"auto_stop_setting"`
	Project                    *apiProject    `json:"project,omitempty"`
	LastDeployment             *apiDeployment `json:"last_deployment,omitempty"`
}

type apiDeployment struct {
	ID          int                 `json:"id"`
	IID         int                 `json:"iid"`
	Ref         string              `json:"ref"`
	SHA         string              `json:"sha"`
	CreatedAt   *apiTime            `json:"created_at"`
	UpdatedAt   *apiTime            `json:"updated_at"`
	Status      string              `json:"status"`
	User        *apiUser            `json:"user"`
	Environment apiEnvironmentBasic `json:"environment"`
	Deployable  any                 `json:"deployable"`
}

func envBasic(e *environment) apiEnvironmentBasic {
	return apiEnvironmentBasic{ID: e.ID, Name: e.Name, Slug: e.Slug, ExternalURL: strp(e.ExternalURL), CreatedAt: tptr(e.CreatedAt), UpdatedAt: tptr(e.UpdatedAt)}
}

// environmentJSON renders an environment; the single-environment view adds
// project and last_deployment (the list does not, as in GitLab).
func (s *Sim) environmentJSON(ctx context.Context, p *project, e *environment, base string, viewer *user, single bool) apiEnvironment {
	out := apiEnvironment{apiEnvironmentBasic: envBasic(e), Description: e.Description, State: e.State, Tier: e.Tier,
		LogsAPIPath: "/" + p.FullPath + "/-/logs/k8s.json?environment_name=" + url.QueryEscape(e.Name), AutoStopSetting: "always"}
	if single {
		pj := s.projectJSON(ctx, p, base, viewer)
		out.Project = &pj
		if d := p.lastDeployment(e); d != nil {
			dj := s.deploymentJSON(p, d, base)
			out.LastDeployment = &dj
		}
	}
	return out
}

func (s *Sim) deploymentJSON(p *project, d *deployment, base string) apiDeployment {
	var env apiEnvironmentBasic
	if e := p.environmentByID(d.EnvID); e != nil {
		env = envBasic(e)
	}
	return apiDeployment{ID: d.ID, IID: d.IID, Ref: d.Ref, SHA: d.SHA, CreatedAt: tptr(d.CreatedAt), UpdatedAt: tptr(d.UpdatedAt),
		Status: d.Status, User: s.userJSONPtr(d.UserID, base), Environment: env}
}

// ---- environments: REST ----

// EnvironmentSpec creates or changes an environment.
type EnvironmentSpec struct {
	Name        string `json:"name"`
	ExternalURL string `json:"external_url,omitempty"`
	// Tier is production, staging, testing, development or other; empty:
	// guessed from the name as GitLab does.
	Tier        string `json:"tier,omitempty"`
	Description string `json:"description,omitempty"`
}

func (s *Sim) createEnvironmentLocked(p *project, spec EnvironmentSpec) (*environment, *apiError) {
	if !validEnvName(spec.Name) {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"name": []string{"can contain only letters, digits, '-', '_', '/', '$', '{', '}', '.', and spaces, but it cannot start or end with '/'"}})
	}
	if p.environmentByName(spec.Name) != nil {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"name": []string{"has already been taken"}})
	}
	if !validExternalURL(spec.ExternalURL) {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"external_url": []string{"is blocked: Only allowed schemes are http, https"}})
	}
	tier := spec.Tier
	if tier == "" {
		tier = guessTier(spec.Name)
	} else if !slices.Contains(tiers, tier) {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"error": "tier does not have a valid value"})
	}
	now := s.now()
	e := &environment{ID: s.newID("environments"), Name: spec.Name, Slug: envSlug(spec.Name), Description: spec.Description,
		ExternalURL: spec.ExternalURL, Tier: tier, State: "available", CreatedAt: now, UpdatedAt: now}
	p.environments = append(p.environments, e)
	return e, nil
}

// listEnvironments serves GET /projects/:id/environments (name=, search=
// (at least 3 characters), states=).
func (s *Sim) listEnvironments(c *call, p *project) {
	if c.params.has("name") && c.params.has("search") {
		c.errorJSON(http.StatusBadRequest, "error", "name, search are mutually exclusive")
		return
	}
	if c.params.has("search") && len(c.params.str("search")) < 3 {
		c.badRequest("Search query is less than 3 characters")
		return
	}
	var sel []*environment
	for _, e := range p.environments {
		switch {
		case c.params.has("name") && e.Name != c.params.str("name"):
		case c.params.has("search") && !strings.Contains(e.Name, c.params.str("search")):
		case c.params.has("states") && e.State != c.params.str("states"):
		default:
			sel = append(sel, e)
		}
	}
	lo, hi := c.paginate(len(sel))
	out := []apiEnvironment{}
	for _, e := range sel[lo:hi] {
		out = append(out, s.environmentJSON(c.r.Context(), p, e, c.base, c.user, false))
	}
	c.json(http.StatusOK, out)
}

func (c *call) environmentParam(p *project) *environment {
	id, err := strconv.Atoi(c.r.PathValue("environment_id"))
	if err == nil {
		if e := p.environmentByID(id); e != nil {
			return e
		}
	}
	c.notFound("Environment")
	return nil
}

// getEnvironment serves GET /projects/:id/environments/:environment_id.
func (s *Sim) getEnvironment(c *call, p *project) {
	if e := c.environmentParam(p); e != nil {
		c.json(http.StatusOK, s.environmentJSON(c.r.Context(), p, e, c.base, c.user, true))
	}
}

// createEnvironment serves POST /projects/:id/environments (Developer+).
func (s *Sim) createEnvironment(c *call, p *project) {
	if !c.requireParams("name") {
		return
	}
	if p.role(c.user) < RoleDeveloper {
		c.forbidden("")
		return
	}
	e, aerr := s.createEnvironmentLocked(p, EnvironmentSpec{Name: c.params.str("name"), ExternalURL: c.params.str("external_url"),
		Tier: c.params.str("tier"), Description: c.params.str("description")})
	if aerr != nil {
		c.fail(aerr)
		return
	}
	c.json(http.StatusCreated, s.environmentJSON(c.r.Context(), p, e, c.base, c.user, true))
}

// updateEnvironment serves PUT /projects/:id/environments/:environment_id
// (external_url, tier, description; the name cannot change).
func (s *Sim) updateEnvironment(c *call, p *project) {
	e := c.environmentParam(p)
	if e == nil {
		return
	}
	if p.role(c.user) < RoleDeveloper {
		c.forbidden("")
		return
	}
	if c.params.has("name") && c.params.str("name") != e.Name {
		c.badRequest("Name cannot be changed")
		return
	}
	if c.params.has("external_url") {
		u := c.params.str("external_url")
		if !validExternalURL(u) {
			c.badRequest(map[string]any{"external_url": []string{"is blocked: Only allowed schemes are http, https"}})
			return
		}
		e.ExternalURL = u
	}
	if c.params.has("tier") {
		t := c.params.str("tier")
		if !slices.Contains(tiers, t) {
			c.errorJSON(http.StatusBadRequest, "error", "tier does not have a valid value")
			return
		}
		e.Tier = t
	}
	if c.params.has("description") {
		e.Description = c.params.str("description")
	}
	e.UpdatedAt = s.now()
	c.json(http.StatusOK, s.environmentJSON(c.r.Context(), p, e, c.base, c.user, true))
}

// ---- deployments: REST ----

// DeploymentSpec is a deployment to record (POST /projects/:id/deployments).
type DeploymentSpec struct {
	Environment string `json:"environment"`
	SHA         string `json:"sha"`
	Ref         string `json:"ref"`
	Tag         bool   `json:"tag"`
	Status      string `json:"status"`
	Username    string `json:"username,omitempty"` // Go and admin API only
}

var createStatuses = []string{"created", "running", "success", "failed", "canceled"}
var updateStatuses = []string{"running", "success", "failed", "canceled"}

// transitionDeployment applies GitLab's Deployment state machine: run from
// created only; succeed, drop and cancel from any other state; block from
// created. It reports whether the event was allowed.
func transitionDeployment(from, to string) bool {
	switch to {
	case "running":
		return from == "created"
	case "blocked":
		return from == "created"
	case "success", "failed", "canceled", "skipped":
		return from != to
	}
	return false
}

func (s *Sim) createDeploymentLocked(ctx context.Context, p *project, u *user, spec DeploymentSpec) (*deployment, *apiError) {
	if p.role(u) < RoleDeveloper {
		return nil, errMsg(http.StatusForbidden, "403 Forbidden")
	}
	if !slices.Contains(createStatuses, spec.Status) {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"error": "status does not have a valid value"})
	}
	refName := "refs/heads/" + spec.Ref
	if spec.Tag {
		refName = "refs/tags/" + spec.Ref
	}
	if _, err := p.repo.resolve(ctx, refName); err != nil || spec.Ref == "" {
		return nil, errMsg(http.StatusBadRequest, map[string]any{"ref": []string{"The branch or tag does not exist"}})
	}
	env := p.environmentByName(spec.Environment)
	if env == nil {
		var aerr *apiError
		if env, aerr = s.createEnvironmentLocked(p, EnvironmentSpec{Name: spec.Environment}); aerr != nil {
			return nil, aerr
		}
	}
	// Deployments::CreateService returns the environment's last deployment
	// when it is the same (ref, tag, sha, status): re-sending is harmless.
	var last *deployment
	for _, d := range p.deployments {
		if d.EnvID == env.ID {
			last = d
		}
	}
	if last != nil && last.Ref == spec.Ref && last.Tag == spec.Tag && last.SHA == spec.SHA && last.Status == spec.Status {
		return last, nil
	}
	now := s.now()
	iid := len(p.deployments) + 1
	d := &deployment{ID: s.newID("deployments"), IID: iid, EnvID: env.ID, Ref: spec.Ref, SHA: spec.SHA, Tag: spec.Tag,
		Status: "created", UserID: u.ID, CreatedAt: now, UpdatedAt: now}
	p.deployments = append(p.deployments, d)
	if spec.Status != "created" {
		s.setDeploymentStatusLocked(ctx, p, d, u, spec.Status)
	}
	return d, nil
}

// setDeploymentStatusLocked moves d to status and sends the Deployment Hook
// for running and finished states.
func (s *Sim) setDeploymentStatusLocked(ctx context.Context, p *project, d *deployment, u *user, status string) bool {
	if !transitionDeployment(d.Status, status) {
		return false
	}
	now := s.now()
	d.Status, d.UpdatedAt = status, now
	if status == "success" || status == "failed" || status == "canceled" {
		d.FinishedAt = now
	}
	switch status {
	case "running", "success", "failed", "canceled":
		s.emitDeployment(ctx, p, d, u, now)
	}
	return true
}

// createDeployment serves POST /projects/:id/deployments.
func (s *Sim) createDeployment(c *call, p *project) {
	if !c.requireParams("environment", "sha", "ref", "tag", "status") {
		return
	}
	tag, _ := c.params.bool("tag")
	d, aerr := s.createDeploymentLocked(c.r.Context(), p, c.user, DeploymentSpec{Environment: c.params.str("environment"),
		SHA: c.params.str("sha"), Ref: c.params.str("ref"), Tag: tag, Status: c.params.str("status")})
	if aerr != nil {
		c.fail(aerr)
		return
	}
	c.json(http.StatusCreated, s.deploymentJSON(p, d, c.base))
}

func (c *call) deploymentParam(p *project) *deployment {
	id, err := strconv.Atoi(c.r.PathValue("deployment_id"))
	if err == nil {
		for _, d := range p.deployments {
			if d.ID == id {
				return d
			}
		}
	}
	c.notFound("Deployment")
	return nil
}

// updateDeployment serves PUT /projects/:id/deployments/:deployment_id {status}.
func (s *Sim) updateDeployment(c *call, p *project) {
	if !c.requireParams("status") {
		return
	}
	d := c.deploymentParam(p)
	if d == nil {
		return
	}
	if p.role(c.user) < RoleDeveloper {
		c.forbidden("")
		return
	}
	st := c.params.str("status")
	if !slices.Contains(updateStatuses, st) {
		c.errorJSON(http.StatusBadRequest, "error", "status does not have a valid value")
		return
	}
	if !s.setDeploymentStatusLocked(c.r.Context(), p, d, c.user, st) {
		c.badRequest(map[string]any{"status": []string{fmt.Sprintf("cannot transition from %s to %s", d.Status, st)}})
		return
	}
	c.json(http.StatusOK, s.deploymentJSON(p, d, c.base))
}

// getDeployment serves GET /projects/:id/deployments/:deployment_id.
func (s *Sim) getDeployment(c *call, p *project) {
	if d := c.deploymentParam(p); d != nil {
		c.json(http.StatusOK, s.deploymentJSON(p, d, c.base))
	}
}

// listDeployments serves GET /projects/:id/deployments: environment=,
// status=, updated_after/before=, order_by= id (default), iid, created_at,
// updated_at, finished_at or ref; sort= asc (default) or desc.
func (s *Sim) listDeployments(c *call, p *project) {
	orderBy := c.params.str("order_by")
	if orderBy == "" {
		orderBy = "id"
	}
	if !slices.Contains([]string{"id", "iid", "created_at", "updated_at", "finished_at", "ref"}, orderBy) {
		c.errorJSON(http.StatusBadRequest, "error", "order_by does not have a valid value")
		return
	}
	if st := c.params.str("status"); st != "" && !slices.Contains(append(createStatuses, "blocked", "skipped"), st) {
		c.errorJSON(http.StatusBadRequest, "error", "status does not have a valid value")
		return
	}
	var env *environment
	if c.params.has("environment") {
		if env = p.environmentByName(c.params.str("environment")); env == nil {
			c.json(http.StatusOK, []apiDeployment{})
			return
		}
	}
	after, before := c.params.time("updated_after"), c.params.time("updated_before")
	var sel []*deployment
	for _, d := range p.deployments {
		switch {
		case env != nil && d.EnvID != env.ID:
		case c.params.has("status") && d.Status != c.params.str("status"):
		case !after.IsZero() && !d.UpdatedAt.After(after):
		case !before.IsZero() && !d.UpdatedAt.Before(before):
		default:
			sel = append(sel, d)
		}
	}
	desc := c.params.str("sort") == "desc"
	slices.SortStableFunc(sel, func(a, b *deployment) int {
		var r int
		switch orderBy {
		case "created_at":
			r = a.CreatedAt.Compare(b.CreatedAt)
		case "updated_at":
			r = a.UpdatedAt.Compare(b.UpdatedAt)
		case "finished_at":
			r = a.FinishedAt.Compare(b.FinishedAt)
		case "ref":
			r = strings.Compare(a.Ref, b.Ref)
		}
		if r == 0 {
			r = a.ID - b.ID
		}
		if desc {
			return -r
		}
		return r
	})
	lo, hi := c.paginate(len(sel))
	out := []apiDeployment{}
	for _, d := range sel[lo:hi] {
		out = append(out, s.deploymentJSON(p, d, c.base))
	}
	c.json(http.StatusOK, out)
}

// ---- Go API ----

// CreateDeployment records a deployment as spec.Username, with the REST API's rules.
func (s *Sim) CreateDeployment(projectRef string, spec DeploymentSpec) (int, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return 0, err
	}
	u, err := s.lookupUser(spec.Username)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d, aerr := s.createDeploymentLocked(s.ctx, p, u, spec)
	if aerr != nil {
		return 0, aerr
	}
	return d.ID, nil
}

// Deployment is a snapshot of a deployment for tests.
type Deployment struct {
	ID, IID     int
	Environment string
	Ref, SHA    string
	Status      string
	Username    string
}

// Deployments lists a project's deployments, oldest first.
func (s *Sim) Deployments(projectRef string) ([]Deployment, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Deployment
	for _, d := range p.deployments {
		env := ""
		if e := p.environmentByID(d.EnvID); e != nil {
			env = e.Name
		}
		out = append(out, Deployment{ID: d.ID, IID: d.IID, Environment: env, Ref: d.Ref, SHA: d.SHA, Status: d.Status, Username: userName(s.userByID(d.UserID))})
	}
	return out, nil
}

// ---- Deployment Hook ----

func (s *Sim) emitDeployment(ctx context.Context, p *project, d *deployment, u *user, at time.Time) {
	wants := func(h *hook) bool { return h.DeploymentEvents }
	if !anyHook(p, wants) {
		return
	}
	base := s.BaseURL()
	env := p.environmentByID(d.EnvID)
	if env == nil {
		return
	}
	var extURL any
	if env.ExternalURL != "" {
		extURL = env.ExternalURL
	}
	title := ""
	if cm, err := p.repo.commit(ctx, d.SHA); err == nil {
		title = cm.Title()
	}
	short := d.SHA
	if len(short) > 8 {
		short = short[:8]
	}
	payload := map[string]any{
		"object_kind": "deployment", "status": d.Status, "status_changed_at": at.UTC().Format("2006-01-02 15:04:05 -0700"),
		"deployment_id": d.ID, "deployable_id": nil, "deployable_url": nil,
		"environment": env.Name, "environment_tier": env.Tier, "environment_slug": env.Slug, "environment_external_url": extURL,
		"project": s.hookProject(p, base), "short_sha": short, "user": s.hookUser(u), "user_url": base + "/" + u.Username,
		"commit_url": base + "/" + p.FullPath + "/-/commit/" + d.SHA, "commit_title": title,
	}
	s.emit(ctx, p, "Deployment Hook", wants, payload)
}
