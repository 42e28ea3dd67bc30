// Package gitlabsim is an in-process GitLab simulator for tests and demos.
//
// It serves the subset of the GitLab REST API v4 that lotse uses (users,
// projects and forks, members, protected branches, repository files, commits,
// branches, merge requests with their commits and diffs, approvals, notes,
// commit statuses, project hooks, environments and deployments) on top of
// real bare git repositories on disk, sends GitLab-shaped webhooks, mints
// CI/CD ID tokens and serves their keys, and can inject faults (429, 5xx,
// failures after a write, duplicate or delayed webhook deliveries). It
// behaves like GitLab Free unless a test asks for a Premium setting.
//
// Start it from a test with
//
//	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
//	t.Cleanup(sim.Close)
//	srv := httptest.NewServer(sim)
//
// The REST API lives under /api/v4, the admin API under /-/sim (see README.md).
package gitlabsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Roles of project members, with GitLab's access level numbers.
const (
	RoleNone       = 0
	RoleGuest      = 10
	RoleReporter   = 20
	RoleDeveloper  = 30
	RoleMaintainer = 40
	RoleOwner      = 50
)

// Access levels for protected branches (allowed_to_push / allowed_to_merge).
const (
	AccessNoOne       = 0
	AccessDevelopers  = 30
	AccessMaintainers = 40
)

// Options configures a Sim.
type Options struct {
	// Dir holds the git repositories. Required.
	Dir string
	// AdminToken guards the /-/sim admin API. Empty: a random token (see Sim.AdminToken).
	AdminToken string
	// BaseURL is the external URL used in web_url fields and webhooks. Empty:
	// learnt from the Host of incoming requests, else http://gitlab.sim.
	BaseURL string
	// Version is reported in User-Agent of webhooks and /api/v4/version. Default 18.4.0.
	Version string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// Checking is the default mergeability check of new projects.
	Checking Checking
	// HookTimeout bounds one webhook delivery. Default 10s (GitLab's default).
	HookTimeout time.Duration
	// HookRetries re-sends a failed delivery this many times. GitLab itself
	// does not re-deliver (webhooks.md §3), so the default is 0.
	HookRetries int
	// HTTPClient sends webhooks; nil uses a plain client.
	HTTPClient *http.Client
}

// Checking says for how long a merge request reports detailed_merge_status
// "checking" after it is created or its source or target branch moves: until
// it has been read Reads times and Duration has passed.
type Checking struct {
	Reads    int           `json:"reads"`
	Duration time.Duration `json:"duration"`
}

// Sim is a GitLab simulator. It is an http.Handler; the zero value is not usable, use New.
type Sim struct {
	opts       Options
	log        *slog.Logger
	mux        *http.ServeMux
	adminToken string
	version    string
	instance   string // X-Gitlab-Instance fallback

	mu         sync.Mutex // guards the registry fields below
	baseURL    string
	users      map[int]*user
	byUsername map[string]*user
	tokens     map[string]*user
	jobTokens  map[string]*jobToken
	projects   map[int]*project
	byPath     map[string]*project
	nextID     map[string]int // id sequences per kind
	closed     bool
	checking   Checking // default mergeability check of projects without their own
	ctx        context.Context
	cancel     context.CancelFunc
	faults     *faultState
	hooks      *hookDispatcher
	requestsMu sync.Mutex
	requests   []RequestRecord
	idKeys     idKeys // CI/CD ID token signing keys
}

// New returns a simulator storing repositories under opts.Dir.
func New(opts Options) *Sim {
	if opts.Version == "" {
		opts.Version = "18.4.0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HookTimeout == 0 {
		opts.HookTimeout = 10 * time.Second
	}
	if opts.Checking == (Checking{}) {
		opts.Checking = Checking{Reads: 1}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts:       opts,
		log:        log,
		adminToken: opts.AdminToken,
		version:    opts.Version,
		baseURL:    strings.TrimRight(opts.BaseURL, "/"),
		users:      map[int]*user{},
		byUsername: map[string]*user{},
		tokens:     map[string]*user{},
		jobTokens:  map[string]*jobToken{},
		projects:   map[int]*project{},
		byPath:     map[string]*project{},
		nextID:     map[string]int{},
		ctx:        ctx,
		cancel:     cancel,
		faults:     newFaultState(),
		checking:   opts.Checking,
	}
	if s.adminToken == "" {
		s.adminToken = "simadmin-" + randomHex(16)
	}
	s.hooks = newHookDispatcher(s)
	s.mux = http.NewServeMux()
	s.routes()
	return s
}

// AdminToken returns the token that guards the admin API.
func (s *Sim) AdminToken() string { return s.adminToken }

// SetBaseURL sets the external URL used in web_url fields and webhooks.
func (s *Sim) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = strings.TrimRight(u, "/")
}

// BaseURL returns the external URL the simulator uses in links.
func (s *Sim) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseURL == "" {
		return "http://gitlab.sim"
	}
	return s.baseURL
}

// Close stops webhook delivery and background work. Pending deliveries are dropped.
func (s *Sim) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.hooks.close()
}

// SetChecking changes the default mergeability check timing (projects created
// with their own Checking keep it).
func (s *Sim) SetChecking(c Checking) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checking = c
}

func (s *Sim) defaultChecking() Checking {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checking
}

func (s *Sim) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// newID returns the next id of a kind (users, projects, mrs, notes, statuses, ...).
func (s *Sim) newID(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID[kind]++
	return s.nextID[kind]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ServeHTTP implements http.Handler.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.learnBaseURL(r)
	// GitLab finishes a request whose client went away: a write is done
	// whole, and what it derives (an MR's mergeability) is computed, not
	// left as the error of a git command killed half-way. Only closing
	// the simulator stops a request.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

func (s *Sim) learnBaseURL(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseURL != "" || r.Host == "" {
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.baseURL = scheme + "://" + r.Host
}

// ---- users and tokens ----

type user struct {
	ID       int
	Username string
	Name     string
	Email    string
	// PublicEmail is the profile's public email ("" when private), the only
	// email that non-admins can search users by.
	PublicEmail string
	Admin       bool
	Bot         bool
	Token       string
	Created     time.Time
}

type jobToken struct {
	Token     string
	User      *user
	ProjectID int
}

// UserSpec describes a user to create.
type UserSpec struct {
	Username string `json:"username"`
	Name     string `json:"name,omitempty"`
	Email    string `json:"email,omitempty"`
	// PublicEmail is shown on the profile and searchable by everyone; empty:
	// the email stays private (GitLab's default).
	PublicEmail string `json:"public_email,omitempty"`
	// Admin users can read and write every project.
	Admin bool `json:"admin,omitempty"`
	// Bot marks a project access token user.
	Bot bool `json:"bot,omitempty"`
	// Token is the personal access token; empty: a random glpat- token.
	Token string `json:"token,omitempty"`
}

// User is a created user and its personal access token.
type User struct {
	ID       int    `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name"`
	Email    string `json:"email"`
	Token    string `json:"token"`
}

// ErrExists is returned by the Go API when a user or project already exists.
var ErrExists = errors.New("gitlabsim: already exists")

// ErrUnknown is returned by the Go API for an unknown user, project, MR or pipeline.
var ErrUnknown = errors.New("gitlabsim: not found")

// CreateUser adds a user with a personal access token.
func (s *Sim) CreateUser(spec UserSpec) (User, error) {
	if spec.Username == "" {
		return User{}, errors.New("gitlabsim: username is required")
	}
	if spec.Name == "" {
		spec.Name = spec.Username
	}
	if spec.Email == "" {
		spec.Email = spec.Username + "@example.com"
	}
	if spec.Token == "" {
		spec.Token = "glpat-" + randomHex(10)
	}
	id := s.newID("users")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byUsername[spec.Username]; ok {
		return User{}, fmt.Errorf("user %q: %w", spec.Username, ErrExists)
	}
	if _, ok := s.tokens[spec.Token]; ok {
		return User{}, fmt.Errorf("token of %q: %w", spec.Username, ErrExists)
	}
	u := &user{ID: id, Username: spec.Username, Name: spec.Name, Email: spec.Email, PublicEmail: spec.PublicEmail, Admin: spec.Admin, Bot: spec.Bot, Token: spec.Token, Created: s.now()}
	s.users[id] = u
	s.byUsername[u.Username] = u
	s.tokens[u.Token] = u
	return User{ID: u.ID, Username: u.Username, Name: u.Name, Email: u.Email, Token: u.Token}, nil
}

// JobToken returns a CI job token that acts as username on the project,
// with GitLab's job-token endpoint restrictions.
func (s *Sim) JobToken(projectRef, username string) (string, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return "", err
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return "", err
	}
	tok := "glcbt-" + randomHex(12)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobTokens[tok] = &jobToken{Token: tok, User: u, ProjectID: p.ID}
	return tok, nil
}

func (s *Sim) lookupUser(username string) (*user, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.byUsername[username]
	if !ok {
		return nil, fmt.Errorf("user %q: %w", username, ErrUnknown)
	}
	return u, nil
}

func (s *Sim) userByID(id int) *user {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[id]
}

// lookupProject finds a project by numeric id or path_with_namespace.
func (s *Sim) lookupProject(ref string) (*project, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.byPath[ref]; ok {
		return p, nil
	}
	var id int
	if _, err := fmt.Sscanf(ref, "%d", &id); err == nil && fmt.Sprint(id) == ref {
		if p, ok := s.projects[id]; ok {
			return p, nil
		}
	}
	return nil, fmt.Errorf("project %q: %w", ref, ErrUnknown)
}

// Repo returns the path of the project's bare git repository on disk, or "" if unknown.
func (s *Sim) Repo(projectRef string) string {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return ""
	}
	return p.repo.dir
}
