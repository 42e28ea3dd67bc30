package gitlab_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

const project = "team/deploy"

type fixture struct {
	sim    *gitlabsim.Sim
	url    string
	tokens map[string]string
}

func setup(t *testing.T, spec ...func(*gitlabsim.ProjectSpec)) *fixture {
	t.Helper()
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	f := &fixture{sim: sim, url: srv.URL, tokens: map[string]string{}}
	for _, u := range []string{"bot", "maintainer", "reporter"} {
		user, err := sim.CreateUser(gitlabsim.UserSpec{Username: u})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[u] = user.Token
	}
	ps := gitlabsim.ProjectSpec{Path: project, Members: []gitlabsim.Member{
		{Username: "bot", Role: gitlabsim.RoleDeveloper}, {Username: "maintainer", Role: gitlabsim.RoleMaintainer},
		{Username: "reporter", Role: gitlabsim.RoleReporter}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}},
		Files:     map[string]string{"envs/dev/values.yaml": "image: v1\n"},
	}
	for _, s := range spec {
		s(&ps)
	}
	if _, err := sim.CreateProject(ps); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) client(t *testing.T, user string, opts ...gitlab.Option) *gitlab.Client {
	t.Helper()
	opts = append([]gitlab.Option{gitlab.WithRetry(4, time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := gitlab.New(f.url+"/api/v4", f.tokens[user], opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestFileAndCommit(t *testing.T) {
	f := setup(t)
	c := f.client(t, "bot")
	file, err := c.File(ctx(t), project, "envs/dev/values.yaml", "main")
	if err != nil || string(file.Content) != "image: v1\n" || file.LastCommitID == "" || file.BlobID == "" || file.CommitID != file.LastCommitID {
		t.Fatalf("file %+v %v", file, err)
	}
	msg := "lotse: promote app to dev\n\nLotse-Image: app@sha256:abc\nLotse-Env: dev"
	cm, err := c.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: msg, Actions: []gitlab.FileAction{
		{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: []byte("image: v2\n"), LastCommitID: file.LastCommitID},
		{Action: gitlab.ActionCreate, Path: "envs/dev/.lotse", Content: []byte{0, 1}},
	}})
	if err != nil || cm.Message != msg || cm.Title != "lotse: promote app to dev" || len(cm.ParentIDs) != 1 || cm.ParentIDs[0] != file.CommitID {
		t.Fatalf("commit %+v %v", cm, err)
	}
	again, _ := c.File(ctx(t), project, "envs/dev/.lotse", "main")
	if string(again.Content) != "\x00\x01" {
		t.Fatalf("binary content %q", again.Content)
	}
	// stale last_commit_id
	_, err = c.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: "x", Actions: []gitlab.FileAction{
		{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: []byte("image: v3\n"), LastCommitID: file.LastCommitID}}})
	if !errors.Is(err, gitlab.ErrConflict) || gitlab.Retryable(err) {
		t.Fatalf("stale: %v", err)
	}
	got, err := c.GetCommit(ctx(t), project, cm.SHA)
	if err != nil || got.Message != msg || got.AuthorName != "bot" || got.CommittedAt.IsZero() {
		t.Fatalf("get commit %+v %v", got, err)
	}
	head, err := c.BranchHead(ctx(t), project, "main")
	if err != nil || head != cm.SHA {
		t.Fatalf("head %s %v", head, err)
	}
}

func TestErrorMapping(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	_, err := bot.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "f", TargetBranch: "main", Title: "x"})
	var ae *gitlab.APIError
	tests := []struct {
		name string
		err  func() error
		want error
		code int
	}{
		{"missing file", func() error { _, err := bot.File(ctx(t), project, "nope", "main"); return err }, gitlab.ErrNotFound, 404},
		{"missing project", func() error { _, err := bot.File(ctx(t), "no/such", "x", "main"); return err }, gitlab.ErrNotFound, 404},
		{"bad token", func() error {
			c, _ := gitlab.New(f.url, "glpat-wrong")
			_, err := c.File(ctx(t), project, "envs/dev/values.yaml", "main")
			return err
		}, gitlab.ErrUnauthorized, 401},
		{"reporter commits", func() error {
			_, err := f.client(t, "reporter").Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: "x",
				Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "x", Content: []byte("x")}}})
			return err
		}, gitlab.ErrUnauthorized, 403},
		{"create existing file", func() error {
			_, err := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: "x",
				Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "envs/dev/values.yaml", Content: []byte("x")}}})
			return err
		}, gitlab.ErrAlreadyExists, 400},
		{"update missing file", func() error {
			_, err := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: "x",
				Actions: []gitlab.FileAction{{Action: gitlab.ActionUpdate, Path: "nope", Content: []byte("x")}}})
			return err
		}, gitlab.ErrInvalid, 400},
		{"mr from missing branch", func() error { return err }, gitlab.ErrInvalid, 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			if !errors.Is(err, tt.want) || !errors.As(err, &ae) || ae.StatusCode != tt.code || !gitlab.Terminal(err) {
				t.Fatalf("got %v (%T), want %v/%d", err, err, tt.want, tt.code)
			}
			for _, tok := range f.tokens {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("token in error: %v", err)
				}
			}
		})
	}
}

func TestMergeRequests(t *testing.T) {
	f := setup(t, func(p *gitlabsim.ProjectSpec) {
		p.Settings = &gitlabsim.ProjectSettings{ApprovalsRequired: 1, ResetApprovalsOnPush: true}
	})
	bot := f.client(t, "bot")
	if _, err := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "lotse/dev", StartBranch: "main", Message: "promote",
		Actions: []gitlab.FileAction{{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: []byte("image: v2\n")}}}); err != nil {
		t.Fatal(err)
	}
	req := gitlab.CreateMRRequest{SourceBranch: "lotse/dev", TargetBranch: "main", Title: "Promote", Description: "d", Labels: []string{"lotse"}, RemoveSourceBranch: true}
	mr, err := bot.CreateMR(ctx(t), project, req)
	if err != nil || mr.IID != 1 || mr.State != "opened" || mr.Labels[0] != "lotse" || mr.Author.Username != "bot" {
		t.Fatalf("create %+v %v", mr, err)
	}
	_, err = bot.CreateMR(ctx(t), project, req)
	var ae *gitlab.APIError
	if !errors.Is(err, gitlab.ErrAlreadyExists) || !errors.As(err, &ae) || ae.ExistingIID != 1 {
		t.Fatalf("second MR: %v", err)
	}
	found, err := bot.FindOpenMR(ctx(t), project, "lotse/dev")
	if err != nil || found.IID != 1 {
		t.Fatalf("find %+v %v", found, err)
	}
	byCommit, err := bot.MRsForCommit(ctx(t), project, mr.SHA)
	if err != nil || len(byCommit) != 1 || byCommit[0].IID != 1 {
		t.Fatalf("MRs for commit %s: %+v %v", mr.SHA, byCommit, err)
	}
	if _, err := bot.FindOpenMR(ctx(t), project, "other"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("find other: %v", err)
	}
	// checking, then not approved: 405 with the detailed status
	_, err = bot.MergeMR(ctx(t), project, 1, gitlab.MergeOptions{SHA: mr.SHA})
	if !errors.Is(err, gitlab.ErrNotMergeable) || !errors.As(err, &ae) || ae.DetailedMergeStatus != "not_approved" {
		t.Fatalf("merge unapproved: %v", err)
	}
	_, err = bot.MergeMR(ctx(t), project, 1, gitlab.MergeOptions{SHA: strings.Repeat("1", 40)})
	if !errors.Is(err, gitlab.ErrNotMergeable) {
		t.Fatalf("merge unapproved with wrong sha: %v", err)
	}
	desc, labels := "updated", []string{"lotse", "gate::passed"}
	up, err := bot.UpdateMR(ctx(t), project, 1, gitlab.UpdateMRRequest{Description: &desc, Labels: &labels})
	if err != nil || up.Description != "updated" || len(up.Labels) != 2 {
		t.Fatalf("update %+v %v", up, err)
	}
	if err := f.sim.Approve(project, 1, "maintainer"); err != nil {
		t.Fatal(err)
	}
	approvers, err := bot.Approvals(ctx(t), project, 1)
	if err != nil || len(approvers) != 1 || approvers[0].Username != "maintainer" {
		t.Fatalf("approvals %v %v", approvers, err)
	}
	_, err = bot.MergeMR(ctx(t), project, 1, gitlab.MergeOptions{SHA: strings.Repeat("1", 40)})
	if !errors.Is(err, gitlab.ErrConflict) {
		t.Fatalf("wrong sha: %v", err)
	}
	merged, err := bot.MergeMR(ctx(t), project, 1, gitlab.MergeOptions{SHA: mr.SHA, RemoveSourceBranch: true})
	if err != nil || merged.State != "merged" || merged.MergeCommitSHA == "" {
		t.Fatalf("merge %+v %v", merged, err)
	}
	got, err := bot.GetMR(ctx(t), project, 1)
	if err != nil || got.State != "merged" || got.DetailedMergeStatus != "not_open" {
		t.Fatalf("get %+v %v", got, err)
	}
	if _, err := bot.BranchHead(ctx(t), project, "lotse/dev"); !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("source branch not removed: %v", err)
	}
}

func TestAutoMerge(t *testing.T) {
	f := setup(t, func(p *gitlabsim.ProjectSpec) { p.Settings = &gitlabsim.ProjectSettings{ApprovalsRequired: 1} })
	bot := f.client(t, "bot")
	bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "b", StartBranch: "main", Message: "m",
		Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "b", Content: []byte("b")}}})
	mr, err := bot.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "b", TargetBranch: "main", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	set, err := bot.MergeMR(ctx(t), project, mr.IID, gitlab.MergeOptions{AutoMerge: true})
	if err != nil || !set.AutoMerge || set.State != "opened" {
		t.Fatalf("auto-merge %+v %v", set, err)
	}
	f.sim.Approve(project, int(mr.IID), "maintainer")
	if got, _ := bot.GetMR(ctx(t), project, mr.IID); got.State != "merged" {
		t.Fatalf("not merged after approval: %+v", got)
	}
}

func TestNotesAndStatuses(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	cm, _ := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "b", StartBranch: "main", Message: "m",
		Actions: []gitlab.FileAction{{Action: gitlab.ActionCreate, Path: "b", Content: []byte("b")}}})
	mr, err := bot.CreateMR(ctx(t), project, gitlab.CreateMRRequest{SourceBranch: "b", TargetBranch: "main", Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := bot.CreateNote(ctx(t), project, mr.IID, "<!-- lotse:report -->\nreport v1")
	if err != nil || n.Author.Username != "bot" || n.System {
		t.Fatalf("note %+v %v", n, err)
	}
	n2, err := bot.UpdateNote(ctx(t), project, mr.IID, n.ID, "<!-- lotse:report -->\nreport v2")
	if err != nil || n2.Body != "<!-- lotse:report -->\nreport v2" {
		t.Fatalf("update %v", err)
	}
	if _, err := f.client(t, "maintainer").UpdateNote(ctx(t), project, mr.IID, n.ID, "x"); !errors.Is(err, gitlab.ErrUnauthorized) {
		t.Fatalf("foreign update: %v", err)
	}
	f.sim.Approve(project, int(mr.IID), "maintainer")
	notes, err := bot.Notes(ctx(t), project, mr.IID)
	if err != nil || len(notes) != 2 || notes[0].ID != n.ID || !notes[1].System {
		t.Fatalf("notes %+v %v", notes, err)
	}
	st := gitlab.Status{State: gitlab.StatusRunning, Name: "lotse/gate", Ref: "b", TargetURL: "https://lotse.example/1", Description: "scanning"}
	if err := bot.SetCommitStatus(ctx(t), project, cm.SHA, st); err != nil {
		t.Fatal(err)
	}
	if err := bot.SetCommitStatus(ctx(t), project, cm.SHA, st); !errors.Is(err, gitlab.ErrSameStatus) || gitlab.Retryable(err) {
		t.Fatalf("same status: %v", err)
	}
	st.State = gitlab.StatusSuccess
	if err := bot.SetCommitStatus(ctx(t), project, cm.SHA, st); err != nil {
		t.Fatal(err)
	}
	me, err := bot.CurrentUser(ctx(t))
	if err != nil || me.Username != "bot" {
		t.Fatalf("me %v %v", me, err)
	}
}

func TestFileHistory(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	for i := range 7 {
		file, _ := bot.File(ctx(t), project, "envs/dev/values.yaml", "main")
		msg := fmt.Sprintf("promote v%d\n\nLotse-Image: app:v%d", i, i)
		if _, err := bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: msg, Actions: []gitlab.FileAction{
			{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: fmt.Appendf(nil, "image: v%d\n", i), LastCommitID: file.LastCommitID}}}); err != nil {
			t.Fatal(err)
		}
		bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: "noise", Actions: []gitlab.FileAction{
			{Action: gitlab.ActionCreate, Path: fmt.Sprintf("n%d", i), Content: []byte("n")}}})
	}
	hist, err := bot.FileHistory(ctx(t), project, "envs/dev/values.yaml", "main", 3)
	if err != nil || len(hist) != 3 || !strings.HasSuffix(hist[0].Message, "Lotse-Image: app:v6") || !strings.HasPrefix(hist[2].Message, "promote v4") {
		t.Fatalf("history %v %v", hist, err)
	}
	all, err := bot.FileHistory(ctx(t), project, "envs/dev/values.yaml", "main", 0)
	if err != nil || len(all) != 8 {
		t.Fatalf("all history %d %v", len(all), err)
	}
}

// TestConcurrentCommitsToOneFile: 50 writers append a line each; stale
// last_commit_ids come back as ErrConflict and a re-read/re-apply loop lands all.
func TestConcurrentCommitsToOneFile(t *testing.T) {
	f := setup(t)
	bot := f.client(t, "bot")
	start := time.Now()
	var wg sync.WaitGroup
	var conflicts sync.Map
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			for try := 0; ; try++ {
				file, err := bot.File(ctx(t), project, "envs/dev/values.yaml", "main")
				if err != nil {
					errs <- err
					return
				}
				content := append(file.Content, fmt.Sprintf("w%d\n", i)...)
				_, err = bot.Commit(ctx(t), project, gitlab.CommitRequest{Branch: "main", Message: fmt.Sprintf("writer %d", i), Actions: []gitlab.FileAction{
					{Action: gitlab.ActionUpdate, Path: "envs/dev/values.yaml", Content: content, LastCommitID: file.LastCommitID}}})
				if errors.Is(err, gitlab.ErrConflict) {
					conflicts.Store(i, true)
					// back off with jitter, as a real writer should, so 50 writers do not stampede
					time.Sleep(time.Duration(rand.IntN(10<<min(try, 5))) * time.Millisecond)
					continue
				}
				errs <- err
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	file, _ := bot.File(ctx(t), project, "envs/dev/values.yaml", "main")
	lines := strings.Split(strings.TrimSpace(string(file.Content)), "\n")
	if len(lines) != 51 {
		t.Fatalf("%d lines, want 51", len(lines))
	}
	n := 0
	conflicts.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("no writer saw a conflict: the test did not exercise last_commit_id")
	}
	// The time is reported, not asserted: speed is make bench's business.
	t.Logf("50 concurrent writers, %d saw conflicts, %d commit attempts, %v", n, f.sim.CountRequests(gitlabsim.ClassCommits, "POST"), time.Since(start))
}
