package gitlabsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hook is a project webhook.
type hook struct {
	ID                     int
	ProjectID              int
	URL                    string
	Token                  string
	SigningToken           string
	PushEvents             bool
	PushEventsBranchFilter string
	MergeRequestsEvents    bool
	NoteEvents             bool
	PipelineEvents         bool
	TagPushEvents          bool
	JobEvents              bool
	EmojiEvents            bool
	DeploymentEvents       bool
	EnableSSLVerification  bool
	CreatedAt              time.Time
}

// HookSpec describes a project webhook (the parameters of POST /projects/:id/hooks).
type HookSpec struct {
	URL   string `json:"url"`
	Token string `json:"token,omitempty"`
	// SigningToken (whsec_<base64>) enables Standard Webhooks signatures.
	SigningToken           string `json:"signing_token,omitempty"`
	PushEvents             *bool  `json:"push_events,omitempty"` // default true
	PushEventsBranchFilter string `json:"push_events_branch_filter,omitempty"`
	MergeRequestsEvents    bool   `json:"merge_requests_events,omitempty"`
	NoteEvents             bool   `json:"note_events,omitempty"`
	PipelineEvents         bool   `json:"pipeline_events,omitempty"`
	TagPushEvents          bool   `json:"tag_push_events,omitempty"`
	JobEvents              bool   `json:"job_events,omitempty"`
	EmojiEvents            bool   `json:"emoji_events,omitempty"`
	DeploymentEvents       bool   `json:"deployment_events,omitempty"`
}

// AllEvents returns a HookSpec for url subscribed to every event the simulator sends.
func AllEvents(url, token string) HookSpec {
	t := true
	return HookSpec{URL: url, Token: token, PushEvents: &t, MergeRequestsEvents: true, NoteEvents: true, PipelineEvents: true, TagPushEvents: true, DeploymentEvents: true}
}

func signingKey(tok string) ([]byte, error) {
	rest, ok := strings.CutPrefix(tok, "whsec_")
	if !ok {
		return nil, errors.New("signing token must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("signing token is not base64: %w", err)
	}
	return key, nil
}

func (s *Sim) addHookLocked(p *project, spec HookSpec) (*hook, *apiError) {
	u, err := url.Parse(spec.URL)
	if spec.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errMsg(http.StatusUnprocessableEntity, map[string]any{"url": []string{"is blocked: Only allowed schemes are http, https"}})
	}
	if spec.SigningToken != "" {
		if _, err := signingKey(spec.SigningToken); err != nil {
			return nil, errMsg(http.StatusBadRequest, map[string]any{"signing_token": []string{"is invalid"}})
		}
	}
	push := true
	if spec.PushEvents != nil {
		push = *spec.PushEvents
	}
	h := &hook{
		ID: s.newID("hooks"), ProjectID: p.ID, URL: spec.URL, Token: strings.NewReplacer("\n", "", "\r", "").Replace(spec.Token),
		SigningToken: spec.SigningToken, PushEvents: push, PushEventsBranchFilter: spec.PushEventsBranchFilter,
		MergeRequestsEvents: spec.MergeRequestsEvents, NoteEvents: spec.NoteEvents, PipelineEvents: spec.PipelineEvents,
		TagPushEvents: spec.TagPushEvents, JobEvents: spec.JobEvents, EmojiEvents: spec.EmojiEvents,
		DeploymentEvents: spec.DeploymentEvents, EnableSSLVerification: true, CreatedAt: s.now(),
	}
	p.hooks = append(p.hooks, h)
	return h, nil
}

// AddHook registers a project webhook and returns its id.
func (s *Sim) AddHook(projectRef string, spec HookSpec) (int, error) {
	p, err := s.lookupProject(projectRef)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h, aerr := s.addHookLocked(p, spec)
	if aerr != nil {
		return 0, aerr
	}
	return h.ID, nil
}

type apiHook struct {
	ID                     int      `json:"id"`
	URL                    string   `json:"url"`
	ProjectID              int      `json:"project_id"`
	PushEvents             bool     `json:"push_events"`
	PushEventsBranchFilter string   `json:"push_events_branch_filter"`
	IssuesEvents           bool     `json:"issues_events"`
	MergeRequestsEvents    bool     `json:"merge_requests_events"`
	TagPushEvents          bool     `json:"tag_push_events"`
	NoteEvents             bool     `json:"note_events"`
	JobEvents              bool     `json:"job_events"`
	PipelineEvents         bool     `json:"pipeline_events"`
	EmojiEvents            bool     `json:"emoji_events"`
	DeploymentEvents       bool     `json:"deployment_events"`
	EnableSSLVerification  bool     `json:"enable_ssl_verification"`
	TokenPresent           bool     `json:"token_present"`
	SigningTokenPresent    bool     `json:"signing_token_present"`
	AlertStatus            string   `json:"alert_status"`
	CreatedAt              *apiTime `json:"created_at"`
}

func hookJSON(h *hook) apiHook {
	return apiHook{ID: h.ID, URL: h.URL, ProjectID: h.ProjectID, PushEvents: h.PushEvents, PushEventsBranchFilter: h.PushEventsBranchFilter,
		MergeRequestsEvents: h.MergeRequestsEvents, TagPushEvents: h.TagPushEvents, NoteEvents: h.NoteEvents, JobEvents: h.JobEvents,
		PipelineEvents: h.PipelineEvents, EmojiEvents: h.EmojiEvents, DeploymentEvents: h.DeploymentEvents, EnableSSLVerification: h.EnableSSLVerification,
		TokenPresent: h.Token != "", SigningTokenPresent: h.SigningToken != "", AlertStatus: "executable", CreatedAt: tptr(h.CreatedAt)}
}

// createHook serves POST /projects/:id/hooks (Maintainer+).
func (s *Sim) createHook(c *call) {
	if !c.requireParams("url") {
		return
	}
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	if p.role(c.user) < RoleMaintainer {
		c.forbidden("")
		return
	}
	spec := HookSpec{URL: c.params.str("url"), Token: c.params.str("token"), SigningToken: c.params.str("signing_token"),
		PushEventsBranchFilter: c.params.str("push_events_branch_filter"),
		MergeRequestsEvents:    c.params.boolOr("merge_requests_events", false), NoteEvents: c.params.boolOr("note_events", false),
		PipelineEvents: c.params.boolOr("pipeline_events", false), TagPushEvents: c.params.boolOr("tag_push_events", false),
		JobEvents: c.params.boolOr("job_events", false), EmojiEvents: c.params.boolOr("emoji_events", false),
		DeploymentEvents: c.params.boolOr("deployment_events", false)}
	if v, ok := c.params.bool("push_events"); ok {
		spec.PushEvents = &v
	}
	h, aerr := s.addHookLocked(p, spec)
	if aerr != nil {
		c.fail(aerr)
		return
	}
	c.json(http.StatusCreated, hookJSON(h))
}

// listHooks serves GET /projects/:id/hooks.
func (s *Sim) listHooks(c *call) {
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	if p.role(c.user) < RoleMaintainer {
		c.forbidden("")
		return
	}
	lo, hi := c.paginate(len(p.hooks))
	out := []apiHook{}
	for _, h := range p.hooks[lo:hi] {
		out = append(out, hookJSON(h))
	}
	c.json(http.StatusOK, out)
}

// deleteHook serves DELETE /projects/:id/hooks/:hook_id.
func (s *Sim) deleteHook(c *call) {
	p := c.project()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	if p.role(c.user) < RoleMaintainer {
		c.forbidden("")
		return
	}
	id, _ := strconv.Atoi(c.r.PathValue("hook_id"))
	for i, h := range p.hooks {
		if h.ID == id {
			p.hooks = append(p.hooks[:i], p.hooks[i+1:]...)
			c.w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	c.notFound("Hook")
}

// ---- emitting ----

type eventUUIDKey struct{}

// eventUUID is the X-Gitlab-Event-UUID of the request that caused an event,
// or a new one (recursion detection: hooks triggered by a hook's API calls share it).
func eventUUID(ctx context.Context) string {
	if v, _ := ctx.Value(eventUUIDKey{}).(string); v != "" {
		return v
	}
	return newUUID()
}

// emit queues an event for every hook of the project that wants it.
func (s *Sim) emit(ctx context.Context, p *project, event string, wants func(h *hook) bool, payload any) {
	var targets []*hook
	for _, h := range p.hooks {
		if wants(h) {
			targets = append(targets, h)
		}
	}
	if len(targets) == 0 {
		return
	}
	body, err := json.Marshal(payload)
	if err != nil {
		s.log.Error("encode webhook payload", "event", event, "err", err)
		return
	}
	uuid := eventUUID(ctx)
	for _, h := range targets {
		s.hooks.enqueue(&job{hookID: h.ID, projectID: p.ID, url: h.URL, token: h.Token, signing: h.SigningToken,
			event: event, body: body, idempotencyKey: newUUID(), eventUUID: uuid})
	}
}

func branchFilterMatches(filter, branch string) bool {
	if filter == "" {
		return true
	}
	return refMatches(filter, branch)
}

// ---- delivery ----

// Delivery is one webhook request the simulator sent (or tried to send).
type Delivery struct {
	HookID         int         `json:"hook_id"`
	ProjectID      int         `json:"project_id"`
	URL            string      `json:"url"`
	Event          string      `json:"event"`
	IdempotencyKey string      `json:"idempotency_key"`
	WebhookUUID    string      `json:"webhook_uuid"`
	Headers        http.Header `json:"headers"`
	Body           []byte      `json:"body"`
	StatusCode     int         `json:"status_code"`
	Error          string      `json:"error,omitempty"`
	// Attempt counts from 1; re-sends after a failure (Options.HookRetries) increase it.
	Attempt int `json:"attempt"`
	// Duplicate marks an injected duplicate delivery.
	Duplicate bool `json:"duplicate,omitempty"`
	// Resend marks a manual re-send (admin API).
	Resend bool      `json:"resend,omitempty"`
	SentAt time.Time `json:"sent_at"`
}

// Payload decodes the body into a map.
func (d Delivery) Payload() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(d.Body, &m)
	return m
}

// WebhookFaults disturb webhook delivery.
type WebhookFaults struct {
	// DuplicateEvery sends every Nth delivery twice (same Idempotency-Key, new X-Gitlab-Webhook-UUID).
	DuplicateEvery int `json:"duplicate_every,omitempty"`
	// DuplicateRate sends this share of deliveries twice.
	DuplicateRate float64 `json:"duplicate_rate,omitempty"`
	// Delay waits before each delivery.
	Delay time.Duration `json:"delay,omitempty"`
}

type job struct {
	hookID, projectID int
	url, token        string
	signing           string
	event             string
	body              []byte
	idempotencyKey    string
	eventUUID         string
	resend            bool
}

type hookDispatcher struct {
	s       *Sim
	client  *http.Client
	mu      sync.Mutex
	queues  map[int][]*job
	running map[int]bool
	pending int
	log     []Delivery
	faults  WebhookFaults
	count   int
	rnd     *rand.Rand
	closed  bool
	wg      sync.WaitGroup
	jobs    []*job // every job ever queued, for resends
}

func newHookDispatcher(s *Sim) *hookDispatcher {
	c := s.opts.HTTPClient
	if c == nil {
		c = &http.Client{}
	}
	return &hookDispatcher{s: s, client: c, queues: map[int][]*job{}, running: map[int]bool{}, rnd: rand.New(rand.NewPCG(1, 2))}
}

// enqueue queues a job on its hook's FIFO; one worker per hook delivers in order.
func (d *hookDispatcher) enqueue(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.jobs = append(d.jobs, j)
	d.queues[j.hookID] = append(d.queues[j.hookID], j)
	d.pending++
	if !d.running[j.hookID] {
		d.running[j.hookID] = true
		d.wg.Add(1)
		go d.worker(j.hookID)
	}
}

func (d *hookDispatcher) worker(hookID int) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.queues[hookID]
		if len(q) == 0 || d.closed {
			d.running[hookID] = false
			d.mu.Unlock()
			return
		}
		j := q[0]
		d.queues[hookID] = q[1:]
		d.count++
		dup := (d.faults.DuplicateEvery > 0 && d.count%d.faults.DuplicateEvery == 0) ||
			(d.faults.DuplicateRate > 0 && d.rnd.Float64() < d.faults.DuplicateRate)
		delay := d.faults.Delay
		d.mu.Unlock()

		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-d.s.ctx.Done():
			}
		}
		for attempt := 1; attempt <= 1+d.s.opts.HookRetries; attempt++ {
			rec := d.deliver(j, attempt, false)
			if rec.Error == "" && rec.StatusCode < 400 {
				break
			}
		}
		if dup {
			d.deliver(j, 1, true)
		}
		d.mu.Lock()
		d.pending--
		d.mu.Unlock()
	}
}

// deliver sends one request and records it.
func (d *hookDispatcher) deliver(j *job, attempt int, duplicate bool) Delivery {
	s := d.s
	rec := Delivery{HookID: j.hookID, ProjectID: j.projectID, URL: j.url, Event: j.event, IdempotencyKey: j.idempotencyKey,
		WebhookUUID: newUUID(), Body: j.body, Attempt: attempt, Duplicate: duplicate, Resend: j.resend, SentAt: time.Now()}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitLab/"+s.version)
	h.Set("X-Gitlab-Event", j.event)
	h.Set("X-Gitlab-Instance", s.BaseURL())
	h.Set("X-Gitlab-Webhook-UUID", rec.WebhookUUID)
	h.Set("X-Gitlab-Event-UUID", j.eventUUID)
	h.Set("Idempotency-Key", j.idempotencyKey)
	if j.token != "" {
		h.Set("X-Gitlab-Token", j.token)
	}
	if j.signing != "" {
		if key, err := signingKey(j.signing); err == nil {
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			h.Set("webhook-id", j.idempotencyKey)
			h.Set("webhook-timestamp", ts)
			h.Set("webhook-signature", "v1,"+Sign(key, j.idempotencyKey, ts, j.body))
		}
	}
	rec.Headers = h
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.HookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		rec.Error = err.Error()
	} else {
		req.Header = h.Clone()
		resp, err := d.client.Do(req)
		if err != nil {
			rec.Error = err.Error()
		} else {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<10))
			resp.Body.Close()
			rec.StatusCode = resp.StatusCode
		}
	}
	d.mu.Lock()
	d.log = append(d.log, rec)
	d.mu.Unlock()
	s.log.Debug("webhook delivered", "event", j.event, "url", j.url, "status", rec.StatusCode, "err", rec.Error)
	return rec
}

// Sign computes a Standard Webhooks v1 signature: base64(HMAC-SHA256(key, id.timestamp.body)).
func Sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func (d *hookDispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wg.Wait()
}

// Events returns every webhook delivery so far, in the order they were sent.
func (s *Sim) Events() []Delivery {
	d := s.hooks
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Delivery(nil), d.log...)
}

// ClearEvents forgets recorded deliveries.
func (s *Sim) ClearEvents() {
	d := s.hooks
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = nil
}

// WaitDeliveries blocks until every queued webhook has been delivered (or ctx ends).
func (s *Sim) WaitDeliveries(ctx context.Context) error {
	for {
		s.hooks.mu.Lock()
		n := s.hooks.pending
		s.hooks.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d webhook deliveries pending: %w", n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SetWebhookFaults replaces the webhook delivery faults.
func (s *Sim) SetWebhookFaults(f WebhookFaults) {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	s.hooks.faults = f
}

// Resend re-sends the event of a recorded delivery (index into Events()),
// keeping its Idempotency-Key, as GitLab's "Resend Request" does.
func (s *Sim) Resend(index int) error {
	d := s.hooks
	d.mu.Lock()
	if index < 0 || index >= len(d.log) {
		d.mu.Unlock()
		return fmt.Errorf("delivery %d: %w", index, ErrUnknown)
	}
	rec := d.log[index]
	var orig *job
	for _, j := range d.jobs {
		if j.idempotencyKey == rec.IdempotencyKey {
			orig = j
		}
	}
	d.mu.Unlock()
	if orig == nil {
		return fmt.Errorf("delivery %d: %w", index, ErrUnknown)
	}
	cp := *orig
	cp.resend = true
	d.enqueue(&cp)
	return nil
}
