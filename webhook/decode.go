package webhook

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitops"
)

// occurrence is something that happened in GitLab or ArgoCD that lotsed
// acts on, decoded from one delivery. The worker turns occurrences into
// promotion events.
type occurrence struct {
	Kind  string // landed, mr, note, pipeline, health
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
	User   string // who did it
	SHA    string
	Body   string

	// pipeline: a pipeline on the GitOps project finished.
	Status string

	// health: ArgoCD's view of the app in the stage.
	Healthy bool
	Reason  string
	Images  []string
}

// decodeError is a delivery that cannot be decoded; retrying will not help.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decode: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

type gitlabProject struct {
	PathWithNamespace string `json:"path_with_namespace"`
	DefaultBranch     string `json:"default_branch"`
}

type gitlabUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
}

// decodeGitLab decodes a GitLab delivery for the GitOps project. bot is
// lotse's own username: its notes are not commands.
func decodeGitLab(event string, body []byte, gitopsProject, defaultBranch, bot string) ([]occurrence, error) {
	switch event {
	case "Push Hook":
		return decodePush(body, gitopsProject, defaultBranch)
	case "Merge Request Hook":
		return decodeMR(body, gitopsProject)
	case "Note Hook":
		return decodeNote(body, gitopsProject, bot)
	case "Pipeline Hook":
		return decodePipeline(body, gitopsProject)
	}
	return nil, nil
}

func sameProject(a, b string) bool { return strings.EqualFold(a, b) }

func decodePush(body []byte, gitopsProject, defaultBranch string) ([]occurrence, error) {
	var p struct {
		Ref     string        `json:"ref"`
		Project gitlabProject `json:"project"`
		Commits []struct {
			ID        string `json:"id"`
			Message   string `json:"message"`
			Timestamp string `json:"timestamp"`
		} `json:"commits"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &decodeError{err}
	}
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
	var out []occurrence
	for _, c := range p.Commits {
		t, ok := gitops.ParseTrailers(c.Message)
		if !ok || t.App == "" || t.Stage == "" || t.Image == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, c.Timestamp)
		if err != nil {
			return nil, &decodeError{fmt.Errorf("commit %s: timestamp %q: %w", c.ID, c.Timestamp, err)}
		}
		subject, _, _ := strings.Cut(c.Message, "\n")
		out = append(out, occurrence{Kind: "landed", App: t.App, Stage: t.Stage, Image: t.Image,
			SourceProject: t.SourceProject, SourceCommit: t.SourceCommit, Pipeline: t.Pipeline, Commit: c.ID, At: at.UTC(),
			Rollback: strings.HasPrefix(subject, "Roll back ")})
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

func decodeMR(body []byte, gitopsProject string) ([]occurrence, error) {
	var p struct {
		User    gitlabUser    `json:"user"`
		Project gitlabProject `json:"project"`
		Attrs   struct {
			IID          int64  `json:"iid"`
			SourceBranch string `json:"source_branch"`
			TargetBranch string `json:"target_branch"`
			Action       string `json:"action"`
			State        string `json:"state"`
			LastCommit   struct {
				ID string `json:"id"`
			} `json:"last_commit"`
		} `json:"object_attributes"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &decodeError{err}
	}
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) {
		return nil, nil
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
	case "open", "reopen", "update", "approved", "unapproved", "merge", "close":
	default:
		return nil, nil
	}
	return []occurrence{{Kind: "mr", App: app, Stage: stage, IID: p.Attrs.IID, Action: action, User: p.User.Username, SHA: p.Attrs.LastCommit.ID}}, nil
}

func decodeNote(body []byte, gitopsProject, bot string) ([]occurrence, error) {
	var p struct {
		User    gitlabUser    `json:"user"`
		Project gitlabProject `json:"project"`
		Attrs   struct {
			ID           int64  `json:"id"`
			Note         string `json:"note"`
			NoteableType string `json:"noteable_type"`
			System       bool   `json:"system"`
			Action       string `json:"action"`
		} `json:"object_attributes"`
		MR struct {
			IID          int64  `json:"iid"`
			SourceBranch string `json:"source_branch"`
		} `json:"merge_request"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &decodeError{err}
	}
	if !sameProject(p.Project.PathWithNamespace, gitopsProject) || p.Attrs.NoteableType != "MergeRequest" || p.Attrs.System {
		return nil, nil
	}
	if p.Attrs.Action == "update" || (bot != "" && strings.EqualFold(p.User.Username, bot)) {
		return nil, nil // edits are not new commands; lotse's own comments are not commands
	}
	if !strings.HasPrefix(strings.TrimSpace(p.Attrs.Note), "/lotse") {
		return nil, nil
	}
	app, stage, ok := promotionBranch(p.MR.SourceBranch)
	if !ok {
		return nil, nil
	}
	return []occurrence{{Kind: "note", App: app, Stage: stage, IID: p.MR.IID, NoteID: p.Attrs.ID, User: p.User.Username, Body: strings.TrimSpace(p.Attrs.Note)}}, nil
}

func decodePipeline(body []byte, gitopsProject string) ([]occurrence, error) {
	var p struct {
		Project gitlabProject `json:"project"`
		Attrs   struct {
			Ref    string `json:"ref"`
			SHA    string `json:"sha"`
			Status string `json:"status"`
		} `json:"object_attributes"`
		MR *struct {
			IID          int64  `json:"iid"`
			SourceBranch string `json:"source_branch"`
		} `json:"merge_request"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &decodeError{err}
	}
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
		return nil, &decodeError{err}
	}
	if n.App == "" || n.Stage == "" {
		return nil, &decodeError{fmt.Errorf("notification without app and stage")}
	}
	healthy := n.Health == "Healthy" && (n.Sync == "" || n.Sync == "Synced")
	reason := "ArgoCD: health " + n.Health
	if n.Sync != "" {
		reason += ", sync " + n.Sync
	}
	if n.Message != "" {
		reason += ": " + n.Message
	}
	return []occurrence{{Kind: "health", App: n.App, Stage: n.Stage, Healthy: healthy, Reason: reason, Images: n.Images}}, nil
}
