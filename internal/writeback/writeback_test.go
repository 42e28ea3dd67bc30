package writeback_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/writeback"
	"github.com/lotse/lotse/test/gitlabsim"
)

const (
	project = "platform/gitops"
	image   = "registry.example.com/team/shop"
)

const config = `version: 1
gitlab:
  project: platform/gitops
apps:
  - name: shop
    sourceProject: team/shop
    image: registry.example.com/team/shop
    values: apps/{app}/{stage}/values.yaml
    set:
      image.repository: repository
      image.digest: digest
  - name: broken
    sourceProject: team/broken
    image: registry.example.com/team/broken
    values: apps/{app}/{stage}/values.yaml
    set:
      image.digest: digest
    stages: [dev]
stages:
  - name: dev
    promotion: commit
  - name: staging
    promotion: merge-request
    labels: [promotion]
  - name: production
    promotion: approval
    approvals: 1
    labels: [promotion, production]
`

func values(stage string) string {
	return "# shop in " + stage + "\nimage:\n  repository: registry.example.com/team/shop # the app\n  digest: \"" + digest(0) + "\"\n  pullPolicy: IfNotPresent\nreplicas: 2\n"
}

// digest returns a distinct valid digest for n.
func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func ref(n int) gitops.ImageRef { return gitops.ImageRef{Repository: image, Digest: digest(n)} }

type fixture struct {
	sim    *gitlabsim.Sim
	url    string
	tokens map[string]string
}

func setup(t *testing.T, files map[string]string, opts ...func(*gitlabsim.ProjectSpec)) *fixture {
	t.Helper()
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	f := &fixture{sim: sim, url: srv.URL, tokens: map[string]string{}}
	for _, u := range []string{"bot", "approver"} {
		user, err := sim.CreateUser(gitlabsim.UserSpec{Username: u})
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[u] = user.Token
	}
	if files == nil {
		files = map[string]string{"lotse.yaml": config, "apps/broken/dev/values.yaml": "image: [\n"}
		for _, s := range []string{"dev", "staging", "production"} {
			files["apps/shop/"+s+"/values.yaml"] = values(s)
		}
	}
	spec := gitlabsim.ProjectSpec{Path: project, Files: files,
		Members:   []gitlabsim.Member{{Username: "bot", Role: gitlabsim.RoleDeveloper}, {Username: "approver", Role: gitlabsim.RoleMaintainer}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}},
	}
	for _, o := range opts {
		o(&spec)
	}
	if _, err := sim.CreateProject(spec); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) client(t *testing.T) *gitlab.Client {
	t.Helper()
	c, err := gitlab.New(f.url, f.tokens["bot"], gitlab.WithRetry(5, time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) writer(t *testing.T, gl writeback.GitLab) *writeback.Writer {
	t.Helper()
	if gl == nil {
		gl = f.client(t)
	}
	w, err := writeback.Open(ctx(t), gl, project, writeback.Options{Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// read returns a file at a ref, as GitLab has it.
func (f *fixture) read(t *testing.T, path, ref string) string {
	t.Helper()
	file, err := f.client(t).File(ctx(t), project, path, ref)
	if err != nil {
		t.Fatalf("read %s@%s: %v", path, ref, err)
	}
	return string(file.Content)
}

func (f *fixture) head(t *testing.T, branch string) string {
	t.Helper()
	sha, err := f.client(t).BranchHead(ctx(t), project, branch)
	if err != nil {
		t.Fatalf("branch %s: %v", branch, err)
	}
	return sha
}

// branches lists the branches of the GitOps repository.
func (f *fixture) branches(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", f.sim.Repo(project), "for-each-ref", "--format=%(refname:short)", "refs/heads").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

func TestBumpCommit(t *testing.T) {
	f := setup(t, nil)
	w := f.writer(t, nil)
	before := f.head(t, "main")
	res, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(1),
		SourceCommit: "0123456789abcdef0123456789abcdef01234567", Pipeline: "https://gitlab.example.com/team/shop/-/pipelines/7"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Branch != "main" || res.MR != nil || res.Commit != f.head(t, "main") || res.Commit == before {
		t.Fatalf("result %+v", res)
	}
	got := f.read(t, "apps/shop/dev/values.yaml", "main")
	if want := strings.Replace(values("dev"), digest(0), digest(1), 1); got != want {
		t.Fatalf("values file:\n%s\nwant:\n%s", got, want)
	}
	cm, err := f.client(t).GetCommit(ctx(t), project, res.Commit)
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := gitops.ParseTrailers(cm.Message)
	want := gitops.Trailers{App: "shop", Stage: "dev", Image: ref(1).String(), SourceProject: "team/shop",
		SourceCommit: "0123456789abcdef0123456789abcdef01234567", Pipeline: "https://gitlab.example.com/team/shop/-/pipelines/7"}
	if !ok || tr != want {
		t.Fatalf("trailers %+v, want %+v in\n%s", tr, want, cm.Message)
	}
	if !strings.HasPrefix(cm.Message, "Promote shop to dev: sha256:000000000000…\n") {
		t.Errorf("subject: %q", cm.Message)
	}

	// The same bump again changes nothing and commits nothing.
	res, err = w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(1)})
	if err != nil || res.Changed || res.Commit != "" {
		t.Fatalf("second bump: %+v %v", res, err)
	}
	if h := f.head(t, "main"); h != cm.SHA {
		t.Fatalf("no-op bump moved main to %s", h)
	}
}

func TestBumpMergeRequest(t *testing.T) {
	f := setup(t, nil)
	w := f.writer(t, nil)
	res, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "staging", Image: ref(1)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Branch != "lotse/shop/staging" || res.MR == nil || !res.MRCreated {
		t.Fatalf("result %+v", res)
	}
	mr, err := f.sim.MergeRequest(project, int(res.MR.IID))
	if err != nil {
		t.Fatal(err)
	}
	// merge-request stages auto-merge: once GitLab's check is done, the MR
	// is merged, and the source branch removed.
	if mr.State != "merged" || !strings.HasPrefix(mr.Notes[0], "enabled an automatic merge") || res.MR.State != "merged" {
		t.Fatalf("MR not auto-merged: %+v", mr)
	}
	if b := f.branches(t); !slices.Equal(b, []string{"main"}) {
		t.Fatalf("branches %v", b)
	}
	if !slices.Equal(mr.Labels, []string{"promotion"}) || !strings.HasPrefix(mr.Title, "Promote shop to staging: sha256:") ||
		!strings.Contains(mr.Description, ref(1).String()) {
		t.Fatalf("MR %+v", mr)
	}
	if got := f.read(t, "apps/shop/staging/values.yaml", "main"); !strings.Contains(got, digest(1)) {
		t.Fatalf("merged, but main has\n%s", got)
	}
}

// With CallerMerges (lotsed) the MR of a merge-request stage stays open for
// the caller to merge once it recorded it.
func TestBumpCallerMerges(t *testing.T) {
	f := setup(t, nil)
	w, err := writeback.Open(ctx(t), f.client(t), project, writeback.Options{Backoff: time.Millisecond, CallerMerges: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "staging", Image: ref(1)})
	if err != nil || res.MR == nil {
		t.Fatalf("Bump = %+v, %v", res, err)
	}
	mr, err := f.sim.MergeRequest(project, int(res.MR.IID))
	if err != nil {
		t.Fatal(err)
	}
	if mr.State != "opened" || mr.AutoMerge {
		t.Fatalf("MR %+v: want it open, without auto-merge", mr)
	}
}

func TestBumpApprovalReusesMR(t *testing.T) {
	f := setup(t, nil)
	w := f.writer(t, nil)
	first, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(1)})
	if err != nil {
		t.Fatal(err)
	}
	if !first.MRCreated || first.MR.AutoMerge || first.MR.State != "opened" {
		t.Fatalf("first %+v", first)
	}
	second, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(2)})
	if err != nil {
		t.Fatal(err)
	}
	if second.MRCreated || second.MR.IID != first.MR.IID || !second.Changed || second.Retries != 0 {
		t.Fatalf("second %+v", second)
	}
	mr, _ := f.sim.MergeRequest(project, int(first.MR.IID))
	if mr.State != "opened" || mr.AutoMerge || !strings.Contains(mr.Title, digest(2)[:19]) || !slices.Equal(slices.Sorted(slices.Values(mr.Labels)), []string{"production", "promotion"}) {
		t.Fatalf("MR %+v", mr)
	}
	if got := f.read(t, "apps/shop/production/values.yaml", "lotse/shop/production"); !strings.Contains(got, digest(2)) {
		t.Fatalf("branch file\n%s", got)
	}
	if got := f.read(t, "apps/shop/production/values.yaml", "main"); got != values("production") {
		t.Fatalf("main changed before approval:\n%s", got)
	}
	// The same image again: nothing committed, the MR stays the one.
	third, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(2)})
	if err != nil || third.Changed || third.MR == nil || third.MR.IID != first.MR.IID {
		t.Fatalf("third %+v %v", third, err)
	}
	if n := f.openMRs(t); n != 1 {
		t.Fatalf("%d open MRs", n)
	}
	// After the approver merges, a new bump opens a fresh MR from main.
	if err := f.sim.Approve(project, int(first.MR.IID), "approver"); err != nil {
		t.Fatal(err)
	}
	if err := f.sim.Merge(project, int(first.MR.IID), "approver", gitlabsim.MergeSpec{}); err != nil {
		t.Fatal(err)
	}
	fourth, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(3)})
	if err != nil || !fourth.MRCreated || fourth.MR.IID == first.MR.IID {
		t.Fatalf("fourth %+v %v", fourth, err)
	}
	if got := f.read(t, "apps/shop/production/values.yaml", "lotse/shop/production"); got != strings.Replace(values("production"), digest(0), digest(3), 1) {
		t.Fatalf("restarted branch has\n%s", got)
	}
}

func (f *fixture) openMRs(t *testing.T) int {
	n := 0
	for iid := 1; ; iid++ {
		mr, err := f.sim.MergeRequest(project, iid)
		if err != nil {
			return n
		}
		if mr.State == "opened" {
			n++
		}
	}
}

// raceMR hides the open MR from the first lookup, as when another job opens
// it between lotse's lookup and its create.
type raceMR struct {
	writeback.GitLab
	mu     sync.Mutex
	hidden int
}

func (r *raceMR) FindOpenMR(ctx context.Context, project, branch string) (gitlab.MR, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hidden > 0 {
		r.hidden--
		return gitlab.MR{}, fmt.Errorf("find: %w", gitlab.ErrNotFound)
	}
	return r.GitLab.FindOpenMR(ctx, project, branch)
}

func TestMRAlreadyExistsIsReused(t *testing.T) {
	f := setup(t, nil)
	first, err := f.writer(t, nil).Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(1)})
	if err != nil {
		t.Fatal(err)
	}
	gl := &raceMR{GitLab: f.client(t), hidden: 2}
	res, err := f.writer(t, gl).Bump(ctx(t), writeback.Bump{App: "shop", Stage: "production", Image: ref(2)})
	if err != nil {
		t.Fatal(err)
	}
	if res.MRCreated || res.MR.IID != first.MR.IID || f.openMRs(t) != 1 {
		t.Fatalf("result %+v, %d open MRs", res, f.openMRs(t))
	}
}

// interloper commits to the values file right before lotse's first commit.
type interloper struct {
	writeback.GitLab
	once sync.Once
	do   func()
}

func (i *interloper) Commit(ctx context.Context, project string, req gitlab.CommitRequest) (gitlab.Commit, error) {
	i.once.Do(i.do)
	return i.GitLab.Commit(ctx, project, req)
}

func TestConflictIsReappliedNotLost(t *testing.T) {
	f := setup(t, nil)
	gl := &interloper{GitLab: f.client(t), do: func() {
		_, err := f.sim.Commit(project, "approver", gitlabsim.CommitSpec{Branch: "main", Message: "scale",
			Files: map[string]string{"apps/shop/dev/values.yaml": strings.Replace(values("dev"), "replicas: 2", "replicas: 5", 1)}})
		if err != nil {
			t.Error(err)
		}
	}}
	res, err := f.writer(t, gl).Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(4)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Retries != 1 || !res.Changed {
		t.Fatalf("result %+v", res)
	}
	got := f.read(t, "apps/shop/dev/values.yaml", "main")
	if !strings.Contains(got, "replicas: 5") || !strings.Contains(got, digest(4)) {
		t.Fatalf("lost an edit:\n%s", got)
	}
}

func TestBadInputCommitsNothing(t *testing.T) {
	f := setup(t, nil)
	w := f.writer(t, nil)
	head := f.head(t, "main")
	other := gitops.ImageRef{Repository: "registry.example.com/team/other", Digest: digest(1)}
	for _, tc := range []struct {
		name   string
		bump   writeback.Bump
		want   string
		isName bool
	}{
		{"unknown app", writeback.Bump{App: "nope", Stage: "dev", Image: ref(1)}, `app "nope" is not defined (apps: shop, broken)`, true},
		{"unknown stage", writeback.Bump{App: "shop", Stage: "qa", Image: ref(1)}, `stage "qa" is not defined`, true},
		{"stage not of app", writeback.Bump{App: "broken", Stage: "staging", Image: ref(1)}, `app "broken" does not go through stage "staging"`, true},
		{"other repository", writeback.Bump{App: "shop", Stage: "staging", Image: other}, "is not from the app's repository", false},
		{"malformed values file", writeback.Bump{App: "broken", Stage: "dev", Image: gitops.ImageRef{Repository: "registry.example.com/team/broken", Digest: digest(1)}},
			"edit apps/broken/dev/values.yaml", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Bump(ctx(t), tc.bump)
			var ne *writeback.NameError
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ne) != tc.isName {
				t.Fatalf("err = %v, want %q (name error %v)", err, tc.want, tc.isName)
			}
		})
	}
	if h := f.head(t, "main"); h != head {
		t.Fatalf("main moved")
	}
	if b := f.branches(t); !slices.Equal(b, []string{"main"}) {
		t.Fatalf("branches %v", b)
	}
}

func TestMalformedConfig(t *testing.T) {
	f := setup(t, map[string]string{"lotse.yaml": "version: 1\ngitlab: {project: platform/gitops}\napps: []\nstages:\n  - name: dev\n    promotion: yolo\n"})
	_, err := writeback.Open(ctx(t), f.client(t), project, writeback.Options{})
	var ve *gitops.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "platform/gitops:lotse.yaml:6:16: stage \"dev\": unknown promotion \"yolo\"") {
		t.Fatalf("err = %v", err)
	}
	_, err = writeback.Open(ctx(t), f.client(t), "platform/none", writeback.Options{})
	if !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("missing project: %v", err)
	}
}

// A lotse.yaml that names another GitOps project is refused: it was copied
// from another repository, or lotse was pointed at the wrong project.
func TestConfigOfAnotherProject(t *testing.T) {
	f := setup(t, map[string]string{"lotse.yaml": "version: 1\ngitlab: {project: other/gitops}\napps: [{name: shop, sourceProject: team/shop, image: r.example.com/shop, values: v.yaml, set: {image: reference}}]\nstages: [{name: dev, promotion: commit}]\n"})
	_, err := writeback.Open(ctx(t), f.client(t), project, writeback.Options{})
	if err == nil || !strings.Contains(err.Error(), `says gitlab.project "other/gitops": it belongs to another GitOps project`) {
		t.Fatalf("err = %v", err)
	}
	f = setup(t, map[string]string{"lotse.yaml": "version: 1\ngitlab: {project: Platform/GitOps}\napps: [{name: shop, sourceProject: team/shop, image: r.example.com/shop, values: v.yaml, set: {image: reference}}]\nstages: [{name: dev, promotion: commit}]\n"})
	if _, err := writeback.Open(ctx(t), f.client(t), project, writeback.Options{}); err != nil {
		t.Fatalf("the same project in other case: %v", err)
	}
}

func TestPromoteStatusRollback(t *testing.T) {
	f := setup(t, nil)
	w := f.writer(t, nil)
	for n := 1; n <= 3; n++ {
		if _, err := w.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(n), SourceCommit: fmt.Sprintf("%040d", n)}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := w.Status(ctx(t), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].Image != ref(3) || !st[0].Deployed || st[0].SourceCommit != fmt.Sprintf("%040d", 3) ||
		st[0].SourceProject != "team/shop" || st[0].Since.IsZero() || st[0].Commit != f.head(t, "main") {
		t.Fatalf("status %+v", st)
	}
	if st[1].Image != ref(0) || st[1].SourceCommit != "" || st[1].Since.IsZero() {
		t.Fatalf("staging status %+v", st[1])
	}

	// Promote dev's image to staging, with dev's source.
	res, err := w.Promote(ctx(t), "shop", "staging", "https://ci/p/9")
	if err != nil {
		t.Fatal(err)
	}
	if res.Image != ref(3) || res.MR == nil {
		t.Fatalf("promote %+v", res)
	}
	cm, _ := f.client(t).GetCommit(ctx(t), project, res.Commit)
	if tr, _ := gitops.ParseTrailers(cm.Message); tr.SourceCommit != fmt.Sprintf("%040d", 3) || tr.Pipeline != "https://ci/p/9" || tr.Stage != "staging" || tr.IsRollback() {
		t.Fatalf("promotion trailers %+v", tr)
	}
	if _, err := w.Promote(ctx(t), "shop", "dev", ""); err == nil || !strings.Contains(err.Error(), "first stage") {
		t.Fatalf("promote to the first stage: %v", err)
	}

	// Roll dev back one step: an MR labelled rollback with image 2.
	rb, err := w.Rollback(ctx(t), writeback.Rollback{App: "shop", Stage: "dev", Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Image != ref(2) || rb.MR == nil || !slices.Contains(rb.MR.Labels, writeback.RollbackLabel) || !strings.HasPrefix(rb.MR.Title, "Roll back shop in dev to ") {
		t.Fatalf("rollback %+v", rb)
	}
	cm, _ = f.client(t).GetCommit(ctx(t), project, rb.Commit)
	if tr, _ := gitops.ParseTrailers(cm.Message); tr.SourceCommit != fmt.Sprintf("%040d", 2) || tr.Image != ref(2).String() || tr.Rollback != ref(3).String() {
		t.Fatalf("rollback trailers %+v", tr)
	}
	// To a digest in the history; the rollback MR is reused.
	rb2, err := w.Rollback(ctx(t), writeback.Rollback{App: "shop", Stage: "dev", To: digest(0)})
	if err != nil && !strings.Contains(err.Error(), "auto-merge") {
		t.Fatal(err)
	}
	if rb2.Image != ref(0) {
		t.Fatalf("rollback --to %+v", rb2)
	}
	for _, tc := range []struct {
		r    writeback.Rollback
		want string
	}{
		{writeback.Rollback{App: "shop", Stage: "dev", To: digest(99)}, "never ran " + digest(99)},
		{writeback.Rollback{App: "shop", Stage: "dev", To: "sha256:xyz"}, "bad digest"},
		{writeback.Rollback{App: "shop", Stage: "dev", Steps: 9}, "only 3 earlier image(s)"},
		{writeback.Rollback{App: "shop", Stage: "qa", Steps: 1}, `stage "qa" is not defined`},
	} {
		if _, err := w.Rollback(ctx(t), tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.r, err, tc.want)
		}
	}
}

func TestLocal(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	git("init", "-q", "-b", "main")
	for p, c := range map[string]string{"lotse.yaml": config, "apps/shop/dev/values.yaml": values("dev"), "other.txt": "x\n"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("add", ".")
	git("commit", "-q", "-m", "init")
	t.Setenv("GIT_AUTHOR_NAME", "lotse")
	t.Setenv("GIT_AUTHOR_EMAIL", "lotse@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "lotse")
	t.Setenv("GIT_COMMITTER_EMAIL", "lotse@example.com")

	// Without commit: the file changes, git does not.
	res, err := writeback.Local{Dir: dir}.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(5)})
	if err != nil || !res.Changed || res.Commit != "" {
		t.Fatalf("%+v %v", res, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "apps/shop/dev/values.yaml"))
	if string(b) != strings.Replace(values("dev"), digest(0), digest(5), 1) {
		t.Fatalf("file:\n%s", b)
	}
	// With commit: the earlier edit is committed, and only that file.
	os.WriteFile(filepath.Join(dir, "other.txt"), []byte("y\n"), 0o644)
	git("add", "other.txt")
	res, err = writeback.Local{Dir: dir, Commit: true}.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(5), SourceCommit: "abc"})
	if err != nil || res.Commit == "" || res.Branch != "main" {
		t.Fatalf("%+v %v", res, err)
	}
	msg := git("log", "-1", "--format=%B")
	if tr, ok := gitops.ParseTrailers(msg); !ok || tr.Image != ref(5).String() || tr.SourceCommit != "abc" {
		t.Fatalf("commit message:\n%s", msg)
	}
	if files := git("show", "--name-only", "--format=", "HEAD"); strings.TrimSpace(files) != "apps/shop/dev/values.yaml" {
		t.Fatalf("committed %q", files)
	}
	// Again: nothing to do.
	res, err = writeback.Local{Dir: dir, Commit: true}.Bump(ctx(t), writeback.Bump{App: "shop", Stage: "dev", Image: ref(5)})
	if err != nil || res.Changed || res.Commit != "" {
		t.Fatalf("%+v %v", res, err)
	}
	// Bad input touches nothing.
	if _, err := (writeback.Local{Dir: dir}).Bump(ctx(t), writeback.Bump{App: "shop", Stage: "qa", Image: ref(6)}); err == nil {
		t.Fatal("unknown stage accepted")
	}
	if st := git("status", "--porcelain"); st != "M  other.txt\n" {
		t.Fatalf("status %q", st)
	}
}
