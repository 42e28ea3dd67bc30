package components

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gopkg.in/yaml.v3"
	"mvdan.cc/sh/v3/shell"

	"github.com/lotse/lotse/internal/scaffold"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
	"github.com/lotse/lotse/test/reportschema"
	"github.com/lotse/lotse/webhook"
	"github.com/lotse/lotse/webhook/signing"
)

// repoRoot is the module root, two levels above this package.
const repoRoot = "../.."

// TestComponents builds lotse once (or takes LOTSE_BIN) for both subtests.
func TestComponents(t *testing.T) {
	lotse := programBinary(t, "lotse", "LOTSE_BIN")
	t.Run("command-lines", func(t *testing.T) { testCommandLines(t, lotse) })
	t.Run("pipeline", func(t *testing.T) { testPipeline(t, lotse) })
}

// programBinary returns $env, or builds cmd/prog into a temporary
// directory with the flag set the Makefile uses.
func programBinary(t *testing.T, prog, env string) string {
	t.Helper()
	if b := os.Getenv(env); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	out := filepath.Join(t.TempDir(), prog)
	// -pgo=off: the packages are then the ones the test binaries use.
	cmd := exec.Command("go", "build", "-pgo=off", "-o", out, "./cmd/"+prog)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", prog, err, b)
	}
	return out
}

// component is one parsed templates/<name>/template.yml.
type component struct {
	name   string
	inputs map[string]input
	body   string // the job definitions, before interpolation
}

type input struct {
	Default     any      `yaml:"default"`
	Description string   `yaml:"description"`
	Type        string   `yaml:"type"`
	Options     []string `yaml:"options"`
	Regex       string   `yaml:"regex"`
}

func loadComponents(t *testing.T) []component {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "gitlab-templates", "templates", "*", "template.yml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("components: %v %v", files, err)
	}
	var cs []component
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, body, ok := strings.Cut(string(b), "\n---\n")
		if !ok {
			t.Fatalf("%s: no --- between spec and jobs", f)
		}
		var spec struct {
			Spec struct {
				Component   []string         `yaml:"component"`
				Description string           `yaml:"description"`
				Inputs      map[string]input `yaml:"inputs"`
			} `yaml:"spec"`
		}
		dec := yaml.NewDecoder(strings.NewReader(head))
		dec.KnownFields(true)
		if err := dec.Decode(&spec); err != nil {
			t.Fatalf("%s: spec: %v", f, err)
		}
		cs = append(cs, component{name: filepath.Base(filepath.Dir(f)), inputs: spec.Spec.Inputs, body: body})
	}
	return cs
}

var interpolationRE = regexp.MustCompile(`\$\[\[\s*([a-z]+)\.([a-z0-9_-]+)\s*\]\]`)

// interpolate replaces $[[ inputs.X ]] with values (then defaults) and
// $[[ component.version ]] with version, failing on anything unknown, as
// GitLab does.
func (c component) interpolate(t *testing.T, values map[string]string, version string) string {
	t.Helper()
	return interpolationRE.ReplaceAllStringFunc(c.body, func(m string) string {
		sm := interpolationRE.FindStringSubmatch(m)
		switch {
		case sm[1] == "component" && sm[2] == "version":
			return version
		case sm[1] == "inputs":
			if v, ok := values[sm[2]]; ok {
				return v
			}
			in, ok := c.inputs[sm[2]]
			if !ok {
				t.Fatalf("%s: unknown input %s", c.name, sm[2])
			}
			if in.Default == nil {
				t.Fatalf("%s: input %s has no default and no test value", c.name, sm[2])
			}
			return fmt.Sprint(in.Default)
		}
		t.Fatalf("%s: unknown interpolation %s", c.name, m)
		return ""
	})
}

// sampleInputs are values for the mandatory inputs.
var sampleInputs = map[string]string{"app": "shop", "gitops-project": "platform/gitops", "lotsed-url": "https://lotsed.example.com"}

// testCommandLines runs every lotse command line of every template, with
// the inputs' defaults, against the real CLI in an empty directory: nothing
// it needs is there (no image, no DB, a GitLab that answers 404), so each
// fails fast and offline, but never as a usage error (exit 2), which is what
// a misspelt flag, a bad flag value or a wrong argument count gives.
func testCommandLines(t *testing.T, lotse string) {
	cs := loadComponents(t)
	gitlab := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"404 Project Not Found"}`)
	}))
	defer gitlab.Close()

	checked := 0
	for _, c := range cs {
		t.Run(c.name, func(t *testing.T) {
			for _, in := range c.inputs {
				if in.Description == "" {
					t.Errorf("an input without a description")
				}
			}
			for k, in := range c.inputs {
				if in.Regex != "" && in.Default != nil {
					if !regexp.MustCompile(in.Regex).MatchString(fmt.Sprint(in.Default)) {
						t.Errorf("input %s: default %v does not match its regex", k, in.Default)
					}
				}
				if len(in.Options) > 0 && in.Default != nil && !contains(in.Options, fmt.Sprint(in.Default)) {
					t.Errorf("input %s: default %v is not among its options", k, in.Default)
				}
			}
			values := map[string]string{}
			for k, v := range sampleInputs {
				values[k] = v
			}
			// offline: no DB download, no transparency log; still a valid value.
			if _, ok := c.inputs["offline"]; ok {
				values["offline"] = "true"
			}
			jobs := map[string]struct {
				Variables    map[string]string `yaml:"variables"`
				BeforeScript []string          `yaml:"before_script"`
				Script       []string          `yaml:"script"`
			}{}
			text := c.interpolate(t, values, "1.0.0")
			if err := yaml.Unmarshal([]byte(text), &jobs); err != nil {
				t.Fatalf("jobs after interpolation: %v\n%s", err, text)
			}
			if len(jobs) != 1 {
				t.Fatalf("%d jobs, want 1", len(jobs))
			}
			dir := t.TempDir()
			for _, job := range jobs {
				env := map[string]string{
					"HOME": dir, "PATH": os.Getenv("PATH"), "CI_PROJECT_DIR": dir,
					"CI_REGISTRY_IMAGE": "127.0.0.1:1/team/shop", "CI_COMMIT_SHORT_SHA": "0123abcd",
					"LOTSE_IMAGE":        "127.0.0.1:1/team/shop@sha256:" + strings.Repeat("0", 64),
					"LOTSE_GITLAB_TOKEN": "token", "LOTSE_CACHE_DIR": filepath.Join(dir, "cache"),
					// A masked CI/CD variable in the project; lotse reads it
					// first (empty is a usage error) and decrypts it later.
					"COSIGN_PRIVATE_KEY": "not decrypted before the image is read",
				}
				for k, v := range job.Variables {
					env[k] = v
				}
				if env["LOTSE_GITLAB_URL"] == "" {
					env["LOTSE_GITLAB_URL"] = gitlab.URL
				}
				if env["LOTSE_URL"] != "" {
					// The job hands its release to lotsed (here the
					// server that answers 404) with its ID token.
					env["LOTSE_URL"], env["LOTSE_ID_TOKEN"] = gitlab.URL, "id-token"
				}
				for _, line := range append(job.BeforeScript, job.Script...) {
					args, err := shell.Fields(line, func(k string) string { return env[k] })
					if err != nil {
						t.Fatalf("%q: %v", line, err)
					}
					if len(args) == 0 || args[0] != "lotse" {
						continue
					}
					checked++
					code, out := run(t, dir, env, lotse, args[1:]...)
					if code == 2 || code == 0 {
						t.Errorf("lotse %s: exit %d, want a runtime failure (1) without image, DB or GitLab project:\n%s",
							strings.Join(args[1:], " "), code, out)
					}
					t.Logf("lotse %s: exit %d: %s", args[1], code, strings.TrimSpace(out))
				}
			}
		})
	}
	if checked < 3 {
		t.Errorf("checked %d lotse command lines, want at least 3", checked)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// run runs a program with exactly env, with a deadline; it returns the exit
// code and the combined output.
func run(t *testing.T, dir string, env map[string]string, prog string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), out.String()
	default:
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out.String())
		return -1, ""
	}
}

func git(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// testPipeline runs the example application pipeline
// (gitlab-templates/examples/app/.gitlab-ci.yml, as it is) with
// gitlab-ci-local on its shell executor: the release job publishes a signed
// and attested image to a loopback registry and writes valid reports, the
// verify job checks it, and the bump job hands the release to lotsed with
// an ID token the simulator minted for the job (gitlab-ci-local does not
// mint ID tokens: the test passes it as the variable GitLab would set) and
// no GitOps token; lotsed lands the commit in the GitOps project.
func testPipeline(t *testing.T, lotse string) {
	gcl := os.Getenv("GITLAB_CI_LOCAL")
	if gcl == "" {
		var err error
		if gcl, err = exec.LookPath("gitlab-ci-local"); err != nil {
			t.Skip("gitlab-ci-local is not installed: export GITLAB_CI_LOCAL=\"$(scripts/gitlab-ci-local.sh)\" (make test does)")
		}
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed (gitlab-ci-local needs it): scripts/gitlab-ci-local.sh installs it")
	}
	tmp := t.TempDir()

	// The loopback registry; ggcr talks plain HTTP to 127.0.0.1.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	regHost := strings.TrimPrefix(reg.URL, "http://")
	repo := regHost + "/team/shop"

	// The fixture DB, a key pair and the image the build job would write.
	cacheDir := filepath.Join(tmp, "cache")
	if err := fixture.WriteVulnDB(cacheDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "cosign.key")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}

	// The GitOps project, as lotse init gitops writes it.
	sim := gitlabsim.New(gitlabsim.Options{Dir: filepath.Join(tmp, "sim")})
	simSrv := httptest.NewServer(sim)
	defer func() { simSrv.Close(); sim.Close() }()
	bot, err := sim.CreateUser(gitlabsim.UserSpec{Username: "lotse-bot"})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := scaffold.Generate(scaffold.Options{Apps: []string{"shop"}, Stages: []string{"dev", "staging", "production"},
		Registry: regHost + "/team", PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for p, b := range tree {
		files[p] = string(b)
	}
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: "platform/gitops", Files: files,
		Members:   []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}},
	}); err != nil {
		t.Fatal(err)
	}
	gitopsRepo := sim.Repo("platform/gitops")
	// The app's project, main protected; lotse's user reads it.
	if _, err := sim.CreateUser(gitlabsim.UserSpec{Username: "maint"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: "team/shop", Files: map[string]string{"README.md": "shop\n"},
		Members: []gitlabsim.Member{{Username: "maint", Role: gitlabsim.RoleMaintainer}, {Username: "lotse-bot", Role: gitlabsim.RoleReporter}}}); err != nil {
		t.Fatal(err)
	}
	lotsedURL := startLotsed(t, map[string]string{
		"LOTSE_DATABASE_URL":   filepath.Join(tmp, "lotsed.db"),
		"LOTSE_WEBHOOK_SECRET": "hook-secret",
		"LOTSE_GITLAB_URL":     simSrv.URL,
		"LOTSE_GITLAB_TOKEN":   bot.Token,
		"LOTSE_GITOPS_PROJECT": "platform/gitops",
		"LOTSE_INSECURE":       "true",
		"LOTSE_SIGN_OFFLINE":   "true",
	})

	// Git: the catalog project as a bare repository with the tag the example
	// includes, reached through an insteadOf for the URL gitlab-ci-local
	// derives from the app's origin; a private global config and HOME.
	home := filepath.Join(tmp, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	gitEnv := append(os.Environ(), "HOME="+home, "GIT_CONFIG_GLOBAL="+filepath.Join(home, ".gitconfig"), "GIT_CONFIG_NOSYSTEM=1")
	git(t, tmp, gitEnv, "config", "--global", "user.name", "Test")
	git(t, tmp, gitEnv, "config", "--global", "user.email", "test@example.com")
	git(t, tmp, gitEnv, "config", "--global", "init.defaultBranch", "main")
	catalog := filepath.Join(tmp, "gitlab-templates")
	copyTree(t, filepath.Join(repoRoot, "gitlab-templates"), catalog)
	git(t, catalog, gitEnv, "init", "-q")
	git(t, catalog, gitEnv, "add", "-A")
	git(t, catalog, gitEnv, "commit", "-qm", "components")
	git(t, catalog, gitEnv, "tag", "1.0.0")
	bare := catalog + ".git"
	git(t, tmp, gitEnv, "clone", "-q", "--bare", catalog, bare)
	for _, u := range []string{"https://gitlab.example.com:443/lotse/gitlab-templates.git", "https://gitlab.example.com/lotse/gitlab-templates.git"} {
		git(t, tmp, gitEnv, "config", "--global", "--add", "url."+bare+".insteadOf", u)
	}

	// lotse's own image, released by the project's own pipeline
	// (.gitlab-ci.yml, its release-lotse job) into the loopback registry,
	// where the components' default image points.
	pubFile := filepath.Join(tmp, "cosign.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	ciEnv := map[string]string{}
	for _, kv := range gitEnv {
		k, v, _ := strings.Cut(kv, "=")
		ciEnv[k] = v
	}
	ciEnv["PATH"] = filepath.Dir(lotse) + string(os.PathListSeparator) + os.Getenv("PATH")
	bins := map[string]string{"lotse": lotse, "lotsed": programBinary(t, "lotsed", "LOTSED_BIN")}
	releaseSelf(t, selfRelease{lotse: lotse, bins: bins, gcl: gcl, env: ciEnv, gitEnv: gitEnv, dir: filepath.Join(tmp, "lotse"),
		regHost: regHost, keyFile: keyFile, pubFile: pubFile, cacheDir: cacheDir})

	// The app: the example pipeline, the image as the build job leaves it,
	// the public key verify checks with, and the accepted finding.
	app := filepath.Join(tmp, "shop")
	ci, err := os.ReadFile(filepath.Join(repoRoot, "gitlab-templates", "examples", "app", ".gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(app, ".gitlab-ci.yml"), ci)
	writeFile(t, filepath.Join(app, "cosign.pub"), pub)
	writeFile(t, filepath.Join(app, ".trivyignore"), []byte("# accepted: not reachable in this image\nCVE-2023-45853\n"))
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(app, "image"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	git(t, app, gitEnv, "init", "-q")
	git(t, app, gitEnv, "remote", "add", "origin", "https://gitlab.example.com/team/shop.git")
	git(t, app, gitEnv, "add", "-A")
	git(t, app, gitEnv, "commit", "-qm", "shop")
	shortSHA := git(t, app, gitEnv, "rev-parse", "--short=8", "HEAD")
	appSHA := git(t, app, gitEnv, "rev-parse", "HEAD")
	// GitLab has the commit the pipeline runs for, and mints the job's ID
	// token for lotsed's audience (id_tokens: LOTSE_ID_TOKEN: aud: lotsed-url).
	git(t, app, gitEnv, "push", "-q", "--force", sim.Repo("team/shop"), "HEAD:refs/heads/main")
	idToken, err := sim.IDToken(gitlabsim.IDTokenSpec{Project: "team/shop", Aud: gitlabsim.Audience{lotsedURL}, Ref: "main"})
	if err != nil {
		t.Fatal(err)
	}

	env := map[string]string{}
	for _, kv := range gitEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	env["PATH"] = filepath.Dir(lotse) + string(os.PathListSeparator) + os.Getenv("PATH")
	gclArgs := []string{"--force-shell-executor", "--no-color",
		"--input", "release:to=" + repo,
		"--input", "release:offline=true",
		"--input", "release:signing-key=" + keyFile,
		"--input", "verify:offline=true",
		"--input", "bump:lotsed-url=" + lotsedURL,
		"--variable", "LOTSE_CACHE_DIR=" + cacheDir,
		"--variable", "COSIGN_PASSWORD=s3cret",
		// What GitLab sets for the bump job's id_tokens; no GitOps token.
		"--variable", "LOTSE_ID_TOKEN=" + idToken,
	}
	// gitlab-ci-local 4.73 fetches the components of one project in
	// parallel and their copies race (cp: File exists); fetch them one at
	// a time first, through the insteadOf, into its include cache.
	for _, c := range []string{"guardrails", "release", "verify", "bump"} {
		inputs := ""
		if c == "bump" {
			inputs = "\n    inputs: {app: shop, lotsed-url: " + lotsedURL + "}"
		}
		f := ".fetch-" + c + ".yml" // gitlab-ci-local wants it under the project
		writeFile(t, filepath.Join(app, f), []byte("stages: [build, test, release, deploy]\ninclude:\n  - component: $CI_SERVER_FQDN/lotse/gitlab-templates/"+c+"@1.0.0"+inputs+"\n"))
		// Alone, a component may not make a valid pipeline (verify needs
		// release): what counts is that it was fetched.
		_, out := run(t, app, env, gcl, "--file", f, "--list")
		cached := filepath.Join(app, ".gitlab-ci-local", "includes", "gitlab.example.com", "lotse", "gitlab-templates", "1.0.0", "templates", c, "template.yml")
		if _, err := os.Stat(cached); err != nil {
			t.Fatalf("gitlab-ci-local did not fetch component %s: %v\n%s", c, err, out)
		}
	}
	before := git(t, app, gitEnv, "--git-dir", gitopsRepo, "rev-parse", "main")
	for _, job := range []string{"lotse-release", "lotse-verify", "lotse-bump"} {
		code, out := run(t, app, env, gcl, append(gclArgs, job)...)
		t.Logf("gitlab-ci-local %s:\n%s", job, out)
		if code != 0 {
			t.Fatalf("gitlab-ci-local %s: exit %d", job, code)
		}
	}

	// The catalog's own pipeline includes its components at this commit;
	// its guardrails test job runs the guardrails component for real.
	git(t, catalog, gitEnv, "remote", "add", "origin", "https://gitlab.example.com/lotse/gitlab-templates.git")
	if code, out := run(t, catalog, env, gcl, "--force-shell-executor", "--no-color", "test-guardrails"); code != 0 {
		t.Fatalf("gitlab-ci-local test-guardrails in the catalog project: exit %d\n%s", code, out)
	}
	var cq []any
	cqJSON := findFile(t, filepath.Join(catalog, ".gitlab-ci-local"), "gl-code-quality-report.json")
	if err := json.Unmarshal(cqJSON, &cq); err != nil || len(cq) != 0 {
		t.Errorf("code quality report of the clean manifests: %v %v", cq, err)
	}
	if err := reportschema.Validate(reportschema.CodeQuality, cqJSON); err != nil {
		t.Error(err)
	}

	// The release job's files, wherever gitlab-ci-local keeps them.
	dotenv := parseDotenv(t, findFile(t, app, "release.env"))
	image, digest := dotenv["LOTSE_IMAGE"], dotenv["LOTSE_DIGEST"]
	if !strings.HasPrefix(image, repo+"@sha256:") || !strings.HasSuffix(image, "@"+digest) {
		t.Fatalf("dotenv %v, want LOTSE_IMAGE=%s@sha256:... and LOTSE_DIGEST", dotenv, repo)
	}
	tag, err := name.NewTag(repo + ":" + shortSHA)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag)
	if err != nil || desc.Digest.String() != digest {
		t.Fatalf("registry: %s is %v (%v), want %s", tag, desc, err, digest)
	}
	if code, out := run(t, tmp, env, lotse, "verify", "--offline", "--key", filepath.Join(app, "cosign.pub"), "--type", "cyclonedx,vuln", image); code != 0 {
		t.Fatalf("lotse verify: exit %d\n%s", code, out)
	}

	// The reports as GitLab reads them, against the full schemas.
	if err := reportschema.Validate(reportschema.ContainerScanning, findFile(t, app, "gl-container-scanning-report.json")); err != nil {
		t.Error(err)
	}
	sbomJSON := findFile(t, app, "gl-sbom-image.cdx.json")
	if err := reportschema.Validate(reportschema.CycloneDX, sbomJSON); err != nil {
		t.Error(err)
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []any  `json:"components"`
	}
	if err := json.Unmarshal(sbomJSON, &bom); err != nil || bom.BOMFormat != "CycloneDX" || len(bom.Components) == 0 {
		t.Errorf("SBOM: bomFormat %q, %d components (%v)", bom.BOMFormat, len(bom.Components), err)
	}
	findFile(t, app, "trivy-report.json")

	// The bump: one commit on main of the GitOps project with the digest.
	after := git(t, app, gitEnv, "--git-dir", gitopsRepo, "rev-parse", "main")
	if after == before {
		t.Fatal("the bump job landed no commit in the GitOps project")
	}
	values := git(t, app, gitEnv, "--git-dir", gitopsRepo, "show", "main:"+scaffold.ValuesPath("shop", "dev"))
	if !strings.Contains(values, digest) || !strings.Contains(values, "repository: "+repo) {
		t.Errorf("values file after the bump:\n%s", values)
	}
	msg := git(t, app, gitEnv, "--git-dir", gitopsRepo, "log", "-1", "--format=%B", "main")
	for _, want := range []string{"Lotse-App: shop", "Lotse-Stage: dev", "Lotse-Image: " + image,
		"Lotse-Source-Project: team/shop", "Lotse-Source-Commit: " + appSHA, "Lotse-Pipeline: " + simSrv.URL + "/team/shop/-/pipelines/"} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit message lacks %q:\n%s", want, msg)
		}
	}
	// lotsed committed it, as lotse's user.
	if author := git(t, app, gitEnv, "--git-dir", gitopsRepo, "log", "-1", "--format=%an", "main"); author != bot.Name && author != bot.Username {
		t.Errorf("the bump was committed by %q, want lotse's user", author)
	}
}

// findFile returns the one file called base under dir (gitlab-ci-local
// keeps the job's files in its state directory), failing when there is none.
func findFile(t *testing.T, dir, base string) []byte {
	t.Helper()
	return findJobFile(t, dir, "", base)
}

// findJobFile is findFile among the files under a directory named job (the
// one gitlab-ci-local gives a job), or anywhere when job is "".
func findJobFile(t *testing.T, dir, job, base string) []byte {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		inJob := job == "" || strings.Contains(p, string(filepath.Separator)+job+string(filepath.Separator))
		if err == nil && !d.IsDir() && d.Name() == base && inJob {
			found = append(found, p)
		}
		return nil
	})
	if len(found) == 0 {
		t.Fatalf("no %s under %s (job %q)", base, dir, job)
	}
	b, err := os.ReadFile(found[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseDotenv(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("dotenv line %q", l)
		}
		m[k] = v
	}
	return m
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(dst, rel), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startLotsed runs lotsed in this process with env (and its own address as
// LOTSE_PUBLIC_URL, the audience of the ID tokens it takes) until the test
// ends, and returns its URL.
func startLotsed(t *testing.T, env map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	env["LOTSE_LISTEN"], env["LOTSE_PUBLIC_URL"] = addr, base
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	var logs bytes.Buffer
	var mu sync.Mutex
	go func() {
		done <- webhook.Run(ctx, "components", nil, func(k string) string { return env[k] }, io.Discard, lockedWriter{&mu, &logs}, signing.Verifier, signing.Attester)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			mu.Lock()
			t.Logf("lotsed log:\n%s", logs.String())
			mu.Unlock()
		}
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
	}
	t.Fatalf("lotsed at %s not ready", base)
	return ""
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A Developer's branch pipeline must not write a cache that a release from
// a protected branch reads (a planted vulnerability DB or layer analysis
// would pass the gate and be signed as evidence): every cache a component
// declares is keyed by $CI_COMMIT_REF_PROTECTED.
func TestCachesSeparateProtectedPipelines(t *testing.T) {
	n := 0
	for _, c := range loadComponents(t) {
		var jobs map[string]struct {
			Cache *struct {
				Key any `yaml:"key"`
			} `yaml:"cache"`
		}
		if err := yaml.Unmarshal([]byte(c.interpolate(t, sampleInputs, componentVersion)), &jobs); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for job, j := range jobs {
			if j.Cache == nil {
				continue
			}
			n++
			if key, _ := j.Cache.Key.(string); !strings.Contains(key, "$CI_COMMIT_REF_PROTECTED") {
				t.Errorf("%s: job %s caches under %v, shared by protected and unprotected pipelines", c.name, job, j.Cache.Key)
			}
		}
	}
	if n == 0 {
		t.Fatal("no component declares a cache: the release component should")
	}
}
