// Package gitlab is lotse's narrow GitLab client: users, repository files,
// commits, merge requests (with their commits and diffs), approvals, notes,
// commit statuses, protected branches, members, hooks, environments and
// deployments, over gitlab.com/gitlab-org/api/client-go. People are
// identified by numeric user id; usernames can change.
//
// client-go's own retries are switched off. The client retries by itself:
// 429 answers (honouring Retry-After / RateLimit-Reset) for every request,
// and 5xx answers and transport failures only for reads and idempotent
// writes. A non-idempotent write (create commit, create MR, create note,
// merge) whose outcome is unknown is never blindly re-sent: the client first
// re-reads GitLab to find out whether the write happened.
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// Client talks to one GitLab instance with one token. It is safe for concurrent use.
type Client struct {
	api   *gl.Client
	retry retryPolicy

	mu sync.Mutex
	me *User // cached current user
}

type retryPolicy struct {
	attempts   int           // total attempts per request, >= 1
	base       time.Duration // first backoff
	max        time.Duration // cap of one backoff
	maxWait429 time.Duration // longest Retry-After the client waits for
}

type config struct {
	httpClient *http.Client
	userAgent  string
	retry      retryPolicy
	observer   Observer // nil: requests are not reported
}

// Option configures a Client.
type Option func(*config)

// WithHTTPClient sets the HTTP client (timeouts, transport).
func WithHTTPClient(c *http.Client) Option { return func(cfg *config) { cfg.httpClient = c } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(cfg *config) { cfg.userAgent = ua } }

// WithRetry sets the attempts per request (1 disables retries) and the
// exponential backoff bounds for 5xx and transport failures.
func WithRetry(attempts int, base, max time.Duration) Option {
	return func(cfg *config) {
		cfg.retry.attempts = max1(attempts)
		cfg.retry.base, cfg.retry.max = base, max
	}
}

// WithMaxRetryAfter sets the longest Retry-After the client is willing to wait
// for; longer waits return ErrRateLimited at once.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(cfg *config) { cfg.retry.maxWait429 = d }
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// New returns a client using a personal, project or group access token
// (sent as PRIVATE-TOKEN). baseURL is the instance URL or its /api/v4 URL
// (CI_API_V4_URL).
func New(baseURL, token string, opts ...Option) (*Client, error) {
	return newClient(baseURL, func(o ...gl.ClientOptionFunc) (*gl.Client, error) { return gl.NewClient(token, o...) }, opts)
}

// NewJobToken returns a client authenticating with a CI job token (JOB-TOKEN).
// GitLab accepts job tokens on few endpoints (raw files, MR and note reads).
func NewJobToken(baseURL, jobToken string, opts ...Option) (*Client, error) {
	return newClient(baseURL, func(o ...gl.ClientOptionFunc) (*gl.Client, error) { return gl.NewJobClient(jobToken, o...) }, opts)
}

func newClient(baseURL string, mk func(...gl.ClientOptionFunc) (*gl.Client, error), opts []Option) (*Client, error) {
	if baseURL == "" {
		return nil, errors.New("gitlab: base URL is empty")
	}
	cfg := config{retry: retryPolicy{attempts: 5, base: 200 * time.Millisecond, max: 5 * time.Second, maxWait429: time.Minute}}
	for _, o := range opts {
		o(&cfg)
	}
	hc := &http.Client{Timeout: 60 * time.Second}
	if cfg.httpClient != nil {
		cp := *cfg.httpClient
		hc = &cp
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = hideRateLimit{next: next}
	if cfg.observer != nil {
		hc.Transport = observed{next: hc.Transport, observe: cfg.observer}
	}
	gopts := []gl.ClientOptionFunc{
		gl.WithBaseURL(strings.TrimRight(baseURL, "/")),
		gl.WithoutRetries(), // our own loop decides what may be re-sent
		gl.WithCustomLimiter(noLimit{}),
		gl.WithHTTPClient(hc),
	}
	if cfg.userAgent != "" {
		gopts = append(gopts, gl.WithUserAgent(cfg.userAgent))
	}
	api, err := mk(gopts...)
	if err != nil {
		return nil, fmt.Errorf("gitlab: create client: %w", err)
	}
	return &Client{api: api, retry: cfg.retry}, nil
}

// noLimit disables client-go's client-side rate limiter: 429 answers are handled in do.
type noLimit struct{}

func (noLimit) Wait(context.Context) error { return nil }

// hideRateLimit removes RateLimit-Limit from responses: client-go would otherwise
// replace any limiter with a throttle derived from the first response it sees.
type hideRateLimit struct{ next http.RoundTripper }

func (h hideRateLimit) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(r)
	if resp != nil {
		resp.Header.Del("RateLimit-Limit")
	}
	return resp, err
}

// attempt is one try of an API call.
type attempt func(opts ...gl.RequestOptionFunc) (*gl.Response, error)

// write kinds for the retry loop.
const (
	idempotent    = true
	nonIdempotent = false
)

// do runs fn with retries. Reads and idempotent writes are retried on 429, 5xx
// and transport errors; non-idempotent writes only on 429 and failures known to
// happen before sending; other failures come back wrapping ErrUnknownOutcome.
func (c *Client) do(ctx context.Context, op string, safe bool, fn attempt) error {
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gitlab %s: %w", op, err)
		}
		resp, err := fn(gl.WithContext(ctx))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("gitlab %s: %w", op, ctx.Err())
		}
		e := classify(op, resp, err)
		var wait time.Duration
		switch {
		case e.Kind == ErrRateLimited:
			wait = e.RetryAfter
			if wait < 0 {
				wait = c.backoff(n)
			}
			if wait > c.retry.maxWait429 {
				return e
			}
		case e.Kind == ErrUnavailable && (safe || (e.StatusCode == 0 && notSent(e.Err))):
			wait = c.backoff(n)
		case e.Kind == ErrUnavailable:
			e.Kind = ErrUnknownOutcome
			return e
		default:
			return e
		}
		if n >= c.retry.attempts {
			return e
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return e
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gitlab %s: %w", op, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff is exponential with full jitter: a random wait in [base/2, min(max, base*2^(n-1))].
func (c *Client) backoff(n int) time.Duration {
	d := c.retry.base << min(n-1, 20)
	if d > c.retry.max || d <= 0 {
		d = c.retry.max
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func notSent(err error) bool { return err != nil && sentBeforeFailure(err) }

// User is a GitLab user.
type User struct {
	ID       int64
	Username string
	Name     string
}

// CurrentUser returns the token's user (cached after the first call).
func (c *Client) CurrentUser(ctx context.Context) (User, error) {
	c.mu.Lock()
	me := c.me
	c.mu.Unlock()
	if me != nil {
		return *me, nil
	}
	var u *gl.User
	err := c.do(ctx, "get current user", idempotent, func(o ...gl.RequestOptionFunc) (*gl.Response, error) {
		var resp *gl.Response
		var err error
		u, resp, err = c.api.Users.CurrentUser(o...)
		return resp, err
	})
	if err != nil {
		return User{}, err
	}
	out := User{ID: u.ID, Username: u.Username, Name: u.Name}
	c.mu.Lock()
	c.me = &out
	c.mu.Unlock()
	return out, nil
}

func basicUser(u *gl.BasicUser) User {
	if u == nil {
		return User{}
	}
	return User{ID: u.ID, Username: u.Username, Name: u.Name}
}
