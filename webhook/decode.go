package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
)

// occurrence is something that happened in GitLab or ArgoCD that lotsed
// acts on, decoded from one delivery. The worker turns occurrences into
// promotion events.
type occurrence struct {
	Kind  string // landed, changed, mr, note, pipeline, health
	App   string
	Stage string

	// landed: a lotse commit reached the GitOps default branch.
	Image, SourceProject, SourceCommit, Pipeline, Commit string
	At                                                   time.Time
	Rollback                                             bool // it puts back an earlier version

	// mr: a promotion MR changed (action open, update, approved,
	// unapproved, merge, close, reopen); note: a comment on one.
	IID    int64
	NoteID int64
	Action string
	User   promotion.User // who did it (for a landing: who pushed)
	SHA    string
	Body   string

	// pipeline: a pipeline on the GitOps project finished.
	Status string

	// landed, changed: the files the commit added, changed or removed.
	Files []string

	// health: ArgoCD's view of the app in the stage.
	Healthy  bool
	Degraded bool
	Reason   string
	Images   []string
	Revision string

	// landed: the default branch's head after the push.
	Head string
}

// decodeError is a delivery that cannot be decoded: retrying will not help.
func decodeError(err error) error { return &permanentError{fmt.Errorf("decode: %w", err)} }

type gitlabProject struct {
	ID                int64  `json:"id"`
	PathWithNamespace string `json:"path_with_namespace"`
	DefaultBranch     string `json:"default_branch"`
}

type gitlabUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

// gitlabHook is what lotsed reads of a GitLab webhook body, for each event
// kind it handles (Push, Merge Request, Note, Pipeline Hook): the intake
// decodes a body once, into this, and hands it to a worker with the
// delivery.
type gitlabHook struct {
	ObjectKind   string        `json:"object_kind"`
	Ref          string        `json:"ref"`           // push
	After        string        `json:"after"`         // push: the branch's new head
	UserID       int64         `json:"user_id"`       // push: who pushed
	UserUsername string        `json:"user_username"` // push
	User         gitlabUser    `json:"user"`          // merge request, note
	Project      gitlabProject `json:"project"`       // all
	Commits      []hookCommit  `json:"commits"`       // push
	Attrs        struct {
		// merge request
		IID             int64  `json:"iid"`
		SourceBranch    string `json:"source_branch"`
		SourceProjectID int64  `json:"source_project_id"`
		TargetProjectID int64  `json:"target_project_id"`
		LastCommit      struct {
			ID string `json:"id"`
		} `json:"last_commit"`
		// merge request, note
		Action string `json:"action"`
		// note
		ID           int64  `json:"id"`
		Note         string `json:"note"`
		NoteableType string `json:"noteable_type"`
		System       bool   `json:"system"`
		// pipeline
		Ref    string `json:"ref"`
		SHA    string `json:"sha"`
		Status string `json:"status"`
	} `json:"object_attributes"`
	// note, pipeline (null when the pipeline is not for an MR)
	MR *hookMR `json:"merge_request"`
}

type hookCommit struct {
	ID        string   `json:"id"`
	Message   string   `json:"message"`
	Timestamp string   `json:"timestamp"`
	Added     []string `json:"added"`
	Modified  []string `json:"modified"`
	Removed   []string `json:"removed"`
}

type hookMR struct {
	IID             int64  `json:"iid"`
	SourceBranch    string `json:"source_branch"`
	SourceProjectID int64  `json:"source_project_id"`
	TargetProjectID int64  `json:"target_project_id"`
}

// hookParsers parse webhook bodies; a Parser is reused, not shared.
var hookParsers fastjson.ParserPool

// parseGitLab decodes a GitLab webhook body into the fields of gitlabHook
// (its json tags; TestParseGitLabMatchesEncodingJSON holds it to what
// encoding/json decodes). It is the intake's hot path: encoding/json's
// Valid checks the whole body strictly and fastjson then reads the fields,
// together in about half of what json.Unmarshal takes.
func parseGitLab(body []byte) (*gitlabHook, error) {
	if !json.Valid(body) {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, err // says what and where
		}
		return nil, errors.New("invalid JSON")
	}
	p := hookParsers.Get()
	defer hookParsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, err
	}
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("the body is a JSON %s, not an object", v.Type())
	}
	var (
		r jsonFields
		h gitlabHook
	)
	h.ObjectKind = r.str(v, "object_kind")
	h.Ref = r.str(v, "ref")
	h.After = r.str(v, "after")
	h.UserID = r.int(v, "user_id")
	h.UserUsername = r.str(v, "user_username")
	h.User.ID = r.int(v, "user", "id")
	h.User.Username = r.str(v, "user", "username")
	h.Project.ID = r.int(v, "project", "id")
	h.Project.PathWithNamespace = r.str(v, "project", "path_with_namespace")
	h.Project.DefaultBranch = r.str(v, "project", "default_branch")
	for i, c := range r.array(v, "commits") {
		r.scope = "commits." + strconv.Itoa(i) + "."
		h.Commits = append(h.Commits, hookCommit{ID: r.str(c, "id"), Message: r.str(c, "message"), Timestamp: r.str(c, "timestamp"),
			Added: r.strs(c, "added"), Modified: r.strs(c, "modified"), Removed: r.strs(c, "removed")})
	}
	r.scope = ""
	if r.object(v, "object_attributes") != nil {
		const a = "object_attributes"
		h.Attrs.IID = r.int(v, a, "iid")
		h.Attrs.SourceBranch = r.str(v, a, "source_branch")
		h.Attrs.SourceProjectID = r.int(v, a, "source_project_id")
		h.Attrs.TargetProjectID = r.int(v, a, "target_project_id")
		h.Attrs.LastCommit.ID = r.str(v, a, "last_commit", "id")
		h.Attrs.Action = r.str(v, a, "action")
		h.Attrs.ID = r.int(v, a, "id")
		h.Attrs.Note = r.str(v, a, "note")
		h.Attrs.NoteableType = r.str(v, a, "noteable_type")
		h.Attrs.System = r.bool(v, a, "system")
		h.Attrs.Ref = r.str(v, a, "ref")
		h.Attrs.SHA = r.str(v, a, "sha")
		h.Attrs.Status = r.str(v, a, "status")
	}
	if r.object(v, "merge_request") != nil {
		h.MR = &hookMR{IID: r.int(v, "merge_request", "iid"), SourceBranch: r.str(v, "merge_request", "source_branch"),
			SourceProjectID: r.int(v, "merge_request", "source_project_id"), TargetProjectID: r.int(v, "merge_request", "target_project_id")}
	}
	if r.err != nil {
		return nil, r.err
	}
	return &h, nil
}

// jsonFields reads typed fields out of a parsed document; the first value
// of a wrong type is its error. Missing and null values read as zero, as
// with encoding/json.
type jsonFields struct {
	err   error
	scope string // the path of the values read, for errors: "commits.2."
}

// get is the value at keys when it is of type want (TypeTrue: either
// boolean); nil when it is missing or null, or of another type (an error).
func (r *jsonFields) get(v *fastjson.Value, want fastjson.Type, keys []string) *fastjson.Value {
	for i, k := range keys {
		if i > 0 && v.Type() != fastjson.TypeObject {
			r.fail(keys[:i], fastjson.TypeObject, v)
			return nil
		}
		if v = v.Get(k); v == nil || v.Type() == fastjson.TypeNull {
			return nil
		}
	}
	t := v.Type()
	if t == fastjson.TypeFalse {
		t = fastjson.TypeTrue
	}
	if t != want {
		r.fail(keys, want, v)
		return nil
	}
	return v
}

func (r *jsonFields) fail(keys []string, want fastjson.Type, got *fastjson.Value) {
	if r.err == nil {
		r.err = fmt.Errorf("%s%s: want %s, got %s", r.scope, strings.Join(keys, "."), typeName(want), typeName(got.Type()))
	}
}

func typeName(t fastjson.Type) string {
	switch t {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	}
	return t.String()
}

func (r *jsonFields) str(v *fastjson.Value, keys ...string) string {
	if v = r.get(v, fastjson.TypeString, keys); v != nil {
		b, _ := v.StringBytes()
		return string(b) // a copy: the parser's buffer is reused
	}
	return ""
}

func (r *jsonFields) int(v *fastjson.Value, keys ...string) int64 {
	if v = r.get(v, fastjson.TypeNumber, keys); v != nil {
		n, err := v.Int64()
		if err != nil && r.err == nil {
			r.err = fmt.Errorf("%s%s: %w", r.scope, strings.Join(keys, "."), err)
		}
		return n
	}
	return 0
}

func (r *jsonFields) bool(v *fastjson.Value, keys ...string) bool {
	if v = r.get(v, fastjson.TypeTrue, keys); v != nil {
		return v.Type() == fastjson.TypeTrue
	}
	return false
}

func (r *jsonFields) object(v *fastjson.Value, keys ...string) *fastjson.Value {
	return r.get(v, fastjson.TypeObject, keys)
}

func (r *jsonFields) array(v *fastjson.Value, keys ...string) []*fastjson.Value {
	if v = r.get(v, fastjson.TypeArray, keys); v != nil {
		a, _ := v.Array()
		return a
	}
	return nil
}

func (r *jsonFields) strs(v *fastjson.Value, keys ...string) []string {
	if v = r.get(v, fastjson.TypeArray, keys); v == nil {
		return nil
	}
	a, _ := v.Array()
	out := make([]string, 0, len(a))
	for i, e := range a {
		switch e.Type() {
		case fastjson.TypeString:
			b, _ := e.StringBytes()
			out = append(out, string(b))
		case fastjson.TypeNull:
			out = append(out, "")
		default:
			r.fail(append(keys, strconv.Itoa(i)), fastjson.TypeString, e)
		}
	}
	return out
}

// decodeGitLab decodes a GitLab delivery for the GitOps project. bot is
// lotse's own username: its notes are not commands.
func decodeGitLab(event string, body []byte, gitopsProject, defaultBranch string, bot promotion.User) ([]occurrence, error) {
	if !handledEvents[event] {
		return nil, nil
	}
	h, err := parseGitLab(body)
	if err != nil {
		return nil, decodeError(err)
	}
	return decodeHook(event, h, gitopsProject, defaultBranch, bot)
}

// decodeHook turns a decoded GitLab delivery into occurrences.
func decodeHook(event string, h *gitlabHook, gitopsProject, defaultBranch string, bot promotion.User) ([]occurrence, error) {
	switch event {
	case "Push Hook":
		return decodePush(h, gitopsProject, defaultBranch)
	case "Merge Request Hook":
		return decodeMR(h, gitopsProject)
	case "Note Hook":
		return decodeNote(h, gitopsProject, bot)
	case "Pipeline Hook":
		return decodePipeline(h, gitopsProject)
	}
	return nil, nil
}

func sameProject(a, b string) bool { return strings.EqualFold(a, b) }

// fromFork reports whether an MR's source is another project than its
// target (when the hook says).
func fromFork(source, target int64) bool { return source != 0 && target != 0 && source != target }

func decodePush(p *gitlabHook, gitopsProject, defaultBranch string) ([]occurrence, error) {
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) {
		return nil, nil
	}
	branch := defaultBranch
	if branch == "" {
		branch = p.Project.DefaultBranch
	}
	if p.Ref != "refs/heads/"+branch {
		return nil, nil // lotse/<app>/<stage> branches: the MR hooks tell
	}
	pusher := promotion.User{ID: p.UserID, Username: p.UserUsername}
	var out []occurrence
	for _, c := range p.Commits {
		at, err := time.Parse(time.RFC3339, c.Timestamp)
		if err != nil {
			return nil, decodeError(fmt.Errorf("commit %s: timestamp %q: %w", c.ID, c.Timestamp, err))
		}
		files := slices.Concat(c.Added, c.Modified, c.Removed)
		t, ok := gitops.ParseTrailers(c.Message)
		if !ok || t.App == "" || t.Stage == "" || t.Image == "" {
			if len(files) > 0 {
				// The dispatcher tells which stages' values these are.
				out = append(out, occurrence{Kind: "changed", Commit: c.ID, User: pusher, At: at.UTC(), Files: files})
			}
			continue
		}
		out = append(out, occurrence{Kind: "landed", App: t.App, Stage: t.Stage, Image: t.Image,
			SourceProject: t.SourceProject, SourceCommit: t.SourceCommit, Pipeline: t.Pipeline, Commit: c.ID, At: at.UTC(),
			Rollback: t.IsRollback(), User: pusher, Files: files, Head: p.After})
	}
	return out, nil
}

// promotionBranch splits lotse/<app>/<stage>.
func promotionBranch(branch string) (app, stage string, ok bool) {
	rest, ok := strings.CutPrefix(branch, "lotse/")
	if !ok {
		return "", "", false
	}
	app, stage, ok = strings.Cut(rest, "/")
	if !ok || app == "" || stage == "" || strings.Contains(stage, "/") {
		return "", "", false
	}
	return app, stage, true
}

func decodeMR(p *gitlabHook, gitopsProject string) ([]occurrence, error) {
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) || fromFork(p.Attrs.SourceProjectID, p.Attrs.TargetProjectID) {
		return nil, nil // an MR from a fork is never lotse's, whatever its branch is called
	}
	app, stage, ok := promotionBranch(p.Attrs.SourceBranch)
	if !ok || p.Attrs.IID <= 0 {
		return nil, nil
	}
	action := p.Attrs.Action
	switch action {
	case "approval":
		action = "approved"
	case "unapproval":
		action = "unapproved"
	case "update", "approved", "unapproved", "merge", "close":
	default:
		// open and reopen: lotse learns of the MRs it opens from GitLab's
		// answer, never from a hook anybody's MR sends.
		return nil, nil
	}
	return []occurrence{{Kind: "mr", App: app, Stage: stage, IID: p.Attrs.IID, Action: action,
		User: promotion.User{ID: p.User.ID, Username: p.User.Username}, SHA: p.Attrs.LastCommit.ID}}, nil
}

func decodeNote(p *gitlabHook, gitopsProject string, bot promotion.User) ([]occurrence, error) {
	if p.MR == nil {
		return nil, nil // a note on a commit, issue or snippet
	}
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) || p.Attrs.NoteableType != "MergeRequest" || p.Attrs.System ||
		fromFork(p.MR.SourceProjectID, p.MR.TargetProjectID) {
		return nil, nil
	}
	if p.Attrs.Action == "update" || (bot.ID != 0 && p.User.ID == bot.ID) {
		return nil, nil // edits are not new commands; lotse's own comments are not commands
	}
	if !strings.HasPrefix(strings.TrimSpace(p.Attrs.Note), "/lotse") {
		return nil, nil
	}
	app, stage, ok := promotionBranch(p.MR.SourceBranch)
	if !ok {
		return nil, nil
	}
	return []occurrence{{Kind: "note", App: app, Stage: stage, IID: p.MR.IID, NoteID: p.Attrs.ID,
		User: promotion.User{ID: p.User.ID, Username: p.User.Username}, Body: strings.TrimSpace(p.Attrs.Note)}}, nil
}

func decodePipeline(p *gitlabHook, gitopsProject string) ([]occurrence, error) {
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) {
		return nil, nil
	}
	switch p.Attrs.Status {
	case "success", "failed", "canceled":
	default:
		return nil, nil // only finished pipelines matter
	}
	branch := p.Attrs.Ref
	var iid int64
	if p.MR != nil {
		if fromFork(p.MR.SourceProjectID, p.MR.TargetProjectID) {
			return nil, nil
		}
		branch, iid = p.MR.SourceBranch, p.MR.IID
	}
	app, stage, ok := promotionBranch(branch)
	if !ok {
		return nil, nil
	}
	return []occurrence{{Kind: "pipeline", App: app, Stage: stage, IID: iid, SHA: p.Attrs.SHA, Status: p.Attrs.Status}}, nil
}

// decodeArgoCD decodes an ArgoCD notification.
func decodeArgoCD(body []byte) ([]occurrence, error) {
	var n ArgoCDNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, decodeError(err)
	}
	if n.App == "" || n.Stage == "" {
		return nil, decodeError(fmt.Errorf("notification without app and stage"))
	}
	healthy := n.Health == "Healthy" && (n.Sync == "" || n.Sync == "Synced")
	reason := "ArgoCD: health " + n.Health
	if n.Sync != "" {
		reason += ", sync " + n.Sync
	}
	if n.Message != "" {
		reason += ": " + n.Message
	}
	return []occurrence{{Kind: "health", App: n.App, Stage: n.Stage, Healthy: healthy, Degraded: n.Health == "Degraded", Reason: reason,
		Images: n.Images, Revision: n.Revision}}, nil
}
