package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/test/gitlabsim"
)

const (
	gitopsProject = "platform/gitops"
	appProject    = "team/shop"
	demoHook      = "demo-webhook-secret"
	demoReadToken = "demo-read-token"
)

// simGitLab is the GitLab simulator with the demo's projects and users.
type simGitLab struct {
	sim    *gitlabsim.Sim
	url    string
	users  map[string]gitlabsim.User
	source string // dev1's merged change in team/shop
	stop   func()
}

func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // closed by the returned func
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func newGitLab(dir, harbor, pub string) (*simGitLab, error) {
	sim := gitlabsim.New(gitlabsim.Options{Dir: mkdir(dir, "gitlab")})
	addr, stop, err := serveLoopback(sim)
	if err != nil {
		return nil, err
	}
	g := &simGitLab{sim: sim, url: "http://" + addr, users: map[string]gitlabsim.User{}, stop: func() { stop(); sim.Close() }}
	sim.SetBaseURL(g.url)
	for _, u := range []string{"lotse-bot", "ci", "alice", "bob", "dev1"} {
		usr, err := sim.CreateUser(gitlabsim.UserSpec{Username: u, Email: u + "@example.invalid", Bot: u == "lotse-bot"})
		if err != nil {
			return nil, err
		}
		g.users[u] = usr
	}
	files := map[string]string{"lotse.yaml": strings.ReplaceAll(lotseYAML, "HARBOR", harbor), "keys/cosign.pub": pub}
	for _, st := range []string{"dev", "staging", "production"} {
		files["apps/shop/envs/"+st+"/values.yaml"] = "# shop in " + st + "\nreplicaCount: 2\nimage:\n  repository: " + harbor + "\n  digest: \"\"   # set by lotse\n"
	}
	// Free-tier four-eyes: humans are Developers, lotse's user Maintainer;
	// only Maintainers may push to or merge into main and push to lotse/*.
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: gitopsProject, Files: files,
		Members: []gitlabsim.Member{{Username: "lotse-bot", Role: 40}, {Username: "ci", Role: 40},
			{Username: "alice", Role: 30}, {Username: "bob", Role: 30}, {Username: "dev1", Role: 30}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: 40, MergeAccessLevel: 40},
			{Name: "lotse/*", PushAccessLevel: 40, MergeAccessLevel: 40}}}); err != nil {
		return nil, err
	}
	// main is protected (releases come from protected refs only); its
	// developers may merge, so lotse's user posts statuses there.
	if _, err := sim.CreateProject(gitlabsim.ProjectSpec{Path: appProject,
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: 30, MergeAccessLevel: 30}},
		Members:   []gitlabsim.Member{{Username: "dev1", Role: 30}, {Username: "alice", Role: 40}, {Username: "lotse-bot", Role: 30}}}); err != nil {
		return nil, err
	}
	if _, err := sim.Commit(appProject, "dev1", gitlabsim.CommitSpec{Branch: "faster-checkout", StartBranch: "main",
		Message: "Faster checkout", Files: map[string]string{"checkout.go": "package shop\n"}}); err != nil {
		return nil, err
	}
	dev1 := g.client("dev1")
	ctx := context.Background()
	mr, err := dev1.CreateMR(ctx, appProject, gitlab.CreateMRRequest{SourceBranch: "faster-checkout", TargetBranch: "main", Title: "Faster checkout"})
	if err != nil {
		return nil, err
	}
	g.source = mr.SHA
	if _, err := dev1.GetMR(ctx, appProject, mr.IID); err != nil { // GitLab finishes its mergeability check
		return nil, err
	}
	if err := sim.Merge(appProject, int(mr.IID), "alice", gitlabsim.MergeSpec{}); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *simGitLab) close() { g.stop() }

func (g *simGitLab) client(user string) *gitlab.Client {
	c, _ := gitlab.New(g.url, g.users[user].Token)
	return c
}

// startLotsed runs the lotsed binary against the simulator.
func startLotsed(ctx context.Context, lotsed, dir string, g *simGitLab) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, lotsed)
	cmd.Env = append(os.Environ(), "LOTSE_LISTEN="+addr, "LOTSE_DATABASE_URL="+filepath.Join(dir, "lotsed.db"),
		"LOTSE_WEBHOOK_SECRET="+demoHook, "LOTSE_API_READ_TOKEN="+demoReadToken, "LOTSE_GITLAB_URL="+g.url,
		"LOTSE_GITLAB_TOKEN="+g.users["lotse-bot"].Token, "LOTSE_GITOPS_PROJECT="+gitopsProject, "LOTSE_OPERATORS=alice", "LOTSE_WRITERS=ci",
		"LOTSE_SIGN_OFFLINE=true", "LOTSE_INSECURE=true", "LOTSE_TICK=1s", "LOTSE_PUBLIC_URL=http://"+addr,
		"LOTSE_SIGNING_KEY="+filepath.Join(dir, "lotsed.key"), "LOTSE_SIGNING_KEY_PASSWORD=lotsed")
	logf, err := os.Create(filepath.Join(dir, "lotsed.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt) //nolint:errcheck // best effort
		cmd.Wait()                       //nolint:errcheck // it was told to stop
		logf.Close()
	}
	url := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 200 {
			stop()
			return "", nil, fmt.Errorf("lotsed did not start; see %s", logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := g.sim.AddHook(gitopsProject, gitlabsim.AllEvents(url+"/webhooks/gitlab", demoHook)); err != nil {
		stop()
		return "", nil, err
	}
	return url, stop, nil
}

// waitStage waits until the stage's values file on main holds digest.
func (g *simGitLab) waitStage(ctx context.Context, stage, digest string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		f, err := g.client("alice").File(ctx, gitopsProject, "apps/shop/envs/"+stage+"/values.yaml", "main")
		if err == nil {
			if v, _, _ := gitops.GetValue(f.Content, "image.digest"); v == digest {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not get %s in %s", stage, digest, timeout)
}

// waitMR waits for the open MR of the stage branch.
func (g *simGitLab) waitMR(ctx context.Context, stage string, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if mr, err := g.client("alice").FindOpenMR(ctx, gitopsProject, gitops.BranchName("shop", stage)); err == nil {
			return mr.IID, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("no %s MR in %s", stage, timeout)
}

// show prints the sticky comment of the production MR and the statuses of
// the app's commit.
func (g *simGitLab) show(ctx context.Context, out io.Writer, mr int64) error {
	notes, err := g.client("alice").Notes(ctx, gitopsProject, mr)
	if err != nil {
		return err
	}
	for _, n := range notes {
		if strings.HasPrefix(n.Body, "<!-- lotse") {
			fmt.Fprintf(out, "\nThe sticky comment on %s!%d (GET %s/api/v4/projects/platform%%2Fgitops/merge_requests/%d/notes):\n\n", gitopsProject, mr, g.url, mr)
			for _, l := range strings.Split(n.Body, "\n") {
				fmt.Fprintf(out, "    %s\n", l)
			}
			break
		}
	}
	sts, err := g.sim.Statuses(appProject, g.source)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nCommit statuses on %s@%.8s (GET %s/api/v4/projects/team%%2Fshop/repository/commits/%s/statuses):\n", appProject, g.source, g.url, g.source)
	for _, s := range sts {
		if !s.Retried {
			fmt.Fprintf(out, "    %-18s %-8s %s\n", s.Name, s.Status, s.Description)
		}
	}
	return nil
}
