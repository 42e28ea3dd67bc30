package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/idtoken"
	"github.com/lotse/lotse/internal/releaseapi"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/test/gitlabsim"
)

const (
	relAudience = "https://lotsed.example.com"
	relRepo     = "registry.example.com/team/shop"
	relGood     = relRepo + "@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	relUnsigned = relRepo + "@sha256:2222222222222222222222222222222222222222222222222222222222222222"
	relCritical = relRepo + "@sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

const relLotseYAML = `version: 1
gitlab:
  project: platform/gitops
signing:
  publicKey: keys/cosign.pub
apps:
  - name: shop
    sourceProject: Team/Shop
    image: registry.example.com/team/shop
    values: apps/{app}/envs/{stage}/values.yaml
    set:
      image.repository: repository
      image.digest: digest
  - name: cart
    sourceProject: team/cart
    image: registry.example.com/team/cart
    values: apps/{app}/envs/{stage}/values.yaml
    set:
      image.digest: digest
    releases: {allowUnprotectedRefs: true}
stages:
  - name: dev
    promotion: commit
    gates: {signature: true, maxSeverity: high}
  - name: production
    promotion: approval
    approvals: 2
`

// releaseWorld is the release endpoint against the GitLab simulator: its
// real JWKS and minted tokens, lotse.yaml in a real GitOps repository that
// lotse's user commits to, the real store for the audit log and a gate
// verifier that knows which images are signed.
type releaseWorld struct {
	t        *testing.T
	sim      *gitlabsim.Sim
	url      string
	db       *store.DB
	verifier *fakeVerifier
	handler  http.Handler
	rel      *releases
}

func newReleaseWorld(t *testing.T, now func() time.Time) *releaseWorld {
	t.Helper()
	w := &releaseWorld{t: t}
	w.sim = gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	srv := httptest.NewServer(w.sim)
	t.Cleanup(func() { srv.Close(); w.sim.Close() })
	w.url = srv.URL
	w.sim.SetBaseURL(srv.URL)
	users := map[string]gitlabsim.User{}
	for _, u := range []string{"lotse-bot", "maint", "dev1"} {
		usr, err := w.sim.CreateUser(gitlabsim.UserSpec{Username: u, Name: "User " + u, Email: u + "@example.invalid", Bot: u == "lotse-bot"})
		if err != nil {
			t.Fatal(err)
		}
		users[u] = usr
	}
	files := map[string]string{"lotse.yaml": relLotseYAML, "keys/cosign.pub": "a public key\n"}
	for _, app := range []string{"shop", "cart"} {
		for _, st := range []string{"dev", "production"} {
			files["apps/"+app+"/envs/"+st+"/values.yaml"] = "# " + app + " in " + st + "\nimage:\n  repository: x\n  digest: \"\"\n"
		}
	}
	fatalIf(t, noErr(w.sim.CreateProject(gitlabsim.ProjectSpec{Path: "platform/gitops", Files: files,
		Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleMaintainer}, {Username: "dev1", Role: gitlabsim.RoleDeveloper}}})))
	for _, p := range []string{"team/shop", "team/other", "team/cart"} {
		fatalIf(t, noErr(w.sim.CreateProject(gitlabsim.ProjectSpec{Path: p, Files: map[string]string{"main.go": "package main\n"},
			Members: []gitlabsim.Member{{Username: "maint", Role: gitlabsim.RoleMaintainer}, {Username: "dev1", Role: gitlabsim.RoleDeveloper},
				{Username: "lotse-bot", Role: gitlabsim.RoleReporter}}})))
		if _, err := w.sim.Commit(p, "dev1", gitlabsim.CommitSpec{Branch: "feature", StartBranch: "main", Message: "wip",
			Files: map[string]string{"wip.go": "package main\n"}}); err != nil {
			t.Fatal(err)
		}
	}

	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.db = db
	gl, err := gitlab.New(srv.URL, users["lotse-bot"].Token)
	if err != nil {
		t.Fatal(err)
	}
	w.verifier = &fakeVerifier{signed: map[string]bool{relGood: true, relCritical: true},
		vulns: map[string][]string{relGood: {"MEDIUM", "LOW"}, relCritical: {"CRITICAL"}}}
	cfg := &Config{GitLabURL: srv.URL + "/api/v4", PublicURL: relAudience, GitOpsProject: "platform/gitops",
		WebhookSecret: testToken, MaxBody: 64 << 10, SignatureTolerance: time.Minute}
	reader := &snapshotReader{gl: gl, gitopsProject: cfg.GitOpsProject, keyDir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	w.rel, err = newReleases(cfg, gl, reader, &gates{verifier: w.verifier}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	if now != nil {
		vc, _ := releaseConfig(cfg)
		vc.Now = now
		v, err := idtoken.New(vc)
		if err != nil {
			t.Fatal(err)
		}
		w.rel.tokens = v
	}
	s, err := newServer(cfg, serverParts{queue: db, watch: watchOnly(cfg.GitOpsProject), views: noViews{}, metrics: newMetrics(),
		log: log, now: time.Now, releases: w.rel})
	if err != nil {
		t.Fatal(err)
	}
	w.handler = s.Handler()
	return w
}

// noErr drops a result, keeping the error.
func noErr[T any](_ T, err error) error { return err }

func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// token mints an ID token of project for lotsed's audience.
func (w *releaseWorld) token(spec gitlabsim.IDTokenSpec) string {
	w.t.Helper()
	if spec.Aud == nil {
		spec.Aud = gitlabsim.Audience{relAudience}
	}
	if spec.Project == "" {
		spec.Project = "team/shop"
	}
	tok, err := w.sim.IDToken(spec)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

func (w *releaseWorld) post(token string, body any) (int, releaseapi.Response, releaseapi.Error) {
	w.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		w.t.Fatal(err)
	}
	hdr := map[string]string{"Content-Type": "application/json"}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	rec := post(w.handler, releaseapi.Path, b, hdr)
	var res releaseapi.Response
	var e releaseapi.Error
	if rec.Code/100 == 2 {
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			w.t.Fatalf("answer %d %s: %v", rec.Code, rec.Body, err)
		}
	} else if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		w.t.Fatalf("answer %d %s: %v", rec.Code, rec.Body, err)
	}
	return rec.Code, res, e
}

// head is the GitOps repository's main.
func (w *releaseWorld) head() string {
	return w.git("rev-parse", "main")
}

func (w *releaseWorld) git(args ...string) string {
	w.t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", w.sim.Repo("platform/gitops")}, args...)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (w *releaseWorld) audits(kind string) []store.AuditRecord {
	w.t.Helper()
	rs, err := w.db.AuditLog(context.Background(), audit.Filter{Kind: kind})
	if err != nil {
		w.t.Fatal(err)
	}
	return rs
}

func shop(image string) releaseapi.Request { return releaseapi.Request{App: "shop", Image: image} }

// forge re-signs a valid token's claims under another header: the attacks
// that need no GitLab key.
func forge(t *testing.T, valid string, header map[string]any, key []byte) string {
	t.Helper()
	parts := strings.Split(valid, ".")
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1]
	if key == nil {
		return input + "."
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestReleaseRefusesBadTokens(t *testing.T) {
	w := newReleaseWorld(t, nil)
	before := w.head()
	valid := w.token(gitlabsim.IDTokenSpec{})

	// The simulator's published key, as an attacker fetches it.
	resp, err := http.Get(w.url + "/oauth/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	kid := set.Keys[0]["kid"]
	n, _ := base64.RawURLEncoding.DecodeString(set.Keys[0]["n"])

	// A token of the same project from another GitLab (another key) that
	// claims this GitLab as its issuer.
	other := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	t.Cleanup(other.Close)
	other.SetBaseURL(w.url)
	if _, err := other.CreateUser(gitlabsim.UserSpec{Username: "maint"}); err != nil {
		t.Fatal(err)
	}
	fatalIf(t, noErr(other.CreateProject(gitlabsim.ProjectSpec{Path: "team/shop", Files: map[string]string{"a": "b"},
		Members: []gitlabsim.Member{{Username: "maint", Role: gitlabsim.RoleMaintainer}}})))
	foreign, err := other.IDToken(gitlabsim.IDTokenSpec{Project: "team/shop", Aud: gitlabsim.Audience{relAudience}})
	if err != nil {
		t.Fatal(err)
	}
	short := w.token(gitlabsim.IDTokenSpec{ExpiresIn: time.Minute})
	// Signed with this GitLab's key, but for another issuer.
	w.sim.SetBaseURL("https://gitlab.evil.example")
	otherIssuer := w.token(gitlabsim.IDTokenSpec{})
	w.sim.SetBaseURL(w.url)

	for name, tc := range map[string]struct {
		token string
		world *releaseWorld
		cause string
	}{
		"no token":           {"", w, "no bearer token"},
		"garbage":            {"not.a.jwt", w, "malformed"},
		"wrong audience":     {w.token(gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{"https://vault.example.com"}}), w, "audience not accepted"},
		"sigstore audience":  {w.token(gitlabsim.IDTokenSpec{Aud: gitlabsim.Audience{"sigstore"}}), w, "audience not accepted"},
		"unknown key":        {foreign, w, "unknown signing key"},
		"another issuer":     {otherIssuer, w, "issuer not accepted"},
		"alg none":           {forge(t, valid, map[string]any{"alg": "none", "typ": "JWT"}, nil), w, "algorithm not accepted"},
		"alg none, kid":      {forge(t, valid, map[string]any{"alg": "none", "kid": kid}, nil), w, "algorithm not accepted"},
		"HS256 with the key": {forge(t, valid, map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}, n), w, "algorithm not accepted"},
		"HS256 with JWKS":    {forge(t, valid, map[string]any{"alg": "HS256", "kid": kid}, jwks), w, "algorithm not accepted"},
		"tampered claims":    {valid[:strings.LastIndex(valid, ".")-2] + "AA" + valid[strings.LastIndex(valid, "."):], w, ""},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, e := tc.world.post(tc.token, shop(relGood))
			if code != http.StatusUnauthorized || !strings.HasPrefix(e.Message, "invalid ID token: ") || !strings.Contains(e.Message, tc.cause) {
				t.Errorf("answer %d %q, want 401 invalid ID token: %s", code, e.Message, tc.cause)
			}
			if strings.Contains(e.Message, relAudience) || strings.Contains(e.Message, w.url) {
				t.Errorf("the answer tells what lotsed expects: %q", e.Message)
			}
		})
	}

	// Expired and not yet valid, by lotsed's clock.
	late := newReleaseWorldSharing(t, w, func() time.Time { return time.Now().Add(2 * time.Hour) })
	early := newReleaseWorldSharing(t, w, func() time.Time { return time.Now().Add(-time.Hour) })
	if code, _, e := late.post(short, shop(relGood)); code != 401 || e.Message != "invalid ID token: expired" {
		t.Errorf("expired: %d %q", code, e.Message)
	}
	if code, _, e := early.post(valid, shop(relGood)); code != 401 || e.Message != "invalid ID token: not yet valid" {
		t.Errorf("not yet valid: %d %q", code, e.Message)
	}
	if code, _, _ := w.post(valid, shop(relGood)); code != http.StatusCreated {
		t.Fatalf("the valid token itself: %d", code)
	}
	if w.git("rev-list", "--count", before+"..main") != "1" {
		t.Errorf("refused tokens committed: %s", w.git("log", "--oneline", before+"..main"))
	}
	// Unauthenticated refusals stay out of the audit log.
	if got := w.audits(AuditReleaseRefused); len(got) != 0 {
		t.Errorf("refusals of invalid tokens audited: %+v", got)
	}
}

// newReleaseWorldSharing is another lotsed (own clock) on w's GitLab.
func newReleaseWorldSharing(t *testing.T, w *releaseWorld, now func() time.Time) *releaseWorld {
	t.Helper()
	vc, _ := releaseConfig(&Config{GitLabURL: w.url, PublicURL: relAudience})
	vc.Now = now
	v, err := idtoken.New(vc)
	if err != nil {
		t.Fatal(err)
	}
	rel := *w.rel
	rel.tokens = v
	s := &Server{cfg: &Config{}, log: slog.New(slog.DiscardHandler), releases: &rel}
	cp := *w
	cp.handler = s.Handler()
	return &cp
}

func TestReleasePolicy(t *testing.T) {
	w := newReleaseWorld(t, nil)
	before := w.head()
	shopTok := w.token(gitlabsim.IDTokenSpec{})
	for name, tc := range map[string]struct {
		token  string
		body   any
		status int
		msg    string
	}{
		"another project":            {w.token(gitlabsim.IDTokenSpec{Project: "team/other"}), shop(relGood), 403, "the token is of project team/other"},
		"unprotected branch":         {w.token(gitlabsim.IDTokenSpec{Ref: "feature"}), shop(relGood), 403, "branch feature, which is not protected"},
		"unprotected, by a dev":      {w.token(gitlabsim.IDTokenSpec{Ref: "feature", Username: "dev1"}), shop(relGood), 403, "not protected"},
		"another repository":         {shopTok, shop("registry.example.com/team/other@sha256:" + strings.Repeat("1", 64)), 403, "not in app shop's repository"},
		"another registry":           {shopTok, shop("evil.example.com/team/shop@sha256:" + strings.Repeat("1", 64)), 403, "not in app shop's repository"},
		"a tag, no digest":           {shopTok, shop(relRepo + ":1.0"), 400, "no digest"},
		"another commit":             {shopTok, releaseapi.Request{App: "shop", Image: relGood, SourceCommit: strings.Repeat("a", 40)}, 403, "is not the job's commit"},
		"a later stage":              {shopTok, releaseapi.Request{App: "shop", Image: relGood, Stage: "production"}, 400, "first stage, dev"},
		"unknown field":              {shopTok, map[string]string{"app": "shop", "image": relGood, "source_project": "team/shop"}, 400, "not a release"},
		"pipeline in the body":       {shopTok, map[string]string{"app": "shop", "image": relGood, "pipeline_url": "https://x"}, 400, "not a release"},
		"no app":                     {shopTok, map[string]string{"image": relGood}, 400, "required"},
		"unsigned image":             {shopTok, shop(relUnsigned), 422, "a gate of stage dev failed"},
		"critical finding":           {shopTok, shop(relCritical), 422, "a gate of stage dev failed"},
		"other app, wrong project":   {shopTok, releaseapi.Request{App: "cart", Image: "registry.example.com/team/cart@sha256:" + strings.Repeat("1", 64)}, 403, "app cart is released by team/cart"},
		"releases of app none exist": {shopTok, releaseapi.Request{App: "none", Image: relGood}, 404, `unknown app "none"`},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, e := w.post(tc.token, tc.body)
			if code != tc.status || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("answer %d %q %v, want %d %q", code, e.Message, e.Reasons, tc.status, tc.msg)
			}
		})
	}
	if h := w.head(); h != before {
		t.Fatalf("refused releases moved main: %s", w.git("log", "--oneline", before+"..main"))
	}

	// The gates' reasons are in the answer.
	_, _, e := w.post(shopTok, shop(relCritical))
	if len(e.Reasons) != 1 || !strings.Contains(e.Reasons[0], "scan: ") || !strings.Contains(e.Reasons[0], "CRITICAL") {
		t.Errorf("reasons %q", e.Reasons)
	}
	_, _, e = w.post(shopTok, shop(relUnsigned))
	if len(e.Reasons) != 2 || !strings.HasPrefix(e.Reasons[0], "signature: ") || !strings.HasPrefix(e.Reasons[1], "scan: not checked") {
		t.Errorf("reasons %q", e.Reasons)
	}

	// Every refusal of a valid token is audited, with the job behind it.
	refused := w.audits(AuditReleaseRefused)
	if len(refused) < 14 {
		t.Errorf("%d refusals audited, want one per refused request", len(refused))
	}
	for _, r := range refused {
		if !strings.Contains(r.Detail, "pipeline ") || r.Actor == "" {
			t.Errorf("refusal record lacks the job: %+v", r)
		}
	}

	// A token of the right path but another project id (a project deleted
	// and created again under the same path) is refused.
	w.rel.projects = otherID{}
	if code, _, e := w.post(shopTok, shop(relGood)); code != 403 || !strings.Contains(e.Message, "GitLab says is team/shop (id 999999)") {
		t.Errorf("project id mismatch: %d %q", code, e.Message)
	}
	if h := w.head(); h != before {
		t.Fatal("the id mismatch committed")
	}
}

// otherID says every project has id 999999.
type otherID struct{}

func (otherID) GetProject(context.Context, string) (gitlab.Project, error) {
	return gitlab.Project{ID: 999999, PathWithNamespace: "team/shop"}, nil
}

func TestReleaseCommitsFirstStage(t *testing.T) {
	w := newReleaseWorld(t, nil)
	before := w.head()
	sha := w.git("--git-dir", w.sim.Repo("team/shop"), "rev-parse", "main")
	tok := w.token(gitlabsim.IDTokenSpec{Username: "maint"})
	var claims struct {
		PipelineID string `json:"pipeline_id"`
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}

	code, res, e := w.post(tok, releaseapi.Request{App: "shop", Image: relGood, Stage: "dev", SourceCommit: strings.ToUpper(sha)})
	if code != http.StatusCreated {
		t.Fatalf("answer %d %q %v", code, e.Message, e.Reasons)
	}
	pipeline := w.url + "/team/shop/-/pipelines/" + claims.PipelineID
	if res.App != "shop" || res.Stage != "dev" || res.Image != relGood || !res.Changed || res.Branch != "main" ||
		res.SourceProject != "team/shop" || res.SourceCommit != sha || res.Pipeline != pipeline || len(res.Gates) != 2 || !res.Gates[0].OK || !res.Gates[1].OK {
		t.Errorf("response %+v", res)
	}
	if head := w.head(); head != res.Commit || w.git("rev-parse", "main~1") != before {
		t.Fatalf("main %s, answer %s: want one new commit", head, res.Commit)
	}
	// lotse's user commits, with lotse's trailers from the token.
	if author := w.git("log", "-1", "--format=%an", "main"); author != "User lotse-bot" {
		t.Errorf("author %q, want lotse's user", author)
	}
	msg := w.git("log", "-1", "--format=%B", "main")
	for _, want := range []string{"Lotse-App: shop", "Lotse-Stage: dev", "Lotse-Image: " + relGood,
		"Lotse-Source-Project: team/shop", "Lotse-Source-Commit: " + sha, "Lotse-Pipeline: " + pipeline} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit message lacks %q:\n%s", want, msg)
		}
	}
	if v := w.git("show", "main:apps/shop/envs/dev/values.yaml"); !strings.Contains(v, "sha256:1111") || !strings.Contains(v, "# shop in dev") {
		t.Errorf("values:\n%s", v)
	}

	// The same release again commits nothing.
	first := res.Commit
	code, res, _ = w.post(tok, shop(relGood))
	if code != http.StatusOK || res.Changed || res.Commit != "" {
		t.Errorf("again: %d %+v", code, res)
	}
	if w.git("rev-list", "--count", before+"..main") != "1" {
		t.Error("the second release committed")
	}
	acc := w.audits(AuditReleaseAccepted) // newest first
	if len(acc) != 2 || acc[1].Actor != "maint" || acc[1].Stage != "dev" || acc[1].Image != relGood ||
		!strings.Contains(acc[1].Detail, "committed "+first) || !strings.Contains(acc[1].Detail, "branch main (protected)") || !strings.Contains(acc[0].Detail, "holds the image already") {
		t.Errorf("accepted audit records %+v", acc)
	}

	// The same token may not release another image (a token that leaked
	// from its job), even one that passes the gates.
	other := relRepo + "@sha256:" + strings.Repeat("5", 64)
	w.verifier.mu.Lock()
	w.verifier.signed[other], w.verifier.vulns[other] = true, []string{}
	w.verifier.mu.Unlock()
	if code, _, e := w.post(tok, shop(other)); code != http.StatusForbidden || !strings.Contains(e.Message, "released another image already") {
		t.Errorf("a second image with the same token: %d %q", code, e.Message)
	}
	if w.git("rev-list", "--count", before+"..main") != "1" {
		t.Error("the second image was committed")
	}
	// A fresh token of another job of the project may.
	if code, _, e := w.post(w.token(gitlabsim.IDTokenSpec{}), shop(other)); code != http.StatusCreated {
		t.Errorf("another job's release: %d %q", code, e.Message)
	}

	// An app that allows unprotected refs takes a feature branch's release.
	cart := "registry.example.com/team/cart@sha256:" + strings.Repeat("4", 64)
	w.verifier.mu.Lock()
	w.verifier.signed[cart], w.verifier.vulns[cart] = true, []string{}
	w.verifier.mu.Unlock()
	code, res, e = w.post(w.token(gitlabsim.IDTokenSpec{Project: "team/cart", Ref: "feature"}), releaseapi.Request{App: "cart", Image: cart})
	if code != http.StatusCreated || res.SourceCommit != w.git("--git-dir", w.sim.Repo("team/cart"), "rev-parse", "feature") {
		t.Errorf("cart from a feature branch: %d %+v %q", code, res, e.Message)
	}
}

func TestReleaseKeysUnavailable(t *testing.T) {
	w := newReleaseWorld(t, nil)
	before := w.head()
	tok := w.token(gitlabsim.IDTokenSpec{})
	w.sim.Faults(gitlabsim.Fault{Class: gitlabsim.ClassOIDC, Status: 500})
	rec := post(w.handler, releaseapi.Path, []byte(`{"app":"shop","image":"`+relGood+`"}`), map[string]string{"Authorization": "Bearer " + tok})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || strings.Contains(rec.Body.String(), "oauth") {
		t.Errorf("answer %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	if w.head() != before {
		t.Error("committed without checking the token")
	}
}

func TestReleaseEndpointOff(t *testing.T) {
	s := &Server{cfg: &Config{}, log: slog.New(slog.DiscardHandler)}
	rec := post(s.Handler(), releaseapi.Path, []byte(`{}`), map[string]string{"Authorization": "Bearer x"})
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "LOTSE_PUBLIC_URL") {
		t.Errorf("answer %d %s", rec.Code, rec.Body)
	}
}

func TestReleaseConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg              Config
		issuer, aud, jwk string
		on               bool
	}{
		{Config{GitLabURL: "https://gitlab.example.com/api/v4/", PublicURL: "https://lotsed.example.com"},
			"https://gitlab.example.com", "https://lotsed.example.com", "https://gitlab.example.com/oauth/discovery/keys", true},
		{Config{GitLabURL: "http://gitlab.internal:8080", IDTokenIssuer: "https://gitlab.example.com", ReleaseAudience: "lotsed", PublicURL: "https://x"},
			"https://gitlab.example.com", "lotsed", "http://gitlab.internal:8080/oauth/discovery/keys", true},
		{Config{GitLabURL: "https://gitlab.example.com"}, "https://gitlab.example.com", "", "https://gitlab.example.com/oauth/discovery/keys", false},
	} {
		c, on := releaseConfig(&tc.cfg)
		if c.Issuer != tc.issuer || c.Audience != tc.aud || c.KeysURL != tc.jwk || on != tc.on {
			t.Errorf("%+v: %+v %v", tc.cfg, c, on)
		}
	}
}
