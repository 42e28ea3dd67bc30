package gitlabsim_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lotse/lotse/internal/idtoken"
	"github.com/lotse/lotse/test/gitlabsim"
)

const lotsedAud = "https://lotsed.example.com"

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// verifier checks tokens against the simulator's JWKS over real HTTP.
func (e *env) verifier(t *testing.T, clk *testClock) *idtoken.Verifier {
	t.Helper()
	v, err := idtoken.New(idtoken.Config{Issuer: e.srv.URL, Audience: lotsedAud, HTTP: e.srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *env) idToken(t *testing.T, spec gitlabsim.IDTokenSpec) string {
	t.Helper()
	if spec.Project == "" {
		spec.Project = e.project
	}
	tok, err := e.sim.IDToken(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOIDCDiscoveryAndKeys(t *testing.T) {
	e := newEnv(t)
	code, hdr, body := e.do(t, "GET", "/.well-known/openid-configuration", "", nil)
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("openid-configuration: %d %s", code, body)
	}
	var disc map[string]any
	if err := json.Unmarshal(body, &disc); err != nil {
		t.Fatal(err)
	}
	if disc["issuer"] != e.srv.URL || disc["jwks_uri"] != e.srv.URL+"/oauth/discovery/keys" {
		t.Errorf("discovery %v", disc)
	}
	if algs, _ := disc["id_token_signing_alg_values_supported"].([]any); len(algs) != 1 || algs[0] != "RS256" {
		t.Errorf("algs %v", disc["id_token_signing_alg_values_supported"])
	}

	code, _, body = e.do(t, "GET", "/oauth/discovery/keys", "", nil)
	if code != http.StatusOK {
		t.Fatalf("keys: %d %s", code, body)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	kid, err := e.sim.IDTokenKeyID()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != 1 {
		t.Fatalf("keys %v", raw.Keys)
	}
	k := raw.Keys[0]
	if k["kty"] != "RSA" || k["alg"] != "RS256" || k["use"] != "sig" || k["kid"] != kid || k["e"] != "AQAB" || k["d"] != nil {
		t.Errorf("key %v", k)
	}
	// The kid is the RFC 7638 thumbprint, as an independent implementation computes it.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	tp, err := set.Keys[0].Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if base64.RawURLEncoding.EncodeToString(tp) != kid {
		t.Errorf("kid %s is not the thumbprint", kid)
	}
	if !set.Keys[0].IsPublic() {
		t.Error("the JWKS publishes a private key")
	}
	if n := e.sim.CountRequests(gitlabsim.ClassOIDC, "GET"); n != 2 {
		t.Errorf("recorded %d oidc requests, want 2", n)
	}
}

func TestIDTokenVerifiesWithTheSimulatorsKeys(t *testing.T) {
	e := newEnv(t)
	e.sim.SetBaseURL(e.srv.URL)
	e.branch(t, "feature")
	featureSHA := e.commit(t, "developer", "feature", map[string]string{"f.txt": "x\n"})
	mainHead, _, err := e.client(t, "maintainer").Branches.GetBranch(e.project, "main")
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{t: time.Now()}
	v := e.verifier(t, clk)
	ctx := context.Background()

	// main is protected (the default): ref_protected "true".
	c, err := v.Verify(ctx, e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}, Username: "maintainer"}))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(e.srv.URL, "http://")
	switch {
	case c.ProjectPath != "team/deploy" || c.ProjectID != 1 || c.NamespacePath != "team" || c.NamespaceID != 1001:
		t.Errorf("project %+v", c)
	case c.Ref != "main" || c.RefType != "branch" || c.RefPath != "refs/heads/main" || !c.RefProtected:
		t.Errorf("ref %q %q %q protected=%v", c.Ref, c.RefType, c.RefPath, c.RefProtected)
	case c.UserLogin != "maintainer" || c.UserID != int64(e.users["maintainer"].ID) || c.UserEmail != "maintainer@example.com":
		t.Errorf("user %q %d %q", c.UserLogin, c.UserID, c.UserEmail)
	case c.SHA != mainHead.Commit.ID || c.CIConfigSHA != c.SHA:
		t.Errorf("sha %q, main is at %q", c.SHA, mainHead.Commit.ID)
	case c.CIConfigRefURI != host+"/team/deploy//.gitlab-ci.yml@refs/heads/main":
		t.Errorf("ci_config_ref_uri %q", c.CIConfigRefURI)
	case c.Subject != "project_path:team/deploy:ref_type:branch:ref:main" || c.Issuer != e.srv.URL:
		t.Errorf("sub %q iss %q", c.Subject, c.Issuer)
	case c.PipelineID == 0 || c.JobID != c.PipelineID*1000 || c.PipelineSource != "push" || c.ID == "":
		t.Errorf("pipeline %d job %d source %q jti %q", c.PipelineID, c.JobID, c.PipelineSource, c.ID)
	case c.Expiry.Sub(c.IssuedAt) != gitlabsim.DefaultIDTokenLifetime || c.IssuedAt.Sub(c.NotBefore) != 5*time.Second:
		t.Errorf("iat %s nbf %s exp %s", c.IssuedAt, c.NotBefore, c.Expiry)
	case c.Environment != "" || c.ProjectVisibility != "private" || c.RunnerID != 1:
		t.Errorf("environment %q visibility %q runner %d", c.Environment, c.ProjectVisibility, c.RunnerID)
	}

	// A feature branch is not protected: the token is valid, ref_protected "false".
	c, err = v.Verify(ctx, e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}, Username: "developer", Ref: "feature"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RefProtected || c.Ref != "feature" || c.SHA != featureSHA || c.UserLogin != "developer" {
		t.Errorf("feature token: protected=%v ref %q sha %q user %q", c.RefProtected, c.Ref, c.SHA, c.UserLogin)
	}

	// Another audience is refused by the verifier.
	_, err = v.Verify(ctx, e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{"sigstore"}, Username: "maintainer"}))
	if !errors.Is(err, idtoken.ErrAudience) {
		t.Errorf("sigstore token: %v", err)
	}

	// Expired tokens are refused.
	tok := e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}, ExpiresIn: 5 * time.Minute})
	clk.Add(6 * time.Minute)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, idtoken.ErrExpired) {
		t.Errorf("expired token: %v", err)
	}

	// GitLab runs no job for users who may not: the simulator mints no token.
	for _, tc := range []struct{ user, ref string }{
		{"developer", "main"}, // protected for maintainers
		{"reporter", "feature"},
		{"outsider", "feature"},
	} {
		if _, err := e.sim.IDToken(gitlabsim.IDTokenSpec{Project: e.project, Aud: gitlabsim.Audience{lotsedAud}, Username: tc.user, Ref: tc.ref}); err == nil {
			t.Errorf("token minted for %s on %s", tc.user, tc.ref)
		}
	}
	for _, spec := range []gitlabsim.IDTokenSpec{
		{Project: e.project},
		{Project: e.project, Aud: gitlabsim.Audience{""}},
		{Project: e.project, Aud: gitlabsim.Audience{lotsedAud}, Ref: "nope"},
		{Project: "team/nope", Aud: gitlabsim.Audience{lotsedAud}},
		{Project: e.project, Aud: gitlabsim.Audience{lotsedAud}, PipelineID: 999},
	} {
		if _, err := e.sim.IDToken(spec); err == nil {
			t.Errorf("token minted for %+v", spec)
		}
	}
	// Every token was checked against one fetch of the keys.
	if n := e.sim.CountRequests(gitlabsim.ClassOIDC, "GET"); n != 1 {
		t.Errorf("JWKS fetched %d times", n)
	}
}

func TestIDTokenOfAPipeline(t *testing.T) {
	e := newEnv(t)
	e.sim.SetBaseURL(e.srv.URL)
	id, err := e.sim.CreatePipeline(e.project, gitlabsim.PipelineSpec{Ref: "main", Status: "running", Source: "web", Username: "maintainer",
		Builds: []gitlabsim.Build{{Name: "release", Stage: "deploy", Status: "running", Environment: "production"}}})
	if err != nil {
		t.Fatal(err)
	}
	v := e.verifier(t, &testClock{t: time.Now()})
	c, err := v.Verify(context.Background(), e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}, PipelineID: id, Environment: "production"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PipelineID != int64(id) || c.JobID != int64(id*1000) || c.PipelineSource != "web" || c.UserLogin != "maintainer" || c.Ref != "main" {
		t.Errorf("claims %+v", c)
	}
	if c.Environment != "production" || c.EnvironmentProtected || c.DeploymentTier != "production" || c.EnvironmentAction != "start" {
		t.Errorf("environment %q protected=%v tier %q action %q", c.Environment, c.EnvironmentProtected, c.DeploymentTier, c.EnvironmentAction)
	}
}

func TestIDTokenKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.sim.SetBaseURL(e.srv.URL)
	clk := &testClock{t: time.Now()}
	v := e.verifier(t, clk)
	ctx := context.Background()
	spec := gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}}
	first := e.idToken(t, spec)
	if _, err := v.Verify(ctx, first); err != nil {
		t.Fatal(err)
	}
	kid1, _ := e.sim.IDTokenKeyID()
	kid2, err := e.sim.RotateIDTokenKey()
	if err != nil {
		t.Fatal(err)
	}
	if kid2 == kid1 {
		t.Fatal("rotation kept the kid")
	}
	second := e.idToken(t, spec)
	if kidOf(t, second) != kid2 || kidOf(t, first) != kid1 {
		t.Fatal("tokens are not signed with the current key")
	}
	// The verifier learns the new kid by refetching, once its rate limit allows.
	clk.Add(2 * time.Minute)
	if _, err := v.Verify(ctx, second); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if _, err := v.Verify(ctx, first); err != nil {
		t.Fatalf("token of the previous key, still published: %v", err)
	}
	if n := e.sim.CountRequests(gitlabsim.ClassOIDC, "GET"); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
	// A second rotation withdraws the first key.
	if _, err := e.sim.RotateIDTokenKey(); err != nil {
		t.Fatal(err)
	}
	third := e.idToken(t, spec)
	clk.Add(2 * time.Minute)
	if _, err := v.Verify(ctx, third); err != nil {
		t.Fatalf("third key: %v", err)
	}
	if _, err := v.Verify(ctx, first); !errors.Is(err, idtoken.ErrUnknownKey) {
		t.Errorf("withdrawn key: %v", err)
	}
}

func TestIDTokenKeysFault(t *testing.T) {
	e := newEnv(t)
	e.sim.SetBaseURL(e.srv.URL)
	e.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassOIDC, Status: http.StatusBadGateway, Times: 1})
	clk := &testClock{t: time.Now()}
	v := e.verifier(t, clk)
	tok := e.idToken(t, gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{lotsedAud}})
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, idtoken.ErrKeysUnavailable) || errors.Is(err, idtoken.ErrInvalid) {
		t.Fatalf("with the keys endpoint failing: %v", err)
	}
	clk.Add(2 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}

func TestIDTokenAdminAPI(t *testing.T) {
	e := newEnv(t)
	e.branch(t, "feature")
	body := map[string]any{"aud": []string{"https://vault.example.com", lotsedAud}, "username": "developer", "ref": "feature",
		"expires_in": "5m", "environment": "staging"}
	if code, _, _ := e.do(t, "POST", "/-/sim/projects/team%2Fdeploy/id_tokens", "", body); code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", code)
	}
	code, _, b := e.do(t, "POST", "/-/sim/projects/team%2Fdeploy/id_tokens", "admin", body)
	if code != http.StatusCreated {
		t.Fatalf("mint: %d %s", code, b)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	c, err := e.verifier(t, &testClock{t: time.Now()}).Verify(context.Background(), out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Audience) != 2 || c.Expiry.Sub(c.IssuedAt) != 5*time.Minute || c.Environment != "staging" || c.DeploymentTier != "staging" || c.RefProtected {
		t.Errorf("claims %+v", c)
	}
	for _, tc := range []struct {
		body any
		want int
	}{
		{map[string]any{"aud": "x", "username": "developer", "ref": "main"}, http.StatusForbidden},
		{map[string]any{"aud": 7}, http.StatusBadRequest},
		{map[string]any{"aud": "x", "expires_in": "soon"}, http.StatusBadRequest},
		{map[string]any{"username": "maintainer"}, http.StatusBadRequest},
		{map[string]any{"aud": "x", "username": "nobody"}, http.StatusNotFound},
	} {
		if code, _, b := e.do(t, "POST", "/-/sim/projects/1/id_tokens", "admin", tc.body); code != tc.want {
			t.Errorf("%v: %d %s, want %d", tc.body, code, b, tc.want)
		}
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid, Alg, Typ string
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr.Alg != "RS256" || hdr.Typ != "JWT" {
		t.Errorf("header %s", h)
	}
	return hdr.Kid
}
