package gitlabsim_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/lotse/lotse/test/gitlabsim"
)

func TestAuth(t *testing.T) {
	e := newEnv(t)
	job, err := e.sim.JobToken(e.project, "developer")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		want   int
		body   string
	}{
		{"no token", "GET", "/api/v4/projects/1", nil, 401, `{"message":"401 Unauthorized"}`},
		{"unknown token", "GET", "/api/v4/projects/1", map[string]string{"PRIVATE-TOKEN": "nope"}, 401, `{"message":"401 Unauthorized"}`},
		{"private token", "GET", "/api/v4/projects/1", map[string]string{"PRIVATE-TOKEN": e.users["reporter"].Token}, 200, ""},
		{"bearer", "GET", "/api/v4/projects/team%2Fdeploy", map[string]string{"Authorization": "Bearer " + e.users["reporter"].Token}, 200, ""},
		{"outsider sees no private project", "GET", "/api/v4/projects/1", map[string]string{"PRIVATE-TOKEN": e.users["outsider"].Token}, 404, `{"message":"404 Project Not Found"}`},
		{"job token reads raw file", "GET", "/api/v4/projects/1/repository/files/README.md/raw?ref=main", map[string]string{"JOB-TOKEN": job}, 200, "# deploy\n"},
		{"job token cannot use files JSON", "GET", "/api/v4/projects/1/repository/files/README.md?ref=main", map[string]string{"JOB-TOKEN": job}, 401, ""},
		{"job token cannot commit", "POST", "/api/v4/projects/1/repository/commits", map[string]string{"JOB-TOKEN": job}, 401, ""},
		{"unknown route", "GET", "/api/v4/nothing", map[string]string{"PRIVATE-TOKEN": e.users["reporter"].Token}, 404, `{"error":"404 Not Found"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := new(strings.Builder)
			_, _ = io.Copy(b, resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if tt.body != "" && b.String() != tt.body {
				t.Fatalf("body %q, want %q", b, tt.body)
			}
		})
	}
}

func TestProjectAndUser(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "developer")
	p, _, err := c.Projects.GetProject(e.project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != 1 || p.PathWithNamespace != "team/deploy" || p.DefaultBranch != "main" ||
		p.WebURL != e.srv.URL+"/team/deploy" || p.HTTPURLToRepo != e.srv.URL+"/team/deploy.git" {
		t.Fatalf("project = %+v", p)
	}
	u, _, err := c.Users.CurrentUser()
	if err != nil || u.Username != "developer" || u.ID != int64(e.users["developer"].ID) {
		t.Fatalf("current user = %+v, %v", u, err)
	}
}

func TestFiles(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "reporter")
	f, _, err := c.RepositoryFiles.GetFile(e.project, "envs/dev/values.yaml", &gl.GetFileOptions{Ref: gl.Ptr("main")})
	if err != nil {
		t.Fatal(err)
	}
	content, _ := base64.StdEncoding.DecodeString(f.Content)
	head := branchHead(t, e, "main")
	if string(content) != "image: v1\n" || f.Encoding != "base64" || f.CommitID != head || f.LastCommitID != head ||
		f.FileName != "values.yaml" || f.FilePath != "envs/dev/values.yaml" || f.Size != 10 || len(f.BlobID) != 40 {
		t.Fatalf("file = %+v", f)
	}
	// an unrelated commit moves commit_id but not last_commit_id
	e.commit(t, "maintainer", "main", map[string]string{"README.md": "# changed\n"})
	f2, _, err := c.RepositoryFiles.GetFile(e.project, "envs/dev/values.yaml", &gl.GetFileOptions{Ref: gl.Ptr("main")})
	if err != nil {
		t.Fatal(err)
	}
	if f2.LastCommitID != head || f2.CommitID == head || f2.BlobID != f.BlobID {
		t.Fatalf("after unrelated commit: %+v", f2)
	}
	raw, resp, err := c.RepositoryFiles.GetRawFile(e.project, "envs/dev/values.yaml", nil)
	if err != nil || string(raw) != "image: v1\n" || resp.Header.Get("X-Gitlab-Last-Commit-Id") != head {
		t.Fatalf("raw = %q %v", raw, err)
	}
	_, _, err = c.RepositoryFiles.GetFile(e.project, "missing.yaml", &gl.GetFileOptions{Ref: gl.Ptr("main")})
	mustStatus(t, err, 404)
	code, _, body := e.do(t, "GET", "/api/v4/projects/1/repository/files/missing.yaml?ref=main", e.users["reporter"].Token, nil)
	if code != 404 || string(body) != `{"message":"404 File Not Found"}` {
		t.Fatalf("missing file: %d %s", code, body)
	}
	code, _, body = e.do(t, "GET", "/api/v4/projects/1/repository/files/README.md", e.users["reporter"].Token, nil)
	if code != 400 || string(body) != `{"error":"ref is missing"}` {
		t.Fatalf("no ref: %d %s", code, body)
	}
}

func branchHead(t *testing.T, e *env, b string) string {
	t.Helper()
	br, _, err := e.client(t, "reporter").Branches.GetBranch(e.project, b)
	if err != nil {
		t.Fatal(err)
	}
	return br.Commit.ID
}

func TestCommitActions(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) { p.Unprotected = true })
	c := e.client(t, "developer")
	base := branchHead(t, e, "main")
	commit := func(actions ...*gl.CommitActionOptions) (*gl.Commit, error) {
		cm, _, err := c.Commits.CreateCommit(e.project, &gl.CreateCommitOptions{
			Branch: gl.Ptr("main"), CommitMessage: gl.Ptr("lotse: promote\n\nLotse-Image: app@sha256:1"), Actions: actions,
		})
		return cm, err
	}
	act := func(a gl.FileActionValue, path, content, last string) *gl.CommitActionOptions {
		o := &gl.CommitActionOptions{Action: gl.Ptr(a), FilePath: gl.Ptr(path)}
		if content != "" {
			o.Content = gl.Ptr(content)
		}
		if last != "" {
			o.LastCommitID = gl.Ptr(last)
		}
		return o
	}
	cm, err := commit(act(gl.FileUpdate, "envs/dev/values.yaml", "image: v2\n", base), act(gl.FileCreate, "envs/prod/values.yaml", "image: v2\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.ParentIDs) != 1 || cm.ParentIDs[0] != base || cm.Title != "lotse: promote" || cm.Stats.Additions != 2 || cm.Stats.Deletions != 1 {
		t.Fatalf("commit = %+v stats %+v", cm, cm.Stats)
	}
	tests := []struct {
		name string
		a    *gl.CommitActionOptions
		msg  string
	}{
		{"stale last_commit_id", act(gl.FileUpdate, "envs/dev/values.yaml", "image: v3\n", base), `{"message":"The file has changed since you started editing it: envs/dev/values.yaml"}`},
		{"stale delete", act(gl.FileDelete, "envs/dev/values.yaml", "", base), `{"message":"The file has changed since you started editing it: envs/dev/values.yaml"}`},
		{"create existing", act(gl.FileCreate, "README.md", "x", ""), `{"message":"A file with this name already exists"}`},
		{"update missing", act(gl.FileUpdate, "nope.yaml", "x", ""), `{"message":"A file with this name doesn't exist"}`},
		{"delete missing", act(gl.FileDelete, "nope.yaml", "", ""), `{"message":"A file with this name doesn't exist"}`},
		{"bad action", act("explode", "x", "x", ""), `{"error":"actions[0][action] must be one of: create, update, move, delete, chmod"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := commit(tt.a)
			mustStatus(t, err, 400)
			if errBody(err) != tt.msg {
				t.Fatalf("body %s, want %s", errBody(err), tt.msg)
			}
		})
	}
	// last_commit_id may be any commit read after the file's last change: the new head works
	if _, err := commit(act(gl.FileUpdate, "envs/dev/values.yaml", "image: v3\n", cm.ID)); err != nil {
		t.Fatalf("fresh last_commit_id: %v", err)
	}
	// move and delete
	if _, err := commit(&gl.CommitActionOptions{Action: gl.Ptr(gl.FileMove), FilePath: gl.Ptr("docs/README.md"), PreviousPath: gl.Ptr("README.md")}); err != nil {
		t.Fatal(err)
	}
	raw, _, err := c.RepositoryFiles.GetRawFile(e.project, "docs/README.md", &gl.GetRawFileOptions{Ref: gl.Ptr("main")})
	if err != nil || string(raw) != "# deploy\n" {
		t.Fatalf("moved file %q %v", raw, err)
	}
	// new branch from start_branch; base64 content
	cm2, _, err := c.Commits.CreateCommit(e.project, &gl.CreateCommitOptions{
		Branch: gl.Ptr("feature"), StartBranch: gl.Ptr("main"), CommitMessage: gl.Ptr("bin"),
		Actions: []*gl.CommitActionOptions{{Action: gl.Ptr(gl.FileCreate), FilePath: gl.Ptr("bin.dat"), Content: gl.Ptr(base64.StdEncoding.EncodeToString([]byte{0, 1, 2})), Encoding: gl.Ptr("base64")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, _ = c.RepositoryFiles.GetRawFile(e.project, "bin.dat", &gl.GetRawFileOptions{Ref: gl.Ptr(cm2.ID)})
	if string(raw) != "\x00\x01\x02" {
		t.Fatalf("base64 content %q", raw)
	}
	// start_branch differing from an existing branch without force
	_, _, err = c.Commits.CreateCommit(e.project, &gl.CreateCommitOptions{Branch: gl.Ptr("feature"), StartBranch: gl.Ptr("main"), CommitMessage: gl.Ptr("x"),
		Actions: []*gl.CommitActionOptions{act(gl.FileCreate, "y", "y", "")}})
	mustStatus(t, err, 400)
	if !strings.Contains(errBody(err), "A branch called 'feature' already exists") {
		t.Fatalf("body %s", errBody(err))
	}
	// the git repository on disk is valid and has the commits
	out, err := exec.Command("git", "--git-dir", e.sim.Repo(e.project), "fsck", "--strict").CombinedOutput()
	if err != nil {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
}

func TestProtectedBranches(t *testing.T) {
	tests := []struct {
		name      string
		protected []gitlabsim.ProtectedBranch
		user      string
		want      int
	}{
		{"default: developer cannot push main", nil, "developer", 403},
		{"default: maintainer can", nil, "maintainer", 201},
		{"reporter never", nil, "reporter", 403},
		{"developers allowed", []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}}, "developer", 201},
		{"no one", []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessNoOne, MergeAccessLevel: gitlabsim.AccessMaintainers}}, "maintainer", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(p *gitlabsim.ProjectSpec) { p.Protected = tt.protected })
			code, _, body := e.do(t, "POST", "/api/v4/projects/1/repository/commits", e.users[tt.user].Token, map[string]any{
				"branch": "main", "commit_message": "x", "actions": []map[string]any{{"action": "create", "file_path": "x", "content": "x"}},
			})
			if code != tt.want {
				t.Fatalf("status %d want %d: %s", code, tt.want, body)
			}
			if code == 403 && string(body) != `{"message":"403 Forbidden - You are not allowed to push into this branch"}` {
				t.Fatalf("body %s", body)
			}
		})
	}
}

func TestListCommitsAndPagination(t *testing.T) {
	e := newEnv(t)
	var shas []string
	for i := range 5 {
		shas = append(shas, e.commit(t, "maintainer", "main", map[string]string{"envs/dev/values.yaml": "image: v" + string(rune('a'+i)) + "\n"}))
		e.commit(t, "maintainer", "main", map[string]string{"other.txt": string(rune('a' + i))})
	}
	c := e.client(t, "reporter")
	cs, resp, err := c.Commits.ListCommits(e.project, &gl.ListCommitsOptions{RefName: gl.Ptr("main"), Path: gl.Ptr("envs/dev/values.yaml"), ListOptions: gl.ListOptions{PerPage: 2, Page: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].ID != shas[4] || cs[1].ID != shas[3] {
		t.Fatalf("page 1 = %v", ids(cs))
	}
	if resp.NextPage != 2 || resp.Header.Get("X-Total") != "" || resp.Header.Get("X-Total-Pages") != "" || resp.Header.Get("X-Per-Page") != "2" {
		t.Fatalf("headers %v", resp.Header)
	}
	cs, resp, _ = c.Commits.ListCommits(e.project, &gl.ListCommitsOptions{RefName: gl.Ptr("main"), Path: gl.Ptr("envs/dev/values.yaml"), ListOptions: gl.ListOptions{PerPage: 2, Page: 3}})
	// 6 commits touch the file (initial + 5)
	if len(cs) != 2 || resp.NextPage != 0 || cs[1].ParentIDs != nil && len(cs[1].ParentIDs) != 0 {
		t.Fatalf("page 3 = %v next %d", ids(cs), resp.NextPage)
	}
	one, _, err := c.Commits.GetCommit(e.project, shas[2], nil)
	if err != nil || one.ID != shas[2] || one.Message != "update main" || len(one.ParentIDs) != 1 || one.CommittedDate == nil || one.AuthorName != "Maintainer" {
		t.Fatalf("commit %+v %v", one, err)
	}
	_, _, err = c.Commits.GetCommit(e.project, strings.Repeat("a", 40), nil)
	mustStatus(t, err, 404)
}

func ids(cs []*gl.Commit) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID[:8])
	}
	return out
}

func TestBranches(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, "developer")
	b, _, err := c.Branches.CreateBranch(e.project, &gl.CreateBranchOptions{Branch: gl.Ptr("lotse/promote-dev"), Ref: gl.Ptr("main")})
	if err != nil || b.Name != "lotse/promote-dev" || b.Commit.ID != branchHead(t, e, "main") {
		t.Fatalf("create %+v %v", b, err)
	}
	_, _, err = c.Branches.CreateBranch(e.project, &gl.CreateBranchOptions{Branch: gl.Ptr("lotse/promote-dev"), Ref: gl.Ptr("main")})
	mustStatus(t, err, 400)
	main, _, err := c.Branches.GetBranch(e.project, "main")
	if err != nil || !main.Protected || !main.Default || main.CanPush || main.DevelopersCanPush {
		t.Fatalf("main %+v %v", main, err)
	}
	if _, err := c.Branches.DeleteBranch(e.project, "lotse/promote-dev"); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Branches.GetBranch(e.project, "lotse/promote-dev")
	mustStatus(t, err, 404)
}

func TestConcurrentCommitsDistinctFiles(t *testing.T) {
	e := newEnv(t, func(p *gitlabsim.ProjectSpec) { p.Unprotected = true })
	c := e.client(t, "developer")
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.Commits.CreateCommit(e.project, &gl.CreateCommitOptions{Branch: gl.Ptr("main"), CommitMessage: gl.Ptr("c"),
				Actions: []*gl.CommitActionOptions{{Action: gl.Ptr(gl.FileCreate), FilePath: gl.Ptr("f/" + strings.Repeat("x", i+1)), Content: gl.Ptr("x")}}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("50 concurrent commits took %v", time.Since(start)) // reported, not asserted: see make bench
	cs, _, _ := c.Commits.ListCommits(e.project, &gl.ListCommitsOptions{ListOptions: gl.ListOptions{PerPage: 100}})
	if len(cs) != 51 {
		t.Fatalf("%d commits on main, want 51", len(cs))
	}
}
