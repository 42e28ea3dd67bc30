package writeback_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/writeback"
	"github.com/lotse/lotse/test/gitlabsim"
)

// sharedConfig is n apps that share one values file per stage.
func sharedConfig(n int) (config, values string) {
	var c, v strings.Builder
	c.WriteString("version: 1\ngitlab: {project: platform/gitops}\nstages: [{name: dev, promotion: commit}]\napps:\n")
	v.WriteString("# every app of the dev environment\napps:\n")
	for i := range n {
		fmt.Fprintf(&c, "  - name: app%02d\n    sourceProject: team/app%02d\n    image: registry.example.com/team/app%02d\n"+
			"    values: envs/{stage}/values.yaml\n    set:\n      apps.{app}.image.digest: digest\n", i, i, i)
		fmt.Fprintf(&v, "  app%02d:\n    image:\n      digest: %s # pinned\n    replicas: 1\n", i, digest(0))
	}
	return c.String(), v.String()
}

// TestConcurrentBumpsOneFile is the acceptance test: 50 concurrent
// bumps of 50 apps in one values file all land, none lost, while GitLab
// answers a share of requests with 429 and some commits fail after landing.
func TestConcurrentBumpsOneFile(t *testing.T) {
	const n = 50
	cfg, vals := sharedConfig(n)
	f := setup(t, map[string]string{"lotse.yaml": cfg, "envs/dev/values.yaml": vals})
	f.sim.Faults(
		gitlabsim.Fault{Status: 429, Rate: 0.2, RetryAfter: 0},
		gitlabsim.Fault{Class: gitlabsim.ClassCommits, Method: "POST", Status: 502, After: true, Every: 15},
	)
	start := time.Now()
	results := make([]writeback.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each bump is its own CI job: its own client and lotse.yaml read.
			c, err := gitlab.New(f.url, f.tokens["bot"], gitlab.WithRetry(8, time.Millisecond, 20*time.Millisecond))
			if err != nil {
				errs[i] = err
				return
			}
			w, err := writeback.Open(ctx(t), c, project, writeback.Options{})
			if err != nil {
				errs[i] = err
				return
			}
			img := gitops.ImageRef{Repository: fmt.Sprintf("registry.example.com/team/app%02d", i), Digest: digest(i + 1)}
			results[i], errs[i] = w.Bump(ctx(t), writeback.Bump{App: fmt.Sprintf("app%02d", i), Stage: "dev", Image: img})
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	faults := f.sim.FaultsInjected()
	f.sim.Faults()
	for i, err := range errs {
		if err != nil {
			t.Errorf("bump %d: %v", i, err)
		}
	}
	got := f.read(t, "envs/dev/values.yaml", "main")
	retries := make([]int, n)
	for i := range n {
		want := fmt.Sprintf("  app%02d:\n    image:\n      digest: %s # pinned\n    replicas: 1\n", i, digest(i+1))
		if !strings.Contains(got, want) {
			t.Errorf("app%02d's bump was lost", i)
		}
		retries[i] = results[i].Retries
	}
	slices.Sort(retries)
	total := 0
	for _, r := range retries {
		total += r
	}
	t.Logf("%d bumps in %v; retries median %d, max %d, total %d; %d faults injected",
		n, elapsed.Round(time.Millisecond), retries[n/2], retries[n-1], total, faults)
	if total == 0 {
		t.Error("no bump had to retry: the test did not exercise contention")
	}
	if faults == 0 {
		t.Error("no faults injected")
	}
	// Every bump is one commit (a commit that landed before its 502 is
	// found again, not made twice).
	hist, err := f.client(t).FileHistory(ctx(t), project, "envs/dev/values.yaml", "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != n+1 {
		t.Errorf("%d commits touched the file, want %d", len(hist), n+1)
	}
}
