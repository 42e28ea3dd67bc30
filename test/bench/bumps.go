package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lotse/lotse/test/gitlabsim"
)

var retriesRE = regexp.MustCompile(`(?m)^retries (\d+)$`)

// bumps starts n `lotse bump` processes at once against the GitLab simulator,
// each for its own app, all in one values file, while the simulator answers
// a share of requests with 429 (Retry-After: 1). It prints the time until all
// landed and the retries per bump, and checks that every bump is in the file.
func bumps(ctx context.Context, lotse string, n int, rate float64) error {
	if n < 1 {
		return fmt.Errorf("-bumps %d: need at least one", n)
	}
	dir, err := os.MkdirTemp("", "lotse-bench-bumps")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, url, bot, stop, err := startSim(dir)
	if err != nil {
		return err
	}
	defer stop()
	var cfg, vals strings.Builder
	cfg.WriteString("version: 1\ngitlab: {project: platform/gitops}\nstages: [{name: dev, promotion: commit}]\napps:\n")
	vals.WriteString("# every app of the dev environment\napps:\n")
	for i := range n {
		fmt.Fprintf(&cfg, "  - name: app%02d\n    sourceProject: team/app%02d\n    image: registry.example.com/team/app%02d\n"+
			"    values: envs/{stage}/values.yaml\n    set:\n      apps.{app}.image.digest: digest\n", i, i, i)
		fmt.Fprintf(&vals, "  app%02d:\n    image:\n      digest: sha256:%064x\n    replicas: 1\n", i, 0)
	}
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: "platform/gitops",
		Files:     map[string]string{"lotse.yaml": cfg.String(), "envs/dev/values.yaml": vals.String()},
		Members:   []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}},
	}); err != nil {
		return err
	}
	if rate > 0 { // a fault without a rate fails every request
		sim.Faults(gitlabsim.Fault{Status: 429, Rate: rate, RetryAfter: 1})
	}

	env := append(os.Environ(), "LOTSE_GITLAB_URL="+url, "LOTSE_GITLAB_TOKEN="+bot.Token,
		"LOTSE_GITOPS_PROJECT=platform/gitops", "CI_PROJECT_PATH=", "CI_COMMIT_SHA=", "LOTSE_IMAGE=")
	retries := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, lotse, "bump", "--app", fmt.Sprintf("app%02d", i), "--stage", "dev",
				"--image", fmt.Sprintf("registry.example.com/team/app%02d@sha256:%064x", i, i+1))
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				errs[i] = fmt.Errorf("bump app%02d: %v: %s", i, err, strings.TrimSpace(stderr.String()))
				return
			}
			m := retriesRE.FindSubmatch(out)
			if m == nil {
				errs[i] = fmt.Errorf("bump app%02d: no retries line in %q", i, out)
				return
			}
			retries[i], _ = strconv.Atoi(string(m[1]))
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	faults := sim.FaultsInjected()
	sim.Faults()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// Count what landed from the file on main, through the REST API.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v4/projects/platform%2Fgitops/repository/files/envs%2Fdev%2Fvalues.yaml/raw?ref=main", nil)
	req.Header.Set("PRIVATE-TOKEN", bot.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	file := string(raw)
	landed := 0
	for i := range n {
		if strings.Contains(file, fmt.Sprintf("  app%02d:\n    image:\n      digest: sha256:%064x\n", i, i+1)) {
			landed++
		}
	}
	sort.Ints(retries)
	total := 0
	for _, r := range retries {
		total += r
	}
	fmt.Printf("\nconcurrent bumps: %d lotse bump processes, %d apps in one values file, %.0f%% of requests answered 429 (Retry-After: 1)\n",
		n, n, rate*100)
	fmt.Printf("  landed %d/%d in %.2f s   retries per bump: median %d, max %d, total %d   429s injected: %d\n",
		landed, n, elapsed.Seconds(), retries[n/2], retries[n-1], total, faults)
	fmt.Printf("  target: %d/%d landed, <= 10 s\n", n, n)
	if landed != n {
		return fmt.Errorf("only %d of %d bumps landed", landed, n)
	}
	return nil
}

// startSim serves a GitLab simulator keeping its repositories in dir on
// loopback, with lotse's bot user; stop closes both.
func startSim(dir string) (sim *gitlabsim.Sim, url string, bot gitlabsim.User, stop func(), err error) {
	sim = gitlabsim.New(gitlabsim.Options{Dir: dir})
	srv := httptest.NewServer(sim)
	stop = func() { srv.Close(); sim.Close() }
	if bot, err = sim.CreateUser(gitlabsim.UserSpec{Username: "lotse-bot", Bot: true}); err != nil {
		stop()
		return nil, "", gitlabsim.User{}, nil, err
	}
	return sim, srv.URL, bot, stop, nil
}

// startShopGitOps starts a simulator with platform/gitops, whose lotse.yaml
// promotes one app, shop, to a single dev stage, lotse-bot its Maintainer:
// the world the intake and abuse benchmarks send webhooks to.
func startShopGitOps(dir string) (url string, bot gitlabsim.User, stop func(), err error) {
	sim, url, bot, stop, err := startSim(dir)
	if err != nil {
		return "", bot, nil, err
	}
	cfg := "version: 1\ngitlab: {project: platform/gitops}\nstages: [{name: dev, promotion: commit}]\napps:\n" +
		"  - name: shop\n    sourceProject: team/shop\n    image: registry.example.com/team/shop\n    values: envs/{stage}/values.yaml\n    set: {image.digest: digest}\n"
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: "platform/gitops", Files: map[string]string{"lotse.yaml": cfg},
		Members: []gitlabsim.Member{{Username: "lotse-bot", Role: 40}}}); err != nil {
		stop()
		return "", bot, nil, err
	}
	return url, bot, stop, nil
}
