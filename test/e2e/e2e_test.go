// Package e2e runs lotsed end to end: the GitLab simulator on real git
// repositories, a loopback registry with signed images, real SQLite and
// PostgreSQL, and lotsed itself, in process or as a child process that
// the tests kill.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/writeback"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
	"github.com/lotse/lotse/webhook"
	"github.com/lotse/lotse/webhook/signing"
)

// A child process of the test binary runs lotsed (see startChild).
func TestMain(m *testing.M) {
	// As cmd/lotsed does: cosign's progress messages go to os.Stderr; the
	// tests' own output goes to stdout, panics to file descriptor 2. A
	// child lotsed logs to the real standard error, as cmd/lotsed does.
	stderr := os.Stderr
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stderr = null
	}
	if os.Getenv("LOTSED_E2E_CHILD") == "1" {
		ctx, stop := signalContext()
		code := webhook.Run(ctx, "e2e", os.Args[1:], os.Getenv, os.Stdout, stderr, signing.Verifier, signing.Attester)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const (
	gitopsProject = "platform/gitops"
	appProject    = "team/shop"
	hookSecret    = "hook-secret"
	readToken     = "read-token"
	adminToken    = "admin-token"
	argocdToken   = "argocd-token"
	keyPassword   = "e2e"
)

const lotseYAML = `version: 1
gitlab:
  project: platform/gitops
  defaultBranch: main
signing:
  publicKey: keys/cosign.pub
apps:
  - name: shop
    sourceProject: team/shop
    image: REGISTRY/team/shop
    values: apps/{app}/envs/{stage}/values.yaml
    set:
      image.repository: repository
      image.digest: digest
stages:
  - name: dev
    promotion: commit
  - name: staging
    promotion: merge-request
    gates: {signature: true, maxSeverity: critical}
  - name: production
    promotion: approval
    approvals: 2
    gates: {signature: true, maxSeverity: high}
    labels: [production]
`

const valuesYAML = `# shop in STAGE
replicaCount: 2
image:
  repository: REGISTRY/team/shop
  digest: ""   # set by lotse
`

// world is one test's GitLab, registry, users and images.
type world struct {
	t        *testing.T
	sim      *gitlabsim.Sim
	simURL   string
	registry string
	users    map[string]gitlabsim.User
	keys     string            // directory with cosign.key and cosign.pub
	images   map[string]string // name -> repo@digest
	source   string            // the source commit of the change
	extraEnv map[string]string // lotsed settings of one test
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, users: map[string]gitlabsim.User{}, images: map[string]string{}}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	w.registry = strings.TrimPrefix(reg.URL, "http://")

	w.sim = gitlabsim.New(gitlabsim.Options{Dir: t.TempDir(), Checking: gitlabsim.Checking{Reads: 1}})
	srv := httptest.NewServer(w.sim)
	t.Cleanup(func() { srv.Close(); w.sim.Close() })
	w.simURL = srv.URL
	w.sim.SetBaseURL(srv.URL)
	// dev1 writes the change, carl adds a commit to it in some tests, alice
	// and bob review, ci is the token of lotse bump, mallory is a human
	// Maintainer of the GitOps project. Emails are public: lotsed ties
	// commits to users by them.
	for _, u := range []string{"lotse-bot", "alice", "bob", "dev1", "ci", "carl", "mallory"} {
		usr, err := w.sim.CreateUser(gitlabsim.UserSpec{Username: u, Email: u + "@example.invalid", PublicEmail: u + "@example.invalid", Bot: u == "lotse-bot"})
		if err != nil {
			t.Fatal(err)
		}
		w.users[u] = usr
	}

	// Keys, and the released images: signed and attested like lotse release does.
	w.keys = t.TempDir()
	priv, pub, err := sign.GenerateKeyPair([]byte(keyPassword))
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(w.keys, "cosign.key"), priv, 0o600))
	must(t, os.WriteFile(filepath.Join(w.keys, "cosign.pub"), pub, 0o644))
	t.Setenv("COSIGN_PASSWORD", keyPassword)
	deb, err := fixture.DebianImage()
	must(t, err)
	alp, err := fixture.AlpineImage()
	must(t, err)
	w.images["v1"] = w.release(deb, "v1", true, "MEDIUM")
	w.images["unsigned"] = w.release(alp, "unsigned", false, "")
	clean, err := fixture.Image()
	must(t, err)
	w.images["high"] = w.release(clean, "high", true, "HIGH")

	// GitLab: the GitOps project (protected main: only Maintainers push,
	// i.e. lotse's user), and the app's project with a merged MR by dev1.
	files := map[string]string{
		"lotse.yaml":      strings.ReplaceAll(lotseYAML, "REGISTRY", w.registry),
		"keys/cosign.pub": string(pub),
	}
	for _, st := range []string{"dev", "staging", "production"} {
		files["apps/shop/envs/"+st+"/values.yaml"] = strings.ReplaceAll(strings.ReplaceAll(valuesYAML, "REGISTRY", w.registry), "STAGE", st)
	}
	_, err = w.sim.CreateProject(gitlabsim.ProjectSpec{Path: gitopsProject, Files: files, Members: []gitlabsim.Member{
		{Username: "lotse-bot", Role: 40}, {Username: "alice", Role: 30}, {Username: "bob", Role: 30}, {Username: "dev1", Role: 30}, {Username: "ci", Role: 40},
		{Username: "carl", Role: 30}, {Username: "mallory", Role: 40}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: 40, MergeAccessLevel: 40}}})
	must(t, err)
	_, err = w.sim.CreateProject(gitlabsim.ProjectSpec{Path: appProject, Members: []gitlabsim.Member{
		{Username: "dev1", Role: 30}, {Username: "carl", Role: 30}, {Username: "lotse-bot", Role: 30}, {Username: "alice", Role: 40}}, Unprotected: true})
	must(t, err)
	_, err = w.sim.Commit(appProject, "dev1", gitlabsim.CommitSpec{Branch: "feature", StartBranch: "main", Message: "Faster checkout",
		Files: map[string]string{"main.go": "package main\n"}})
	must(t, err)
	dev1 := w.client("dev1")
	mr, err := dev1.CreateMR(context.Background(), appProject, gitlab.CreateMRRequest{SourceBranch: "feature", TargetBranch: "main", Title: "Faster checkout"})
	must(t, err)
	w.source = mr.SHA
	_, err = dev1.GetMR(context.Background(), appProject, mr.IID) // GitLab finishes its mergeability check
	must(t, err)
	must(t, w.sim.Merge(appProject, int(mr.IID), "alice", gitlabsim.MergeSpec{}))
	return w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// release pushes img to the registry and, when signed, signs it and
// attests a trivy report with one finding of severity sev.
func (w *world) release(img v1.Image, tag string, signed bool, sev string) string {
	t := w.t
	ref, err := name.NewTag(w.registry + "/team/shop:" + tag)
	must(t, err)
	must(t, remote.Write(ref, img))
	d, err := img.Digest()
	must(t, err)
	digest := ref.Context().Digest(d.String()).String()
	if !signed {
		return digest
	}
	opts := sign.Options{Key: filepath.Join(w.keys, "cosign.key"), Offline: true}
	must(t, sign.Sign(context.Background(), digest, opts))
	// cosign's vuln predicate around a trivy report, as lotse release attests it.
	report := `{"invocation":{},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","version":"0.74.0","db":{},"result":` +
		`{"SchemaVersion":2,"ArtifactName":"` + digest + `","Results":[{"Target":"debian","Vulnerabilities":[{"VulnerabilityID":"CVE-2024-0001","PkgName":"libssl3","Severity":"` + sev + `"}]}]}},` +
		`"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`
	pred := filepath.Join(t.TempDir(), "trivy.json")
	must(t, os.WriteFile(pred, []byte(report), 0o644))
	must(t, sign.Attest(context.Background(), digest, sign.Vuln, pred, opts))
	return digest
}

func (w *world) client(user string) *gitlab.Client {
	c, err := gitlab.New(w.simURL, w.users[user].Token)
	must(w.t, err)
	return c
}

// env is lotsed's configuration for this world.
func (w *world) env(listen, dbURL string) map[string]string {
	return map[string]string{
		"LOTSE_LISTEN":          listen,
		"LOTSE_DATABASE_URL":    dbURL,
		"LOTSE_WEBHOOK_SECRET":  hookSecret,
		"LOTSE_API_READ_TOKEN":  readToken,
		"LOTSE_API_ADMIN_TOKEN": adminToken,
		"LOTSE_ARGOCD_TOKEN":    argocdToken,
		"LOTSE_GITLAB_URL":      w.simURL,
		"LOTSE_GITLAB_TOKEN":    w.users["lotse-bot"].Token,
		"LOTSE_GITOPS_PROJECT":  gitopsProject,
		"LOTSE_OPERATORS":       "alice",
		"LOTSE_WRITERS":         "ci",
		"LOTSE_INSECURE":        "true",
		"LOTSE_SIGN_OFFLINE":    "true",
		"LOTSE_TICK":            "300ms",
		"LOTSE_WORKERS":         "2",
		"LOTSE_LOG_LEVEL":       "debug",
		// POST /api/v1/releases takes ID tokens for lotsed's own URL.
		"LOTSE_RELEASE_AUDIENCE": "http://" + listen,
	}
}

// startLotsed runs lotsed in this process until the test ends.
func (w *world) startLotsed(dbURL string) string {
	t := w.t
	addr := freeAddr(t)
	env := w.env(addr, dbURL)
	for k, v := range w.extraEnv {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	logs := &logBuffer{}
	go func() {
		done <- webhook.Run(ctx, "e2e", nil, func(k string) string { return env[k] }, io.Discard, logs, signing.Verifier, signing.Attester)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("lotsed log:\n%s", logs.String())
		}
	})
	waitReady(t, "http://"+addr)
	w.hook("http://" + addr)
	return "http://" + addr
}

// hook registers lotsed's webhook on the GitOps project.
func (w *world) hook(url string) {
	_, err := w.sim.AddHook(gitopsProject, gitlabsim.AllEvents(url+"/webhooks/gitlab", hookSecret))
	must(w.t, err)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("lotsed at %s not ready", base)
}

// bumpDev is what the CI job `lotse bump --stage dev` does.
func (w *world) bumpDev(image string) {
	wr, err := writeback.Open(context.Background(), w.client("ci"), gitopsProject, writeback.Options{})
	must(w.t, err)
	ref, err := gitops.ParseImageRef(image)
	must(w.t, err)
	_, err = wr.Bump(context.Background(), writeback.Bump{App: "shop", Stage: "dev", Image: ref, SourceProject: appProject,
		SourceCommit: w.source, Pipeline: w.simURL + "/team/shop/-/pipelines/1"})
	must(w.t, err)
}

// eventually polls cond until it holds or the time is up.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

// valuesDigest reads the image digest of a stage on main.
func (w *world) valuesDigest(stage string) string {
	f, err := w.client("alice").File(context.Background(), gitopsProject, "apps/shop/envs/"+stage+"/values.yaml", "main")
	if err != nil {
		return ""
	}
	v, _, _ := gitops.GetValue(f.Content, "image.digest")
	return v
}

// openMR finds the open MR of a stage branch.
func (w *world) openMR(stage string) (gitlab.MR, bool) {
	mr, err := w.client("alice").FindOpenMR(context.Background(), gitopsProject, gitops.BranchName("shop", stage))
	return mr, err == nil
}

func (w *world) statuses() map[string]string {
	sts, err := w.sim.Statuses(appProject, w.source)
	must(w.t, err)
	out := map[string]string{}
	for _, s := range sts {
		out[s.Name] = s.Status
	}
	return out
}

func (w *world) describeStatuses() string {
	sts, err := w.sim.Statuses(appProject, w.source)
	must(w.t, err)
	var b strings.Builder
	for _, s := range sts {
		fmt.Fprintf(&b, "%s=%s (%s); ", s.Name, s.Status, s.Description)
	}
	return b.String()
}

func digestOf(image string) string { return image[strings.Index(image, "@")+1:] }

func apiGet(t *testing.T, base, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	must(t, json.NewDecoder(resp.Body).Decode(v))
}

type logBuffer struct {
	b strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) { return l.b.Write(p) }
func (l *logBuffer) String() string              { return l.b.String() }
