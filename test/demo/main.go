// Command demo runs lotse's main job on embedded defaults, offline: a
// loopback registry, a sample image built on the fly, a fixture
// vulnerability DB and a throwaway key. `make demo` runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
)

func main() {
	lotse := flag.String("lotse", "bin/lotse", "the lotse binary")
	lotsed := flag.String("lotsed", "bin/lotsed", "the lotsed binary")
	keep := flag.Bool("keep", false, "keep everything running (and the work directory) until Ctrl-C, to look around")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *lotse, *lotsed, *keep, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	ctx   context.Context
	lotse string
	dir   string
	env   []string
	out   io.Writer
}

const lotseYAML = `version: 1
gitlab:
  project: platform/gitops
  defaultBranch: main
signing:
  publicKey: keys/cosign.pub
apps:
  - name: shop
    sourceProject: team/shop
    image: HARBOR
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
    gates: {signature: true, maxSeverity: critical}
    labels: [production]
`

func run(ctx context.Context, lotse, lotsed string, keep bool, out io.Writer) error {
	var err error
	if lotse, err = filepath.Abs(lotse); err != nil {
		return err
	}
	if lotsed, err = filepath.Abs(lotsed); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lotse-demo")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Fprintf(out, "\nwork directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	start := time.Now()

	// 1. A registry on loopback: stands in for GitLab's registry and Harbor.
	reg, stopReg, err := serveLoopback(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	if err != nil {
		return err
	}
	defer stopReg()
	step(out, "registry", "listening on %s (stands in for GitLab's registry and Harbor)", reg)
	harbor := reg + "/harbor/team/shop"

	// 2. A vulnerability DB from fixtures and a throwaway signing key.
	cache := mkdir(dir, "cache")
	if err := fixture.WriteVulnDB(cache, time.Now()); err != nil {
		return err
	}
	if err := fixture.WriteJavaDB(cache, time.Now()); err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("demo"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600); err != nil {
		return err
	}
	// lotsed's own key: it signs the promotion records.
	lpriv, lpub, err := sign.GenerateKeyPair([]byte("lotsed"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "lotsed.key"), lpriv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "lotsed.pub"), lpub, 0o644); err != nil {
		return err
	}
	step(out, "setup", "fixture vulnerability DB, throwaway cosign key pair")

	// 3. GitLab: the GitOps repository and the app's project, on real git.
	gl, err := newGitLab(dir, harbor, string(pub))
	if err != nil {
		return err
	}
	defer gl.close()
	step(out, "gitlab", "simulator at %s: %s (protected main and lotse/*) and %s, users alice, bob, dev1, lotse-bot", gl.url, gitopsProject, appProject)

	// 4. lotsed with embedded SQLite, registered as the GitOps project's webhook.
	lotsedURL, stopLotsed, err := startLotsed(ctx, lotsed, dir, gl)
	if err != nil {
		return err
	}
	defer stopLotsed()
	step(out, "lotsed", "%s (SQLite in %s), webhook registered", lotsedURL, filepath.Join(dir, "lotsed.db"))

	// 4b. lotse doctor checks the set-up as lotse's user sees it; lotsed
	// serves the same report.
	if err := checkSetup(ctx, lotse, dir, gl, lotsedURL, out); err != nil {
		return err
	}

	// 5. CI of team/shop: the merged change is built and pushed: a Go
	// service with a Java library jar beside it (scanned as trivy does).
	img, err := fixture.GoImage(ctx, mkdir(dir, "build"))
	if err != nil {
		return err
	}
	jar, err := fixture.LibraryJar(fixture.SnakeYAML)
	if err != nil {
		return err
	}
	jars, err := fixture.Layer(fixture.File{Path: "opt/shop/lib/snakeyaml.jar", Mode: 0o644, Data: jar})
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, jars); err != nil {
		return err
	}
	built, _ := name.NewTag(reg + "/team/shop:build-42")
	if err := remote.Write(built, img, remote.WithContext(ctx)); err != nil {
		return err
	}
	d, _ := img.Digest()
	step(out, "build", "dev1's change %.8s built and pushed as %s (%s)", gl.source, built, d)

	dm := &demo{ctx: ctx, lotse: lotse, dir: dir, out: out, env: append(os.Environ(),
		"LOTSE_CACHE_DIR="+cache, "COSIGN_PASSWORD=demo", "HOME="+dir,
		"LOTSE_GITLAB_URL="+gl.url, "LOTSE_GITLAB_TOKEN="+gl.users["ci"].Token, "LOTSE_GITOPS_PROJECT="+gitopsProject,
		"CI_PROJECT_PATH="+appProject, "CI_COMMIT_SHA="+gl.source, "CI_PIPELINE_URL="+gl.url+"/team/shop/-/pipelines/42")}
	release := []string{"release", built.String(), "--to", harbor, "--tag", "1.4.0", "--offline", "--key", "cosign.key", "--fail-on", "critical", "--dotenv", "release.env"}

	// 6. The release gate stops a critical finding: nothing reaches Harbor.
	fmt.Fprintf(out, "\n$ lotse %s\n", strings.Join(release, " "))
	code, err := dm.lotseRun(release...)
	if err != nil {
		return err
	}
	if code != 3 {
		return fmt.Errorf("expected the gate to fail with exit code 3, got %d", code)
	}
	step(out, "gate", "exit code 3: a CRITICAL finding stopped the release before anything was pushed")

	// 7. The team accepts it with a reason in .trivyignore; the release goes through.
	if err := os.WriteFile(filepath.Join(dir, ".trivyignore"), []byte("# zlib inflate bug: shop never inflates untrusted input (SEC-1234, until 2026-12-31)\nCVE-2023-45853\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ echo CVE-2023-45853 >> .trivyignore   # accepted, with a reason\n$ lotse %s\n", strings.Join(release, " "))
	if code, err := dm.lotseRun(release...); err != nil || code != 0 {
		return fmt.Errorf("release: exit code %d: %v", code, err)
	}
	env, err := os.ReadFile(filepath.Join(dir, "release.env"))
	if err != nil {
		return err
	}
	image := strings.TrimPrefix(strings.Split(strings.TrimSpace(string(env)), "\n")[1], "LOTSE_IMAGE=")

	// 8. The bump job hands the image to lotsed with the job's ID token
	// (id_tokens: LOTSE_ID_TOKEN: aud: lotsed's URL), without any GitOps
	// token; lotsed commits it into dev and takes it from there.
	idToken, err := gl.sim.IDToken(gitlabsim.IDTokenSpec{Project: appProject, Aud: gitlabsim.Audience{lotsedURL}, SHA: gl.source})
	if err != nil {
		return err
	}
	bump := []string{"bump", "--app", "shop", "--stage", "dev", "--image", image}
	fmt.Fprintf(out, "\n$ LOTSE_URL=%s LOTSE_ID_TOKEN=<the job's ID token> lotse %s\n", lotsedURL, strings.Join(bump, " "))
	bumpEnv := []string{"LOTSE_URL=" + lotsedURL, "LOTSE_ID_TOKEN=" + idToken}
	for _, kv := range dm.env {
		if !strings.HasPrefix(kv, "LOTSE_GITLAB_TOKEN=") && !strings.HasPrefix(kv, "GITLAB_TOKEN=") {
			bumpEnv = append(bumpEnv, kv)
		}
	}
	if code, err := dm.lotseRunEnv(bumpEnv, bump...); err != nil || code != 0 {
		return fmt.Errorf("bump: exit code %d: %v", code, err)
	}
	digest := image[strings.Index(image, "@")+1:]
	if err := gl.waitStage(ctx, "staging", digest, 60*time.Second); err != nil {
		return err
	}
	step(out, "staging", "lotsed checked the gates (signature, scan attestation), opened the MR and merged it")

	// 9. Production needs two approvals from people who did not write the change.
	mr, err := gl.waitMR(ctx, "production", 60*time.Second)
	if err != nil {
		return err
	}
	// The GitOps project's own pipeline (the guardrails job) runs on
	// lotse's commit; production merges only after it succeeded.
	snap, err := gl.sim.MergeRequest(gitopsProject, int(mr))
	if err != nil {
		return err
	}
	if _, err := gl.sim.CreatePipeline(gitopsProject, gitlabsim.PipelineSpec{Ref: snap.SourceBranch, SHA: snap.SHA, Status: "success",
		Source: "push", Name: "guardrails"}); err != nil {
		return err
	}
	step(out, "prod", "the GitOps project's guardrails pipeline passed on lotse's commit %.8s (production requires it)", snap.SHA)
	step(out, "prod", "MR !%d waits for two approvals; dev1 (the change's author) approves: does not count", mr)
	if err := gl.sim.Approve(gitopsProject, int(mr), "dev1"); err != nil {
		return err
	}
	for _, u := range []string{"alice", "bob"} {
		time.Sleep(700 * time.Millisecond)
		if err := gl.sim.Approve(gitopsProject, int(mr), u); err != nil {
			return err
		}
		step(out, "prod", "%s approves", u)
	}
	if err := gl.waitStage(ctx, "production", digest, 60*time.Second); err != nil {
		return err
	}
	step(out, "prod", "two valid approvals: lotsed merged MR !%d", mr)

	fmt.Fprintf(out, "\n$ lotse status\n")
	if code, err := dm.lotseRun("status"); err != nil || code != 0 {
		return fmt.Errorf("status: exit code %d: %v", code, err)
	}
	if err := gl.show(ctx, out, mr); err != nil {
		return err
	}
	if err := evidence(ctx, dm, gl, lotsedURL, harbor+"@"+d.String()); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nWhat happened, in %s:\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(out, "  - lotse release read the image once: SBOM (syft) and scan (trivy, its Java jar too) side by side; the gate stopped a CRITICAL\n")
	fmt.Fprintf(out, "    finding, accepted with a reason it went through: published by digest, signed, SBOM and scan attested\n")
	fmt.Fprintf(out, "  - lotse bump handed the digest to lotsed with the job's ID token (no GitOps token in the app's pipeline);\n")
	fmt.Fprintf(out, "    lotsed checked it is team/shop on a protected branch and committed dev; it saw the push, checked signature and scan for staging,\n")
	fmt.Fprintf(out, "    opened and merged the staging MR, opened the production MR and merged it after two valid approvals\n")
	fmt.Fprintf(out, "  - every step is a Git commit or MR in %s; statuses and one sticky comment tell the app's MR\n", gitopsProject)
	fmt.Fprintf(out, "  - see it: board %s/board (token %s), MRs %s/api/v4/projects/platform%%2Fgitops/merge_requests (token %s)\n",
		lotsedURL, demoReadToken, gl.url, gl.users["alice"].Token)
	fmt.Fprintf(out, "  - metrics %s/metrics (same token); to run lotsed beside ArgoCD: the Helm chart webhook/deploy/chart,\n", lotsedURL)
	fmt.Fprintf(out, "    the Grafana dashboard webhook/deploy/dashboards/lotsed.json, the alert rules webhook/deploy/chart/files/lotsed-rules.yaml\n")
	if keep {
		fmt.Fprintf(out, "\nEverything keeps running; Ctrl-C to stop.\n")
		<-ctx.Done()
	}
	return nil
}

// checkSetup runs lotse doctor with lotse's user's token and asks lotsed's
// GET /api/v1/doctor. Findings do not stop the demo: they are shown.
func checkSetup(ctx context.Context, lotse, dir string, gl *simGitLab, lotsedURL string, out io.Writer) error {
	d := &demo{ctx: ctx, lotse: lotse, dir: dir, out: out, env: append(os.Environ(), "HOME="+dir,
		"LOTSE_GITLAB_URL="+gl.url, "LOTSE_GITLAB_TOKEN="+gl.users["lotse-bot"].Token, "LOTSE_GITOPS_PROJECT="+gitopsProject)}
	fmt.Fprintf(out, "\n$ LOTSE_GITLAB_TOKEN=<lotse-bot's token> lotse doctor --lotsed-url %s\n", lotsedURL)
	code, err := d.lotseRun("doctor", "--lotsed-url", lotsedURL)
	if err != nil {
		return err
	}
	if code > 1 {
		return fmt.Errorf("lotse doctor: exit code %d", code)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, lotsedURL+"/api/v1/doctor", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+demoReadToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		OK       bool `json:"ok"`
		Errors   int  `json:"errors"`
		Warnings int  `json:"warnings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lotsed GET /api/v1/doctor: %s: %v", resp.Status, err)
	}
	verdict := "set up as lotse needs it"
	if code != 0 || !r.OK {
		verdict = "see the findings above"
	}
	step(out, "doctor", "lotse doctor exit code %d; lotsed's GET /api/v1/doctor: ok=%v, %d error(s), %d warning(s): %s", code, r.OK, r.Errors, r.Warnings, verdict)
	return nil
}

func (d *demo) lotseRun(args ...string) (int, error) { return d.lotseRunEnv(d.env, args...) }

func (d *demo) lotseRunEnv(env []string, args ...string) (int, error) {
	cmd := exec.CommandContext(d.ctx, d.lotse, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.dir, env, d.out, d.out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func step(w io.Writer, what, format string, args ...any) {
	fmt.Fprintf(w, "==> %-8s %s\n", what, fmt.Sprintf(format, args...))
}

func mkdir(parent, name string) string {
	p := filepath.Join(parent, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		panic(err)
	}
	return p
}

// evidence prints what an auditor asks for: the production promotion record
// (verified with lotsed's key), the audit chain verified, and the app's
// environments and deployments as GitLab lists them.
func evidence(ctx context.Context, dm *demo, gl *simGitLab, lotsedURL, image string) error {
	out := dm.out
	fmt.Fprintf(out, "\n$ lotse verify --promotion-key lotsed.pub --type promotion --insecure --offline %s\n", image)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The record is attached once the version landed; quietly wait for it.
		dm2 := *dm
		dm2.out = io.Discard
		if code, err := dm2.lotseRun("verify", "--promotion-key", "lotsed.pub", "--type", "promotion", "--insecure", "--offline", image); err == nil && code == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the production promotion record did not verify within 30s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, err := dm.lotseRun("verify", "--promotion-key", "lotsed.pub", "--type", "promotion", "--insecure", "--offline", image); err != nil || code != 0 {
		return fmt.Errorf("verify the promotion record: exit code %d: %v", code, err)
	}
	fmt.Fprintf(out, "\n$ LOTSE_API_TOKEN=<read token> lotse audit verify --url %s\n", lotsedURL)
	env := append(append([]string{}, dm.env...), "LOTSE_API_TOKEN="+demoReadToken)
	if code, err := dm.lotseRunEnv(env, "audit", "verify", "--url", lotsedURL); err != nil || code != 0 {
		return fmt.Errorf("audit verify: exit code %d: %v", code, err)
	}
	c := gl.client("alice")
	envs, err := c.Environments(ctx, appProject)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nEnvironments of %s (GET %s/api/v4/projects/team%%2Fshop/environments) and their latest deployments:\n", appProject, gl.url)
	for _, e := range envs {
		last := "none"
		if ds, err := c.Deployments(ctx, appProject, gitlab.DeploymentQuery{Environment: e.Name, OrderBy: "id", Desc: true, Limit: 1}); err == nil && len(ds) > 0 {
			last = fmt.Sprintf("#%d %s of %.12s on %s", ds[0].IID, ds[0].Status, ds[0].SHA, ds[0].Ref)
		}
		fmt.Fprintf(out, "    %-12s tier %-12s %-10s %s\n", e.Name, e.Tier, e.State, last)
	}
	return nil
}
