package gitlabsim

import (
	"context"
	"net/http"
)

// routes registers the REST API (under /api/v4) and the admin API (under /-/sim).
func (s *Sim) routes() {
	const api = "/api/v4"
	const proj = api + "/projects/{id}"

	s.handle("GET "+api+"/user", ClassUsers, false, s.getCurrentUser)
	s.handle("GET "+api+"/version", ClassUsers, false, s.getVersion)
	s.handle("GET "+api+"/users", ClassUsers, false, s.listUsers)
	s.handle("GET "+api+"/users/{user_id}", ClassUsers, false, s.getUser)
	s.handle("GET "+proj, ClassProjects, false, s.getProject)

	// Repository files; the raw variant accepts CI_JOB_TOKEN.
	s.handle("GET "+proj+"/repository/files/{path}", ClassFiles, false, s.getFile)
	s.handle("GET "+proj+"/repository/files/{path}/raw", ClassFiles, true, s.getRawFile)

	// Commits.
	s.handle("POST "+proj+"/repository/commits", ClassCommits, false, s.postCommit)
	s.handle("GET "+proj+"/repository/commits", ClassCommits, false, inRepo(s.listCommits))
	s.handle("GET "+proj+"/repository/commits/{sha}", ClassCommits, true, inRepo(s.getCommit))
	s.handle("GET "+proj+"/repository/commits/{sha}/merge_requests", ClassCommits, true, inRepo(s.commitMergeRequests))
	s.handle("GET "+proj+"/repository/commits/{sha}/statuses", ClassStatuses, false, inRepo(s.listStatuses))
	s.handle("POST "+proj+"/statuses/{sha}", ClassStatuses, false, inRepo(s.postStatus))

	// Branches.
	s.handle("GET "+proj+"/repository/branches", ClassBranches, false, inRepo(s.listBranches))
	s.handle("POST "+proj+"/repository/branches", ClassBranches, false, s.createBranch)
	s.handle("GET "+proj+"/repository/branches/{branch}", ClassBranches, false, inRepo(s.getBranch))
	s.handle("DELETE "+proj+"/repository/branches/{branch}", ClassBranches, false, inRepo(s.deleteBranch))

	// Merge requests; job tokens may only read them.
	mr := proj + "/merge_requests/{iid}"
	s.handle("POST "+proj+"/merge_requests", ClassMergeRequests, false, s.createMR)
	s.handle("GET "+proj+"/merge_requests", ClassMergeRequests, true, inRepo(s.listMRs))
	s.handle("GET "+mr, ClassMergeRequests, true, inRepo(s.getMR))
	s.handle("PUT "+mr, ClassMergeRequests, false, inRepo(s.updateMR))
	s.handle("PUT "+mr+"/merge", ClassMerge, false, inRepo(s.mergeMR))
	s.handle("POST "+mr+"/cancel_merge_when_pipeline_succeeds", ClassMerge, false, inRepo(s.cancelAutoMerge))
	s.handle("GET "+mr+"/approvals", ClassApprovals, false, inRepo(s.getApprovals))
	s.handle("POST "+mr+"/approve", ClassApprovals, false, inRepo(s.approveMR))
	s.handle("POST "+mr+"/unapprove", ClassApprovals, false, inRepo(s.unapproveMR))
	s.handle("PUT "+mr+"/reset_approvals", ClassApprovals, false, inRepo(s.resetApprovals))
	s.handle("GET "+mr+"/commits", ClassMergeRequests, false, inRepo(s.listMRCommits))
	s.handle("GET "+mr+"/diffs", ClassMergeRequests, false, inRepo(s.listMRDiffs))
	s.handle("GET "+mr+"/notes", ClassNotes, true, inRepo(s.listNotes))
	s.handle("POST "+mr+"/notes", ClassNotes, false, s.createNote)
	s.handle("GET "+mr+"/notes/{note_id}", ClassNotes, true, inRepo(s.getNote))
	s.handle("PUT "+mr+"/notes/{note_id}", ClassNotes, false, inRepo(s.updateNote))

	// Pipelines (read-only; create them through the admin API).
	s.handle("GET "+proj+"/pipelines", ClassPipelines, false, inRepo(s.listPipelines))
	s.handle("GET "+proj+"/pipelines/{pipeline_id}", ClassPipelines, false, inRepo(s.getPipeline))

	// Project hooks.
	s.handle("GET "+proj+"/hooks", ClassHooks, false, s.listHooks)
	s.handle("POST "+proj+"/hooks", ClassHooks, false, s.createHook)
	s.handle("DELETE "+proj+"/hooks/{hook_id}", ClassHooks, false, s.deleteHook)

	// Members and protected branches (read).
	s.handle("GET "+proj+"/members/all", ClassMembers, false, s.listMembers)
	s.handle("GET "+proj+"/members/all/{user_id}", ClassMembers, false, s.getMember)
	s.handle("GET "+proj+"/protected_branches", ClassMembers, false, inRepo(s.listProtectedBranches))
	s.handle("GET "+proj+"/protected_branches/{name}", ClassMembers, false, inRepo(s.getProtectedBranch))

	// Environments and deployments; job tokens may use all of them (api.md §7).
	s.handle("GET "+proj+"/environments", ClassDeployments, true, inRepo(s.listEnvironments))
	s.handle("POST "+proj+"/environments", ClassDeployments, true, inRepo(s.createEnvironment))
	s.handle("GET "+proj+"/environments/{environment_id}", ClassDeployments, true, inRepo(s.getEnvironment))
	s.handle("PUT "+proj+"/environments/{environment_id}", ClassDeployments, true, inRepo(s.updateEnvironment))
	s.handle("GET "+proj+"/deployments", ClassDeployments, true, inRepo(s.listDeployments))
	s.handle("POST "+proj+"/deployments", ClassDeployments, true, inRepo(s.createDeployment))
	s.handle("GET "+proj+"/deployments/{deployment_id}", ClassDeployments, true, inRepo(s.getDeployment))
	s.handle("PUT "+proj+"/deployments/{deployment_id}", ClassDeployments, true, inRepo(s.updateDeployment))

	s.mux.HandleFunc(api+"/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"})
	})

	s.oidcRoutes()
	s.adminRoutes()
}

// withEventUUID carries a caller's X-Gitlab-Event-UUID into the events its request causes.
func withEventUUID(r *http.Request) *http.Request {
	if v := r.Header.Get("X-Gitlab-Event-UUID"); v != "" {
		return r.WithContext(context.WithValue(r.Context(), eventUUIDKey{}, v))
	}
	return r
}
