package gitlabsim

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Webhook payloads, shaped like the examples in GitLab's webhook_events.md
// (see testdata/payloads and the payload key-coverage test).

func visibilityLevel(v string) int {
	switch v {
	case "public":
		return 20
	case "internal":
		return 10
	}
	return 0
}

func (s *Sim) hookProject(p *project, base string) map[string]any {
	ns := p.FullPath
	if i := strings.LastIndex(ns, "/"); i >= 0 {
		ns = ns[:i]
	}
	web := base + "/" + p.FullPath
	ssh := "git@" + hostOf(base) + ":" + p.FullPath + ".git"
	return map[string]any{
		"id": p.ID, "name": p.name, "description": p.description, "web_url": web, "avatar_url": nil,
		"git_ssh_url": ssh, "git_http_url": web + ".git", "namespace": ns, "visibility_level": visibilityLevel(p.visibility),
		"path_with_namespace": p.FullPath, "default_branch": p.defaultBranch, "ci_config_path": "",
		"homepage": web, "url": ssh, "ssh_url": ssh, "http_url": web + ".git",
	}
}

func (s *Sim) hookRepository(p *project, base string) map[string]any {
	web := base + "/" + p.FullPath
	return map[string]any{
		"name": p.name, "url": "git@" + hostOf(base) + ":" + p.FullPath + ".git", "description": p.description, "homepage": web,
		"git_http_url": web + ".git", "git_ssh_url": "git@" + hostOf(base) + ":" + p.FullPath + ".git",
		"visibility_level": visibilityLevel(p.visibility),
	}
}

func (s *Sim) hookUser(u *user) map[string]any {
	if u == nil {
		return nil
	}
	return map[string]any{"id": u.ID, "name": u.Name, "username": u.Username, "avatar_url": avatarURL(u), "email": u.Email}
}

func (s *Sim) hookCommit(p *project, c gitCommit, base string) map[string]any {
	return map[string]any{
		"id": c.SHA, "message": c.Message, "title": c.Title(), "timestamp": c.Author.When.Format(time.RFC3339),
		"url":    base + "/" + p.FullPath + "/-/commit/" + c.SHA,
		"author": map[string]any{"name": c.Author.Name, "email": c.Author.Email},
	}
}

// ---- push ----

// emitPush sends a Push Hook for branch moving from before to after ("" = none).
func (s *Sim) emitPush(ctx context.Context, p *project, u *user, branch, before, after string) {
	base := s.BaseURL()
	wants := func(h *hook) bool { return h.PushEvents && branchFilterMatches(h.PushEventsBranchFilter, branch) }
	if !anyHook(p, wants) {
		return
	}
	var commits []gitCommit
	total := 0
	if after != "" {
		q := logQuery{Ref: after, Exclude: before}
		if before == "" {
			// a new branch: commits not on any other branch
			if heads, err := p.repo.branches(ctx); err == nil {
				q.Exclude = ""
				var others []string
				for b, sha := range heads {
					if b != branch {
						others = append(others, sha)
					}
				}
				commits = s.newCommits(ctx, p, after, others)
			}
		} else {
			commits, _ = p.repo.log(ctx, q)
		}
		total = len(commits)
	}
	// Push hooks list the newest 20 commits, oldest first.
	if len(commits) > 20 {
		commits = commits[:20]
	}
	list := make([]map[string]any, 0, len(commits))
	for i := len(commits) - 1; i >= 0; i-- {
		c := commits[i]
		m := s.hookCommit(p, c, base)
		added, modified, removed := []string{}, []string{}, []string{}
		if chs, err := p.repo.changes(ctx, c.SHA); err == nil {
			for _, ch := range chs {
				switch ch.Status {
				case "A":
					added = append(added, ch.Path)
				case "D":
					removed = append(removed, ch.Path)
				default:
					modified = append(modified, ch.Path)
				}
			}
		}
		m["added"], m["modified"], m["removed"] = added, modified, removed
		list = append(list, m)
	}
	var checkout any
	if after != "" {
		checkout = after
	}
	payload := map[string]any{
		"object_kind": "push", "event_name": "push",
		"before": orZero(before), "after": orZero(after), "ref": "refs/heads/" + branch,
		"ref_protected": p.protection(branch) != nil, "checkout_sha": checkout, "message": nil,
		"user_id": u.ID, "user_name": u.Name, "user_username": u.Username, "user_email": u.Email, "user_avatar": avatarURL(u),
		"project_id": p.ID, "project": s.hookProject(p, base), "commits": list, "total_commits_count": total,
		"push_options": map[string]any{}, "repository": s.hookRepository(p, base),
	}
	s.emit(ctx, p, "Push Hook", wants, payload)
}

func (s *Sim) newCommits(ctx context.Context, p *project, head string, exclude []string) []gitCommit {
	args := []string{"log", "--format=" + logFormat, head}
	for _, e := range exclude {
		args = append(args, "^"+e)
	}
	out, err := p.repo.git(ctx, nil, nil, append(args, "--")...)
	if err != nil {
		return nil
	}
	return parseLog(out)
}

func orZero(sha string) string {
	if sha == "" {
		return zeroSHA
	}
	return sha
}

func anyHook(p *project, wants func(*hook) bool) bool {
	for _, h := range p.hooks {
		if wants(h) {
			return true
		}
	}
	return false
}

// ---- merge requests ----

func (s *Sim) hookMRAttrs(ctx context.Context, p *project, mr *mergeRequest, base string) map[string]any {
	var lastCommit any
	if mr.SHA != "" {
		if c, err := p.repo.commit(ctx, mr.SHA); err == nil {
			lastCommit = s.hookCommit(p, c, base)
		}
	}
	var headPipeline any
	if pl := p.latestPipeline(mr.SHA, ""); pl != nil {
		headPipeline = pl.ID
	}
	var assigneeID any
	if len(mr.AssigneeIDs) > 0 {
		assigneeID = mr.AssigneeIDs[0]
	}
	hp := s.hookProject(p, base)
	src := hp
	if sp := s.projectByID(mr.SourceProjectID); sp != nil && sp != p {
		src = s.hookProject(sp, base)
	}
	return map[string]any{
		"id": mr.ID, "iid": mr.IID, "target_branch": mr.TargetBranch, "source_branch": mr.SourceBranch,
		"source_project_id": mr.SourceProjectID, "target_project_id": p.ID, "author_id": mr.AuthorID,
		"assignee_ids": nonNilInts(mr.AssigneeIDs), "assignee_id": assigneeID, "reviewer_ids": nonNilInts(mr.ReviewerIDs),
		"title": mr.Title, "description": mr.Description,
		"created_at": hookTime(mr.CreatedAt), "updated_at": hookTime(mr.UpdatedAt),
		"last_edited_at": hookTime(mr.LastEditedAt), "last_edited_by_id": nilIfZero(mr.LastEditedByID),
		"updated_by_id": nilIfZero(mr.UpdatedByID), "deleted_at": nil,
		"milestone_id": nil, "state_id": stateID(mr.State), "state": mr.State,
		"blocking_discussions_resolved": true, "work_in_progress": mr.draft(), "draft": mr.draft(),
		"first_contribution": false, "merge_status": s.mergeStatus(mr), "detailed_merge_status": s.detailedStatus(p, mr),
		"prepared_at": hookTime(mr.CreatedAt), "head_pipeline_id": headPipeline,
		"merge_commit_sha": strp(mr.MergeCommitSHA), "squash_commit_sha": strp(mr.SquashCommitSHA),
		"merge_error": nil, "merge_params": map[string]any{"force_remove_source_branch": mr.ForceRemoveSourceBranch},
		"merge_user_id": nilIfZero(mr.MergeUserID), "merge_when_pipeline_succeeds": mr.autoMerge,
		"squash": mr.Squash, "time_estimate": 0, "total_time_spent": 0, "time_change": 0,
		"human_total_time_spent": nil, "human_time_change": nil, "human_time_estimate": nil,
		"url":    base + "/" + p.FullPath + "/-/merge_requests/" + strconv.Itoa(mr.IID),
		"source": src, "target": hp, "last_commit": lastCommit, "labels": p.labelsJSON(mr.Labels),
	}
}

func nonNilInts(a []int) []int {
	if a == nil {
		return []int{}
	}
	return a
}

func (s *Sim) hookUsers(ids []int) []map[string]any {
	out := []map[string]any{}
	for _, id := range ids {
		if u := s.userByID(id); u != nil {
			out = append(out, map[string]any{"id": u.ID, "name": u.Name, "username": u.Username, "avatar_url": avatarURL(u)})
		}
	}
	return out
}

// mrPayload builds a Merge Request Hook body.
func (s *Sim) mrPayload(ctx context.Context, p *project, mr *mergeRequest, u *user, action string, changes map[string]any, oldrev string) map[string]any {
	base := s.BaseURL()
	attrs := s.hookMRAttrs(ctx, p, mr, base)
	attrs["action"] = action
	if oldrev != "" {
		attrs["oldrev"] = oldrev
	}
	if changes == nil {
		changes = map[string]any{}
	}
	return map[string]any{
		"object_kind": "merge_request", "event_type": "merge_request",
		"user": s.hookUser(u), "project": s.hookProject(p, base), "repository": s.hookRepository(p, base),
		"object_attributes": attrs, "labels": p.labelsJSON(mr.Labels), "changes": changes,
		"assignees": s.hookUsers(mr.AssigneeIDs), "reviewers": s.hookUsers(mr.ReviewerIDs),
	}
}

func (s *Sim) emitMR(ctx context.Context, p *project, mr *mergeRequest, u *user, action string, changes map[string]any) {
	s.emitMRWithOldrev(ctx, p, mr, u, action, changes, "")
}

func (s *Sim) emitMRWithOldrev(ctx context.Context, p *project, mr *mergeRequest, u *user, action string, changes map[string]any, oldrev string) {
	wants := func(h *hook) bool { return h.MergeRequestsEvents }
	if !anyHook(p, wants) {
		return
	}
	s.emit(ctx, p, "Merge Request Hook", wants, s.mrPayload(ctx, p, mr, u, action, changes, oldrev))
}

// mrOpenChanges lists the attributes set by creating an MR, as GitLab's open hook does.
func mrOpenChanges(mr *mergeRequest, u *user, p *project) map[string]any {
	ch := func(prev, cur any) map[string]any { return map[string]any{"previous": prev, "current": cur} }
	return map[string]any{
		"id": ch(nil, mr.ID), "iid": ch(nil, mr.IID), "title": ch(nil, mr.Title), "description": ch(nil, mr.Description),
		"source_branch": ch(nil, mr.SourceBranch), "target_branch": ch(nil, mr.TargetBranch),
		"author_id": ch(nil, mr.AuthorID), "state_id": ch(nil, stateID(mr.State)),
		"created_at": ch(nil, hookTime(mr.CreatedAt)), "updated_at": ch(nil, hookTime(mr.UpdatedAt)),
		"updated_by_id": ch(nil, u.ID), "draft": ch(nil, mr.draft()),
		"last_edited_at": ch(nil, nil), "last_edited_by_id": ch(nil, nil),
		"labels": ch([]map[string]any{}, p.labelsJSON(mr.Labels)),
	}
}

// ---- notes ----

func (s *Sim) emitNote(ctx context.Context, p *project, mr *mergeRequest, n *note, u *user, action string) {
	wants := func(h *hook) bool { return h.NoteEvents }
	if n.System || !anyHook(p, wants) {
		return
	}
	base := s.BaseURL()
	mrURL := base + "/" + p.FullPath + "/-/merge_requests/" + strconv.Itoa(mr.IID)
	attrs := map[string]any{
		"id": n.ID, "note": n.Body, "noteable_type": "MergeRequest", "author_id": n.AuthorID,
		"created_at": hookTime(n.CreatedAt), "updated_at": hookTime(n.UpdatedAt), "project_id": p.ID,
		"attachment": nil, "line_code": nil, "commit_id": "", "noteable_id": mr.ID, "system": n.System,
		"st_diff": nil, "action": action, "url": mrURL + "#note_" + strconv.Itoa(n.ID),
		"type": nil, "internal": n.Internal, "confidential": n.Internal, "discussion_id": strconv.Itoa(n.ID),
		"resolved_at": nil, "resolved_by_id": nil, "description": n.Body,
	}
	m := s.hookMRAttrs(ctx, p, mr, base)
	// The note payload's merge_request uses the MR hook attributes plus a few legacy keys.
	m["position"] = 0
	var assignee any
	if len(mr.AssigneeIDs) > 0 {
		if a := s.userByID(mr.AssigneeIDs[0]); a != nil {
			assignee = map[string]any{"name": a.Name, "username": a.Username, "avatar_url": avatarURL(a)}
		}
	}
	m["assignee"] = assignee
	payload := map[string]any{
		"object_kind": "note", "event_type": "note", "user": s.hookUser(u), "project_id": p.ID,
		"project": s.hookProject(p, base), "repository": s.hookRepository(p, base),
		"object_attributes": attrs, "merge_request": m,
	}
	s.emit(ctx, p, "Note Hook", wants, payload)
}

// ---- pipelines ----

func (s *Sim) emitPipeline(ctx context.Context, p *project, pl *pipeline, u *user) {
	wants := func(h *hook) bool { return h.PipelineEvents }
	if !anyHook(p, wants) {
		return
	}
	base := s.BaseURL()
	stages := []string{}
	for _, b := range pl.Builds {
		if !containsStr(stages, b.Stage) {
			stages = append(stages, b.Stage)
		}
	}
	if pl.external && len(stages) == 0 {
		stages = []string{"external"}
	}
	vars := []map[string]any{}
	for _, k := range sortedKeys(pl.Variables) {
		vars = append(vars, map[string]any{"key": k, "value": pl.Variables[k]})
	}
	var finishedAt any
	if !pl.FinishedAt.IsZero() {
		finishedAt = hookTime(pl.FinishedAt)
	}
	name := any(nil)
	if pl.Name != "" {
		name = pl.Name
	}
	attrs := map[string]any{
		"id": pl.ID, "iid": pl.IID, "name": name, "ref": pl.Ref, "tag": false, "sha": pl.SHA, "before_sha": pl.beforeSHA(),
		"source": pl.Source, "status": pl.Status, "detailed_status": pl.Status, "stages": stages,
		"created_at": hookTime(pl.CreatedAt), "finished_at": finishedAt, "duration": pl.duration(), "queued_duration": nil,
		"variables": vars, "url": base + "/" + p.FullPath + "/-/pipelines/" + strconv.Itoa(pl.ID),
	}
	var mrJSON any
	if pl.Source == "merge_request_event" {
		for _, mr := range p.mrs {
			if mr.SHA == pl.SHA && mr.SourceBranch == pl.Ref {
				mrJSON = map[string]any{
					"id": mr.ID, "iid": mr.IID, "title": mr.Title, "source_branch": mr.SourceBranch, "source_project_id": mr.SourceProjectID,
					"target_branch": mr.TargetBranch, "target_project_id": p.ID, "state": mr.State,
					"merge_status": s.mergeStatus(mr), "detailed_merge_status": s.detailedStatus(p, mr),
					"url": base + "/" + p.FullPath + "/-/merge_requests/" + strconv.Itoa(mr.IID),
				}
			}
		}
	}
	var commit any
	if c, err := p.repo.commit(ctx, pl.SHA); err == nil {
		commit = s.hookCommit(p, c, base)
	}
	builds := []map[string]any{}
	for i, b := range pl.Builds {
		builds = append(builds, s.hookBuild(pl, b, i, u))
	}
	hp := s.hookProject(p, base)
	project := map[string]any{}
	for _, k := range []string{"id", "name", "description", "web_url", "avatar_url", "git_ssh_url", "git_http_url", "namespace", "visibility_level", "path_with_namespace", "default_branch", "ci_config_path"} {
		project[k] = hp[k]
	}
	payload := map[string]any{
		"object_kind": "pipeline", "object_attributes": attrs, "merge_request": mrJSON, "user": s.hookUser(u),
		"project": project, "commit": commit, "builds": builds,
	}
	if pl.Upstream != nil {
		up, _ := s.lookupProject(strconv.Itoa(pl.Upstream.ProjectID))
		src := map[string]any{"id": pl.Upstream.ProjectID, "web_url": "", "path_with_namespace": ""}
		if up != nil {
			src["web_url"], src["path_with_namespace"] = base+"/"+up.FullPath, up.FullPath
		}
		payload["source_pipeline"] = map[string]any{"project": src, "pipeline_id": pl.Upstream.PipelineID, "job_id": pl.Upstream.JobID}
	}
	s.emit(ctx, p, "Pipeline Hook", wants, payload)
}

func containsStr(a []string, s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}

// hookBuild renders one job of a Pipeline Hook.
func (s *Sim) hookBuild(pl *pipeline, b Build, i int, u *user) map[string]any {
	started := b.Status != "created" && b.Status != "pending" && b.Status != "manual" && b.Status != "skipped"
	var startedAt, finishedAt, duration, queued, runner any
	if started {
		startedAt = hookTime(pl.CreatedAt)
		queued = 0.0
		runner = map[string]any{"id": 1, "description": "gitlabsim-runner", "active": true, "runner_type": "instance_type", "is_shared": true, "tags": []string{"gitlabsim"}}
		if finished(b.Status) {
			finishedAt = hookTime(pl.UpdatedAt)
			duration = pl.UpdatedAt.Sub(pl.CreatedAt).Seconds()
		}
	}
	var failure any
	if b.Status == "failed" {
		failure = "script_failure"
	}
	var env any
	if b.Environment != "" {
		env = map[string]any{"name": b.Environment, "action": "start", "deployment_tier": guessTier(b.Environment)}
	}
	when := "on_success"
	if b.Manual {
		when = "manual"
	}
	return map[string]any{
		"id": pl.ID*1000 + i, "stage": b.Stage, "name": b.Name, "status": b.Status,
		"created_at": hookTime(pl.CreatedAt), "started_at": startedAt, "finished_at": finishedAt,
		"duration": duration, "queued_duration": queued, "failure_reason": failure, "when": when,
		"manual": b.Manual, "allow_failure": false, "user": s.hookUser(u), "runner": runner,
		"artifacts_file": map[string]any{"filename": nil, "size": nil}, "environment": env,
	}
}
