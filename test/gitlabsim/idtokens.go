package gitlabsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CI/CD ID tokens (`id_tokens:` in .gitlab-ci.yml): GitLab signs them with an
// RSA key (RS256) and publishes the public keys at /oauth/discovery/keys,
// with OpenID discovery at /.well-known/openid-configuration; the issuer is
// the instance's base URL. The simulator mints them for jobs of its
// projects with the claims GitLab sets (doc/ci/secrets/id_token_authentication.md).

// DefaultIDTokenLifetime is the lifetime of a minted ID token when the spec
// names none: GitLab's token expires at the job timeout, and a project's
// default job timeout is 60 minutes.
const DefaultIDTokenLifetime = time.Hour

// idKeys are the simulator's ID-token signing keys: the current one signs,
// the previous one (after RotateIDTokenKey) is still published.
type idKeys struct {
	mu       sync.Mutex
	current  *idKey
	previous *idKey
}

type idKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func newIDKey() (*idKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("gitlabsim: ID token key: %w", err)
	}
	return &idKey{kid: thumbprint(&priv.PublicKey), priv: priv}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint, which GitLab uses as kid.
func thumbprint(pub *rsa.PublicKey) string {
	e, n := b64(big.NewInt(int64(pub.E)).Bytes()), b64(pub.N.Bytes())
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signing returns the current key, generating the first one on first use
// (so simulators that mint no token pay nothing for it).
func (s *Sim) signing() (*idKey, error) {
	s.idKeys.mu.Lock()
	defer s.idKeys.mu.Unlock()
	if s.idKeys.current == nil {
		k, err := newIDKey()
		if err != nil {
			return nil, err
		}
		s.idKeys.current = k
	}
	return s.idKeys.current, nil
}

// RotateIDTokenKey makes a new signing key current and returns its kid. The
// key it replaces stays published until the next rotation; keys before it
// are withdrawn.
func (s *Sim) RotateIDTokenKey() (string, error) {
	if _, err := s.signing(); err != nil {
		return "", err
	}
	k, err := newIDKey()
	if err != nil {
		return "", err
	}
	s.idKeys.mu.Lock()
	defer s.idKeys.mu.Unlock()
	s.idKeys.previous, s.idKeys.current = s.idKeys.current, k
	return k.kid, nil
}

// IDTokenKeyID returns the kid of the key that signs new ID tokens.
func (s *Sim) IDTokenKeyID() (string, error) {
	k, err := s.signing()
	if err != nil {
		return "", err
	}
	return k.kid, nil
}

// jwks renders the published keys as GitLab does.
func (s *Sim) jwks() (map[string]any, error) {
	if _, err := s.signing(); err != nil {
		return nil, err
	}
	s.idKeys.mu.Lock()
	defer s.idKeys.mu.Unlock()
	keys := []map[string]any{}
	for _, k := range []*idKey{s.idKeys.current, s.idKeys.previous} {
		if k == nil {
			continue
		}
		pub := &k.priv.PublicKey
		keys = append(keys, map[string]any{"kty": "RSA", "kid": k.kid, "e": b64(big.NewInt(int64(pub.E)).Bytes()),
			"n": b64(pub.N.Bytes()), "use": "sig", "alg": "RS256"})
	}
	return map[string]any{"keys": keys}, nil
}

func (s *Sim) oidcRoutes() {
	s.public("GET /oauth/discovery/keys", ClassOIDC, func(w http.ResponseWriter, r *http.Request) {
		set, err := s.jwks()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error()})
			return
		}
		w.Header().Set("Cache-Control", "max-age=86400, public")
		writeJSON(w, http.StatusOK, set)
	})
	s.public("GET /.well-known/openid-configuration", ClassOIDC, func(w http.ResponseWriter, r *http.Request) {
		base := s.BaseURL()
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                base,
			"authorization_endpoint":                base + "/oauth/authorize",
			"token_endpoint":                        base + "/oauth/token",
			"revocation_endpoint":                   base + "/oauth/revoke",
			"introspection_endpoint":                base + "/oauth/introspect",
			"userinfo_endpoint":                     base + "/oauth/userinfo",
			"jwks_uri":                              base + "/oauth/discovery/keys",
			"scopes_supported":                      []string{"api", "read_api", "read_user", "read_repository", "write_repository", "openid", "profile", "email"},
			"response_types_supported":              []string{"code"},
			"response_modes_supported":              []string{"query", "fragment", "form_post"},
			"grant_types_supported":                 []string{"authorization_code", "password", "client_credentials", "device_code", "refresh_token"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claim_types_supported":                 []string{"normal"},
			"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email", "email_verified", "website", "profile", "picture", "groups", "groups_direct"},
			"code_challenge_methods_supported":      []string{"plain", "S256"},
		})
	})
}

// public registers an unauthenticated endpoint that faults and the request
// log see like the REST API.
func (s *Sim) public(pattern, class string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		rec := RequestRecord{Method: r.Method, Path: r.URL.EscapedPath(), Class: class, At: s.now()}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			rec.Status = sw.status()
			s.recordRequest(rec)
		}()
		if f := s.faults.match(class, r.Method); f != nil {
			rec.Fault = true
			s.writeFault(sw, f)
			return
		}
		h(sw, r)
	})
}

// Audience is the aud of an ID token: one string or several. In JSON it is a
// string or an array of strings.
type Audience []string

// UnmarshalJSON accepts "aud" or ["aud1","aud2"].
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = many
	return nil
}

// IDTokenSpec describes the job an ID token is minted for.
type IDTokenSpec struct {
	// Project is the numeric id or path (the admin API takes it from the URL).
	Project string `json:"-"`
	// Aud is what the job asked for in `id_tokens: X: aud:`. Required.
	Aud Audience `json:"aud"`
	// PipelineID names a pipeline created with CreatePipeline: Ref, SHA,
	// Source and Username default to its. 0: a new pipeline id (no pipeline
	// is created).
	PipelineID int `json:"pipeline_id,omitempty"`
	// JobID defaults to PipelineID*1000, the id the first build of the
	// pipeline has in Pipeline Hooks.
	JobID int `json:"job_id,omitempty"`
	// Ref is the branch; default the pipeline's, else the default branch.
	Ref string `json:"ref,omitempty"`
	// SHA defaults to the pipeline's, else the head of Ref.
	SHA string `json:"sha,omitempty"`
	// Source is pipeline_source; default the pipeline's, else push.
	Source string `json:"pipeline_source,omitempty"`
	// Username runs the job: at least Developer, and allowed to push or
	// merge to Ref when it is protected (as GitLab requires to run a
	// pipeline there). Default the pipeline's user, else the project's
	// first maintainer.
	Username string `json:"username,omitempty"`
	// Environment adds environment, environment_protected (from
	// EnvironmentProtected; protected environments are GitLab Premium),
	// deployment_tier and environment_action "start".
	Environment          string `json:"environment,omitempty"`
	EnvironmentProtected bool   `json:"environment_protected,omitempty"`
	// ExpiresIn is the lifetime (exp - iat); default DefaultIDTokenLifetime.
	ExpiresIn time.Duration `json:"-"`
}

// IDToken mints a CI/CD ID token for a job of the project, signed with the
// current key: iss is BaseURL (set it, e.g. with SetBaseURL(srv.URL), before
// minting from Go when no request has reached the simulator yet), sub is
// project_path:<path>:ref_type:branch:ref:<ref>, ref_protected follows the
// project's protected branches, iat is now, nbf now-5s (as GitLab), exp
// iat+ExpiresIn.
func (s *Sim) IDToken(spec IDTokenSpec) (string, error) {
	if len(spec.Aud) == 0 {
		return "", errors.New("gitlabsim: ID token: aud is required")
	}
	for _, a := range spec.Aud {
		if a == "" {
			return "", errors.New("gitlabsim: ID token: empty aud")
		}
	}
	if spec.ExpiresIn < 0 {
		return "", errors.New("gitlabsim: ID token: negative lifetime")
	}
	if spec.ExpiresIn == 0 {
		spec.ExpiresIn = DefaultIDTokenLifetime
	}
	key, err := s.signing()
	if err != nil {
		return "", err
	}
	p, err := s.lookupProject(spec.Project)
	if err != nil {
		return "", err
	}
	var u *user
	if spec.Username != "" {
		if u, err = s.lookupUser(spec.Username); err != nil {
			return "", err
		}
	}
	base := s.BaseURL()
	now := s.opts.Now().UTC()

	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := s.ctx
	if spec.PipelineID != 0 {
		pl := p.pipeline(spec.PipelineID)
		if pl == nil {
			return "", fmt.Errorf("pipeline %d: %w", spec.PipelineID, ErrUnknown)
		}
		if spec.Ref == "" {
			spec.Ref = pl.Ref
		}
		if spec.SHA == "" && spec.Ref == pl.Ref {
			spec.SHA = pl.SHA
		}
		if spec.Source == "" {
			spec.Source = pl.Source
		}
		if u == nil {
			u = s.userByID(pl.UserID)
		}
	} else {
		spec.PipelineID = s.newID("pipelines")
	}
	if spec.JobID == 0 {
		spec.JobID = spec.PipelineID * 1000
	}
	if spec.Ref == "" {
		spec.Ref = p.defaultBranch
	}
	if spec.Source == "" {
		spec.Source = "push"
	}
	if u == nil {
		u = s.firstMaintainer(p)
	}
	if u == nil {
		return "", fmt.Errorf("project %s has no maintainer to run the job: %w", p.FullPath, ErrUnknown)
	}
	head, err := p.repo.branchHead(ctx, spec.Ref)
	if err != nil {
		return "", fmt.Errorf("ref %q: %w", spec.Ref, ErrUnknown)
	}
	if spec.SHA == "" {
		spec.SHA = head
	} else if spec.SHA, err = p.repo.resolve(ctx, spec.SHA); err != nil {
		return "", fmt.Errorf("sha %q: %w", spec.SHA, ErrUnknown)
	}
	if p.role(u) < RoleDeveloper {
		return "", errMsg(http.StatusForbidden, fmt.Sprintf("%s may not run pipelines in %s", u.Username, p.FullPath))
	}
	protected := p.protection(spec.Ref) != nil
	if protected && !p.canPush(u, spec.Ref) && !p.canMerge(u, spec.Ref) {
		return "", errMsg(http.StatusForbidden, fmt.Sprintf("%s may not run pipelines on protected branch %s", u.Username, spec.Ref))
	}

	ns := p.FullPath[:strings.LastIndex(p.FullPath, "/")]
	claims := map[string]any{
		"namespace_id":       strconv.Itoa(1000 + p.ID),
		"namespace_path":     ns,
		"project_id":         strconv.Itoa(p.ID),
		"project_path":       p.FullPath,
		"user_id":            strconv.Itoa(u.ID),
		"user_login":         u.Username,
		"user_email":         u.Email,
		"pipeline_id":        strconv.Itoa(spec.PipelineID),
		"pipeline_source":    spec.Source,
		"job_id":             strconv.Itoa(spec.JobID),
		"ref":                spec.Ref,
		"ref_type":           "branch",
		"ref_path":           "refs/heads/" + spec.Ref,
		"ref_protected":      strconv.FormatBool(protected),
		"runner_id":          1,
		"runner_environment": "self-hosted",
		"sha":                spec.SHA,
		"project_visibility": p.visibility,
		"ci_config_ref_uri":  hostPath(base) + "/" + p.FullPath + "//.gitlab-ci.yml@refs/heads/" + spec.Ref,
		"ci_config_sha":      spec.SHA,
		"jti":                newUUID(),
		"iss":                base,
		"iat":                now.Unix(),
		"nbf":                now.Unix() - 5,
		"exp":                now.Add(spec.ExpiresIn).Unix(),
		"sub":                "project_path:" + p.FullPath + ":ref_type:branch:ref:" + spec.Ref,
	}
	if len(spec.Aud) == 1 {
		claims["aud"] = spec.Aud[0]
	} else {
		claims["aud"] = []string(spec.Aud)
	}
	if spec.Environment != "" {
		claims["environment"] = spec.Environment
		claims["environment_protected"] = strconv.FormatBool(spec.EnvironmentProtected)
		claims["deployment_tier"] = guessTier(spec.Environment)
		claims["environment_action"] = "start"
	}
	return signRS256(key, claims)
}

// hostPath is the base URL without its scheme (host, port and path), as
// ci_config_ref_uri starts.
func hostPath(base string) string {
	return strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
}

// signRS256 writes a compact JWS as GitLab's JWT library does:
// header {"kid":...,"typ":"JWT","alg":"RS256"}.
func signRS256(k *idKey, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]any{"kid": k.kid, "typ": "JWT", "alg": "RS256"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, k.priv, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("gitlabsim: signing ID token: %w", err)
	}
	return input + "." + b64(sig), nil
}

type idTokenRequest struct {
	IDTokenSpec
	ExpiresIn string `json:"expires_in"`
}

func (s *Sim) adminIDToken(r *http.Request, req idTokenRequest) (any, error) {
	spec := req.IDTokenSpec
	spec.Project = r.PathValue("id")
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			return nil, fmt.Errorf("expires_in: %w", err)
		}
		spec.ExpiresIn = d
	}
	tok, err := s.IDToken(spec)
	if err != nil {
		return nil, err
	}
	return map[string]any{"token": tok}, nil
}
