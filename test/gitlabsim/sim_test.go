package gitlabsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"

	"github.com/lotse/lotse/test/gitlabsim"
)

// env is a simulator with a project "team/deploy" and users of every role.
type env struct {
	sim     *gitlabsim.Sim
	srv     *httptest.Server
	project string
	users   map[string]gitlabsim.User // maintainer, developer, reporter, outsider
}

func newEnv(t *testing.T, opts ...func(*gitlabsim.ProjectSpec)) *env {
	t.Helper()
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir(), AdminToken: "admin"})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	e := &env{sim: sim, srv: srv, project: "team/deploy", users: map[string]gitlabsim.User{}}
	for _, name := range []string{"maintainer", "developer", "reporter", "outsider"} {
		u, err := sim.CreateUser(gitlabsim.UserSpec{Username: name, Name: strings.ToUpper(name[:1]) + name[1:]})
		if err != nil {
			t.Fatal(err)
		}
		e.users[name] = u
	}
	spec := gitlabsim.ProjectSpec{
		Path: e.project,
		Members: []gitlabsim.Member{
			{Username: "maintainer", Role: gitlabsim.RoleMaintainer},
			{Username: "developer", Role: gitlabsim.RoleDeveloper},
			{Username: "reporter", Role: gitlabsim.RoleReporter},
		},
		Files: map[string]string{"envs/dev/values.yaml": "image: v1\n", "README.md": "# deploy\n"},
	}
	for _, o := range opts {
		o(&spec)
	}
	if _, err := sim.CreateProject(spec); err != nil {
		t.Fatal(err)
	}
	return e
}

// client returns a client-go client for a user, without retries.
func (e *env) client(t *testing.T, user string) *gl.Client {
	t.Helper()
	c, err := gl.NewClient(e.users[user].Token, gl.WithBaseURL(e.srv.URL+"/api/v4"), gl.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends a raw API request and returns status, headers and body.
func (e *env) do(t *testing.T, method, path, token string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("PRIVATE-TOKEN", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (e *env) commit(t *testing.T, user, branch string, files map[string]string) string {
	t.Helper()
	sha, err := e.sim.Commit(e.project, user, gitlabsim.CommitSpec{Branch: branch, Message: "update " + branch, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

func (e *env) branch(t *testing.T, name string) {
	t.Helper()
	if _, _, err := e.client(t, "developer").Branches.CreateBranch(e.project, &gl.CreateBranchOptions{Branch: gl.Ptr(name), Ref: gl.Ptr("main")}); err != nil {
		t.Fatal(err)
	}
}

func pid(p string) string { return url.PathEscape(p) }

// hookSink records webhook requests.
type hookSink struct {
	mu   sync.Mutex
	reqs []*recorded
	srv  *httptest.Server
	code int
}

type recorded struct {
	header http.Header
	body   []byte
}

func newSink(t *testing.T) *hookSink {
	s := &hookSink{code: http.StatusOK}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, &recorded{header: r.Header.Clone(), body: b})
		code := s.code
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *hookSink) all() []*recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*recorded(nil), s.reqs...)
}

func (s *hookSink) byEvent(ev string) []map[string]any {
	var out []map[string]any
	for _, r := range s.all() {
		if r.header.Get("X-Gitlab-Event") == ev {
			var m map[string]any
			_ = json.Unmarshal(r.body, &m)
			out = append(out, m)
		}
	}
	return out
}

func wait(t *testing.T, sim *gitlabsim.Sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustStatus(t *testing.T, err error, code int) {
	t.Helper()
	if code == http.StatusNotFound {
		if err != gl.ErrNotFound {
			t.Fatalf("want 404, got %v", err)
		}
		return
	}
	if !gl.HasStatusCode(err, code) {
		t.Fatalf("want %d, got %v", code, err)
	}
}

func errBody(err error) string {
	if er, ok := err.(*gl.ErrorResponse); ok {
		return string(er.Body)
	}
	return ""
}
