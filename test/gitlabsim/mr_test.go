package gitlabsim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/lotse/lotse/test/gitlabsim"
)

// openMR creates branch feature with one commit and an MR from it.
func openMR(t *testing.T, e *env, branch string) *gl.MergeRequest {
	t.Helper()
	e.branch(t, branch)
	e.commit(t, "developer", branch, map[string]string{"envs/dev/values.yaml": "image: " + branch + "\n"})
	mr, _, err := e.client(t, "developer").MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{
		SourceBranch: gl.Ptr(branch), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("Promote " + branch),
		Description: gl.Ptr("body"), Labels: &gl.LabelOptions{"lotse", "env::dev"}, RemoveSourceBranch: gl.Ptr(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return mr
}

func getMR(t *testing.T, e *env, user string, iid int64) *gl.MergeRequest {
	t.Helper()
	mr, _, err := e.client(t, user).MergeRequests.GetMergeRequest(e.project, iid, nil)
	if err != nil {
		t.Fatal(err)
	}
	return mr
}

func TestMergeRequestLifecycle(t *testing.T) {
	e := newEnv(t)
	mr := openMR(t, e, "promote-dev")
	if mr.IID != 1 || mr.State != "opened" || mr.DetailedMergeStatus != "checking" || mr.SHA != branchHead(t, e, "promote-dev") ||
		mr.WebURL != e.srv.URL+"/team/deploy/-/merge_requests/1" || len(mr.Labels) != 2 || !mr.ForceRemoveSourceBranch || mr.ChangesCount != "1" {
		t.Fatalf("created %+v", mr)
	}
	// A second open MR from the same source branch: 409 with the iid.
	_, _, err := e.client(t, "developer").MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{
		SourceBranch: gl.Ptr("promote-dev"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("again")})
	mustStatus(t, err, 409)
	if errBody(err) != `{"message":["Another open merge request already exists for this source branch: !1"]}` {
		t.Fatalf("409 body %s", errBody(err))
	}
	// checking for one read, then mergeable
	if got := getMR(t, e, "developer", 1).DetailedMergeStatus; got != "checking" {
		t.Fatalf("first read %s", got)
	}
	if got := getMR(t, e, "developer", 1).DetailedMergeStatus; got != "mergeable" {
		t.Fatalf("second read %s", got)
	}
	// list filters
	list, resp, err := e.client(t, "reporter").MergeRequests.ListProjectMergeRequests(e.project, &gl.ListProjectMergeRequestsOptions{
		State: gl.Ptr("opened"), SourceBranch: gl.Ptr("promote-dev"), Labels: &gl.LabelOptions{"lotse"}})
	if err != nil || len(list) != 1 || list[0].IID != 1 || resp.TotalItems != 1 {
		t.Fatalf("list %v %v", list, err)
	}
	list, _, _ = e.client(t, "reporter").MergeRequests.ListProjectMergeRequests(e.project, &gl.ListProjectMergeRequestsOptions{State: gl.Ptr("merged")})
	if len(list) != 0 {
		t.Fatalf("merged list %v", list)
	}
	// update description and labels
	up, _, err := e.client(t, "developer").MergeRequests.UpdateMergeRequest(e.project, 1, &gl.UpdateMergeRequestOptions{
		Description: gl.Ptr("new body"), Labels: &gl.LabelOptions{"lotse", "gate::passed"}})
	if err != nil || up.Description != "new body" || strings.Join(up.Labels, ",") != "lotse,gate::passed" {
		t.Fatalf("update %+v %v", up, err)
	}
	// merge: wrong sha 409, developer may not merge into protected main (401), maintainer merges
	_, _, err = e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, &gl.AcceptMergeRequestOptions{SHA: gl.Ptr(strings.Repeat("0", 40))})
	mustStatus(t, err, 409)
	if !strings.Contains(errBody(err), "SHA does not match HEAD of source branch: "+mr.SHA) {
		t.Fatalf("sha body %s", errBody(err))
	}
	_, _, err = e.client(t, "developer").MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 401)
	before := branchHead(t, e, "main")
	merged, _, err := e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, &gl.AcceptMergeRequestOptions{SHA: gl.Ptr(mr.SHA)})
	if err != nil || merged.State != "merged" || merged.MergeCommitSHA == "" || merged.MergedBy == nil || merged.MergedBy.Username != "maintainer" {
		t.Fatalf("merge %+v %v", merged, err)
	}
	mc, _, _ := e.client(t, "reporter").Commits.GetCommit(e.project, "main", nil)
	if mc.ID != merged.MergeCommitSHA || len(mc.ParentIDs) != 2 || mc.ParentIDs[0] != before || mc.ParentIDs[1] != mr.SHA ||
		!strings.HasPrefix(mc.Message, "Merge branch 'promote-dev' into 'main'") {
		t.Fatalf("merge commit %+v", mc)
	}
	// remove_source_branch deleted the branch
	_, _, err = e.client(t, "reporter").Branches.GetBranch(e.project, "promote-dev")
	mustStatus(t, err, 404)
	// merging again: 405
	_, _, err = e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 405)
	if errBody(err) != `{"message":"405 Method Not Allowed"}` {
		t.Fatalf("405 body %s", errBody(err))
	}
	// the merge commit and the MR commit map back to the MR
	mrs, _, err := e.client(t, "reporter").Commits.ListMergeRequestsByCommit(e.project, mr.SHA)
	if err != nil || len(mrs) != 1 || mrs[0].IID != 1 {
		t.Fatalf("mrs by commit %v %v", mrs, err)
	}
	// a new MR from a new branch is allowed now
	openMR(t, e, "promote-dev")
}

func TestMergeRequestCloseReopen(t *testing.T) {
	e := newEnv(t)
	openMR(t, e, "f")
	c := e.client(t, "developer")
	mr, _, err := c.MergeRequests.UpdateMergeRequest(e.project, 1, &gl.UpdateMergeRequestOptions{StateEvent: gl.Ptr("close")})
	if err != nil || mr.State != "closed" || mr.ClosedBy == nil {
		t.Fatalf("close %+v %v", mr, err)
	}
	// with !1 closed, a second MR from f is fine; reopening !1 then conflicts
	if _, _, err := c.MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("f"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("2")}); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.MergeRequests.UpdateMergeRequest(e.project, 1, &gl.UpdateMergeRequestOptions{StateEvent: gl.Ptr("reopen")})
	mustStatus(t, err, 409)
	_, _, err = e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 405)
}

func TestMergeRequestErrors(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "developer")
	e.branch(t, "same")
	tests := []struct {
		name   string
		opt    gl.CreateMergeRequestOptions
		status int
		body   string
	}{
		{"missing source", gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("nope"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("x")}, 422, `{"message":["Source branch \"nope\" does not exist"]}`},
		{"missing target", gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("same"), TargetBranch: gl.Ptr("nope"), Title: gl.Ptr("x")}, 422, `{"message":["Target branch \"nope\" does not exist"]}`},
		{"same branch", gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("main"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("x")}, 422, ""},
		{"no title", gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("same"), TargetBranch: gl.Ptr("main")}, 400, `{"error":"title is missing"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.MergeRequests.CreateMergeRequest(e.project, &tt.opt)
			mustStatus(t, err, tt.status)
			if tt.body != "" && errBody(err) != tt.body {
				t.Fatalf("body %s", errBody(err))
			}
		})
	}
	_, _, err := e.client(t, "reporter").MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("same"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("x")})
	mustStatus(t, err, 403)
	_, _, err = c.MergeRequests.GetMergeRequest(e.project, 99, nil)
	mustStatus(t, err, 404)
}

func TestMergeBlockedAndAutoMerge(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) {
		p.Settings = &gitlabsim.ProjectSettings{ApprovalsRequired: 1, ResetApprovalsOnPush: true}
	})
	openMR(t, e, "f")
	m := e.client(t, "maintainer")
	// checking: 405 without auto_merge
	_, _, err := m.MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 405)
	if got := getMR(t, e, "maintainer", 1).DetailedMergeStatus; got != "not_approved" {
		t.Fatalf("status %s", got)
	}
	_, _, err = m.MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 405)
	// auto_merge while not approved: set, not merged
	mr, _, err := m.MergeRequests.AcceptMergeRequest(e.project, 1, &gl.AcceptMergeRequestOptions{AutoMerge: gl.Ptr(true)})
	if err != nil || mr.State != "opened" || !mr.MergeWhenPipelineSucceeds {
		t.Fatalf("auto-merge %+v %v", mr, err)
	}
	// the author cannot approve (merge_requests_author_approval off)
	_, _, err = e.client(t, "developer").MergeRequestApprovals.ApproveMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 401)
	// reporter cannot approve
	_, _, err = e.client(t, "reporter").MergeRequestApprovals.ApproveMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 401)
	// a maintainer approves: auto-merge fires
	ap, _, err := m.MergeRequestApprovals.ApproveMergeRequest(e.project, 1, nil)
	if err != nil || len(ap.ApprovedBy) != 1 || ap.ApprovedBy[0].User.Username != "maintainer" || ap.ApprovalsLeft != 0 {
		t.Fatalf("approve %+v %v", ap, err)
	}
	if got := getMR(t, e, "maintainer", 1); got.State != "merged" || got.MergeUser.Username != "maintainer" {
		t.Fatalf("after approval %+v", got)
	}
	// approving twice: 401
	_, _, err = m.MergeRequestApprovals.ApproveMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 401)
	snap, _ := e.sim.MergeRequest(e.project, 1)
	var notes []string
	for _, n := range snap.Notes {
		notes = append(notes, strings.SplitN(n, " ", 2)[0])
	}
	if strings.Join(notes, ",") != "enabled,approved,merged" {
		t.Fatalf("system notes %q", snap.Notes)
	}
}

func TestApprovalsResetOnPushAndUnapprove(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) {
		p.Settings = &gitlabsim.ProjectSettings{ApprovalsRequired: 1, ResetApprovalsOnPush: true, AuthorApproval: true}
	})
	openMR(t, e, "f")
	dev := e.client(t, "developer")
	if _, _, err := dev.MergeRequestApprovals.ApproveMergeRequest(e.project, 1, nil); err != nil {
		t.Fatalf("author approval allowed by setting: %v", err)
	}
	a, _, _ := dev.MergeRequestApprovals.GetConfiguration(e.project, 1)
	if len(a.ApprovedBy) != 1 || !a.Approved {
		t.Fatalf("approvals %+v", a)
	}
	e.commit(t, "developer", "f", map[string]string{"x": "y"})
	a, _, _ = dev.MergeRequestApprovals.GetConfiguration(e.project, 1)
	if len(a.ApprovedBy) != 0 || a.ApprovalsLeft != 1 {
		t.Fatalf("approvals after push %+v", a)
	}
	if _, err := dev.MergeRequestApprovals.UnapproveMergeRequest(e.project, 1); err != gl.ErrNotFound {
		t.Fatalf("unapprove without approval: %v", err)
	}
	if err := e.sim.Approve(e.project, 1, "maintainer"); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Unapprove(e.project, 1, "maintainer"); err != nil {
		t.Fatal(err)
	}
	// approving with a stale sha: 409
	_, _, err := e.client(t, "maintainer").MergeRequestApprovals.ApproveMergeRequest(e.project, 1, &gl.ApproveMergeRequestOptions{SHA: gl.Ptr("deadbeef")})
	mustStatus(t, err, 409)
}

func TestMergeConflictAndFastForward(t *testing.T) {
	e := newEnv(t)
	openMR(t, e, "f")
	e.commit(t, "maintainer", "main", map[string]string{"envs/dev/values.yaml": "image: other\n"})
	mr := getMR(t, e, "maintainer", 1)
	mr = getMR(t, e, "maintainer", 1)
	if mr.DetailedMergeStatus != "conflict" || !mr.HasConflicts {
		t.Fatalf("status %s", mr.DetailedMergeStatus)
	}
	_, _, err := e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, nil)
	mustStatus(t, err, 422)
	if errBody(err) != `{"message":"Branch cannot be merged"}` {
		t.Fatalf("422 body %s", errBody(err))
	}

	ff := newEnv(t, func(p *gitlabsim.ProjectSpec) { p.Settings = &gitlabsim.ProjectSettings{MergeMethod: "ff"} })
	openMR(t, ff, "g")
	getMR(t, ff, "maintainer", 1)
	mr, _, err = ff.client(t, "maintainer").MergeRequests.AcceptMergeRequest(ff.project, 1, nil)
	if err != nil || branchHead(t, ff, "main") != mr.SHA {
		t.Fatalf("ff merge %v", err)
	}
}

// TestClientGoneWhileOpening: a client that disconnects while GitLab opens
// its MR (lotsed killed mid-request) leaves the MR as GitLab computes it,
// mergeable, not in "conflict" from a git command stopped half-way.
func TestClientGoneWhileOpening(t *testing.T) {
	e := newEnv(t)
	e.branch(t, "f")
	e.commit(t, "developer", "f", map[string]string{"envs/dev/values.yaml": "image: f\n"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	body := `{"source_branch":"f","target_branch":"main","title":"Promote f"}`
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/v4/projects/team%2Fdeploy/merge_requests", strings.NewReader(body))
	req.Header.Set("PRIVATE-TOKEN", e.users["developer"].Token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.sim.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create with the client gone: %d %s", rec.Code, rec.Body)
	}
	getMR(t, e, "maintainer", 1) // the first read reports "checking"
	if mr := getMR(t, e, "maintainer", 1); mr.DetailedMergeStatus != "mergeable" || mr.HasConflicts {
		t.Fatalf("status %s, conflicts %v", mr.DetailedMergeStatus, mr.HasConflicts)
	}
}

func TestCheckingDuration(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) {
		p.Checking = &gitlabsim.Checking{Reads: -1, Duration: 150 * time.Millisecond}
	})
	openMR(t, e, "f")
	if err := e.sim.Merge(e.project, 1, "maintainer", gitlabsim.MergeSpec{AutoMerge: true}); err != nil {
		t.Fatal(err)
	}
	if got := getMR(t, e, "maintainer", 1).DetailedMergeStatus; got != "checking" {
		t.Fatalf("status %s", got)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		snap, _ := e.sim.MergeRequest(e.project, 1)
		if snap.State == "merged" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("auto-merge after checking did not happen: %+v", snap)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPipelineGatesAutoMerge(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) {
		p.Settings = &gitlabsim.ProjectSettings{OnlyAllowMergeIfPipelineSucceeds: true}
		p.Checking = &gitlabsim.Checking{Reads: -1}
	})
	mr := openMR(t, e, "f")
	if got := getMR(t, e, "maintainer", 1).DetailedMergeStatus; got != "ci_must_pass" {
		t.Fatalf("no pipeline: %s", got)
	}
	id, err := e.sim.CreatePipeline(e.project, gitlabsim.PipelineSpec{Ref: "f", SHA: mr.SHA, Status: "running", Source: "merge_request_event"})
	if err != nil {
		t.Fatal(err)
	}
	got := getMR(t, e, "maintainer", 1)
	if got.DetailedMergeStatus != "ci_still_running" || got.HeadPipeline == nil || got.HeadPipeline.ID != int64(id) {
		t.Fatalf("running: %s %+v", got.DetailedMergeStatus, got.HeadPipeline)
	}
	if _, _, err := e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, &gl.AcceptMergeRequestOptions{AutoMerge: gl.Ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetPipelineStatus(e.project, id, "success"); err != nil {
		t.Fatal(err)
	}
	if s, _ := e.sim.MergeRequest(e.project, 1); s.State != "merged" {
		t.Fatalf("not merged after pipeline success: %+v", s)
	}
}

func TestNotes(t *testing.T) {
	e := newEnv(t)
	openMR(t, e, "f")
	c := e.client(t, "developer")
	var ids []int64
	for _, body := range []string{"first <!-- lotse:report -->", "second", "third"} {
		n, _, err := c.Notes.CreateMergeRequestNote(e.project, 1, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(body)})
		if err != nil || n.Body != body || n.System || n.NoteableType != "MergeRequest" || n.NoteableIID != 1 || n.Author.Username != "developer" {
			t.Fatalf("create %+v %v", n, err)
		}
		ids = append(ids, n.ID)
	}
	e.sim.Approve(e.project, 1, "maintainer")
	list, resp, err := c.Notes.ListMergeRequestNotes(e.project, 1, &gl.ListMergeRequestNotesOptions{Sort: gl.Ptr("asc"), OrderBy: gl.Ptr("created_at"), ListOptions: gl.ListOptions{PerPage: 2}})
	if err != nil || len(list) != 2 || list[0].ID != ids[0] || resp.TotalItems != 4 || resp.NextPage != 2 {
		t.Fatalf("list asc %v %+v %v", list, resp, err)
	}
	list, _, _ = c.Notes.ListMergeRequestNotes(e.project, 1, nil)
	if len(list) != 4 || !list[0].System || list[0].Body != "approved this merge request" {
		t.Fatalf("default desc %v", list[0])
	}
	up, _, err := c.Notes.UpdateMergeRequestNote(e.project, 1, ids[0], &gl.UpdateMergeRequestNoteOptions{Body: gl.Ptr("edited")})
	if err != nil || up.Body != "edited" {
		t.Fatalf("update %v", err)
	}
	_, _, err = e.client(t, "maintainer").Notes.UpdateMergeRequestNote(e.project, 1, ids[0], &gl.UpdateMergeRequestNoteOptions{Body: gl.Ptr("hijack")})
	mustStatus(t, err, 403)
	one, _, err := c.Notes.GetMergeRequestNote(e.project, 1, ids[0])
	if err != nil || one.Body != "edited" {
		t.Fatalf("get %v", err)
	}
	_, _, err = c.Notes.CreateMergeRequestNote(e.project, 1, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr("  ")})
	mustStatus(t, err, 400)
}

func TestCommitStatuses(t *testing.T) {
	e := newEnv(t)
	openMR(t, e, "f")
	sha := branchHead(t, e, "f")
	c := e.client(t, "developer")
	post := func(state gl.BuildStateValue, desc string) (*gl.CommitStatus, error) {
		st, _, err := c.Commits.SetCommitStatus(e.project, sha, &gl.SetCommitStatusOptions{State: state, Name: gl.Ptr("lotse/gate"),
			Ref: gl.Ptr("f"), TargetURL: gl.Ptr("https://lotse.example/r/1"), Description: gl.Ptr(desc)})
		return st, err
	}
	st, err := post(gl.Pending, "queued")
	if err != nil || st.Status != "pending" || st.Name != "lotse/gate" || st.Ref != "f" || st.PipelineID == 0 {
		t.Fatalf("pending %+v %v", st, err)
	}
	_, err = post(gl.Pending, "again")
	mustStatus(t, err, 400)
	if errBody(err) != `{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}` {
		t.Fatalf("body %s", errBody(err))
	}
	if _, err := post(gl.Running, "running"); err != nil {
		t.Fatal(err)
	}
	_, err = post(gl.Running, "running again")
	mustStatus(t, err, 400)
	if !strings.Contains(errBody(err), "Cannot transition status via :run from :running") {
		t.Fatalf("body %s", errBody(err))
	}
	if _, err := post(gl.Success, "ok"); err != nil {
		t.Fatal(err)
	}
	// posting success on a finished status creates a new job; the old one is retried
	if _, err := post(gl.Success, "ok again"); err != nil {
		t.Fatal(err)
	}
	all, _ := e.sim.Statuses(e.project, sha)
	if len(all) != 2 || !all[0].Retried || all[1].Retried || all[0].Description != "ok" {
		t.Fatalf("statuses %+v", all)
	}
	list, _, err := c.Commits.GetCommitStatuses(e.project, sha, nil)
	if err != nil || len(list) != 1 || list[0].Description != "ok again" {
		t.Fatalf("list %+v %v", list, err)
	}
	_, _, err = c.Commits.SetCommitStatus(e.project, sha, &gl.SetCommitStatusOptions{State: gl.Success, TargetURL: gl.Ptr("ftp://x")})
	mustStatus(t, err, 400)
	_, _, err = c.Commits.SetCommitStatus(e.project, strings.Repeat("b", 40), &gl.SetCommitStatusOptions{State: gl.Success})
	mustStatus(t, err, 404)
	// developer on protected main: 403
	_, _, err = c.Commits.SetCommitStatus(e.project, branchHead(t, e, "main"), &gl.SetCommitStatusOptions{State: gl.Success, Ref: gl.Ptr("main")})
	mustStatus(t, err, 403)
	// the external pipeline is the MR's head pipeline now
	if mr := getMR(t, e, "developer", 1); mr.HeadPipeline == nil || mr.HeadPipeline.Status != "success" || mr.HeadPipeline.Source != "external" {
		t.Fatalf("head pipeline %+v", mr.HeadPipeline)
	}
}

func TestHooksAPI(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	code, _, body := e.do(t, "POST", "/api/v4/projects/1/hooks", e.users["developer"].Token, map[string]any{"url": sink.srv.URL})
	if code != http.StatusForbidden {
		t.Fatalf("developer creating hook: %d %s", code, body)
	}
	h, _, err := e.client(t, "maintainer").Projects.AddProjectHook(e.project, &gl.AddProjectHookOptions{URL: gl.Ptr(sink.srv.URL), Token: gl.Ptr("s3cret"), MergeRequestsEvents: gl.Ptr(true)})
	if err != nil || !h.PushEvents || !h.MergeRequestsEvents || h.NoteEvents {
		t.Fatalf("hook %+v %v", h, err)
	}
	hs, _, _ := e.client(t, "maintainer").Projects.ListProjectHooks(e.project, nil)
	if len(hs) != 1 {
		t.Fatalf("hooks %v", hs)
	}
	if _, err := e.client(t, "maintainer").Projects.DeleteProjectHook(e.project, h.ID); err != nil {
		t.Fatal(err)
	}
}

// Listings follow order_by and sort: newest first by default, equal times by
// id; notes the same way.
func TestListingOrder(t *testing.T) {
	e := newEnv(t)
	for _, b := range []string{"a", "b", "c"} {
		openMR(t, e, b)
	}
	c := e.client(t, "developer")
	iids := func(o *gl.ListProjectMergeRequestsOptions) []int64 {
		t.Helper()
		list, _, err := c.MergeRequests.ListProjectMergeRequests(e.project, o)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, mr := range list {
			out = append(out, mr.IID)
		}
		return out
	}
	if got := iids(nil); !slices.Equal(got, []int64{3, 2, 1}) {
		t.Errorf("default order %v, want newest first", got)
	}
	if got := iids(&gl.ListProjectMergeRequestsOptions{Sort: gl.Ptr("asc")}); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("sort=asc %v", got)
	}
	// Updating !1 makes it the most recently updated.
	if _, _, err := c.MergeRequests.UpdateMergeRequest(e.project, 1, &gl.UpdateMergeRequestOptions{Title: gl.Ptr("new title")}); err != nil {
		t.Fatal(err)
	}
	if got := iids(&gl.ListProjectMergeRequestsOptions{OrderBy: gl.Ptr("updated_at")}); got[0] != 1 {
		t.Errorf("order_by=updated_at %v, want !1 first", got)
	}
	for _, body := range []string{"first", "second"} {
		if _, _, err := c.Notes.CreateMergeRequestNote(e.project, 2, &gl.CreateMergeRequestNoteOptions{Body: gl.Ptr(body)}); err != nil {
			t.Fatal(err)
		}
	}
	notes, _, err := c.Notes.ListMergeRequestNotes(e.project, 2, &gl.ListMergeRequestNotesOptions{Sort: gl.Ptr("asc")})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, n := range notes {
		if !n.System {
			bodies = append(bodies, n.Body)
		}
	}
	if !slices.Equal(bodies, []string{"first", "second"}) {
		t.Errorf("notes sort=asc %v", bodies)
	}
}
