package gitlab_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

// openMR commits to branch as bot and opens an MR from it.
func openMR(t *testing.T, f *fixture, branch string) gitlab.MR {
	t.Helper()
	bot := f.client(t, "bot")
	if _, err := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: branch, StartBranch: "main", Message: "promote " + branch,
		AuthorName: "Dev One", AuthorEmail: "dev1@example.com",
		Actions: []gitlab.FileAction{{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: []byte("image: " + branch + "\n")}}}); err != nil {
		t.Fatal(err)
	}
	mr, err := bot.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: branch, TargetBranch: "main", Title: "Promote"})
	if err != nil {
		t.Fatal(err)
	}
	return mr
}

func TestPeopleByID(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	me, err := bot.CurrentUser(ctx(t))
	if err != nil || me.ID == 0 || me.Username != "bot" {
		t.Fatalf("me %+v %v", me, err)
	}
	m, err := bot.UserByUsername(ctx(t), "MAINTAINER")
	if err != nil || m.Username != "maintainer" || m.ID == 0 || m.ID == me.ID {
		t.Fatalf("by username %+v %v", m, err)
	}
	if _, err := bot.UserByUsername(ctx(t), "nobody"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	mr := openMR(t, f, "lotse/dev")
	if mr.Author.ID != me.ID {
		t.Fatalf("author %+v", mr.Author)
	}
	f.sim.Approve(project, int(mr.IID), "maintainer")
	f.sim.CreateNote(project, int(mr.IID), "maintainer", "lgtm")
	approvers, err := bot.Approvals(ctx(t), project, mr.IID)
	if err != nil || len(approvers) != 1 || approvers[0].ID != m.ID {
		t.Fatalf("approvers %+v %v", approvers, err)
	}
	notes, err := bot.Notes(ctx(t), project, mr.IID)
	if err != nil || len(notes) != 2 {
		t.Fatalf("notes %+v %v", notes, err)
	}
	for _, n := range notes {
		if n.Author.ID != m.ID {
			t.Fatalf("note author %+v", n.Author)
		}
	}
	// A rename keeps the id: whoever compares ids is not fooled, and the old
	// name no longer resolves.
	if err := f.sim.RenameUser(int(m.ID), "mallory"); err != nil {
		t.Fatal(err)
	}
	renamed, err := bot.UserByUsername(ctx(t), "mallory")
	if err != nil || renamed.ID != m.ID {
		t.Fatalf("renamed %+v %v", renamed, err)
	}
	if _, err := bot.UserByUsername(ctx(t), "maintainer"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("old name: %v", err)
	}
	if approvers, _ := bot.Approvals(ctx(t), project, mr.IID); approvers[0].ID != m.ID || approvers[0].Username != "mallory" {
		t.Fatalf("approver after rename %+v", approvers)
	}
}

func TestMRCommitsDiffsAndRefs(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	mr := openMR(t, f, "lotse/dev")
	// Someone else adds a commit to lotsed's branch.
	sha, err := f.sim.Commit(project, "maintainer", gitlabsim.CommitSpec{Branch: "lotse/dev", Message: "sneak", Files: map[string]string{"extra.yaml": "x: 1\n"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bot.GetMR(ctx(t), project, mr.IID)
	if err != nil || got.SHA != sha || got.DiffRefs.HeadSHA != sha || got.DiffRefs.BaseSHA == "" || got.SourceProjectID != got.TargetProjectID || got.FromFork() || got.ProjectID == 0 {
		t.Fatalf("MR %+v %v", got, err)
	}
	cs, err := bot.MRCommits(ctx(t), project, mr.IID)
	if err != nil || len(cs) != 2 {
		t.Fatalf("commits %+v %v", cs, err)
	}
	if cs[0].SHA != sha || cs[0].AuthorName != "maintainer" || cs[0].CommitterEmail != "maintainer@example.com" ||
		cs[1].AuthorName != "Dev One" || cs[1].AuthorEmail != "dev1@example.com" || cs[1].CommitterName != "bot" {
		t.Fatalf("commit identities %+v %+v", cs[0], cs[1])
	}
	ds, err := bot.MRDiffs(ctx(t), project, mr.IID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("diffs %+v %v", ds, err)
	}
	paths := map[string]gitlab.Diff{}
	for _, d := range ds {
		paths[d.NewPath] = d
	}
	if d := paths["extra.yaml"]; !d.NewFile || d.Diff != "@@ -0,0 +1 @@\n+x: 1\n" {
		t.Fatalf("new file %+v", d)
	}
	if d := paths["envs/dev/values.yaml"]; d.NewFile || !strings.Contains(d.Diff, "+image: lotse/dev\n") {
		t.Fatalf("changed file %+v", d)
	}
	// Listed MRs carry the project ids too (diff refs only come with single reads).
	found, err := bot.FindOpenMR(ctx(t), project, "lotse/dev")
	if err != nil || found.SourceProjectID == 0 || found.SourceProjectID != found.TargetProjectID {
		t.Fatalf("listed %+v %v", found, err)
	}
}

func TestForkMRIsRecognisable(t *testing.T) {
	f := setup(t)
	fork, err := f.sim.ForkProject(project, gitlabsim.ForkSpec{Path: "reporter/deploy", Username: "reporter"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sim.Commit(fork.PathWithNamespace, "reporter", gitlabsim.CommitSpec{Branch: "lotse/dev", StartBranch: "main", Message: "evil",
		Files: map[string]string{"envs/dev/values.yaml": "image: evil\n"}}); err != nil {
		t.Fatal(err)
	}
	iid, err := f.sim.CreateMergeRequest(fork.PathWithNamespace, "reporter", gitlabsim.MergeRequestSpec{SourceBranch: "lotse/dev", TargetBranch: "main", Title: "Promote", TargetProject: project})
	if err != nil {
		t.Fatal(err)
	}
	bot := f.client(t, "bot")
	one, _ := bot.GetMR(ctx(t), project, iid64(iid))
	if !one.FromFork() || one.TargetProjectID != one.ProjectID || one.SourceProjectID != int64(fork.ID) {
		t.Fatalf("fork MR read %+v", one)
	}
	// The fork's MR, named like lotsed's branch, is never taken for lotsed's own.
	if mr, err := bot.FindOpenMR(ctx(t), project, "lotse/dev"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("FindOpenMR returned the fork's MR: %+v %v", mr, err)
	}
	own := openMR(t, f, "lotse/dev")
	// A newer fork MR from a lotse/dev branch (listed first) does not hide it either.
	fork2, err := f.sim.ForkProject(project, gitlabsim.ForkSpec{Path: "maintainer/deploy", Username: "maintainer"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sim.Commit(fork2.PathWithNamespace, "maintainer", gitlabsim.CommitSpec{Branch: "lotse/dev", Message: "more", Files: map[string]string{"x": "y"}}); err != nil {
		t.Fatal(err)
	}
	newer, err := f.sim.CreateMergeRequest(fork2.PathWithNamespace, "maintainer", gitlabsim.MergeRequestSpec{SourceBranch: "lotse/dev", TargetBranch: "main", Title: "Promote", TargetProject: project})
	if err != nil || int64(newer) <= own.IID {
		t.Fatalf("newer fork MR %d %v", newer, err)
	}
	found, err := bot.FindOpenMR(ctx(t), project, "lotse/dev")
	if err != nil || found.IID != own.IID || found.FromFork() {
		t.Fatalf("FindOpenMR with a fork MR around: %+v %v", found, err)
	}
	// MRsForCommit names fork MRs as such.
	mrs, err := bot.MRsForCommit(ctx(t), project, one.SHA)
	if err != nil || len(mrs) != 1 || !mrs[0].FromFork() {
		t.Fatalf("MRs for the fork's commit %+v %v", mrs, err)
	}
}

func iid64(n int) int64 { return int64(n) }

func TestProtectedBranchesMembersAndHooks(t *testing.T) {
	f := setup(t, func(p *gitlabsim.ProjectSpec) {
		p.Protected = append(p.Protected, gitlabsim.ProtectedBranch{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers})
	})
	bot := f.client(t, "bot")
	pbs, err := bot.ProtectedBranches(ctx(t), project)
	if err != nil || len(pbs) != 2 || pbs[1].Name != "lotse/*" || pbs[1].Push[0].Level != gitlab.AccessMaintainer || pbs[0].Merge[0].Level != gitlab.AccessDeveloper {
		t.Fatalf("protected %+v %v", pbs, err)
	}
	if !pbs[1].Matches("lotse/shop/production") || pbs[1].Matches("lotsex") {
		t.Fatal("wildcard matching")
	}
	// The rule holds: the bot (a Developer) cannot push to a lotse/ branch.
	_, err = bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "lotse/x/y", StartBranch: "main", Message: "m",
		Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "x", Content: []byte("x")}}})
	if !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("push into protected wildcard branch: %v", err)
	}
	me, _ := bot.CurrentUser(ctx(t))
	mem, err := bot.Member(ctx(t), project, me.ID)
	if err != nil || mem.AccessLevel != gitlab.AccessDeveloper || mem.User.Username != "bot" {
		t.Fatalf("member %+v %v", mem, err)
	}
	ms, err := bot.Members(ctx(t), project)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %+v %v", ms, err)
	}
	roles := map[string]gitlab.AccessLevel{}
	for _, m := range ms {
		roles[m.User.Username] = m.AccessLevel
	}
	if roles["bot"] != gitlab.AccessDeveloper || roles["maintainer"] != gitlab.AccessMaintainer || roles["reporter"] != gitlab.AccessReporter {
		t.Fatalf("member roles %v", roles)
	}
	out, _ := f.sim.CreateUser(gitlabsim.UserSpec{Username: "outsider"})
	if _, err := bot.Member(ctx(t), project, int64(out.ID)); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("non-member: %v", err)
	}
	tr := true
	f.sim.AddHook(project, gitlabsim.HookSpec{URL: "http://127.0.0.1:9/hook", PushEvents: &tr, MergeRequestsEvents: true, DeploymentEvents: true, PushEventsBranchFilter: "main"})
	hs, err := f.client(t, "maintainer").Hooks(ctx(t), project)
	if err != nil || len(hs) != 1 || !hs[0].DeploymentEvents || !hs[0].MergeRequestsEvents || hs[0].NoteEvents || hs[0].PushEventsBranchFilter != "main" || hs[0].AlertStatus != "executable" {
		t.Fatalf("hooks %+v %v", hs, err)
	}
	if _, err := bot.Hooks(ctx(t), project); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("developer lists hooks: %v", err)
	}
}

func TestProtectedBranchMatches(t *testing.T) {
	tests := []struct {
		pattern, branch string
		want            bool
	}{
		{"main", "main", true},
		{"main", "main2", false},
		{"lotse/*", "lotse/a", true},
		{"lotse/*", "lotse/a/b/c", true},
		{"lotse/*", "lotse/", true},
		{"lotse/*", "lotse", false},
		{"*-stable", "1-2-stable", true},
		{"*-stable", "stable", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"*", "", true},
		{"re.ease/*", "release/x", false},
	}
	for _, tt := range tests {
		if got := (gitlab.ProtectedBranch{Name: tt.pattern}).Matches(tt.branch); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.branch, got, tt.want)
		}
	}
}

func TestDeploymentsAndEnvironments(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	head, _ := bot.BranchHead(ctx(t), project, "main")

	env, err := bot.UpsertEnvironment(ctx(t), project, gitlab.EnvironmentRequest{Name: "shop/production", ExternalURL: "https://shop.example", Tier: "production"})
	if err != nil || env.ID == 0 || env.Tier != "production" || env.ExternalURL != "https://shop.example" || env.State != "available" {
		t.Fatalf("create env %+v %v", env, err)
	}
	puts := f.sim.CountRequests(gitlabsim.ClassDeployments, "PUT")
	same, err := bot.UpsertEnvironment(ctx(t), project, gitlab.EnvironmentRequest{Name: "shop/production", Tier: "production"})
	if err != nil || same.ID != env.ID || f.sim.CountRequests(gitlabsim.ClassDeployments, "PUT") != puts {
		t.Fatalf("no-op upsert %+v %v", same, err)
	}
	up, err := bot.UpsertEnvironment(ctx(t), project, gitlab.EnvironmentRequest{Name: "shop/production", ExternalURL: "https://new.shop.example"})
	if err != nil || up.ID != env.ID || up.ExternalURL != "https://new.shop.example" || up.Tier != "production" {
		t.Fatalf("update env %+v %v", up, err)
	}
	if _, err := bot.UpsertEnvironment(ctx(t), project, gitlab.EnvironmentRequest{Name: "x", ExternalURL: "javascript:alert(1)"}); !errors.Is(err, gitlab.ErrInvalid) {
		t.Fatalf("bad url: %v", err)
	}

	d, err := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "shop/staging", SHA: head, Ref: "main", Status: gitlab.DeploymentRunning})
	if err != nil || d.Status != gitlab.DeploymentRunning || d.Environment != "shop/staging" || d.SHA != head || d.User.Username != "bot" || d.User.ID == 0 {
		t.Fatalf("create deployment %+v %v", d, err)
	}
	again, err := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "shop/staging", SHA: head, Ref: "main", Status: gitlab.DeploymentRunning})
	if err != nil || again.ID != d.ID {
		t.Fatalf("same deployment again %+v %v", again, err)
	}
	done, err := bot.UpdateDeployment(ctx(t), project, d.ID, gitlab.DeploymentSuccess)
	if err != nil || done.Status != gitlab.DeploymentSuccess {
		t.Fatalf("success %+v %v", done, err)
	}
	if again, err := bot.UpdateDeployment(ctx(t), project, d.ID, gitlab.DeploymentSuccess); err != nil || again.Status != gitlab.DeploymentSuccess {
		t.Fatalf("same status again %+v %v", again, err)
	}
	if _, err := bot.UpdateDeployment(ctx(t), project, d.ID, gitlab.DeploymentRunning); !errors.Is(err, gitlab.ErrInvalid) || !strings.Contains(err.Error(), "is success") {
		t.Fatalf("success -> running: %v", err)
	}
	if _, err := f.client(t, "reporter").CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "x", SHA: head, Ref: "main", Status: gitlab.DeploymentSuccess}); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("reporter deploys: %v", err)
	}
	if _, err := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "x", SHA: head, Ref: "nope", Status: gitlab.DeploymentSuccess}); !errors.Is(err, gitlab.ErrInvalid) {
		t.Fatalf("unknown ref: %v", err)
	}
	for range 3 {
		d2, err := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "shop/staging", SHA: head, Ref: "main", Status: gitlab.DeploymentCreated})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bot.UpdateDeployment(ctx(t), project, d2.ID, gitlab.DeploymentFailed); err != nil {
			t.Fatal(err)
		}
	}
	last, err := bot.Deployments(ctx(t), project, gitlab.DeploymentQuery{Environment: "shop/staging", Status: gitlab.DeploymentSuccess, OrderBy: "id", Desc: true, Limit: 1})
	if err != nil || len(last) != 1 || last[0].ID != d.ID {
		t.Fatalf("last successful %+v %v", last, err)
	}
	all, err := bot.Deployments(ctx(t), project, gitlab.DeploymentQuery{})
	if err != nil || len(all) != 4 || all[0].ID != d.ID || all[3].Status != gitlab.DeploymentFailed {
		t.Fatalf("all %+v %v", all, err)
	}
	envs, err := bot.Environments(ctx(t), project)
	if err != nil || len(envs) != 2 || envs[1].Name != "shop/staging" || envs[1].Tier != "staging" {
		t.Fatalf("environments %+v %v", envs, err)
	}
}

// Writes whose answer is lost are reconciled, not duplicated.
func TestDeploymentWritesWithLostAnswers(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	head, _ := bot.BranchHead(ctx(t), project, "main")

	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassDeployments, Method: "POST", Status: 502, After: true, Times: 1})
	env, err := bot.UpsertEnvironment(ctx(t), project, gitlab.EnvironmentRequest{Name: "prod", ExternalURL: "https://prod.example"})
	if err != nil || env.Name != "prod" {
		t.Fatalf("upsert after lost answer %+v %v", env, err)
	}
	if envs, _ := bot.Environments(ctx(t), project); len(envs) != 1 {
		t.Fatalf("environments %+v", envs)
	}

	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassDeployments, Method: "POST", Status: 502, After: true, Times: 1})
	d, err := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "prod", SHA: head, Ref: "main", Status: gitlab.DeploymentRunning})
	if err != nil {
		t.Fatal(err)
	}
	if ds, _ := f.sim.Deployments(project); len(ds) != 1 || ds[0].ID != int(d.ID) {
		t.Fatalf("deployments after a lost answer %+v", ds)
	}

	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassDeployments, Method: "PUT", Status: 502, After: true, Times: 1})
	done, err := bot.UpdateDeployment(ctx(t), project, d.ID, gitlab.DeploymentSuccess)
	if err != nil || done.Status != gitlab.DeploymentSuccess {
		t.Fatalf("update after lost answer %+v %v", done, err)
	}
	// The lost PUT was not re-sent once the re-read showed it had happened.
	if n := f.sim.CountRequests(gitlabsim.ClassDeployments, "PUT"); n != 1 {
		t.Fatalf("%d PUTs", n)
	}

	// A PUT that failed before it happened is re-sent.
	f.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassDeployments, Method: "PUT", Status: 502, Times: 1})
	d2, _ := bot.CreateDeployment(ctx(t), project, gitlab.DeploymentRequest{Environment: "prod", SHA: head, Ref: "main", Status: gitlab.DeploymentRunning})
	if got, err := bot.UpdateDeployment(ctx(t), project, d2.ID, gitlab.DeploymentFailed); err != nil || got.Status != gitlab.DeploymentFailed {
		t.Fatalf("update after failure %+v %v", got, err)
	}
}

func TestResetApprovals(t *testing.T) {
	f := setup(t, func(p *gitlabsim.ProjectSpec) { p.Settings = &gitlabsim.ProjectSettings{ApprovalsRequired: 1} })
	tok, err := f.sim.CreateUser(gitlabsim.UserSpec{Username: "project_1_bot_x", Bot: true})
	if err != nil {
		t.Fatal(err)
	}
	f.sim.AddMember(project, "project_1_bot_x", gitlabsim.RoleDeveloper)
	f.tokens["tokenbot"] = tok.Token
	mr := openMR(t, f, "lotse/dev")
	f.sim.Approve(project, int(mr.IID), "maintainer")
	// A push on Free keeps the approval; lotsed drops it itself.
	f.sim.Commit(project, "maintainer", gitlabsim.CommitSpec{Branch: "lotse/dev", Message: "sneak", Files: map[string]string{"x": "y"}})
	if a, _ := f.client(t, "bot").Approvals(ctx(t), project, mr.IID); len(a) != 1 {
		t.Fatalf("approvals after push %+v", a)
	}
	if err := f.client(t, "bot").ResetApprovals(ctx(t), project, mr.IID); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("personal token resets approvals: %v", err)
	}
	if err := f.client(t, "tokenbot").ResetApprovals(ctx(t), project, mr.IID); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.client(t, "bot").Approvals(ctx(t), project, mr.IID); len(a) != 0 {
		t.Fatalf("approvals after reset %+v", a)
	}
	f.client(t, "bot").GetMR(ctx(t), project, mr.IID) // the push restarted GitLab's mergeability check
	if got, _ := f.client(t, "bot").GetMR(ctx(t), project, mr.IID); got.DetailedMergeStatus != "not_approved" {
		t.Fatalf("status after reset %s", got.DetailedMergeStatus)
	}
}
