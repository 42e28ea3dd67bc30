package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go"
)

// Sentinel errors. Every error returned by Client wraps at most one of them;
// test with errors.Is. *APIError carries the details.
var (
	// ErrNotFound: the project, file, ref, commit, MR or note does not exist (or is invisible).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the state changed since it was read: a file changed since
	// last_commit_id, or the MR source branch moved (merge/approve SHA mismatch).
	// Re-read and re-apply.
	ErrConflict = errors.New("changed since it was read")
	// ErrAlreadyExists: an open MR for the source branch, a file or a branch already exists.
	// For MRs, APIError.ExistingIID names the existing one when GitLab says it.
	ErrAlreadyExists = errors.New("already exists")
	// ErrNotMergeable: GitLab refused to merge (405/422); APIError.DetailedMergeStatus says why.
	ErrNotMergeable = errors.New("merge request not mergeable")
	// ErrUnauthorized: the token is missing, unknown or lacks the permission (401/403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrSameStatus: the commit status is already in the posted state; callers treat it as success.
	ErrSameStatus = errors.New("commit status already in that state")
	// ErrInvalid: GitLab rejected the request as invalid (other 400/422 answers).
	ErrInvalid = errors.New("invalid request")
	// ErrRateLimited: 429 answers persisted through the retry budget. Retryable.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: 5xx answers or transport failures persisted. Retryable.
	ErrUnavailable = errors.New("gitlab unavailable")
	// ErrUnknownOutcome: a non-idempotent write failed in a way that leaves
	// unknown whether GitLab performed it, and reconciliation could not tell. Retryable
	// only after re-reading the state.
	ErrUnknownOutcome = errors.New("outcome of write unknown")
)

// APIError describes a failed GitLab call. It never contains credentials.
type APIError struct {
	// Op names the client operation, e.g. "create commit".
	Op string
	// Method and Path of the HTTP request (path without query string).
	Method, Path string
	// StatusCode is the HTTP status, 0 for transport errors.
	StatusCode int
	// Message is GitLab's error message.
	Message string
	// Kind is the sentinel error this wraps.
	Kind error
	// ExistingIID is the IID of the open MR that blocks creating another (ErrAlreadyExists).
	ExistingIID int64
	// DetailedMergeStatus explains ErrNotMergeable (e.g. "checking", "not_approved", "conflict").
	DetailedMergeStatus string
	// RetryAfter is the server's requested wait for 429 answers.
	RetryAfter time.Duration
	// Err is the underlying transport error, if any.
	Err error
}

// Error describes the failure without credentials.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gitlab %s: %v", e.Op, e.Kind)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (%s %s: %d", e.Method, e.Path, e.StatusCode)
		if e.Message != "" {
			fmt.Fprintf(&b, " %s", e.Message)
		}
		b.WriteString(")")
	}
	if e.DetailedMergeStatus != "" {
		fmt.Fprintf(&b, " [detailed_merge_status %s]", e.DetailedMergeStatus)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the sentinel and the transport error.
func (e *APIError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Retryable reports whether repeating the operation later may succeed without
// changing it: rate limits, server errors, transport failures and unknown outcomes
// (re-read first). Conflicts are not retryable as such: re-read and re-apply.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome)
}

// Terminal reports whether err is a failure that repeating will not fix.
func Terminal(err error) bool { return err != nil && !Retryable(err) }

var existingMRRE = regexp.MustCompile(`Another open merge request already exists for this source branch: !(\d+)`)

// parseExistingIID extracts the iid from GitLab's 409 message, or 0.
func parseExistingIID(msg string) int64 {
	m := existingMRRE.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// errorMessage extracts GitLab's message from an error body: {"message": string|[]|{}} or {"error": ...} or text.
func errorMessage(body []byte) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return strings.TrimSpace(string(body))
	}
	for _, k := range []string{"message", "error"} {
		switch v := m[k].(type) {
		case string:
			return v
		case []any:
			parts := make([]string, 0, len(v))
			for _, x := range v {
				parts = append(parts, fmt.Sprint(x))
			}
			return strings.Join(parts, "; ")
		case map[string]any:
			b, _ := json.Marshal(v)
			return string(b)
		}
	}
	return strings.TrimSpace(string(body))
}

// classify turns a client-go result into an *APIError.
func classify(op string, resp *gl.Response, err error) *APIError {
	e := &APIError{Op: op}
	var hr *http.Response
	if resp != nil {
		hr = resp.Response
	}
	var er *gl.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		hr = er.Response
		e.Message = errorMessage(er.Body)
	}
	if hr == nil {
		e.Kind, e.Err = ErrUnavailable, scrub(err)
		return e
	}
	if hr.Request != nil {
		e.Method, e.Path = hr.Request.Method, hr.Request.URL.EscapedPath()
	}
	e.StatusCode = hr.StatusCode
	msg := e.Message
	switch code := hr.StatusCode; {
	case code == http.StatusTooManyRequests:
		e.Kind = ErrRateLimited
		e.RetryAfter = retryAfter(hr.Header, time.Now())
	case code >= 500:
		e.Kind = ErrUnavailable
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Kind = ErrUnauthorized
	case code == http.StatusNotFound:
		e.Kind = ErrNotFound
	case strings.Contains(msg, "has changed since you started editing it"),
		strings.Contains(msg, "attempting to update a file that has changed"):
		e.Kind = ErrConflict
	case strings.Contains(msg, "Cannot transition status"):
		e.Kind = ErrSameStatus
	case code == http.StatusConflict && strings.Contains(msg, "Another open merge request already exists"):
		e.Kind = ErrAlreadyExists
		e.ExistingIID = parseExistingIID(msg)
	case code == http.StatusConflict:
		e.Kind = ErrConflict
	case strings.Contains(msg, "already exists"):
		e.Kind = ErrAlreadyExists
	default:
		e.Kind = ErrInvalid
	}
	return e
}

// retryAfter reads Retry-After (seconds or HTTP date), else RateLimit-Reset (unix time).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return time.Duration(n) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if v := h.Get("RateLimit-Reset"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Unix(n, 0).Sub(now), 0)
		}
	}
	return -1
}

// scrub keeps transport errors free of URLs with query strings (job_token=...).
func scrub(err error) error {
	if err == nil {
		return nil
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && strings.Contains(err.Error(), "token") {
		return errors.New("transport error")
	}
	return err
}

// sentBeforeFailure reports whether a transport error certainly happened before
// the request reached the server (dial failures), so even writes may be re-sent.
func sentBeforeFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}
