// Package releaseapi is the wire format of lotsed's release endpoint,
// POST /api/v1/releases, and a client for it (`lotse bump` with LOTSE_URL).
//
// An app's pipeline hands lotsed a release with the job's GitLab CI ID
// token as its bearer token; lotsed checks the token and its own policy,
// runs the first stage's gates and commits the image into that stage. The
// pipeline holds no GitOps token.
//
// Answers:
//
//	201 Created               committed (Response, Changed true)
//	200 OK                    the stage holds the image already (Changed false)
//	400 Bad Request           the body is malformed (Error.Message)
//	401 Unauthorized          "invalid ID token: <cause>"
//	403 Forbidden             a valid token that may not release this (wrong project, unprotected ref,
//	                          another repository or commit, a token that released another image)
//	404 Not Found             lotse.yaml has no such app
//	422 Unprocessable Entity  a gate of the first stage failed (Error.Reasons)
//	503 Service Unavailable   GitLab's keys or lotse.yaml could not be read; try again
package releaseapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Path is where lotsed takes releases.
const Path = "/api/v1/releases"

// MaxBody bounds a request body.
const MaxBody = 16 << 10

// Request is the body of POST /api/v1/releases. Unknown fields are refused.
// The source project, commit and pipeline are never taken from the body:
// they come from the ID token.
type Request struct {
	// App is the app's name in lotse.yaml. Required.
	App string `json:"app"`
	// Image is REPO[:TAG]@sha256:..., in the app's image repository. Required.
	Image string `json:"image"`
	// Stage, when given, must be the app's first stage; releases enter
	// there and nowhere else.
	Stage string `json:"stage,omitempty"`
	// SourceCommit, when given, must be the token's sha (the job's commit);
	// it lets a caller assert what it built.
	SourceCommit string `json:"source_commit,omitempty"`
}

// Gate is the outcome of one gate of the first stage.
type Gate struct {
	Name   string `json:"name"` // signature or scan
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// MergeRequest is the MR of a first stage that is promoted by merge request.
type MergeRequest struct {
	IID    int64  `json:"iid"`
	WebURL string `json:"web_url,omitempty"`
	State  string `json:"state,omitempty"`
}

// Response is what lotsed did with an accepted release.
type Response struct {
	App           string        `json:"app"`
	Stage         string        `json:"stage"`
	Image         string        `json:"image"`
	SourceProject string        `json:"source_project"`
	SourceCommit  string        `json:"source_commit"`
	Pipeline      string        `json:"pipeline"`
	Path          string        `json:"path"`             // the values file
	Branch        string        `json:"branch"`           // committed to (or already holding the image)
	Changed       bool          `json:"changed"`          // false: the stage held the image already
	Commit        string        `json:"commit,omitempty"` // the new commit
	MergeRequest  *MergeRequest `json:"merge_request,omitempty"`
	Gates         []Gate        `json:"gates"`
}

// Error is an answer other than 2xx.
type Error struct {
	Status  int      `json:"-"`
	Message string   `json:"message"`
	Reasons []string `json:"reasons,omitempty"` // the failed gates (422)
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if len(e.Reasons) > 0 {
		msg += ": " + strings.Join(e.Reasons, "; ")
	}
	return fmt.Sprintf("lotsed answered %d: %s", e.Status, msg)
}

// Retryable reports whether the same request may succeed later (lotsed
// could not read GitLab's keys or lotse.yaml, or a proxy failed).
func (e *Error) Retryable() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
}

// Client hands releases to lotsed.
type Client struct {
	// URL is lotsed's base URL, e.g. https://lotsed.example.com.
	URL string
	// Token is the job's ID token; never shown in errors.
	Token string
	// HTTP defaults to a client with a two-minute timeout (the gates
	// verify signatures against the registry before lotsed answers).
	HTTP *http.Client
	// Attempts bounds the tries while lotsed answers 502/503/504 or cannot
	// be reached; default 3. A release is idempotent, so trying again is safe.
	Attempts int
	// Backoff is the wait before the second try, doubled each time; default 2s.
	Backoff time.Duration
}

// Release posts r. A refusal is an *Error.
func (c *Client) Release(ctx context.Context, r Request) (Response, error) {
	u, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return Response{}, fmt.Errorf("lotsed URL %q: want http(s)://host[/prefix]", redact(c.URL))
	}
	u.Path = strings.TrimRight(u.Path, "/") + Path
	body, err := json.Marshal(r)
	if err != nil {
		return Response{}, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Minute}
	}
	attempts, wait := c.Attempts, c.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if wait <= 0 {
		wait = 2 * time.Second
	}
	for i := 1; ; i++ {
		res, err := c.post(ctx, hc, u.String(), body)
		var ae *Error
		retry := errors.As(err, &ae) && ae.Retryable() || err != nil && !errors.As(err, &ae) && ctx.Err() == nil
		if err == nil || !retry || i >= attempts {
			return res, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Response{}, err
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Client) post(ctx context.Context, hc *http.Client, u string, body []byte) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("POST %s: %w", redact(u), scrub(err, c.Token))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Response{}, fmt.Errorf("POST %s: reading the answer: %w", redact(u), err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
			if len(e.Message) > 200 {
				e.Message = e.Message[:200] + "…"
			}
		}
		e.Status = resp.StatusCode
		return Response{}, e
	}
	var out Response
	if err := json.Unmarshal(b, &out); err != nil {
		return Response{}, fmt.Errorf("POST %s: the answer is not a release: %w", redact(u), err)
	}
	return out, nil
}

// redact drops a query and user info from a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// scrub keeps the token out of an error's text.
func scrub(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, "[token]"))
}
