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

// admit checks what a delivery's headers prove before its body is read.
// signed says that a Standard Webhooks signature is to be verified over the
// body (verify): its webhook-id and a fresh webhook-timestamp are there.
// Otherwise the X-Gitlab-Token header authenticated the delivery, and a
// wrong or missing token is refused without reading the body.
func (a *gitlabAuth) admit(h http.Header, now time.Time) (signed bool, err error) {
	if a.key != nil && h.Get("webhook-signature") != "" {
		return true, signedHeaders(h, now, a.tolerance)
	}
	if a.key != nil && a.token == "" {
		return false, refuse("no webhook-signature header")
	}
	got := h.Get("X-Gitlab-Token")
	if got == "" {
		return false, refuse("no X-Gitlab-Token header")
	}
	if !equal(got, a.token) {
		return false, refuse("wrong X-Gitlab-Token")
	}
	return false, nil
}

// verify checks the signature of a delivery admit found signed, over its
// body read in parts.
func (a *gitlabAuth) verify(h http.Header, body [][]byte, now time.Time) error {
	return verifySignature(a.key, h, body, now, a.tolerance)
}

// signedHeaders checks a signed delivery's webhook-id and webhook-timestamp.
func signedHeaders(h http.Header, now time.Time, tolerance time.Duration) error {
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
	return nil
}

// verifySignature checks webhook-signature ("v1,<base64>" entries separated
// by spaces) against HMAC-SHA256(key, id.timestamp.body), body being the
// concatenation of its parts.
func verifySignature(key []byte, h http.Header, body [][]byte, now time.Time, tolerance time.Duration) error {
	if err := signedHeaders(h, now, tolerance); err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	for _, p := range body {
		mac.Write(p)
	}
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

// bearer extracts the token of "Authorization: Bearer T". Basic-auth
// credentials are not a bearer token: a browser replays them on its own,
// to any request a page makes it send (see basicPassword).
func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// basicPassword is the password of basic auth, with which a browser opens
// the board page; nothing else takes it.
func basicPassword(r *http.Request) string {
	if _, p, ok := r.BasicAuth(); ok {
		return p
	}
	return ""
}
