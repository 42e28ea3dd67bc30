package gitlabsim_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lotse/lotse/test/gitlabsim"
)

func TestFaults(t *testing.T) {
	e := newEnv(t)
	tok := e.users["maintainer"].Token
	commitBody := func(path string) map[string]any {
		return map[string]any{"branch": "main", "commit_message": "x", "actions": []map[string]any{{"action": "create", "file_path": path, "content": "x"}}}
	}

	t.Run("429 like Rack::Attack", func(t *testing.T) {
		e.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassFiles, Status: 429, RetryAfter: 3, Times: 1})
		code, h, body := e.do(t, "GET", "/api/v4/projects/1/repository/files/README.md?ref=main", tok, nil)
		if code != 429 || string(body) != "Retry later\n" || h.Get("Retry-After") != "3" || h.Get("RateLimit-Reset") == "" ||
			h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-ResetTime") == "" {
			t.Fatalf("%d %v %q", code, h, body)
		}
		if code, _, _ := e.do(t, "GET", "/api/v4/projects/1/repository/files/README.md?ref=main", tok, nil); code != 200 {
			t.Fatalf("Times not honoured: %d", code)
		}
	})
	t.Run("every third request", func(t *testing.T) {
		e.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassProjects, Method: "GET", Status: 503, Every: 3})
		var codes []int
		for range 6 {
			code, _, _ := e.do(t, "GET", "/api/v4/projects/1", tok, nil)
			codes = append(codes, code)
		}
		if codes[2] != 503 || codes[5] != 503 || codes[0] != 200 || codes[4] != 200 {
			t.Fatalf("codes %v", codes)
		}
	})
	t.Run("other classes unaffected", func(t *testing.T) {
		e.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassNotes, Status: 500})
		if code, _, _ := e.do(t, "GET", "/api/v4/projects/1", tok, nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	})
	t.Run("fault after write", func(t *testing.T) {
		e.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassCommits, Method: "POST", Status: 502, After: true, Times: 1})
		code, _, _ := e.do(t, "POST", "/api/v4/projects/1/repository/commits", tok, commitBody("after.txt"))
		if code != 502 {
			t.Fatalf("status %d", code)
		}
		// the commit happened: creating the same file again fails
		code, _, body := e.do(t, "POST", "/api/v4/projects/1/repository/commits", tok, commitBody("after.txt"))
		if code != 400 || !strings.Contains(string(body), "already exists") {
			t.Fatalf("%d %s", code, body)
		}
		recs := e.sim.Requests()
		var faulted int
		for _, r := range recs {
			if r.Fault && r.Class == gitlabsim.ClassCommits {
				faulted++
				if r.WriteStatus != 201 || r.Status != 502 {
					t.Fatalf("record %+v", r)
				}
			}
		}
		if faulted != 1 || e.sim.CountRequests(gitlabsim.ClassCommits, "POST") != 2 {
			t.Fatalf("records %+v", recs)
		}
	})
	e.sim.Faults()
}

func TestAdminAPI(t *testing.T) {
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir(), AdminToken: "adm"})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	call := func(method, path, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(bytes.Buffer)
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	steps := []struct {
		method, path, tok, body string
		want                    int
		contains                string
	}{
		{"POST", "/-/sim/users", "", `{"username":"bot"}`, 401, ""},
		{"POST", "/-/sim/users", "adm", `{"username":"bot","token":"glpat-bot"}`, 201, `"token":"glpat-bot"`},
		{"POST", "/-/sim/users", "adm", `{"username":"bot"}`, 409, ""},
		{"POST", "/-/sim/projects", "adm", `{"path":"g/p","members":[{"username":"bot","role":40}],"files":{"a.yaml":"a: 1\n"}}`, 201, `"path_with_namespace":"g/p"`},
		{"POST", "/-/sim/projects/g%2Fp/commits", "adm", `{"username":"bot","branch":"main","commit_message":"seed","files":{"a.yaml":"a: 2\n"}}`, 201, `"id":`},
		{"GET", "/api/v4/projects/g%2Fp/repository/files/a.yaml/raw", "glpat-bot", "", 200, "a: 2\n"},
		{"PUT", "/-/sim/faults", "adm", `{"rest":[{"class":"files","status":500}],"webhooks":{"delay":"10ms"}}`, 204, ""},
		{"GET", "/api/v4/projects/g%2Fp/repository/files/a.yaml/raw", "glpat-bot", "", 500, ""},
		{"DELETE", "/-/sim/faults", "adm", "", 204, ""},
		{"PUT", "/-/sim/projects/1", "adm", `{"checking":{"reads":0,"duration":"0s"},"settings":{"approvals_required":1}}`, 204, ""},
		{"POST", "/-/sim/projects/1/pipelines", "adm", `{"ref":"main","status":"running"}`, 201, `"id":1`},
		{"PUT", "/-/sim/projects/1/pipelines/1", "adm", `{"status":"success"}`, 204, ""},
		{"GET", "/-/sim/projects/1/repo", "adm", "", 200, `"path":`},
		{"GET", "/-/sim/requests", "adm", "", 200, `"class":"files"`},
		{"GET", "/-/sim/events?wait=true&timeout=2s", "adm", "", 200, "[]"},
		{"PUT", "/-/sim/users/1", "adm", `{"username":"robot"}`, 204, ""},
		{"GET", "/api/v4/users?username=robot", "glpat-bot", "", 200, `"id":1,"username":"robot"`},
		{"PUT", "/-/sim/users/99", "adm", `{"username":"x"}`, 404, ""},
		{"POST", "/-/sim/users", "adm", `{"username":"mallory","token":"glpat-m"}`, 201, ""},
		{"POST", "/-/sim/projects/1/members", "adm", `{"username":"mallory","role":20}`, 204, ""},
		{"POST", "/-/sim/projects/1/fork", "adm", `{"username":"mallory","path":"mallory/p"}`, 201, `"path_with_namespace":"mallory/p"`},
		{"POST", "/-/sim/projects/mallory%2Fp/commits", "adm", `{"username":"mallory","branch":"lotse/x","start_branch":"main","commit_message":"m","files":{"a.yaml":"a: 3\n"}}`, 201, ""},
		{"POST", "/-/sim/projects/mallory%2Fp/merge_requests", "adm", `{"username":"mallory","source_branch":"lotse/x","target_branch":"main","title":"t","target_project":"g/p"}`, 201, `"iid":1`},
		{"GET", "/-/sim/projects/1/merge_requests/1", "adm", "", 200, `"SourceProjectID":2`},
		{"POST", "/-/sim/projects/1/deployments", "adm", `{"username":"robot","environment":"production","sha":"main","ref":"main","status":"success"}`, 201, `"id":1`},
		{"GET", "/api/v4/projects/1/environments", "glpat-bot", "", 200, `"name":"production"`},
		{"GET", "/-/sim/health", "", "", 200, `"ok":true`},
	}
	for _, s := range steps {
		code, body := call(s.method, s.path, s.tok, s.body)
		if code != s.want || !strings.Contains(body, s.contains) {
			t.Fatalf("%s %s: %d %s (want %d, containing %q)", s.method, s.path, code, body, s.want, s.contains)
		}
	}
}
