package webhook

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

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

// readBody reads at most limit bytes of the body of a request whose sender
// is authenticated already: it trusts the declared Content-Length for the
// size of the buffer. Unauthenticated bodies are read by readUnverified.
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

// Enqueuer stores deliveries durably, deduplicated on their key.
type Enqueuer interface {
	Enqueue(ctx context.Context, d store.Delivery) (id int64, duplicate bool, err error)
}

// watcher says which GitLab projects' deliveries lotsed keeps: the GitOps
// project and the apps' source projects of the current lotse.yaml.
type watcher interface {
	watches(project string) bool
}

// intake takes webhook deliveries: it authenticates, validates and decodes
// them, stores them durably and answers, then hands them over or wakes the
// workers. It knows nothing of what the workers do.
type intake struct {
	cfg     *Config
	log     *slog.Logger
	queue   Enqueuer
	auth    *gitlabAuth
	reads   *unverifiedReads // signed deliveries' bodies read before their signature is checked
	handoff *handoff
	watch   watcher
	metrics *metrics
	now     func() time.Time
}

// gitlabHook is POST /webhooks/gitlab: authenticate, validate, store
// durably (deduplicated on Idempotency-Key, or on the signed webhook-id),
// then answer 200. A secret token is checked before the body is read; a
// signature, which covers the body, after it was read within the budget of
// unverified reads.
func (in *intake) gitlabHook(c echo.Context) error {
	r := c.Request()
	signed, err := in.auth.admit(r.Header, in.now())
	if err != nil {
		in.metrics.reject("gitlab")
		return err
	}
	var body []byte
	if signed {
		parts, release, err := readUnverified(c, in.reads, in.cfg.MaxBody)
		if he := (*echo.HTTPError)(nil); errors.As(err, &he) && he.Code == http.StatusServiceUnavailable {
			// GitLab does not send it again: say so.
			in.log.WarnContext(r.Context(), "signed delivery refused: the budget of unverified bodies is spent (--unverified-body-budget)",
				"remote", c.RealIP(), "webhook_id", truncate(r.Header.Get("webhook-id"), 100))
		}
		if err != nil {
			return err
		}
		err = in.auth.verify(r.Header, parts, in.now())
		if err == nil {
			body = join(parts)
		}
		release()
		if err != nil {
			in.metrics.reject("gitlab")
			return err
		}
	} else if body, err = readBody(c, in.cfg.MaxBody); err != nil {
		return err
	}
	event := r.Header.Get("X-Gitlab-Event")
	if !handledEvents[event] {
		in.metrics.delivery("ignored", event)
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
	if hook.Project.PathWithNamespace != "" && !in.watch.watches(hook.Project.PathWithNamespace) {
		in.metrics.delivery("ignored", event)
		return c.NoContent(http.StatusOK)
	}
	d := store.Delivery{
		Source:     "gitlab",
		Event:      event,
		Key:        dedupeKey(r.Header, event, body, signed),
		Headers:    keptHeaders(r.Header),
		Body:       body,
		ReceivedAt: in.now(),
	}
	return in.enqueue(c, d, hook)
}

// argocdHook is POST /webhooks/argocd: an ArgoCD notification about an
// application's health, authenticated with a bearer token.
func (in *intake) argocdHook(c echo.Context) error {
	if in.cfg.ArgoCDToken == "" {
		return echo.NewHTTPError(http.StatusNotFound, "ArgoCD notifications are not configured")
	}
	if t := bearer(c.Request()); t == "" || !equal(t, in.cfg.ArgoCDToken) {
		in.metrics.reject("argocd")
		return refuse("bad ArgoCD token")
	}
	body, err := readBody(c, in.cfg.MaxBody)
	if err != nil {
		return err
	}
	var n ArgoCDNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return &badRequest{reason: "malformed JSON body: " + err.Error()}
	}
	if n.App == "" || n.Stage == "" {
		return &badRequest{reason: `ArgoCD notification without "app" and "stage" (see the README's notification template)`}
	}
	d := store.Delivery{Source: "argocd", Event: argoCDEvent, Key: randomKey(), Body: body, ReceivedAt: in.now(),
		Headers: map[string]string{"User-Agent": c.Request().UserAgent()}}
	return in.enqueue(c, d, nil)
}

// enqueue stores d and answers 200 once it is durable. When a worker of
// this process has room, d is stored leased to it and handed over in
// memory, with hook (its decoded body, if any); otherwise it is stored
// queued and the workers are woken.
func (in *intake) enqueue(c echo.Context, d store.Delivery, hook *gitlabHook) error {
	start := in.now()
	mine := in.handoff.reserve(&d, start)
	id, dup, err := in.queue.Enqueue(c.Request().Context(), d)
	if mine && (err != nil || dup) {
		in.handoff.unreserve()
	}
	if err != nil {
		return fmt.Errorf("store delivery: %w", err)
	}
	in.metrics.ackLatency.observe(in.now().Sub(start))
	switch {
	case dup:
		in.metrics.delivery("duplicate", d.Event)
	case mine:
		in.metrics.delivery("accepted", d.Event)
		d.ID, d.State, d.Attempts = id, store.Leased, 1
		in.handoff.give(handed{d: d, hook: hook})
	default:
		in.metrics.delivery("accepted", d.Event)
		in.handoff.wake()
	}
	return c.NoContent(http.StatusOK)
}

// dedupeKey is GitLab's Idempotency-Key (stable across re-sends; unlike
// X-Gitlab-Webhook-UUID, which is new on every execution), or the signed
// webhook-id, or a hash of the event and body. For a signed delivery it is
// always the webhook-id, which the signature covers (GitLab sends the
// Idempotency-Key's value in it): a captured delivery replayed under a new
// Idempotency-Key is the same delivery.
func dedupeKey(h http.Header, event string, body []byte, signed bool) string {
	if k := h.Get("webhook-id"); signed && k != "" {
		return "idem:" + k
	}
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
