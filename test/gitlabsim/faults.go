package gitlabsim

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint classes used by faults and request records.
const (
	ClassProjects      = "projects"
	ClassUsers         = "users"
	ClassFiles         = "files"
	ClassCommits       = "commits"
	ClassBranches      = "branches"
	ClassMergeRequests = "merge_requests"
	ClassMerge         = "merge" // PUT .../merge and cancel auto-merge
	ClassApprovals     = "approvals"
	ClassNotes         = "notes"
	ClassStatuses      = "statuses"
	ClassPipelines     = "pipelines"
	ClassHooks         = "hooks"
	ClassOIDC          = "oidc" // /oauth/discovery/keys and /.well-known/openid-configuration
	// ClassMembers covers members and protected branches (project settings reads).
	ClassMembers     = "members"
	ClassDeployments = "deployments" // deployments and environments
)

// Fault makes matching REST requests fail.
type Fault struct {
	// Class is an endpoint class (Class* constants); "" or "*" matches all.
	Class string `json:"class,omitempty"`
	// Method is GET, POST, PUT, DELETE; "" matches all.
	Method string `json:"method,omitempty"`
	// Status is the answer: 429, 500, 502, 503, 504...
	Status int `json:"status"`
	// Every injects on every Nth matching request (1: each). With neither
	// Every nor Rate set, every matching request fails.
	Every int `json:"every,omitempty"`
	// Rate injects on this random share of matching requests (seeded, so runs repeat).
	Rate float64 `json:"rate,omitempty"`
	// Times stops injecting after this many injections (0: no limit).
	Times int `json:"times,omitempty"`
	// After performs the request for real, then answers with the fault:
	// the write happened but the client cannot know.
	After bool `json:"after,omitempty"`
	// RetryAfter is the Retry-After of a 429 in seconds.
	RetryAfter int `json:"retry_after,omitempty"`
	// Body replaces the default error body.
	Body string `json:"body,omitempty"`
}

type faultRule struct {
	Fault
	seen, injected int
}

type faultState struct {
	mu    sync.Mutex
	rules []*faultRule
	rnd   *rand.Rand
}

func newFaultState() *faultState {
	return &faultState{rnd: rand.New(rand.NewPCG(7, 11))}
}

// match returns the fault to inject for a request, or nil.
func (fs *faultState) match(class, method string) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, r := range fs.rules {
		if r.Class != "" && r.Class != "*" && r.Class != class {
			continue
		}
		if r.Method != "" && !strings.EqualFold(r.Method, method) {
			continue
		}
		if r.Times > 0 && r.injected >= r.Times {
			continue
		}
		r.seen++
		hit := true
		switch {
		case r.Every > 0:
			hit = r.seen%r.Every == 0
		case r.Rate > 0:
			hit = fs.rnd.Float64() < r.Rate
		}
		if hit {
			r.injected++
			f := r.Fault
			return &f
		}
	}
	return nil
}

// Faults replaces the REST fault rules (nil or none clears them).
func (s *Sim) Faults(fs ...Fault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.rules = nil
	for _, f := range fs {
		s.faults.rules = append(s.faults.rules, &faultRule{Fault: f})
	}
}

// FaultsInjected returns how many requests have been failed by fault rules so far.
func (s *Sim) FaultsInjected() int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	n := 0
	for _, r := range s.faults.rules {
		n += r.injected
	}
	return n
}

// writeFault answers like GitLab (Rack::Attack 429) or a proxy (5xx) would.
func (s *Sim) writeFault(w http.ResponseWriter, f *Fault) {
	h := w.Header()
	switch {
	case f.Status == http.StatusTooManyRequests:
		reset := s.opts.Now().Add(time.Duration(f.RetryAfter) * time.Second)
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
		h.Set("RateLimit-Name", "throttle_authenticated_api")
		h.Set("RateLimit-Limit", "2000")
		h.Set("RateLimit-Observed", "2001")
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		h.Set("RateLimit-ResetTime", reset.UTC().Format(http.TimeFormat))
		h.Set("Content-Type", "text/plain")
		w.WriteHeader(f.Status)
		body := f.Body
		if body == "" {
			body = "Retry later\n"
		}
		_, _ = w.Write([]byte(body))
	case f.Status == http.StatusInternalServerError && f.Body == "":
		writeJSON(w, f.Status, map[string]any{"message": "500 Internal Server Error"})
	default:
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.Status)
		body := f.Body
		if body == "" {
			body = "<html><body><h1>" + strconv.Itoa(f.Status) + " " + http.StatusText(f.Status) + "</h1></body></html>\n"
		}
		_, _ = w.Write([]byte(body))
	}
}

// RequestRecord is one REST request the simulator received.
type RequestRecord struct {
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Class  string    `json:"class"`
	Status int       `json:"status"`
	Fault  bool      `json:"fault,omitempty"`
	At     time.Time `json:"at"`
	// WriteStatus is the status the real handler produced when a fault was injected after it ran.
	WriteStatus int `json:"write_status,omitempty"`
}

func (s *Sim) recordRequest(r RequestRecord) {
	s.requestsMu.Lock()
	defer s.requestsMu.Unlock()
	s.requests = append(s.requests, r)
}

// Requests returns every REST request received so far.
func (s *Sim) Requests() []RequestRecord {
	s.requestsMu.Lock()
	defer s.requestsMu.Unlock()
	return append([]RequestRecord(nil), s.requests...)
}

// CountRequests counts received requests of a class and method ("" matches all).
func (s *Sim) CountRequests(class, method string) int {
	n := 0
	for _, r := range s.Requests() {
		if (class == "" || r.Class == class) && (method == "" || r.Method == method) {
			n++
		}
	}
	return n
}

// ClearRequests forgets recorded requests.
func (s *Sim) ClearRequests() {
	s.requestsMu.Lock()
	defer s.requestsMu.Unlock()
	s.requests = nil
}
