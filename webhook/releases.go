package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/idtoken"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/releaseapi"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/writeback"
)

// POST /api/v1/releases: an app's pipeline hands lotsed a release with its
// job's GitLab CI ID token (`id_tokens:` with aud = lotsed's URL) instead of
// holding a token that writes to the GitOps repository. lotsed verifies the
// token against GitLab's published keys, decides from lotse.yaml and GitLab
// (never from the body) whether the job may release the app, runs the first
// stage's gates and commits the image into the first stage as its own user.
// The wire format is internal/releaseapi.

// The audit kinds of the release endpoint.
const (
	AuditReleaseAccepted = "release-accepted"
	AuditReleaseRefused  = "release-refused"
)

// tokenVerifier checks GitLab CI ID tokens; *idtoken.Verifier.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (*idtoken.Claims, error)
}

// projectReader reads a GitLab project, to compare its id with the token's.
type projectReader interface {
	GetProject(ctx context.Context, project string) (gitlab.Project, error)
}

// releaseBumper writes the release; a *writeback.Writer.
type releaseBumper interface {
	Bump(ctx context.Context, b writeback.Bump) (writeback.Result, error)
}

// releaseTarget is one fresh reading of lotse.yaml for one release: the
// policy, a writer bound to it and the gates' keys.
type releaseTarget struct {
	config *gitops.Config
	writer releaseBumper
	keys   gateKeys
}

// releases serves POST /api/v1/releases.
type releases struct {
	tokens   tokenVerifier
	open     func(ctx context.Context) (releaseTarget, error)
	projects projectReader
	gates    *gates
	audit    auditLog
	once     claims // binds a token (its jti) to the one image it released
	webURL   string // GitLab's external URL (the tokens' issuer), for pipeline links
	log      *slog.Logger
	now      func() time.Time
}

// releaseConfig is the verifier's configuration from lotsed's: the issuer
// is --id-token-issuer (default --gitlab-url), the audience
// --release-audience (default --public-url), and the keys are read from
// --gitlab-url, which lotsed reaches, whatever the issuer's name. ok is
// false when no audience is configured: the endpoint is then off.
func releaseConfig(cfg *Config) (c idtoken.Config, ok bool) {
	base := strings.TrimSuffix(strings.TrimRight(cfg.GitLabURL, "/"), "/api/v4")
	issuer := cfg.IDTokenIssuer
	if issuer == "" {
		issuer = base
	}
	aud := cfg.ReleaseAudience
	if aud == "" {
		aud = cfg.PublicURL
	}
	return idtoken.Config{Issuer: issuer, Audience: aud, KeysURL: base + "/oauth/discovery/keys",
		HTTP: &http.Client{Timeout: 15 * time.Second}}, aud != ""
}

// newReleases assembles the endpoint from lotsed's parts; nil when it is off.
func newReleases(cfg *Config, gl *gitlab.Client, reader *snapshotReader, g *gates, db interface {
	auditLog
	claims
}, log *slog.Logger) (*releases, error) {
	vc, ok := releaseConfig(cfg)
	if !ok {
		return nil, nil
	}
	v, err := idtoken.New(vc)
	if err != nil {
		return nil, fmt.Errorf("release endpoint: %w", err)
	}
	return &releases{tokens: v, open: openRelease(reader), projects: gl, gates: g, audit: db, once: db,
		webURL: strings.TrimRight(vc.Issuer, "/"), log: log, now: time.Now}, nil
}

// openRelease reads lotse.yaml afresh for every release, so that a
// tightened policy applies at once, and binds a writer to it that asks
// GitLab to auto-merge a first stage promoted by merge request, as `lotse
// bump` does (lotsed's own promotions merge their MRs themselves).
func openRelease(r *snapshotReader) func(ctx context.Context) (releaseTarget, error) {
	return func(ctx context.Context) (releaseTarget, error) {
		w, err := writeback.Open(ctx, r.gl, r.gitopsProject, writeback.Options{})
		if err != nil {
			return releaseTarget{}, err
		}
		keys, err := r.keys(ctx, w.Config())
		if err != nil {
			return releaseTarget{}, err
		}
		return releaseTarget{config: w.Config(), writer: w, keys: keys}, nil
	}
}

// release is the route's handler on the Server.
func (s *Server) release(c echo.Context) error {
	if s.releases == nil {
		return c.JSON(http.StatusNotFound, releaseapi.Error{Message: "the release endpoint is off: lotsed has no LOTSE_PUBLIC_URL or LOTSE_RELEASE_AUDIENCE"})
	}
	return s.releases.serve(c)
}

// refusal is a release lotsed does not commit.
type refusal struct {
	status  int
	message string
	reasons []string
}

func refuseRelease(status int, format string, args ...any) *refusal {
	return &refusal{status: status, message: fmt.Sprintf(format, args...)}
}

func (h *releases) serve(c echo.Context) error {
	ctx := c.Request().Context()
	tok, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lotsed", error="invalid_token"`)
		return c.JSON(http.StatusUnauthorized, releaseapi.Error{Message: "invalid ID token: no bearer token"})
	}
	claims, err := h.tokens.Verify(ctx, strings.TrimSpace(tok))
	if err != nil {
		if errors.Is(err, idtoken.ErrKeysUnavailable) {
			h.log.ErrorContext(ctx, "release: GitLab's ID token keys unavailable", "err", err)
			c.Response().Header().Set("Retry-After", "30")
			return c.JSON(http.StatusServiceUnavailable, releaseapi.Error{Message: "GitLab's ID token keys cannot be read; try again later"})
		}
		// Unauthenticated callers write nothing into the audit log: the
		// refusal goes to lotsed's log.
		h.log.WarnContext(ctx, "release refused: invalid ID token", "err", err, "remote", c.RealIP())
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lotsed", error="invalid_token"`)
		return c.JSON(http.StatusUnauthorized, releaseapi.Error{Message: "invalid ID token: " + tokenCause(err)})
	}
	body, err := readBody(c, releaseapi.MaxBody) // once the token is verified
	if err != nil {
		return err
	}
	var req releaseapi.Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return c.JSON(http.StatusBadRequest, releaseapi.Error{Message: "the body is not a release: want JSON {\"app\", \"image\", \"stage\"?, \"source_commit\"?}" + jsonProblem(err)})
	}
	res, stage, ref := h.decide(ctx, claims, req)
	if ref != nil {
		return h.refused(c, claims, req, stage, ref)
	}
	status := http.StatusOK
	if res.Changed {
		status = http.StatusCreated
	}
	detail := fmt.Sprintf("%s; gates: %s", provenance(claims, res.Pipeline), gateList(res.Gates))
	if res.Changed {
		detail = fmt.Sprintf("committed %s to %s; %s", res.Commit, res.Branch, detail)
	} else {
		detail = "the stage holds the image already; " + detail
	}
	if err := h.audit.Audit(ctx, store.AuditRecord{At: h.now(), App: res.App, Stage: res.Stage, Image: res.Image,
		Actor: claims.UserLogin, Kind: AuditReleaseAccepted, Detail: detail}); err != nil {
		// The release is in Git; the answer says it failed so that the
		// pipeline retries, which records it (the stage holds it then).
		return fmt.Errorf("audit the release: %w", err)
	}
	h.log.InfoContext(ctx, "release accepted", "app", res.App, "stage", res.Stage, "image", res.Image, "changed", res.Changed,
		"commit", res.Commit, "project", claims.ProjectPath, "pipeline", claims.PipelineID, "user", claims.UserLogin)
	return c.JSON(status, res)
}

// refused audits and answers a refusal of a valid token's release.
func (h *releases) refused(c echo.Context, claims *idtoken.Claims, req releaseapi.Request, stage string, r *refusal) error {
	ctx := c.Request().Context()
	if r.status >= 500 {
		h.log.ErrorContext(ctx, "release failed", "app", req.App, "err", r.message)
		if r.status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", "30")
		}
		return c.JSON(r.status, releaseapi.Error{Message: "lotsed could not take the release now; try again later"})
	}
	detail := fmt.Sprintf("%d %s", r.status, r.message)
	if len(r.reasons) > 0 {
		detail += ": " + strings.Join(r.reasons, "; ")
	}
	detail += "; " + provenance(claims, "")
	if err := h.audit.Audit(ctx, store.AuditRecord{At: h.now(), App: truncate(req.App, 100), Stage: stage, Image: truncate(req.Image, 300),
		Actor: claims.UserLogin, Kind: AuditReleaseRefused, Detail: detail}); err != nil {
		return fmt.Errorf("audit the refused release: %w", err)
	}
	h.log.WarnContext(ctx, "release refused", "app", req.App, "status", r.status, "reason", r.message, "reasons", r.reasons,
		"project", claims.ProjectPath, "ref", claims.Ref, "pipeline", claims.PipelineID, "user", claims.UserLogin)
	return c.JSON(r.status, releaseapi.Error{Message: r.message, Reasons: r.reasons})
}

// decide applies the policy to a verified token's release and, when it
// passes, runs the gates and commits. stage is the app's first stage, once
// known.
func (h *releases) decide(ctx context.Context, claims *idtoken.Claims, req releaseapi.Request) (res releaseapi.Response, stage string, r *refusal) {
	if req.App == "" || req.Image == "" {
		return res, "", refuseRelease(http.StatusBadRequest, "app and image are required")
	}
	t, err := h.open(ctx)
	if err != nil {
		return res, "", refuseRelease(http.StatusServiceUnavailable, "read lotse.yaml: %v", err)
	}
	app, err := t.config.App(req.App)
	if err != nil {
		return res, "", refuseRelease(http.StatusNotFound, "unknown app %q", truncate(req.App, 100))
	}
	stages, err := t.config.StagesFor(app.Name)
	if err != nil || len(stages) == 0 {
		return res, "", refuseRelease(http.StatusServiceUnavailable, "app %s: %v", app.Name, err)
	}
	first := stages[0]
	stage = first.Name

	// Who is asking: the app's own project, on a protected ref.
	if !strings.EqualFold(claims.ProjectPath, app.SourceProject) {
		return res, stage, refuseRelease(http.StatusForbidden, "the token is of project %s; app %s is released by %s (lotse.yaml sourceProject)",
			claims.ProjectPath, app.Name, app.SourceProject)
	}
	// The project of the token's id must be at that path now: a token of
	// a project that was moved away, and another one created under its
	// old path, do not mix.
	p, err := h.projects.GetProject(ctx, strconv.FormatInt(claims.ProjectID, 10))
	switch {
	case errors.Is(err, gitlab.ErrNotFound), errors.Is(err, gitlab.ErrUnauthorized):
		return res, stage, refuseRelease(http.StatusForbidden, "lotse's GitLab user cannot read project %s to confirm its id; give it at least the Reporter role there", app.SourceProject)
	case err != nil:
		return res, stage, refuseRelease(http.StatusServiceUnavailable, "read project %s: %v", app.SourceProject, err)
	case p.ID != claims.ProjectID || !strings.EqualFold(p.PathWithNamespace, app.SourceProject):
		return res, stage, refuseRelease(http.StatusForbidden, "the token is of project id %d, which GitLab says is %s (id %d), not %s", claims.ProjectID, p.PathWithNamespace, p.ID, app.SourceProject)
	}
	if !claims.RefProtected && !app.Releases.AllowUnprotectedRefs {
		return res, stage, refuseRelease(http.StatusForbidden, "the pipeline ran on %s %s, which is not protected; protect it, or set releases.allowUnprotectedRefs for app %s in lotse.yaml",
			orText(claims.RefType, "ref"), claims.Ref, app.Name)
	}

	// What: a digest of the app's image, built from the job's commit.
	if req.Stage != "" && req.Stage != first.Name {
		return res, stage, refuseRelease(http.StatusBadRequest, "releases enter app %s's first stage, %s, not %q", app.Name, first.Name, truncate(req.Stage, 64))
	}
	img, err := gitops.ParseImageRef(req.Image)
	if err != nil {
		return res, stage, refuseRelease(http.StatusBadRequest, "image: %v", err)
	}
	if img.Repository != app.Image {
		return res, stage, refuseRelease(http.StatusForbidden, "image %s is not in app %s's repository %s", img.Repository, app.Name, app.Image)
	}
	if claims.SHA == "" {
		return res, stage, refuseRelease(http.StatusForbidden, "the token carries no sha (GitLab 16.0 or later sets it)")
	}
	if req.SourceCommit != "" && !strings.EqualFold(req.SourceCommit, claims.SHA) {
		return res, stage, refuseRelease(http.StatusForbidden, "source_commit %s is not the job's commit %s", truncate(req.SourceCommit, 64), claims.SHA)
	}

	// The first stage's gates, as the promotions check them.
	gates, failed := h.checkGates(ctx, t.keys, first, img.String())
	if len(failed) > 0 {
		r := refuseRelease(http.StatusUnprocessableEntity, "a gate of stage %s failed", first.Name)
		r.reasons = failed
		return res, stage, r
	}

	// One token, one release: a token that leaked from its job cannot
	// release another image (the same release again is fine).
	if r := h.bind(ctx, claims.ID, img.String()); r != nil {
		return res, stage, r
	}

	pipeline := fmt.Sprintf("%s/%s/-/pipelines/%d", h.webURL, claims.ProjectPath, claims.PipelineID)
	wr, err := t.writer.Bump(ctx, writeback.Bump{App: app.Name, Stage: first.Name, Image: img,
		SourceProject: claims.ProjectPath, SourceCommit: claims.SHA, Pipeline: pipeline})
	var ne *writeback.NameError
	switch {
	case errors.As(err, &ne):
		return res, stage, refuseRelease(http.StatusNotFound, "%v", err)
	case err != nil:
		return res, stage, refuseRelease(http.StatusBadGateway, "write the release: %v", err)
	}
	res = releaseapi.Response{App: app.Name, Stage: first.Name, Image: img.String(), SourceProject: claims.ProjectPath,
		SourceCommit: claims.SHA, Pipeline: pipeline, Path: wr.Path, Branch: wr.Branch, Changed: wr.Changed, Commit: wr.Commit, Gates: gates}
	if wr.MR != nil {
		res.MergeRequest = &releaseapi.MergeRequest{IID: wr.MR.IID, WebURL: wr.MR.WebURL, State: wr.MR.State}
	}
	return res, stage, nil
}

// bind ties the token's jti to image, the first time it releases one;
// another image with the same token is refused.
func (h *releases) bind(ctx context.Context, jti, image string) *refusal {
	if jti == "" {
		return refuseRelease(http.StatusForbidden, "the token has no jti")
	}
	pair := "release-token:" + digestOf(jti, image)
	first, err := h.once.Once(ctx, pair)
	switch {
	case err != nil:
		return refuseRelease(http.StatusServiceUnavailable, "bind the token: %v", err)
	case !first:
		return nil // this token released this image before: the same release again
	}
	tokenFirst, err := h.once.Once(ctx, "release-token:"+digestOf(jti))
	if err != nil || !tokenFirst {
		_ = h.once.Forget(ctx, pair)
	}
	switch {
	case err != nil:
		return refuseRelease(http.StatusServiceUnavailable, "bind the token: %v", err)
	case !tokenFirst:
		return refuseRelease(http.StatusForbidden, "this ID token has released another image already; one job, one release")
	}
	return nil
}

// checkGates runs the signature and scan gates the stage asks for, with
// the promotions' gates and judgement. Soak and health concern the stage
// before; a first stage has none.
func (h *releases) checkGates(ctx context.Context, keys gateKeys, st *gitops.Stage, image string) (out []releaseapi.Gate, failed []string) {
	add := func(name string, r promotion.Result, fail string) {
		ok := r.Checked && r.OK
		reason := r.Reason
		switch {
		case !r.Checked:
			reason = "not checked" + releaseReasonSuffix(reason)
		case reason == "" && !ok:
			reason = fail
		}
		out = append(out, releaseapi.Gate{Name: name, OK: ok, Reason: reason})
		if !ok {
			failed = append(failed, name+": "+reason)
		}
	}
	if st.Gates.Signature {
		add("signature", h.gates.signature(ctx, keys, image), "signature does not verify")
	}
	if st.Gates.MaxSeverity != nil {
		add("scan", promotion.JudgeScan(h.gates.scan(ctx, keys, image), *st.Gates.MaxSeverity, st.Gates.MaxScanAge, h.now()), "scan gate failed")
	}
	if out == nil {
		out = []releaseapi.Gate{}
	}
	return out, failed
}

func releaseReasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// tokenCause is the part of a verification error that may be told to the
// caller: the class of the problem, never the token's content or the
// expected values.
func tokenCause(err error) string {
	for _, c := range []error{idtoken.ErrExpired, idtoken.ErrNotYetValid, idtoken.ErrAudience, idtoken.ErrIssuer,
		idtoken.ErrAlgorithm, idtoken.ErrUnknownKey, idtoken.ErrSignature, idtoken.ErrNotCIJob, idtoken.ErrMalformed} {
		if errors.Is(err, c) {
			return c.Error()
		}
	}
	return "not accepted"
}

func jsonProblem(err error) string {
	if err == nil {
		return ""
	}
	return ": " + truncate(err.Error(), 200)
}

// provenance describes the job behind a release for the audit log.
func provenance(c *idtoken.Claims, pipeline string) string {
	prot := "unprotected"
	if c.RefProtected {
		prot = "protected"
	}
	s := fmt.Sprintf("project %s (id %d), %s %s (%s), commit %s, pipeline %d, job %d, user %s (id %d)",
		c.ProjectPath, c.ProjectID, orText(c.RefType, "ref"), c.Ref, prot, c.SHA, c.PipelineID, c.JobID, c.UserLogin, c.UserID)
	if pipeline != "" {
		s += ", " + pipeline
	}
	return s
}

func gateList(gs []releaseapi.Gate) string {
	if len(gs) == 0 {
		return "none"
	}
	parts := make([]string, len(gs))
	for i, g := range gs {
		st := "passed"
		if !g.OK {
			st = "failed"
		}
		parts[i] = g.Name + " " + st
	}
	return strings.Join(parts, ", ")
}
