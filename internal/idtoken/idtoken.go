// Package idtoken verifies GitLab CI/CD ID tokens: the JWTs a job asks for
// with the `id_tokens:` keyword and hands to a service instead of a
// long-lived secret.
//
// A Verifier checks a token against the GitLab instance's published keys
// (<gitlab>/oauth/discovery/keys, a JWKS), its issuer (the instance's base
// URL), one expected audience and the token's time window, and returns the
// job's claims. Deciding what a project, ref or user may do with a valid
// token is the caller's policy: a token for an unprotected branch is valid.
//
// Errors match ErrInvalid (answer 401) or ErrKeysUnavailable (answer 503)
// with errors.Is; the invalid ones also match one cause (ErrExpired,
// ErrAudience, ...).
package idtoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Error classes. Every error of Verify matches exactly one of them.
var (
	// ErrInvalid: the token is not an acceptable ID token (HTTP 401).
	ErrInvalid = errors.New("invalid ID token")
	// ErrKeysUnavailable: GitLab's keys could not be read, so the token
	// could not be checked (HTTP 503; the caller may retry later).
	ErrKeysUnavailable = errors.New("GitLab ID token keys unavailable")
)

// Causes of ErrInvalid; an invalid-token error matches ErrInvalid and one of these.
var (
	ErrMalformed   = errors.New("malformed")
	ErrAlgorithm   = errors.New("algorithm not accepted")
	ErrUnknownKey  = errors.New("unknown signing key")
	ErrSignature   = errors.New("signature does not verify")
	ErrIssuer      = errors.New("issuer not accepted")
	ErrAudience    = errors.New("audience not accepted")
	ErrExpired     = errors.New("expired")
	ErrNotYetValid = errors.New("not yet valid")
	ErrNotCIJob    = errors.New("not a CI job token")
)

// MaxTokenSize bounds the tokens Verify parses; GitLab's are about 1.5 KiB.
const MaxTokenSize = 16 << 10

// maxKeySetSize bounds the JWKS response body.
const maxKeySetSize = 1 << 20

// minRSABits is the smallest RSA modulus accepted from the key set.
const minRSABits = 2048

// algorithms are the signature algorithms a Verifier accepts, each only with
// a key of its type (RSA for RS*, the matching curve for ES*). GitLab signs
// with RS256.
var algorithms = map[string]bool{"RS256": true, "RS384": true, "RS512": true, "ES256": true, "ES384": true}

// Doer sends HTTP requests; *http.Client implements it.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the GitLab instance's base URL, e.g. https://gitlab.example.com;
	// a token's iss must equal it exactly (a trailing slash here is dropped). Required.
	Issuer string
	// Audience is the aud a job must ask for (`id_tokens: X: aud: ...`),
	// usually the service's own URL. Required.
	Audience string
	// KeysURL is the JWKS; default Issuer + "/oauth/discovery/keys".
	KeysURL string
	// HTTP fetches the keys; nil uses a plain *http.Client.
	HTTP Doer
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat; default 30s, negative: none.
	Leeway time.Duration
	// FetchTimeout bounds one key-set fetch; default 10s.
	FetchTimeout time.Duration
	// MinRefetch is the least time between two key-set fetches, whatever
	// tokens arrive; default 1 minute. A token naming a kid that is not in a
	// set fetched less than MinRefetch ago is refused (ErrUnknownKey)
	// without a fetch, and after a failed fetch the failure is answered
	// (ErrKeysUnavailable) for MinRefetch without a new one.
	MinRefetch time.Duration
	// KeysTTL is how long a fetched key set is used before it is fetched
	// again, so keys GitLab withdrew stop being accepted; default 1 hour.
	// When that fetch fails, no token is accepted until one succeeds.
	KeysTTL time.Duration
}

// Claims are the claims of a valid GitLab CI/CD ID token. GitLab sends the
// numeric ids as strings ("20") and the booleans as "true"/"false"; they are
// converted here (a missing or empty one is 0 or false).
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub, by default project_path:<path>:ref_type:<type>:ref:<ref>
	Audience  []string  // aud
	ID        string    // jti
	IssuedAt  time.Time // iat (zero if absent)
	NotBefore time.Time // nbf (zero if absent)
	Expiry    time.Time // exp

	NamespaceID          int64  // namespace_id
	NamespacePath        string // namespace_path
	ProjectID            int64  // project_id
	ProjectPath          string // project_path
	ProjectVisibility    string // project_visibility
	UserID               int64  // user_id
	UserLogin            string // user_login
	UserEmail            string // user_email
	PipelineID           int64  // pipeline_id
	PipelineSource       string // pipeline_source: push, web, schedule, merge_request_event, ...
	JobID                int64  // job_id
	Ref                  string // ref: branch or tag name, without refs/heads/
	RefType              string // ref_type: branch or tag
	RefPath              string // ref_path: refs/heads/<ref> or refs/tags/<ref>
	RefProtected         bool   // ref_protected
	Environment          string // environment
	EnvironmentProtected bool   // environment_protected
	DeploymentTier       string // deployment_tier
	EnvironmentAction    string // environment_action
	RunnerID             int64  // runner_id
	RunnerEnvironment    string // runner_environment: gitlab-hosted or self-hosted
	SHA                  string // sha
	CIConfigRefURI       string // ci_config_ref_uri, e.g. gitlab.example.com/g/p//.gitlab-ci.yml@refs/heads/main
	CIConfigSHA          string // ci_config_sha
}

// Verifier verifies ID tokens of one GitLab instance for one audience. It is
// safe for concurrent use.
type Verifier struct {
	cfg Config

	mu        sync.Mutex
	keys      map[string]verifyKey // by kid
	fetchedAt time.Time            // last successful fetch (zero: never)
	attemptAt time.Time            // last fetch attempt
	lastErr   error                // outcome of the last attempt
	inflight  *fetch
}

type verifyKey struct {
	kid string
	alg string // the JWK's alg, "" if it names none
	pub any    // *rsa.PublicKey or *ecdsa.PublicKey
}

type fetch struct {
	done chan struct{}
	err  error
}

// New returns a Verifier. It fetches nothing until the first Verify.
func New(cfg Config) (*Verifier, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if err := absoluteURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("idtoken: issuer: %w", err)
	}
	if cfg.Audience == "" {
		return nil, errors.New("idtoken: audience is required")
	}
	if cfg.KeysURL == "" {
		cfg.KeysURL = cfg.Issuer + "/oauth/discovery/keys"
	}
	if err := absoluteURL(cfg.KeysURL); err != nil {
		return nil, fmt.Errorf("idtoken: keys URL: %w", err)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = 30 * time.Second
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = time.Minute
	}
	if cfg.KeysTTL <= 0 {
		cfg.KeysTTL = time.Hour
	}
	if cfg.KeysTTL < cfg.MinRefetch {
		cfg.KeysTTL = cfg.MinRefetch
	}
	return &Verifier{cfg: cfg}, nil
}

func absoluteURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func invalid(cause error, format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalid, cause, fmt.Sprintf(format, args...))
}

// header is the part of the JOSE header looked at before go-jose parses it.
type header struct {
	Alg any    `json:"alg"`
	Kid string `json:"kid"`
}

// Verify checks token and returns its claims. The error matches ErrInvalid or
// ErrKeysUnavailable (see the package documentation).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, invalid(ErrMalformed, "token is %d bytes, more than %d", len(token), MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalid(ErrMalformed, "a signed JWT has 3 dot-separated parts, this has %d", len(parts))
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, invalid(ErrMalformed, "header is not base64url: %v", err)
	}
	var h header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, invalid(ErrMalformed, "header is not a JSON object: %v", err)
	}
	alg, ok := h.Alg.(string)
	if !ok || !algorithms[alg] {
		return nil, invalid(ErrAlgorithm, "alg %s is not one of RS256, RS384, RS512, ES256, ES384", shortJSON(h.Alg))
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return nil, invalid(ErrMalformed, "%v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid(ErrMalformed, "%d signatures", len(jws.Signatures))
	}
	k, err := v.key(ctx, h.Kid)
	if err != nil {
		return nil, err
	}
	if err := keyFits(k, alg); err != nil {
		return nil, err
	}
	payload, err := jws.Verify(k.pub)
	if err != nil {
		return nil, invalid(ErrSignature, "token is not signed by GitLab key %q", k.kid)
	}
	c, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := v.check(c); err != nil {
		return nil, err
	}
	return c, nil
}

// shortJSON renders an attacker-controlled header value for an error message.
func shortJSON(x any) string {
	b, _ := json.Marshal(x)
	s := string(b)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// keyFits refuses an algorithm that does not belong to the key's type (an
// RS256 token checked with an EC key, an HS256 token with any key).
func keyFits(k verifyKey, alg string) error {
	if k.alg != "" && k.alg != alg {
		return invalid(ErrAlgorithm, "key %q is for %s, the token says %s", k.kid, k.alg, alg)
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RS") {
			return nil
		}
	case *ecdsa.PublicKey:
		if (alg == "ES256" && pub.Curve == elliptic.P256()) || (alg == "ES384" && pub.Curve == elliptic.P384()) {
			return nil
		}
	}
	return invalid(ErrAlgorithm, "alg %s does not fit key %q", alg, k.kid)
}

// check applies the issuer, audience, time and CI-claim rules.
func (v *Verifier) check(c *Claims) error {
	if c.Issuer != v.cfg.Issuer {
		return invalid(ErrIssuer, "issuer %s is not %q", quoteShort(c.Issuer), v.cfg.Issuer)
	}
	found := false
	for _, a := range c.Audience {
		if a == v.cfg.Audience {
			found = true
			break
		}
	}
	if !found {
		return invalid(ErrAudience, "audience %s not accepted, want %q", quoteShort(strings.Join(c.Audience, ", ")), v.cfg.Audience)
	}
	now := v.cfg.Now()
	lw := v.cfg.Leeway
	if c.Expiry.IsZero() {
		return invalid(ErrMalformed, "token has no exp")
	}
	if !now.Before(c.Expiry.Add(lw)) {
		return invalid(ErrExpired, "token expired at %s (now %s, leeway %s)", stamp(c.Expiry), stamp(now), lw)
	}
	if !c.NotBefore.IsZero() && now.Add(lw).Before(c.NotBefore) {
		return invalid(ErrNotYetValid, "token is not valid before %s (now %s, leeway %s)", stamp(c.NotBefore), stamp(now), lw)
	}
	if !c.IssuedAt.IsZero() && now.Add(lw).Before(c.IssuedAt) {
		return invalid(ErrNotYetValid, "token is issued in the future at %s (now %s, leeway %s)", stamp(c.IssuedAt), stamp(now), lw)
	}
	switch {
	case c.ProjectID == 0 || c.ProjectPath == "":
		return invalid(ErrNotCIJob, "no project_id or project_path")
	case c.PipelineID == 0 || c.JobID == 0:
		return invalid(ErrNotCIJob, "no pipeline_id or job_id")
	case c.Ref == "" || c.RefType == "":
		return invalid(ErrNotCIJob, "no ref or ref_type")
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ---- keys ----

// key returns the key named kid (or the only key when kid is empty), fetching
// the key set when there is none, it is older than KeysTTL, or kid is not in
// it; fetches happen at most once per MinRefetch.
func (v *Verifier) key(ctx context.Context, kid string) (verifyKey, error) {
	if k, done, err := v.lookup(kid); done {
		return k, err
	}
	ferr := v.refresh(ctx)
	if k, done, err := v.lookup(kid); done {
		return k, err
	}
	v.mu.Lock()
	fresh, lastErr := v.freshLocked(), v.lastErr
	v.mu.Unlock()
	switch {
	case fresh && (ferr == nil || errors.Is(ferr, errRateLimited) && lastErr == nil):
		return verifyKey{}, invalid(ErrUnknownKey, "GitLab publishes no key %s", quoteShort(kid))
	case errors.Is(ferr, errRateLimited) && lastErr != nil:
		return verifyKey{}, fmt.Errorf("%w (not retried for %s)", lastErr, v.cfg.MinRefetch)
	case ferr != nil && !errors.Is(ferr, errRateLimited):
		return verifyKey{}, ferr
	default:
		return verifyKey{}, fmt.Errorf("%w: no current key set from %s", ErrKeysUnavailable, v.cfg.KeysURL)
	}
}

func (v *Verifier) freshLocked() bool {
	return !v.fetchedAt.IsZero() && v.cfg.Now().Sub(v.fetchedAt) < v.cfg.KeysTTL
}

// lookup answers from a fresh key set: done is true when kid is found, or
// when kid is empty (the only key, or an error if there are several).
func (v *Verifier) lookup(kid string) (k verifyKey, done bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.freshLocked() {
		return verifyKey{}, false, nil
	}
	if kid == "" {
		if len(v.keys) == 1 {
			for _, k := range v.keys {
				return k, true, nil
			}
		}
		return verifyKey{}, true, invalid(ErrUnknownKey, "token names no kid and GitLab publishes %d keys", len(v.keys))
	}
	k, done = v.keys[kid]
	return k, done, nil
}

// errRateLimited: no fetch was made because the last one was too recent.
var errRateLimited = errors.New("key set fetched too recently")

// refresh fetches the key set unless the last attempt was less than
// MinRefetch ago (then it returns errRateLimited) or another caller is
// fetching (then it waits for that fetch). The fetch itself is not cancelled
// with ctx, so a client that goes away cannot waste the attempt; ctx only
// ends the wait.
func (v *Verifier) refresh(ctx context.Context) error {
	v.mu.Lock()
	f := v.inflight
	if f == nil {
		now := v.cfg.Now()
		if !v.attemptAt.IsZero() && now.Sub(v.attemptAt) < v.cfg.MinRefetch {
			v.mu.Unlock()
			return errRateLimited
		}
		f = &fetch{done: make(chan struct{})}
		v.inflight, v.attemptAt = f, now
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.FetchTimeout)
		go func() {
			defer cancel()
			keys, err := v.fetchKeys(fctx)
			v.mu.Lock()
			if err == nil {
				v.keys, v.fetchedAt = keys, v.cfg.Now()
			}
			v.lastErr, v.inflight, f.err = err, nil, err
			v.mu.Unlock()
			close(f.done)
		}()
	}
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for %s: %w", ErrKeysUnavailable, v.cfg.KeysURL, ctx.Err())
	}
}

// fetchKeys reads the JWKS. Keys that are not RSA (2048 bits or more) or
// EC P-256/P-384 public signing keys are left out; a set without any usable
// key is an error.
func (v *Verifier) fetchKeys(ctx context.Context) (map[string]verifyKey, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: GET %s: %s", ErrKeysUnavailable, v.cfg.KeysURL, fmt.Sprintf(format, args...))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.KeysURL, nil)
	if err != nil {
		return nil, fail("%v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetSize+1))
	if err != nil {
		return nil, fail("reading body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fail("status %s", resp.Status)
	}
	if len(body) > maxKeySetSize {
		return nil, fail("key set larger than %d bytes", maxKeySetSize)
	}
	return parseKeySet(body, fail)
}

func parseKeySet(body []byte, fail func(string, ...any) error) (map[string]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fail("not a JWKS: %v", err)
	}
	keys := map[string]verifyKey{}
	for _, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			continue // a key type this verifier does not know
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if _, dup := keys[jwk.KeyID]; dup {
			continue // the first key of a kid wins
		}
		switch pub := jwk.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
				continue
			}
		default:
			continue // symmetric, private or other keys are never used
		}
		keys[jwk.KeyID] = verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, pub: jwk.Key}
	}
	if len(keys) == 0 {
		return nil, fail("no usable signing key among %d", len(set.Keys))
	}
	return keys, nil
}
