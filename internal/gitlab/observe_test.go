package gitlab_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
)

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/api/v4/projects/platform%2Fgitops/merge_requests/7/notes", "projects/:id/merge_requests/:id/notes"},
		{"/api/v4/projects/42/merge_requests/7/notes/99", "projects/:id/merge_requests/:id/notes/:id"},
		{"/api/v4/projects/a%2Fb/repository/files/envs%2Fprod%2Fvalues.yaml/raw", "projects/:id/repository/files/:id/raw"},
		{"/api/v4/projects/a%2Fb/repository/commits/0123456789abcdef0123456789abcdef01234567/statuses", "projects/:id/repository/commits/:id/statuses"},
		{"/api/v4/projects/a%2Fb/statuses/0123abcd", "projects/:id/statuses/:id"},
		{"/api/v4/projects/a%2Fb/protected_branches/main", "projects/:id/protected_branches/:id"},
		{"/api/v4/user", "user"},
		{"/api/v4/users", "users"},
		{"/gitlab/api/v4/projects/x/hooks/3", "projects/:id/hooks/:id"},
		{"/oauth/token", "other"},
		{"/api/v4/", "other"},
		// Free text where a word is expected: an identifier, never a new value.
		{"/api/v4/projects/x/SomeThing/Else", "projects/:id"},
		{"/api/v4/projects/x/../../evil%20label", "projects/:id"},
	} {
		if got := gitlab.Endpoint(tc.path); got != tc.want {
			t.Errorf("Endpoint(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// FuzzEndpoint: whatever the path, the endpoint is made of API words,
// ":id" and at most one "…", and is short.
func FuzzEndpoint(f *testing.F) {
	f.Add("/api/v4/projects/platform%2Fgitops/merge_requests/7/notes")
	f.Add("/api/v4/" + strings.Repeat("a/", 50))
	f.Fuzz(func(t *testing.T, p string) {
		e := gitlab.Endpoint(p)
		parts := strings.Split(e, "/")
		if len(parts) > 11 {
			t.Fatalf("Endpoint(%q) = %q: %d parts", p, e, len(parts))
		}
		for _, s := range parts {
			if s == ":id" || s == "…" {
				continue
			}
			for _, c := range s {
				if (c < 'a' || c > 'z') && c != '_' {
					t.Fatalf("Endpoint(%q) = %q: %q is not an API word", p, e, s)
				}
			}
			if len(s) > 32 || s == "" {
				t.Fatalf("Endpoint(%q) = %q: part %q", p, e, s)
			}
		}
	})
}

func TestObserverSeesEveryRequest(t *testing.T) {
	f := setup(t)
	type call struct {
		method, endpoint string
		status           int
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	c := f.client(t, "bot", gitlab.WithObserver(func(method, endpoint string, status int, took time.Duration) {
		if took < 0 {
			t.Errorf("negative duration %v", took)
		}
		mu.Lock()
		calls = append(calls, call{method, endpoint, status})
		mu.Unlock()
	}))
	ctx := context.Background()
	if _, err := c.File(ctx, project, "envs/dev/values.yaml", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetMR(ctx, project, 999); err == nil {
		t.Fatal("MR 999 exists?")
	}
	mu.Lock()
	defer mu.Unlock()
	var sawFile, saw404 bool
	for _, cl := range calls {
		if strings.Contains(cl.endpoint, "team") || strings.Contains(cl.endpoint, "values") || strings.Contains(cl.endpoint, "999") {
			t.Errorf("identifier in endpoint %q", cl.endpoint)
		}
		if cl.method == "GET" && strings.HasPrefix(cl.endpoint, "projects/:id/repository/files/:id") && cl.status == 200 {
			sawFile = true
		}
		if cl.endpoint == "projects/:id/merge_requests/:id" && cl.status == 404 {
			saw404 = true
		}
	}
	if !sawFile || !saw404 {
		t.Errorf("calls %+v: want a 200 on the file and a 404 on the MR", calls)
	}
}
