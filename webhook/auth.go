package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errUnauthorized is every authentication failure; the reason goes to the
// log, never to the caller.
var errUnauthorized = errors.New("unauthorized")

// authError carries the reason a request was refused, for the log.
type authError struct{ reason string }

func (e *authError) Error() string { return "unauthorized: " + e.reason }
func (e *authError) Unwrap() error { return errUnauthorized }

func refuse(format string, args ...any) error {
	return &authError{reason: fmt.Sprintf(format, args...)}
}

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// signingKey decodes a Standard Webhooks secret: whsec_ and base64.
func signingKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("want a whsec_ secret (the webhook's signing token)")
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, errors.New("the part after whsec_ is not base64")
	}
	return key, nil
}

// gitlabAuth checks a GitLab delivery. With a signing secret, a valid
// Standard Webhooks signature is accepted (and stale timestamps refused);
// without a signature header, or without a signing secret, the secret token
// must match. Whatever is configured must be satisfied.
type gitlabAuth struct {
	token     string
	key       []byte
	tolerance time.Duration
}

func newGitLabAuth(c *Config) (*gitlabAuth, error) {
	a := &gitlabAuth{token: c.WebhookSecret, tolerance: c.SignatureTolerance}
	if c.SigningSecret != "" {
		k, err := signingKey(c.SigningSecret)
		if err != nil {
			return nil, err
		}
		a.key = k
	}
	return a, nil
}

func (a *gitlabAuth) check(h http.Header, body []byte, now time.Time) error {
	if a.key != nil && h.Get("webhook-signature") != "" {
		return verifySignature(a.key, h, body, now, a.tolerance)
	}
	if a.key != nil && a.token == "" {
		return refuse("no webhook-signature header")
	}
	got := h.Get("X-Gitlab-Token")
	if got == "" {
		return refuse("no X-Gitlab-Token header")
	}
	if !equal(got, a.token) {
		return refuse("wrong X-Gitlab-Token")
	}
	return nil
}

// verifySignature checks webhook-signature ("v1,<base64>" entries separated
// by spaces) against HMAC-SHA256(key, id.timestamp.body).
func verifySignature(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return refuse("signed delivery without webhook-id or webhook-timestamp")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return refuse("bad webhook-timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return refuse("webhook-timestamp is %s away from now (tolerance %s)", d.Round(time.Second), tolerance)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return refuse("no valid v1 signature in webhook-signature")
}

// Sign computes a Standard Webhooks signature header value, for clients and
// tests that send signed deliveries.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := signingKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// bearer extracts the token of "Authorization: Bearer T", or the password
// of basic auth (so a browser can open the board).
func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	if _, p, ok := r.BasicAuth(); ok {
		return p
	}
	return ""
}
