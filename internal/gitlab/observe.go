package gitlab

import (
	"net/http"
	"strings"
	"time"
)

// Observer is told of every HTTP request the client sends to GitLab, retries
// included: the method, the endpoint as a template without identifiers
// (Endpoint), the response's status code (0 when no response came) and how
// long it took. It is called from the request's goroutine and must not block.
type Observer func(method, endpoint string, status int, took time.Duration)

// WithObserver has every request reported to o (metrics); nil reports
// nothing.
func WithObserver(o Observer) Option { return func(cfg *config) { cfg.observer = o } }

// observed is a RoundTripper that reports each request to its observer.
type observed struct {
	next    http.RoundTripper
	observe Observer
}

func (o observed) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.next.RoundTrip(r)
	status := 0
	if err == nil && resp != nil {
		status = resp.StatusCode
	}
	o.observe(r.Method, Endpoint(r.URL.EscapedPath()), status, time.Since(start))
	return resp, err
}

// identified are the path segments of GitLab's API after which comes an
// identifier: a numeric or URL-encoded project or group, an IID, a commit
// SHA, a branch or tag name, a file path, a user.
var identified = map[string]bool{
	"projects": true, "groups": true, "users": true, "merge_requests": true, "notes": true, "discussions": true,
	"commits": true, "files": true, "branches": true, "protected_branches": true, "tags": true, "protected_tags": true,
	"pipelines": true, "jobs": true, "hooks": true, "environments": true, "deployments": true, "members": true,
	"statuses": true, "approval_rules": true, "blobs": true, "namespaces": true, "variables": true,
}

// maxSegments bounds an endpoint's length: longer paths are cut.
const maxSegments = 10

// Endpoint turns a request path of GitLab's API into a template with a
// bounded set of values, fit for a metric label: the part after /api/v4,
// with every identifier (what follows projects, merge_requests, commits,
// files, …, and any segment that is not a lowercase word) replaced by ":id",
// e.g. "/api/v4/projects/platform%2Fgitops/merge_requests/7/notes" becomes
// "projects/:id/merge_requests/:id/notes". Paths outside the API are "other".
func Endpoint(escapedPath string) string {
	_, rest, ok := strings.Cut(escapedPath, "/api/v4/")
	if !ok {
		return "other"
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return "other"
	}
	segs := strings.Split(rest, "/")
	if len(segs) > maxSegments {
		segs = append(segs[:maxSegments], "…")
	}
	out := make([]string, 0, len(segs))
	afterID := false
	for _, s := range segs {
		switch {
		case s == "…":
			out = append(out, s)
		case afterID || !word(s):
			if len(out) == 0 || out[len(out)-1] != ":id" {
				out = append(out, ":id")
			}
			afterID = false
			continue
		default:
			out = append(out, s)
			afterID = identified[s]
		}
	}
	return strings.Join(out, "/")
}

// word reports whether s is an API word: 1 to 32 lowercase letters and
// underscores.
func word(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
