package idtoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lotse/lotse/internal/idtoken"
)

const audience = "https://lotsed.example.com"

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// gitlab serves a JWKS like <gitlab>/oauth/discovery/keys and counts its reads.
type gitlab struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	status  int
	delay   time.Duration
	fetches atomic.Int64
}

func newGitLab(t testing.TB, keys ...jose.JSONWebKey) *gitlab {
	t.Helper()
	g := &gitlab{keys: keys, status: http.StatusOK}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth/discovery/keys" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		g.fetches.Add(1)
		g.mu.Lock()
		status, delay := g.status, g.delay
		body, err := json.Marshal(jose.JSONWebKeySet{Keys: g.keys})
		g.mu.Unlock()
		if err != nil {
			t.Error(err)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gitlab) set(f func(g *gitlab)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

var (
	keyOnce sync.Once
	keyPool []*rsa.PrivateKey
)

// rsaKey returns one of a few 2048-bit test keys (generated once per run).
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keyPool = append(keyPool, k)
		}
	})
	return keyPool[i]
}

func jwk(pub any, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}
}

// claims returns GitLab's documented example payload, valid at t0.
func claims(iss string) map[string]any {
	return map[string]any{
		"namespace_id":          "72",
		"namespace_path":        "my-group",
		"project_id":            "20",
		"project_path":          "my-group/my-project",
		"user_id":               "1",
		"user_login":            "sample-user",
		"user_email":            "sample-user@example.com",
		"pipeline_id":           "574",
		"pipeline_source":       "push",
		"job_id":                "302",
		"ref":                   "main",
		"ref_type":              "branch",
		"ref_path":              "refs/heads/main",
		"ref_protected":         "true",
		"environment":           "production",
		"environment_protected": "false",
		"deployment_tier":       "production",
		"environment_action":    "start",
		"runner_id":             1,
		"runner_environment":    "self-hosted",
		"sha":                   "714a629c0b401fdce83e847fc9589983fc6f46bc",
		"project_visibility":    "private",
		"ci_config_ref_uri":     "gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main",
		"ci_config_sha":         "714a629c0b401fdce83e847fc9589983fc6f46bc",
		"jti":                   "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b",
		"iss":                   iss,
		"iat":                   t0.Unix(),
		"nbf":                   t0.Unix() - 5,
		"exp":                   t0.Add(time.Hour).Unix(),
		"sub":                   "project_path:my-group/my-project:ref_type:branch:ref:main",
		"aud":                   audience,
	}
}

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return signPayload(t, alg, key, kid, payload)
}

// signPayload signs an arbitrary payload as a JWT, with kid when set.
func signPayload(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// raw builds a compact JWS from a header, claims and a signature, unsigned.
func raw(header, c any, sig []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + enc(sig)
}

func newVerifier(t *testing.T, g *gitlab, clk *clock, mod ...func(*idtoken.Config)) *idtoken.Verifier {
	t.Helper()
	cfg := idtoken.Config{Issuer: g.srv.URL, Audience: audience, HTTP: g.srv.Client(), Now: clk.Now}
	for _, m := range mod {
		m(&cfg)
	}
	v, err := idtoken.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func with(c map[string]any, kv ...any) map[string]any {
	c = maps.Clone(c)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestVerify(t *testing.T) {
	k1, k2, other := rsaKey(t, 0), rsaKey(t, 1), rsaKey(t, 2)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := newGitLab(t, jwk(&k1.PublicKey, "k1", "RS256"), jwk(&k2.PublicKey, "k2", ""), jwk(&ec.PublicKey, "ec", "ES256"))
	iss := g.srv.URL
	base := claims(iss)
	pubDER, err := x509.MarshalPKIXPublicKey(&k1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k1.PublicKey)})
	valid := sign(t, jose.RS256, k1, "k1", base)
	parts := strings.Split(valid, ".")
	evil, _ := json.Marshal(with(base, "project_path", "my-group/other", "ref", "main"))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(evil) + "." + parts[2]

	cases := []struct {
		name  string
		token string
		want  error // nil: valid
		check func(t *testing.T, c *idtoken.Claims)
	}{
		{name: "valid", token: valid},
		{name: "valid ES256", token: sign(t, jose.ES256, ec, "ec", base)},
		{name: "valid RS512 with a key naming no alg", token: sign(t, jose.RS512, k2, "k2", base)},
		{name: "audience array", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", []string{"https://vault.example.com", audience}))},
		{name: "wrong audience", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", "https://vault.example.com")), want: idtoken.ErrAudience},
		{name: "audience array without ours", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", []string{"a", "b"})), want: idtoken.ErrAudience},
		{name: "audience prefix", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", audience+".evil")), want: idtoken.ErrAudience},
		{name: "no audience", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", nil)), want: idtoken.ErrAudience},
		{name: "audience not strings", token: sign(t, jose.RS256, k1, "k1", with(base, "aud", []any{1, audience})), want: idtoken.ErrMalformed},
		{name: "wrong issuer", token: sign(t, jose.RS256, k1, "k1", with(base, "iss", "https://gitlab.com")), want: idtoken.ErrIssuer},
		{name: "issuer with trailing slash", token: sign(t, jose.RS256, k1, "k1", with(base, "iss", iss+"/")), want: idtoken.ErrIssuer},
		{name: "no issuer", token: sign(t, jose.RS256, k1, "k1", with(base, "iss", nil)), want: idtoken.ErrIssuer},
		{name: "expired", token: sign(t, jose.RS256, k1, "k1", with(base, "exp", t0.Add(-time.Minute).Unix())), want: idtoken.ErrExpired},
		{name: "expired within leeway", token: sign(t, jose.RS256, k1, "k1", with(base, "exp", t0.Add(-20*time.Second).Unix()))},
		{name: "expiring now plus leeway", token: sign(t, jose.RS256, k1, "k1", with(base, "exp", t0.Add(-30*time.Second).Unix())), want: idtoken.ErrExpired},
		{name: "no exp", token: sign(t, jose.RS256, k1, "k1", with(base, "exp", nil)), want: idtoken.ErrMalformed},
		{name: "exp a string", token: sign(t, jose.RS256, k1, "k1", with(base, "exp", "2099-01-01")), want: idtoken.ErrMalformed},
		{name: "not yet valid", token: sign(t, jose.RS256, k1, "k1", with(base, "nbf", t0.Add(2*time.Minute).Unix())), want: idtoken.ErrNotYetValid},
		{name: "nbf within leeway", token: sign(t, jose.RS256, k1, "k1", with(base, "nbf", t0.Add(20*time.Second).Unix(), "iat", t0.Add(20*time.Second).Unix()))},
		{name: "issued in the future", token: sign(t, jose.RS256, k1, "k1", with(base, "iat", t0.Add(time.Hour).Unix())), want: idtoken.ErrNotYetValid},
		{name: "alg none", token: raw(map[string]any{"alg": "none", "kid": "k1"}, base, nil), want: idtoken.ErrAlgorithm},
		{name: "alg None", token: raw(map[string]any{"alg": "None", "kid": "k1"}, base, nil), want: idtoken.ErrAlgorithm},
		{name: "alg missing", token: raw(map[string]any{"kid": "k1"}, base, nil), want: idtoken.ErrAlgorithm},
		{name: "alg not a string", token: raw(map[string]any{"alg": []string{"RS256"}, "kid": "k1"}, base, []byte("x")), want: idtoken.ErrAlgorithm},
		{name: "HS256 keyed with the public key PEM", token: sign(t, jose.HS256, pubPEM, "k1", base), want: idtoken.ErrAlgorithm},
		{name: "HS256 keyed with the PKCS#1 PEM", token: sign(t, jose.HS256, pkcs1PEM, "k1", base), want: idtoken.ErrAlgorithm},
		{name: "HS256 keyed with the public key DER", token: sign(t, jose.HS256, pubDER, "k1", base), want: idtoken.ErrAlgorithm},
		{name: "PS256 with the right key", token: sign(t, jose.PS256, k1, "k1", base), want: idtoken.ErrAlgorithm},
		{name: "RS512 with a key published for RS256", token: sign(t, jose.RS512, k1, "k1", base), want: idtoken.ErrAlgorithm},
		{name: "ES256 header on an RSA key", token: sign(t, jose.ES256, ec, "k2", base), want: idtoken.ErrAlgorithm},
		{name: "RS256 header on an EC key", token: sign(t, jose.RS256, k1, "ec", base), want: idtoken.ErrAlgorithm},
		{name: "another key, same kid", token: sign(t, jose.RS256, other, "k1", base), want: idtoken.ErrSignature},
		{name: "another published key's kid", token: sign(t, jose.RS256, k1, "k2", base), want: idtoken.ErrSignature},
		{name: "tampered payload", token: tampered, want: idtoken.ErrSignature},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", want: idtoken.ErrSignature},
		{name: "no kid while GitLab publishes several keys", token: sign(t, jose.RS256, k1, "", base), want: idtoken.ErrUnknownKey},
		{name: "embedded jwk header is ignored", token: embeddedJWK(t, other, base), want: idtoken.ErrUnknownKey},
		{name: "ref not protected is returned as such", token: sign(t, jose.RS256, k1, "k1", with(base, "ref", "feature", "ref_protected", "false")),
			check: func(t *testing.T, c *idtoken.Claims) {
				if c.RefProtected || c.Ref != "feature" {
					t.Errorf("RefProtected %v Ref %q", c.RefProtected, c.Ref)
				}
			}},
		{name: "ref_protected a JSON boolean", token: sign(t, jose.RS256, k1, "k1", with(base, "ref_protected", true)),
			check: func(t *testing.T, c *idtoken.Claims) {
				if !c.RefProtected {
					t.Error("RefProtected false")
				}
			}},
		{name: "ref_protected neither true nor false", token: sign(t, jose.RS256, k1, "k1", with(base, "ref_protected", "yes")), want: idtoken.ErrMalformed},
		{name: "project_id not a number", token: sign(t, jose.RS256, k1, "k1", with(base, "project_id", "20; DROP")), want: idtoken.ErrMalformed},
		{name: "project_id negative", token: sign(t, jose.RS256, k1, "k1", with(base, "project_id", "-20")), want: idtoken.ErrMalformed},
		{name: "project_path an object", token: sign(t, jose.RS256, k1, "k1", with(base, "project_path", map[string]any{})), want: idtoken.ErrMalformed},
		{name: "not a CI job token (OIDC login token)", token: sign(t, jose.RS256, k1, "k1", map[string]any{
			"iss": iss, "aud": audience, "sub": "1", "exp": t0.Add(time.Hour).Unix(), "iat": t0.Unix()}), want: idtoken.ErrNotCIJob},
		{name: "no job_id", token: sign(t, jose.RS256, k1, "k1", with(base, "job_id", nil)), want: idtoken.ErrNotCIJob},
		{name: "empty", token: "", want: idtoken.ErrMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], want: idtoken.ErrMalformed},
		{name: "four parts", token: valid + ".x", want: idtoken.ErrMalformed},
		{name: "JWE-shaped", token: "a.b.c.d.e", want: idtoken.ErrMalformed},
		{name: "header not base64", token: "!!." + parts[1] + "." + parts[2], want: idtoken.ErrMalformed},
		{name: "header not JSON", token: base64.RawURLEncoding.EncodeToString([]byte("RS256")) + "." + parts[1] + "." + parts[2], want: idtoken.ErrMalformed},
		{name: "payload not base64", token: parts[0] + ".%%%." + parts[2], want: idtoken.ErrMalformed},
		{name: "payload not JSON", token: signPayload(t, jose.RS256, k1, "k1", []byte("not json")), want: idtoken.ErrMalformed},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], want: idtoken.ErrMalformed},
		{name: "huge", token: parts[0] + "." + strings.Repeat("A", idtoken.MaxTokenSize) + "." + parts[2], want: idtoken.ErrMalformed},
	}
	clk := &clock{t: t0}
	v := newVerifier(t, g, clk)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.ProjectPath != "my-group/my-project" {
					t.Errorf("ProjectPath %q", c.ProjectPath)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", c)
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, idtoken.ErrInvalid) || errors.Is(err, idtoken.ErrKeysUnavailable) {
				t.Fatalf("error %q, want %q and ErrInvalid", err, tc.want)
			}
			if c != nil {
				t.Errorf("claims returned with an error")
			}
		})
	}
	if n := g.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

// embeddedJWK signs with the attacker's key and embeds its public key in
// the header (CVE-2018-0114 style); no kid.
func embeddedJWK(t *testing.T, key *rsa.PrivateKey, c map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, &jose.SignerOptions{EmbedJWK: true})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestClaimsAsGitLabSendsThem(t *testing.T) {
	k := rsaKey(t, 0)
	g := newGitLab(t, jwk(&k.PublicKey, "k1", "RS256"))
	v := newVerifier(t, g, &clock{t: t0})
	c, err := v.Verify(context.Background(), sign(t, jose.RS256, k, "k1", claims(g.srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	want := idtoken.Claims{
		Issuer: g.srv.URL, Subject: "project_path:my-group/my-project:ref_type:branch:ref:main", Audience: []string{audience},
		ID: "235b3a54-b797-45c7-ae9a-f72d7bc6ef5b", IssuedAt: t0, NotBefore: t0.Add(-5 * time.Second), Expiry: t0.Add(time.Hour),
		NamespaceID: 72, NamespacePath: "my-group", ProjectID: 20, ProjectPath: "my-group/my-project", ProjectVisibility: "private",
		UserID: 1, UserLogin: "sample-user", UserEmail: "sample-user@example.com", PipelineID: 574, PipelineSource: "push", JobID: 302,
		Ref: "main", RefType: "branch", RefPath: "refs/heads/main", RefProtected: true,
		Environment: "production", EnvironmentProtected: false, DeploymentTier: "production", EnvironmentAction: "start",
		RunnerID: 1, RunnerEnvironment: "self-hosted", SHA: "714a629c0b401fdce83e847fc9589983fc6f46bc",
		CIConfigRefURI: "gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main", CIConfigSHA: "714a629c0b401fdce83e847fc9589983fc6f46bc",
	}
	if fmt.Sprintf("%+v", *c) != fmt.Sprintf("%+v", want) {
		t.Errorf("claims\n got %+v\nwant %+v", *c, want)
	}

	// A key set with a single key: a token without kid uses it.
	if _, err := v.Verify(context.Background(), sign(t, jose.RS256, k, "", claims(g.srv.URL))); err != nil {
		t.Errorf("no kid, one key: %v", err)
	}
}

func TestUnknownKidFindsRotatedKey(t *testing.T) {
	old, next := rsaKey(t, 0), rsaKey(t, 1)
	g := newGitLab(t, jwk(&old.PublicKey, "old", "RS256"))
	clk := &clock{t: t0}
	v := newVerifier(t, g, clk, func(c *idtoken.Config) { c.MinRefetch = time.Minute })
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, jose.RS256, old, "old", claims(g.srv.URL))); err != nil {
		t.Fatal(err)
	}
	// GitLab rotates its key two minutes later.
	clk.Add(2 * time.Minute)
	g.set(func(g *gitlab) { g.keys = []jose.JSONWebKey{jwk(&next.PublicKey, "next", "RS256")} })
	c := with(claims(g.srv.URL), "iat", clk.Now().Unix(), "nbf", clk.Now().Unix()-5, "exp", clk.Now().Add(time.Hour).Unix())
	if _, err := v.Verify(ctx, sign(t, jose.RS256, next, "next", c)); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if n := g.fetches.Load(); n != 2 {
		t.Errorf("fetches %d, want 2", n)
	}
	// The withdrawn key is no longer accepted.
	if _, err := v.Verify(ctx, sign(t, jose.RS256, old, "old", c)); !errors.Is(err, idtoken.ErrUnknownKey) {
		t.Errorf("withdrawn key: %v", err)
	}
}

func TestRotationWithinTheRateLimit(t *testing.T) {
	old, next := rsaKey(t, 0), rsaKey(t, 1)
	g := newGitLab(t, jwk(&old.PublicKey, "old", "RS256"))
	clk := &clock{t: t0}
	v := newVerifier(t, g, clk, func(c *idtoken.Config) { c.MinRefetch = time.Minute })
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, jose.RS256, old, "old", claims(g.srv.URL))); err != nil {
		t.Fatal(err)
	}
	g.set(func(g *gitlab) { g.keys = append(g.keys, jwk(&next.PublicKey, "next", "RS256")) })
	tok := sign(t, jose.RS256, next, "next", claims(g.srv.URL))
	clk.Add(10 * time.Second)
	_, err := v.Verify(ctx, tok)
	if !errors.Is(err, idtoken.ErrUnknownKey) || !errors.Is(err, idtoken.ErrInvalid) {
		t.Fatalf("new kid 10s after a fetch: %v", err)
	}
	if n := g.fetches.Load(); n != 1 {
		t.Fatalf("fetches %d, want 1", n)
	}
	clk.Add(51 * time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("new kid once the limit passed: %v", err)
	}
	if n := g.fetches.Load(); n != 2 {
		t.Errorf("fetches %d, want 2", n)
	}
}

func TestRandomKidsDoNotHammerGitLab(t *testing.T) {
	k, attacker := rsaKey(t, 0), rsaKey(t, 3)
	g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
	clk := &clock{t: t0}
	v := newVerifier(t, g, clk, func(c *idtoken.Config) { c.MinRefetch = 30 * time.Second })
	ctx := context.Background()
	base := claims(g.srv.URL)
	attack := func(round int) {
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				_, err := v.Verify(ctx, sign(t, jose.RS256, attacker, fmt.Sprintf("random-%d-%d", round, i), base))
				if !errors.Is(err, idtoken.ErrUnknownKey) || !errors.Is(err, idtoken.ErrInvalid) {
					t.Errorf("random kid: %v", err)
				}
			})
		}
		wg.Wait()
	}
	attack(0) // the first request fetches; all 40 share that fetch or are refused
	if n := g.fetches.Load(); n != 1 {
		t.Fatalf("fetches after the first burst %d, want 1", n)
	}
	for round := 1; round <= 5; round++ {
		clk.Add(5 * time.Second)
		attack(round)
	}
	if n := g.fetches.Load(); n != 1 {
		t.Fatalf("fetches within 30s: %d, want 1", n)
	}
	clk.Add(10 * time.Second) // 35s after the fetch
	attack(6)
	if n := g.fetches.Load(); n != 2 {
		t.Fatalf("fetches after 35s: %d, want 2", n)
	}
	// Valid tokens are served from the cache all along.
	if _, err := v.Verify(ctx, sign(t, jose.RS256, k, "k", base)); err != nil {
		t.Fatal(err)
	}
	if n := g.fetches.Load(); n != 2 {
		t.Fatalf("fetches %d, want 2", n)
	}
}

func TestKeysUnavailable(t *testing.T) {
	k := rsaKey(t, 0)
	ctx := context.Background()
	check := func(t *testing.T, err error, contains string) {
		t.Helper()
		if !errors.Is(err, idtoken.ErrKeysUnavailable) || errors.Is(err, idtoken.ErrInvalid) {
			t.Fatalf("error %v, want ErrKeysUnavailable only", err)
		}
		if !strings.Contains(err.Error(), contains) {
			t.Errorf("error %q does not mention %q", err, contains)
		}
	}

	t.Run("500 is not retried within MinRefetch, then recovers", func(t *testing.T) {
		g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
		g.set(func(g *gitlab) { g.status = http.StatusInternalServerError })
		clk := &clock{t: t0}
		v := newVerifier(t, g, clk)
		tok := sign(t, jose.RS256, k, "k", claims(g.srv.URL))
		_, err := v.Verify(ctx, tok)
		check(t, err, "500")
		for range 5 {
			clk.Add(5 * time.Second)
			_, err = v.Verify(ctx, tok)
			check(t, err, "500")
		}
		if n := g.fetches.Load(); n != 1 {
			t.Fatalf("fetches %d, want 1", n)
		}
		g.set(func(g *gitlab) { g.status = http.StatusOK })
		clk.Add(time.Minute)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
		v := newVerifier(t, g, &clock{t: t0})
		tok := sign(t, jose.RS256, k, "k", claims(g.srv.URL))
		g.srv.Close()
		_, err := v.Verify(ctx, tok)
		check(t, err, "connect")
	})

	t.Run("fetch timeout", func(t *testing.T) {
		g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
		g.set(func(g *gitlab) { g.delay = 5 * time.Second })
		v := newVerifier(t, g, &clock{t: t0}, func(c *idtoken.Config) { c.FetchTimeout = 100 * time.Millisecond })
		start := time.Now()
		_, err := v.Verify(ctx, sign(t, jose.RS256, k, "k", claims(g.srv.URL)))
		check(t, err, "deadline")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Verify took %s", d)
		}
	})

	t.Run("caller gives up waiting; the fetch goes on for the next caller", func(t *testing.T) {
		g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
		g.set(func(g *gitlab) { g.delay = 300 * time.Millisecond })
		v := newVerifier(t, g, &clock{t: t0})
		tok := sign(t, jose.RS256, k, "k", claims(g.srv.URL))
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := v.Verify(short, tok)
		check(t, err, "context deadline exceeded")
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("second caller: %v", err)
		}
		if n := g.fetches.Load(); n != 1 {
			t.Errorf("fetches %d, want 1", n)
		}
	})

	t.Run("key set without a usable key", func(t *testing.T) {
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		secret := []byte("0123456789abcdef0123456789abcdef")
		g := newGitLab(t, jwk(secret, "hmac", "HS256"), jwk(&small.PublicKey, "small", "RS256"), jose.JSONWebKey{Key: &k.PublicKey, KeyID: "enc", Use: "enc"})
		v := newVerifier(t, g, &clock{t: t0})
		_, err = v.Verify(ctx, sign(t, jose.HS256, secret, "hmac", claims(g.srv.URL)))
		if !errors.Is(err, idtoken.ErrAlgorithm) {
			t.Errorf("HS256 with a published oct key: %v", err)
		}
		_, err = v.Verify(ctx, sign(t, jose.RS256, small, "small", claims(g.srv.URL)))
		check(t, err, "no usable signing key among 3")
	})

	t.Run("not a JWKS", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>login</html>")) }))
		defer srv.Close()
		v, err := idtoken.New(idtoken.Config{Issuer: srv.URL, Audience: audience, Now: (&clock{t: t0}).Now})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(ctx, sign(t, jose.RS256, k, "k", claims(srv.URL)))
		check(t, err, "not a JWKS")
	})
}

func TestKeysTTL(t *testing.T) {
	k := rsaKey(t, 0)
	g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
	clk := &clock{t: t0}
	v := newVerifier(t, g, clk, func(c *idtoken.Config) { c.KeysTTL = 10 * time.Minute })
	ctx := context.Background()
	fresh := func() string {
		now := clk.Now()
		return sign(t, jose.RS256, k, "k", with(claims(g.srv.URL), "iat", now.Unix(), "nbf", now.Unix(), "exp", now.Add(time.Hour).Unix()))
	}
	if _, err := v.Verify(ctx, fresh()); err != nil {
		t.Fatal(err)
	}
	clk.Add(9 * time.Minute)
	if _, err := v.Verify(ctx, fresh()); err != nil {
		t.Fatal(err)
	}
	if n := g.fetches.Load(); n != 1 {
		t.Fatalf("fetches %d, want 1", n)
	}
	// GitLab withdraws the key; after the TTL the verifier notices.
	g.set(func(g *gitlab) { g.keys = []jose.JSONWebKey{jwk(&rsaKey(t, 1).PublicKey, "other", "RS256")} })
	clk.Add(2 * time.Minute)
	if _, err := v.Verify(ctx, fresh()); !errors.Is(err, idtoken.ErrUnknownKey) {
		t.Fatalf("withdrawn key after TTL: %v", err)
	}
	if n := g.fetches.Load(); n != 2 {
		t.Fatalf("fetches %d, want 2", n)
	}
}

func TestErrorMessages(t *testing.T) {
	k := rsaKey(t, 0)
	g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
	v := newVerifier(t, g, &clock{t: t0})
	cases := []struct {
		c    map[string]any
		want string
	}{
		{with(claims(g.srv.URL), "exp", t0.Add(-time.Hour).Unix()), "invalid ID token: expired: token expired at 2026-12-04T11:00:00Z"},
		{with(claims(g.srv.URL), "aud", "sigstore"), `invalid ID token: audience not accepted: audience "sigstore" not accepted, want "` + audience + `"`},
		{with(claims(g.srv.URL), "iss", "https://gitlab.com"), `invalid ID token: issuer not accepted: issuer "https://gitlab.com" is not "` + g.srv.URL + `"`},
	}
	for _, tc := range cases {
		_, err := v.Verify(context.Background(), sign(t, jose.RS256, k, "k", tc.c))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %q, want prefix %q", err, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	for _, cfg := range []idtoken.Config{
		{Audience: audience},
		{Issuer: "gitlab.example.com", Audience: audience},
		{Issuer: "ftp://gitlab.example.com", Audience: audience},
		{Issuer: "https://gitlab.example.com"},
		{Issuer: "https://gitlab.example.com", Audience: audience, KeysURL: "/keys"},
	} {
		if _, err := idtoken.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	// A trailing slash on the configured issuer is dropped: GitLab's iss has none.
	k := rsaKey(t, 0)
	g := newGitLab(t, jwk(&k.PublicKey, "k", "RS256"))
	v, err := idtoken.New(idtoken.Config{Issuer: g.srv.URL + "/", Audience: audience, Now: (&clock{t: t0}).Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, jose.RS256, k, "k", claims(g.srv.URL))); err != nil {
		t.Fatal(err)
	}
}
