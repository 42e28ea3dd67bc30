package gitlabsim_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/lotse/lotse/test/gitlabsim"
)

// GitLab Free keeps approvals when the source branch moves
// (reset_approvals_on_push is Premium): a Developer can push after approval.
func TestFreeKeepsApprovalsOnPush(t *testing.T) {
	e := newEnv(t)
	if err := e.sim.UpdateProject(e.project, &gitlabsim.ProjectSettings{ApprovalsRequired: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	openMR(t, e, "f")
	if err := e.sim.Approve(e.project, 1, "maintainer"); err != nil {
		t.Fatal(err)
	}
	before := getMR(t, e, "developer", 1).SHA
	e.commit(t, "developer", "f", map[string]string{"evil.txt": "x"})
	a, _, err := e.client(t, "developer").MergeRequestApprovals.GetConfiguration(e.project, 1)
	if err != nil || len(a.ApprovedBy) != 1 || !a.Approved {
		t.Fatalf("approvals after push on Free: %+v %v", a, err)
	}
	after := getMR(t, e, "developer", 1).SHA
	if after == before {
		t.Fatal("push did not move the MR head")
	}
	// The notes tell which approval came before which push: GitLab's system notes.
	snap, _ := e.sim.MergeRequest(e.project, 1)
	last := snap.Notes[len(snap.Notes)-1]
	if snap.Notes[len(snap.Notes)-2] != "approved this merge request" ||
		!strings.HasPrefix(last, "added 1 commit\n\n<ul><li>"+after[:8]+" - update f</li></ul>\n\n[Compare with previous version](") {
		t.Fatalf("system notes %q", snap.Notes)
	}

	// The default project settings are Free's too.
	e2 := newEnv(t)
	openMR(t, e2, "f")
	e2.sim.Approve(e2.project, 1, "maintainer")
	e2.commit(t, "developer", "f", map[string]string{"evil.txt": "x"})
	if mr, _ := e2.sim.MergeRequest(e2.project, 1); len(mr.ApprovedBy) != 1 {
		t.Fatalf("default settings reset approvals: %+v", mr)
	}
}

// A wildcard rule protects nested branches, and when several rules match the
// most permissive wins.
func TestWildcardProtectedBranches(t *testing.T) {
	lotse := gitlabsim.ProtectedBranch{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	main := gitlabsim.ProtectedBranch{Name: "main", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	tests := []struct {
		name      string
		protected []gitlabsim.ProtectedBranch
		user      string
		branch    string
		want      int
	}{
		{"developer into nested lotse branch", []gitlabsim.ProtectedBranch{main, lotse}, "developer", "lotse/shop/production", 403},
		{"developer into lotse branch", []gitlabsim.ProtectedBranch{main, lotse}, "developer", "lotse/x", 403},
		{"maintainer into nested lotse branch", []gitlabsim.ProtectedBranch{main, lotse}, "maintainer", "lotse/shop/production", 201},
		{"developer elsewhere", []gitlabsim.ProtectedBranch{main, lotse}, "developer", "feature/lotse/x", 201},
		{"prefix is not a match", []gitlabsim.ProtectedBranch{main, lotse}, "developer", "lotsex", 201},
		{"middle wildcard", []gitlabsim.ProtectedBranch{main, {Name: "rel-*-prod", PushAccessLevel: 40, MergeAccessLevel: 40}}, "developer", "rel-a/b-prod", 403},
		{"most permissive rule wins", []gitlabsim.ProtectedBranch{main, {Name: "ma*", PushAccessLevel: 30, MergeAccessLevel: 30}}, "developer", "main", 201},
		{"no one on every rule", []gitlabsim.ProtectedBranch{{Name: "*", PushAccessLevel: 0, MergeAccessLevel: 40}}, "maintainer", "main", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(p *gitlabsim.ProjectSpec) { p.Protected = tt.protected })
			body := map[string]any{"branch": tt.branch, "commit_message": "x",
				"actions": []map[string]any{{"action": "create", "file_path": "x", "content": "x"}}}
			if tt.branch != "main" {
				body["start_branch"] = "main"
			}
			code, _, b := e.do(t, "POST", "/api/v4/projects/1/repository/commits", e.users[tt.user].Token, body)
			if code != tt.want {
				t.Fatalf("commit: status %d want %d: %s", code, tt.want, b)
			}
			if tt.branch == "main" || code != 403 {
				return
			}
			// Creating the branch through the branches API is refused as well.
			code, _, b = e.do(t, "POST", "/api/v4/projects/1/repository/branches", e.users[tt.user].Token, map[string]any{"branch": tt.branch, "ref": "main"})
			if code != 403 {
				t.Fatalf("create branch: status %d want 403: %s", code, b)
			}
		})
	}
}

func TestProtectedBranchesAndMembersAPI(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) {
		p.Protected = []gitlabsim.ProtectedBranch{
			{Name: "main", PushAccessLevel: gitlabsim.AccessNoOne, MergeAccessLevel: gitlabsim.AccessMaintainers},
			{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessDevelopers},
		}
	})
	c := e.client(t, "developer")
	pbs, _, err := c.ProtectedBranches.ListProtectedBranches(e.project, nil)
	if err != nil || len(pbs) != 2 {
		t.Fatalf("protected branches %v %v", pbs, err)
	}
	if pbs[1].Name != "lotse/*" || len(pbs[1].PushAccessLevels) != 1 || pbs[1].PushAccessLevels[0].AccessLevel != 40 ||
		pbs[1].PushAccessLevels[0].AccessLevelDescription != "Maintainers" || pbs[1].MergeAccessLevels[0].AccessLevel != 30 ||
		pbs[0].PushAccessLevels[0].AccessLevelDescription != "No one" || pbs[0].ID == 0 {
		t.Fatalf("protected branch shape %+v %+v", pbs[0], pbs[1])
	}
	one, _, err := c.ProtectedBranches.GetProtectedBranch(e.project, "lotse/*")
	if err != nil || one.Name != "lotse/*" {
		t.Fatalf("get wildcard rule %+v %v", one, err)
	}
	_, _, err = c.ProtectedBranches.GetProtectedBranch(e.project, "lotse/x")
	mustStatus(t, err, 404)
	_, _, err = e.client(t, "outsider").ProtectedBranches.ListProtectedBranches(e.project, nil)
	mustStatus(t, err, 404)

	m, _, err := c.ProjectMembers.GetInheritedProjectMember(e.project, int64(e.users["maintainer"].ID))
	if err != nil || m.AccessLevel != gl.MaintainerPermissions || m.Username != "maintainer" || m.ID != int64(e.users["maintainer"].ID) {
		t.Fatalf("member %+v %v", m, err)
	}
	_, _, err = c.ProjectMembers.GetInheritedProjectMember(e.project, int64(e.users["outsider"].ID))
	mustStatus(t, err, 404)
	all, _, err := c.ProjectMembers.ListAllProjectMembers(e.project, nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("members %v %v", all, err)
	}
	// Demoting a member shows at once.
	e.sim.AddMember(e.project, "maintainer", gitlabsim.RoleDeveloper)
	if m, _, _ := c.ProjectMembers.GetInheritedProjectMember(e.project, int64(e.users["maintainer"].ID)); m.AccessLevel != gl.DeveloperPermissions {
		t.Fatalf("after demotion %+v", m)
	}
}

// Everything that names a person carries the user's numeric id.
func TestPeopleCarryIDs(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	e.sim.AddHook(e.project, gitlabsim.AllEvents(sink.srv.URL, ""))
	openMR(t, e, "f")
	dev, mnt := int64(e.users["developer"].ID), int64(e.users["maintainer"].ID)
	if err := e.sim.Approve(e.project, 1, "maintainer"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.CreateNote(e.project, 1, "maintainer", "lgtm"); err != nil {
		t.Fatal(err)
	}
	mr := getMR(t, e, "developer", 1)
	if mr.Author.ID != dev || mr.Author.Username != "developer" {
		t.Fatalf("author %+v", mr.Author)
	}
	a, _, _ := e.client(t, "developer").MergeRequestApprovals.GetConfiguration(e.project, 1)
	if len(a.ApprovedBy) != 1 || a.ApprovedBy[0].User.ID != mnt {
		t.Fatalf("approved_by %+v", a.ApprovedBy)
	}
	notes, _, _ := e.client(t, "developer").Notes.ListMergeRequestNotes(e.project, 1, nil)
	for _, n := range notes {
		if n.Author.ID == 0 {
			t.Fatalf("note without author id: %+v", n)
		}
	}
	wait(t, e.sim)
	for _, p := range sink.byEvent("Merge Request Hook") {
		oa := p["object_attributes"].(map[string]any)
		user := p["user"].(map[string]any)
		if oa["author_id"] != float64(dev) || user["id"] == nil {
			t.Fatalf("MR hook ids: author_id %v user %v", oa["author_id"], user)
		}
		if oa["action"] == "approved" && user["id"] != float64(mnt) {
			t.Fatalf("approval hook user %v", user)
		}
	}
	for _, p := range sink.byEvent("Note Hook") {
		if p["object_attributes"].(map[string]any)["author_id"] != float64(mnt) || p["user"].(map[string]any)["id"] != float64(mnt) {
			t.Fatalf("note hook ids %v", p)
		}
	}
	for _, p := range sink.byEvent("Push Hook") {
		if p["user_id"] != float64(dev) {
			t.Fatalf("push hook user_id %v", p["user_id"])
		}
	}
}

func TestUsersLookupSearchAndRename(t *testing.T) {
	e := newEnv(t)
	adm, err := e.sim.CreateUser(gitlabsim.UserSpec{Username: "root", Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := e.sim.CreateUser(gitlabsim.UserSpec{Username: "pub", Email: "pub@corp.example", PublicEmail: "pub@corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t, "developer")
	us, _, err := c.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr("MAINTAINER")})
	if err != nil || len(us) != 1 || us[0].ID != int64(e.users["maintainer"].ID) || us[0].Username != "maintainer" || us[0].Email != "" {
		t.Fatalf("by username %+v %v", us, err)
	}
	if us, _, _ := c.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr("nobody")}); len(us) != 0 {
		t.Fatalf("unknown username %+v", us)
	}
	// Private emails are searchable by admins only; public ones by everyone.
	if us, _, _ := c.Users.ListUsers(&gl.ListUsersOptions{Search: gl.Ptr("maintainer@example.com")}); len(us) != 0 {
		t.Fatalf("non-admin found a private email: %+v", us)
	}
	if us, _, _ := c.Users.ListUsers(&gl.ListUsersOptions{Search: gl.Ptr("pub@corp.example")}); len(us) != 1 || us[0].ID != int64(pub.ID) {
		t.Fatalf("public email search %+v", us)
	}
	ac, _ := gl.NewClient(adm.Token, gl.WithBaseURL(e.srv.URL+"/api/v4"), gl.WithoutRetries())
	if us, _, _ := ac.Users.ListUsers(&gl.ListUsersOptions{Search: gl.Ptr("maintainer@example.com")}); len(us) != 1 || us[0].Email != "maintainer@example.com" {
		t.Fatalf("admin email search %+v", us)
	}
	one, _, err := c.Users.GetUser(int64(e.users["reporter"].ID), gl.GetUsersOptions{})
	if err != nil || one.Username != "reporter" {
		t.Fatalf("get user %+v %v", one, err)
	}

	// Renaming keeps the id, the token and the memberships.
	openMR(t, e, "f")
	id := e.users["developer"].ID
	if err := e.sim.RenameUser(id, "maintainer"); !errors.Is(err, gitlabsim.ErrExists) {
		t.Fatalf("rename onto a taken name: %v", err)
	}
	if err := e.sim.RenameUser(id, "dev-renamed"); err != nil {
		t.Fatal(err)
	}
	me, _, err := c.Users.CurrentUser()
	if err != nil || me.ID != int64(id) || me.Username != "dev-renamed" {
		t.Fatalf("after rename %+v %v", me, err)
	}
	if mr := getMR(t, e, "developer", 1); mr.Author.ID != int64(id) || mr.Author.Username != "dev-renamed" {
		t.Fatalf("MR author after rename %+v", mr.Author)
	}
	if us, _, _ := c.Users.ListUsers(&gl.ListUsersOptions{Username: gl.Ptr("developer")}); len(us) != 0 {
		t.Fatalf("old name still resolves: %+v", us)
	}
	if _, err := e.sim.Commit(e.project, "dev-renamed", gitlabsim.CommitSpec{Branch: "f", Message: "m", Files: map[string]string{"a": "b"}}); err != nil {
		t.Fatalf("renamed user lost membership: %v", err)
	}
	// The old name is free for someone else, with a new id.
	other, err := e.sim.CreateUser(gitlabsim.UserSpec{Username: "developer"})
	if err != nil || other.ID == id {
		t.Fatalf("reuse name: %+v %v", other, err)
	}
}

func TestMRCommitsAndDiffs(t *testing.T) {
	e := newEnv(t)
	e.branch(t, "f")
	c := e.client(t, "developer")
	if _, err := e.sim.Commit(e.project, "developer", gitlabsim.CommitSpec{Branch: "f", Message: "first", AuthorName: "Eve", AuthorEmail: "eve@evil.example",
		Files: map[string]string{"envs/dev/values.yaml": "image: v2\n", "new.txt": "a\nb\n"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Commit(e.project, "developer", gitlabsim.CommitSpec{Branch: "f", Message: "second", Delete: []string{"README.md"},
		Actions: []gitlabsim.FileAction{{Action: "move", PreviousPath: "new.txt", FilePath: "moved.txt"}}}); err != nil {
		t.Fatal(err)
	}
	mr, _, err := c.MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("f"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("t")})
	if err != nil {
		t.Fatal(err)
	}
	if mr.SourceProjectID != 1 || mr.TargetProjectID != 1 || mr.DiffRefs.HeadSha != mr.SHA || mr.DiffRefs.BaseSha == "" || mr.DiffRefs.StartSha != mr.DiffRefs.BaseSha {
		t.Fatalf("MR ids and diff refs %+v %+v", mr.DiffRefs, mr)
	}
	cs, resp, err := c.MergeRequests.GetMergeRequestCommits(e.project, 1, nil)
	if err != nil || len(cs) != 2 || resp.TotalItems != 2 {
		t.Fatalf("commits %v %v", cs, err)
	}
	if cs[0].Title != "second" || cs[1].Title != "first" || cs[1].AuthorName != "Eve" || cs[1].AuthorEmail != "eve@evil.example" ||
		cs[1].CommitterName != "Developer" || cs[1].CommitterEmail != "developer@example.com" || cs[0].ID != mr.SHA {
		t.Fatalf("commit authors %+v %+v", cs[0], cs[1])
	}
	ds, _, err := c.MergeRequests.ListMergeRequestDiffs(e.project, 1, nil)
	if err != nil || len(ds) != 3 {
		t.Fatalf("diffs %+v %v", ds, err)
	}
	byPath := map[string]*gl.MergeRequestDiff{}
	for _, d := range ds {
		byPath[d.NewPath] = d
	}
	if d := byPath["README.md"]; d == nil || !d.DeletedFile || d.BMode != "0" || !strings.HasPrefix(d.Diff, "@@ -1 +0,0 @@\n-# deploy") {
		t.Fatalf("deleted file %+v", d)
	}
	if d := byPath["moved.txt"]; d == nil || !d.NewFile || d.AMode != "0" || d.BMode != "100644" || !strings.Contains(d.Diff, "+a\n+b\n") {
		t.Fatalf("new file (moved after its creation on the branch) %+v", d)
	}
	if d := byPath["envs/dev/values.yaml"]; d == nil || d.NewFile || d.DeletedFile || d.Diff != "@@ -1 +1 @@\n-image: v1\n+image: v2\n" {
		t.Fatalf("modified file %+v", d)
	}
	// A rename against the target is reported as one entry.
	e.branch(t, "r")
	if _, err := e.sim.Commit(e.project, "developer", gitlabsim.CommitSpec{Branch: "r", Message: "rename",
		Actions: []gitlabsim.FileAction{{Action: "move", PreviousPath: "README.md", FilePath: "docs/README.md"}}}); err != nil {
		t.Fatal(err)
	}
	c.MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("r"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("r")})
	ds, _, _ = c.MergeRequests.ListMergeRequestDiffs(e.project, 2, nil)
	if len(ds) != 1 || !ds[0].RenamedFile || ds[0].OldPath != "README.md" || ds[0].NewPath != "docs/README.md" {
		t.Fatalf("rename %+v", ds)
	}
	// Job tokens may not read them (only the MR list and the MR itself).
	job, _ := e.sim.JobToken(e.project, "developer")
	for _, p := range []string{"commits", "diffs"} {
		if code, _, _ := e.do(t, "GET", "/api/v4/projects/1/merge_requests/1/"+p+"?job_token="+job, "", nil); code != 401 {
			t.Fatalf("job token reads MR %s: %d", p, code)
		}
	}
	// After the merge the MR keeps its commits.
	e.sim.UpdateProject(e.project, nil, []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: 30, MergeAccessLevel: 30}}, nil)
	getMR(t, e, "developer", 1)
	if err := e.sim.Merge(e.project, 1, "developer", gitlabsim.MergeSpec{}); err != nil {
		t.Fatal(err)
	}
	if cs, _, _ := c.MergeRequests.GetMergeRequestCommits(e.project, 1, nil); len(cs) != 2 {
		t.Fatalf("commits after merge %d", len(cs))
	}
}

// An MR from a fork lives in the upstream with the fork as source project.
func TestForkMergeRequests(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	e.sim.AddHook(e.project, gitlabsim.AllEvents(sink.srv.URL, ""))
	fork, err := e.sim.ForkProject(e.project, gitlabsim.ForkSpec{Path: "reporter/deploy", Username: "reporter"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.ForkProject(e.project, gitlabsim.ForkSpec{Path: "outsider/deploy", Username: "outsider"}); err == nil {
		t.Fatal("outsider forked a private project")
	}
	rc := e.client(t, "reporter")
	fp, _, err := rc.Projects.GetProject(fork.ID, nil)
	if err != nil || fp.ForkedFromProject == nil || fp.ForkedFromProject.ID != 1 {
		t.Fatalf("fork project %+v %v", fp, err)
	}
	// The fork has the upstream's branches; its owner pushes a branch named like lotsed's.
	if _, err := e.sim.Commit(fork.PathWithNamespace, "reporter", gitlabsim.CommitSpec{Branch: "lotse/shop/production", StartBranch: "main", Message: "evil",
		Files: map[string]string{"envs/dev/values.yaml": "image: evil\n"}}); err != nil {
		t.Fatal(err)
	}
	mr, _, err := rc.MergeRequests.CreateMergeRequest(fork.ID, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("lotse/shop/production"),
		TargetBranch: gl.Ptr("main"), Title: gl.Ptr("Promote"), TargetProjectID: gl.Ptr(int64(1))})
	if err != nil {
		t.Fatal(err)
	}
	if mr.ProjectID != 1 || mr.SourceProjectID != int64(fork.ID) || mr.TargetProjectID != 1 || mr.IID != 1 || mr.Author.Username != "reporter" {
		t.Fatalf("fork MR %+v", mr)
	}
	// The upstream lists it, and its head is the fork's commit.
	list, _, err := e.client(t, "developer").MergeRequests.ListProjectMergeRequests(e.project, &gl.ListProjectMergeRequestsOptions{SourceBranch: gl.Ptr("lotse/shop/production")})
	if err != nil || len(list) != 1 || list[0].SourceProjectID != int64(fork.ID) {
		t.Fatalf("upstream list %+v %v", list, err)
	}
	forkHead, _, _ := rc.Branches.GetBranch(fork.ID, "lotse/shop/production")
	if list[0].SHA != forkHead.Commit.ID {
		t.Fatalf("MR sha %s, fork head %s", list[0].SHA, forkHead.Commit.ID)
	}
	// The upstream's own branch of the same name is a different source: an MR from it is allowed.
	e.branch(t, "lotse/shop/production")
	e.commit(t, "developer", "lotse/shop/production", map[string]string{"envs/dev/values.yaml": "image: good\n"})
	own, _, err := e.client(t, "developer").MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{
		SourceBranch: gl.Ptr("lotse/shop/production"), TargetBranch: gl.Ptr("main"), Title: gl.Ptr("Promote")})
	if err != nil || own.SourceProjectID != 1 || own.IID != 2 {
		t.Fatalf("own MR %+v %v", own, err)
	}
	// A second MR from the same fork branch conflicts.
	_, _, err = rc.MergeRequests.CreateMergeRequest(fork.ID, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("lotse/shop/production"),
		TargetBranch: gl.Ptr("main"), Title: gl.Ptr("again"), TargetProjectID: gl.Ptr(int64(1))})
	mustStatus(t, err, 409)
	// Pushing to the fork branch moves the upstream MR.
	sha, err := e.sim.Commit(fork.PathWithNamespace, "reporter", gitlabsim.CommitSpec{Branch: "lotse/shop/production", Message: "more", Files: map[string]string{"x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := getMR(t, e, "developer", 1); got.SHA != sha {
		t.Fatalf("fork push not seen: %s want %s", got.SHA, sha)
	}
	// Only a project's upstream is a valid target.
	other, _ := e.sim.CreateProject(gitlabsim.ProjectSpec{Path: "team/other", Members: []gitlabsim.Member{{Username: "reporter", Role: gitlabsim.RoleDeveloper}}})
	_, _, err = rc.MergeRequests.CreateMergeRequest(fork.ID, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("lotse/shop/production"),
		TargetBranch: gl.Ptr("main"), Title: gl.Ptr("x"), TargetProjectID: gl.Ptr(int64(other.ID))})
	mustStatus(t, err, 422)
	// The Go API opens fork MRs as well.
	iid, err := e.sim.CreateMergeRequest(fork.PathWithNamespace, "reporter", gitlabsim.MergeRequestSpec{SourceBranch: "main", TargetBranch: "main", Title: "sync", TargetProject: e.project})
	if err != nil || iid != 3 {
		t.Fatalf("Go API fork MR %d %v", iid, err)
	}
	// Hooks name the fork as source.
	wait(t, e.sim)
	found := false
	for _, p := range sink.byEvent("Merge Request Hook") {
		oa := p["object_attributes"].(map[string]any)
		if oa["iid"] == float64(1) && oa["action"] == "open" {
			found = true
			src := oa["source"].(map[string]any)
			if oa["source_project_id"] != float64(fork.ID) || oa["target_project_id"] != float64(1) || src["path_with_namespace"] != "reporter/deploy" ||
				oa["target"].(map[string]any)["path_with_namespace"] != "team/deploy" {
				t.Fatalf("fork MR hook %v", oa)
			}
		}
	}
	if !found {
		t.Fatal("no open hook for the fork MR")
	}
	// A maintainer can still merge it (lotsed must not): the fork's change lands.
	getMR(t, e, "maintainer", 1)
	if _, _, err := e.client(t, "maintainer").MergeRequests.AcceptMergeRequest(e.project, 1, nil); err != nil {
		t.Fatalf("merge fork MR: %v %s", err, errBody(err))
	}
	f, _, err := e.client(t, "developer").RepositoryFiles.GetRawFile(e.project, "x", &gl.GetRawFileOptions{Ref: gl.Ptr("main")})
	if err != nil || string(f) != "y" {
		t.Fatalf("fork change not merged: %q %v", f, err)
	}
}

func TestEnvironmentsAndDeployments(t *testing.T) {
	e := newEnv(t)
	sink := newSink(t)
	hs := gitlabsim.HookSpec{URL: sink.srv.URL, DeploymentEvents: true, PushEvents: gl.Ptr(false)}
	e.sim.AddHook(e.project, hs)
	c := e.client(t, "developer")
	head := branchHead(t, e, "main")

	env, _, err := c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("shop/staging"), ExternalURL: gl.Ptr("https://staging.shop.example"), Tier: gl.Ptr("staging")})
	if err != nil || env.Tier != "staging" || env.State != "available" || env.Slug == "" || env.ExternalURL != "https://staging.shop.example" {
		t.Fatalf("create env %+v %v", env, err)
	}
	_, _, err = c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("shop/staging")})
	mustStatus(t, err, 400)
	_, _, err = c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("x"), ExternalURL: gl.Ptr("javascript:alert(1)")})
	mustStatus(t, err, 400)
	_, _, err = c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("/bad/")})
	mustStatus(t, err, 400)
	_, _, err = c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("y"), Tier: gl.Ptr("prod")})
	mustStatus(t, err, 400)
	_, _, err = e.client(t, "reporter").Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr("r")})
	mustStatus(t, err, 403)
	up, _, err := c.Environments.EditEnvironment(e.project, env.ID, &gl.EditEnvironmentOptions{ExternalURL: gl.Ptr("https://new.example"), Tier: gl.Ptr("testing")})
	if err != nil || up.ExternalURL != "https://new.example" || up.Tier != "testing" {
		t.Fatalf("edit %+v %v", up, err)
	}

	// A deployment to an unknown environment creates it, with a guessed tier.
	status := func(s string) *gl.DeploymentStatusValue { v := gl.DeploymentStatusValue(s); return &v }
	d, _, err := c.Deployments.CreateProjectDeployment(e.project, &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr("shop/production"),
		SHA: gl.Ptr(head), Ref: gl.Ptr("main"), Tag: gl.Ptr(false), Status: status("running")})
	if err != nil || d.Status != "running" || d.Environment.Name != "shop/production" || d.User.ID != int64(e.users["developer"].ID) || d.SHA != head || d.IID != 1 {
		t.Fatalf("create deployment %+v %v", d, err)
	}
	envs, _, err := c.Environments.ListEnvironments(e.project, &gl.ListEnvironmentsOptions{Name: gl.Ptr("shop/production")})
	if err != nil || len(envs) != 1 || envs[0].Tier != "production" || envs[0].LastDeployment != nil {
		t.Fatalf("created env %+v %v", envs, err)
	}
	// Re-sending the same deployment returns it (Deployments::CreateService).
	again, _, _ := c.Deployments.CreateProjectDeployment(e.project, &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr("shop/production"),
		SHA: gl.Ptr(head), Ref: gl.Ptr("main"), Tag: gl.Ptr(false), Status: status("running")})
	if again.ID != d.ID {
		t.Fatalf("same deployment twice: %d and %d", d.ID, again.ID)
	}
	// Transitions: running -> running is refused, -> success allowed, success -> running refused.
	_, _, err = c.Deployments.UpdateProjectDeployment(e.project, d.ID, &gl.UpdateProjectDeploymentOptions{Status: status("running")})
	mustStatus(t, err, 400)
	ok, _, err := c.Deployments.UpdateProjectDeployment(e.project, d.ID, &gl.UpdateProjectDeploymentOptions{Status: status("success")})
	if err != nil || ok.Status != "success" {
		t.Fatalf("success %+v %v", ok, err)
	}
	_, _, err = c.Deployments.UpdateProjectDeployment(e.project, d.ID, &gl.UpdateProjectDeploymentOptions{Status: status("running")})
	mustStatus(t, err, 400)
	_, _, err = c.Deployments.UpdateProjectDeployment(e.project, d.ID, &gl.UpdateProjectDeploymentOptions{Status: status("created")})
	mustStatus(t, err, 400)
	_, _, err = e.client(t, "reporter").Deployments.UpdateProjectDeployment(e.project, d.ID, &gl.UpdateProjectDeploymentOptions{Status: status("failed")})
	mustStatus(t, err, 403)
	_, _, err = c.Deployments.CreateProjectDeployment(e.project, &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr("shop/production"),
		SHA: gl.Ptr(head), Ref: gl.Ptr("nope"), Tag: gl.Ptr(false), Status: status("success")})
	mustStatus(t, err, 400)
	_, _, err = c.Deployments.CreateProjectDeployment(e.project, &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr("shop/production"),
		SHA: gl.Ptr(head), Ref: gl.Ptr("main"), Tag: gl.Ptr(false), Status: status("bogus")})
	mustStatus(t, err, 400)
	code, _, b := e.do(t, "POST", "/api/v4/projects/1/deployments", e.users["developer"].Token, map[string]any{"environment": "x", "sha": head, "ref": "main"})
	if code != 400 || !strings.Contains(string(b), "tag is missing, status is missing") {
		t.Fatalf("missing params %d %s", code, b)
	}
	// A second, failed deployment does not become last_deployment.
	d2, _, _ := c.Deployments.CreateProjectDeployment(e.project, &gl.CreateProjectDeploymentOptions{Environment: gl.Ptr("shop/production"),
		SHA: gl.Ptr(head), Ref: gl.Ptr("main"), Tag: gl.Ptr(false), Status: status("failed")})
	one, _, err := c.Environments.GetEnvironment(e.project, envs[0].ID)
	if err != nil || one.LastDeployment == nil || one.LastDeployment.ID != d.ID || one.Project == nil {
		t.Fatalf("last deployment %+v %v", one, err)
	}
	// Listing: filters and order.
	list, _, err := c.Deployments.ListProjectDeployments(e.project, &gl.ListProjectDeploymentsOptions{Environment: gl.Ptr("shop/production"), OrderBy: gl.Ptr("id"), Sort: gl.Ptr("desc")})
	if err != nil || len(list) != 2 || list[0].ID != d2.ID || list[1].ID != d.ID {
		t.Fatalf("list %+v %v", list, err)
	}
	if l, _, _ := c.Deployments.ListProjectDeployments(e.project, &gl.ListProjectDeploymentsOptions{Status: gl.Ptr("success")}); len(l) != 1 || l[0].ID != d.ID {
		t.Fatalf("status filter %+v", l)
	}
	if l, _, _ := c.Deployments.ListProjectDeployments(e.project, &gl.ListProjectDeploymentsOptions{Environment: gl.Ptr("none")}); len(l) != 0 {
		t.Fatalf("unknown env filter %+v", l)
	}
	_, _, err = c.Deployments.ListProjectDeployments(e.project, &gl.ListProjectDeploymentsOptions{OrderBy: gl.Ptr("sha")})
	mustStatus(t, err, 400)
	if g, _, err := c.Deployments.GetProjectDeployment(e.project, d.ID); err != nil || g.Status != "success" {
		t.Fatalf("get %+v %v", g, err)
	}
	// Job tokens may use the deployments and environments APIs.
	job, _ := e.sim.JobToken(e.project, "developer")
	if code, _, b := e.do(t, "GET", "/api/v4/projects/1/deployments?job_token="+job, "", nil); code != 200 || !strings.Contains(string(b), `"status":"failed"`) {
		t.Fatalf("job token lists deployments: %d %s", code, b)
	}
	if ds, _ := e.sim.Deployments(e.project); len(ds) != 2 || ds[0].Environment != "shop/production" || ds[0].Username != "developer" {
		t.Fatalf("Go API deployments %+v", ds)
	}

	// Deployment Hooks: running, success, failed (not created).
	wait(t, e.sim)
	hooks := sink.byEvent("Deployment Hook")
	var sts []string
	for _, h := range hooks {
		sts = append(sts, fmt.Sprint(h["status"]))
	}
	if strings.Join(sts, ",") != "running,success,failed" {
		t.Fatalf("deployment hooks %v", sts)
	}
	h := hooks[1]
	if h["deployment_id"] != float64(d.ID) || h["environment"] != "shop/production" || h["environment_tier"] != "production" ||
		h["short_sha"] != head[:8] || h["user"].(map[string]any)["id"] != float64(e.users["developer"].ID) || h["commit_title"] != "Initial commit" {
		t.Fatalf("deployment hook %v", h)
	}
	b, err = os.ReadFile(filepath.Join("testdata", "payloads", "Deployment Hook.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref any
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	want, got := map[string]bool{}, map[string]bool{}
	keyPaths(ref, "", want)
	keyPaths(h, "", got)
	var missing []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("Deployment Hook lacks %v", missing)
	}
	hl, _, err := e.client(t, "maintainer").Projects.ListProjectHooks(e.project, nil)
	if err != nil || len(hl) != 1 || !hl[0].DeploymentEvents || hl[0].PushEvents {
		t.Fatalf("hooks list %+v %v", hl, err)
	}
}

func TestEnvironmentSlugAndTier(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "developer")
	tests := []struct{ name, tier, slug string }{
		{"production", "production", "production"},
		{"preprod", "staging", "preprod"},
		{"review/fix-foo", "development", ""},
		{"qa", "testing", "qa"},
		{"shop", "other", "shop"},
	}
	for _, tt := range tests {
		env, _, err := c.Environments.CreateEnvironment(e.project, &gl.CreateEnvironmentOptions{Name: gl.Ptr(tt.name)})
		if err != nil || env.Tier != tt.tier {
			t.Fatalf("%s: %+v %v", tt.name, env, err)
		}
		if tt.slug != "" && env.Slug != tt.slug {
			t.Fatalf("%s: slug %q", tt.name, env.Slug)
		}
		if tt.slug == "" && (!strings.HasPrefix(env.Slug, "review-fix-foo-") || len(env.Slug) > 24 || env.Slug != url.PathEscape(env.Slug)) {
			t.Fatalf("%s: slug %q", tt.name, env.Slug)
		}
	}
}

// GitLab refuses a second open MR only for the same source project, source
// branch and target branch.
func TestDuplicateMRNeedsSameTarget(t *testing.T) {
	e := newEnv(t)
	openMR(t, e, "f")
	e.branch(t, "release")
	c := e.client(t, "developer")
	mr, _, err := c.MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("f"), TargetBranch: gl.Ptr("release"), Title: gl.Ptr("to release")})
	if err != nil || mr.IID != 2 {
		t.Fatalf("same source, other target: %+v %v", mr, err)
	}
	_, _, err = c.MergeRequests.CreateMergeRequest(e.project, &gl.CreateMergeRequestOptions{SourceBranch: gl.Ptr("f"), TargetBranch: gl.Ptr("release"), Title: gl.Ptr("again")})
	mustStatus(t, err, 409)
	if errBody(err) != `{"message":["Another open merge request already exists for this source branch: !2"]}` {
		t.Fatalf("body %s", errBody(err))
	}
}

// On Free, a bot (project access token) resets approvals itself; nobody else may.
func TestResetApprovals(t *testing.T) {
	e := newEnv(t)
	bot, err := e.sim.CreateUser(gitlabsim.UserSpec{Username: "project_1_bot", Bot: true})
	if err != nil {
		t.Fatal(err)
	}
	e.users["bot"] = bot
	openMR(t, e, "f")
	e.sim.Approve(e.project, 1, "maintainer")
	for _, who := range []string{"maintainer", "developer", "bot"} { // bot is no member yet
		if code, _, b := e.do(t, "PUT", "/api/v4/projects/1/merge_requests/1/reset_approvals", e.users[who].Token, nil); code != 401 && code != 404 {
			t.Fatalf("%s reset approvals: %d %s", who, code, b)
		}
	}
	if mr, _ := e.sim.MergeRequest(e.project, 1); len(mr.ApprovedBy) != 1 {
		t.Fatalf("approvals were reset by a refused call: %+v", mr)
	}
	e.sim.AddMember(e.project, "project_1_bot", gitlabsim.RoleReporter)
	if code, _, _ := e.do(t, "PUT", "/api/v4/projects/1/merge_requests/1/reset_approvals", bot.Token, nil); code != 401 {
		t.Fatalf("reporter bot: %d", code)
	}
	e.sim.AddMember(e.project, "project_1_bot", gitlabsim.RoleDeveloper)
	code, _, b := e.do(t, "PUT", "/api/v4/projects/1/merge_requests/1/reset_approvals", bot.Token, nil)
	if code != 202 || len(b) != 0 {
		t.Fatalf("bot reset: %d %q", code, b)
	}
	if mr, _ := e.sim.MergeRequest(e.project, 1); len(mr.ApprovedBy) != 0 {
		t.Fatalf("approvals left: %+v", mr)
	}
}
