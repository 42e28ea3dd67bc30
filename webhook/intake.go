package webhook

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/store"
)

// The GitLab events lotsed acts on; others are acknowledged and dropped.
var handledEvents = map[string]bool{
	"Push Hook":          true,
	"Merge Request Hook": true,
	"Note Hook":          true,
	"Pipeline Hook":      true,
}

// headersKept are the delivery headers stored with a delivery; secrets
// (X-Gitlab-Token, webhook-signature) never are.
var headersKept = []string{"X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID", "X-Gitlab-Instance", "Idempotency-Key", "User-Agent", "webhook-id"}

// badRequest is a malformed delivery: 400 with the reason.
type badRequest struct{ reason string }

func (e *badRequest) Error() string { return e.reason }

// readBody reads at most limit bytes of the request body.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	size := int64(512)
	if n := r.ContentLength; n > 0 && n < limit {
		size = n + 1 // one allocation: room for the body and the read that sees EOF
	}
	body, err := readAll(http.MaxBytesReader(c.Response(), r.Body, limit), make([]byte, 0, size))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
	}
	if err != nil {
		return nil, &badRequest{reason: "read body: " + err.Error()}
	}
	return body, nil
}

// readAll is io.ReadAll into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// gitlabHook is POST /webhooks/gitlab: authenticate, validate, store
// durably (deduplicated on Idempotency-Key), then answer 200.
func (s *Server) gitlabHook(c echo.Context) error {
	r := c.Request()
	body, err := readBody(c, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	if err := s.gitlab.check(r.Header, body, s.now()); err != nil {
		s.metrics.rejected.Add(1)
		return err
	}
	event := r.Header.Get("X-Gitlab-Event")
	if !handledEvents[event] {
		s.metrics.ignored.Add(1)
		return c.NoContent(http.StatusOK)
	}
	// Decoded once: a worker of this process gets the result with the
	// delivery.
	hook, err := parseGitLab(body)
	if err != nil {
		return &badRequest{reason: "malformed JSON body: " + err.Error()}
	}
	if hook.ObjectKind == "" {
		return &badRequest{reason: "not a GitLab event: no object_kind"}
	}
	if !s.watches(hook.Project.PathWithNamespace) {
		s.metrics.ignored.Add(1)
		return c.NoContent(http.StatusOK)
	}
	d := store.Delivery{
		Source:     "gitlab",
		Event:      event,
		Key:        dedupeKey(r.Header, event, body),
		Headers:    keptHeaders(r.Header),
		Body:       body,
		ReceivedAt: s.now(),
	}
	return s.enqueue(c, d, hook)
}

// argocdHook is POST /webhooks/argocd: an ArgoCD notification about an
// application's health, authenticated with a bearer token.
func (s *Server) argocdHook(c echo.Context) error {
	if s.cfg.ArgoCDToken == "" {
		return echo.NewHTTPError(http.StatusNotFound, "ArgoCD notifications are not configured")
	}
	body, err := readBody(c, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	if t := bearer(c.Request()); t == "" || !equal(t, s.cfg.ArgoCDToken) {
		s.metrics.rejected.Add(1)
		return refuse("bad ArgoCD token")
	}
	var n ArgoCDNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return &badRequest{reason: "malformed JSON body: " + err.Error()}
	}
	if n.App == "" || n.Stage == "" {
		return &badRequest{reason: `ArgoCD notification without "app" and "stage" (see the README's notification template)`}
	}
	d := store.Delivery{Source: "argocd", Event: "ArgoCD Notification", Key: randomKey(), Body: body, ReceivedAt: s.now(),
		Headers: map[string]string{"User-Agent": c.Request().UserAgent()}}
	return s.enqueue(c, d, nil)
}

// enqueue stores d and answers 200 once it is durable. When a worker of
// this process has room, d is stored leased to it and handed over in
// memory, with hook (its decoded body, if any); otherwise it is stored
// queued and the workers are woken.
func (s *Server) enqueue(c echo.Context, d store.Delivery, hook *gitlabHook) error {
	start := s.now()
	h := s.handoff
	mine := h.reserve()
	if mine {
		d.LeaseOwner, d.LeaseUntil = h.owner, start.Add(h.ttl)
	}
	id, dup, err := s.queue.Enqueue(c.Request().Context(), d)
	if err != nil || dup {
		if mine {
			<-h.slots
		}
	}
	if err != nil {
		return fmt.Errorf("store delivery: %w", err)
	}
	s.metrics.ackLatency.observe(s.now().Sub(start))
	switch {
	case dup:
		s.metrics.duplicates.Add(1)
	case mine:
		s.metrics.accepted.Add(1)
		d.ID, d.State, d.Attempts = id, store.Leased, 1
		h.ch <- handed{d: d, hook: hook} // never blocks: the reserved place is d's
	default:
		s.metrics.accepted.Add(1)
		s.kickWorkers()
	}
	return c.NoContent(http.StatusOK)
}

// dedupeKey is GitLab's Idempotency-Key (stable across re-sends; unlike
// X-Gitlab-Webhook-UUID, which is new on every execution), or the signed
// webhook-id, or a hash of the event and body.
func dedupeKey(h http.Header, event string, body []byte) string {
	if k := h.Get("Idempotency-Key"); k != "" {
		return "idem:" + k
	}
	if k := h.Get("webhook-id"); k != "" {
		return "idem:" + k
	}
	sum := sha256.Sum256(append([]byte(event+"\n"), body...))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func keptHeaders(h http.Header) map[string]string {
	m := map[string]string{}
	for _, k := range headersKept {
		if v := h.Get(k); v != "" {
			m[k] = v
		}
	}
	return m
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "rand:" + hex.EncodeToString(b[:])
}

// ArgoCDNotification is the body lotsed expects from ArgoCD notifications
// (the README has the template): which app and stage, and its state.
type ArgoCDNotification struct {
	App         string   `json:"app"`
	Stage       string   `json:"stage"`
	Application string   `json:"application"`
	Health      string   `json:"health"` // Healthy, Progressing, Degraded, ...
	Sync        string   `json:"sync"`   // Synced, OutOfSync
	Revision    string   `json:"revision"`
	Images      []string `json:"images"`
	Message     string   `json:"message"`
}

// watches reports whether deliveries of project concern lotsed: the GitOps
// project and the apps' source projects.
func (s *Server) watches(project string) bool {
	if project == "" {
		return true
	}
	p := s.projects.Load()
	return p == nil || (*p)[strings.ToLower(project)]
}
