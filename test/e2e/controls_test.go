package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
)

// The controls must hold against one Developer of the GitOps or the app
// project, on GitLab Free (approvals are not reset when commits are pushed)
// and without the lotse/* branches protected. Each test is an attack.

// toProduction bumps img into dev and waits for lotse's production MR of
// img: open, by lotse's user, writing img.
func toProduction(t *testing.T, w *world, img string) int64 {
	t.Helper()
	w.bumpDev(img)
	eventually(t, "the image to land in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(img), w.describeStatuses()
	})
	var iid int64
	eventually(t, "lotse's production MR of "+img, 30*time.Second, func() (bool, string) {
		mrs, err := w.client("alice").OpenMRs(context.Background(), gitopsProject, "lotse/shop/production")
		must(t, err)
		for _, mr := range mrs {
			if mr.Author.Username == "lotse-bot" && strings.Contains(mr.Title, digestOf(img)[:19]) {
				iid = mr.IID
				w.greenPipeline("lotse/shop/production", mr.SHA)
				return true, ""
			}
		}
		return false, fmt.Sprintf("open MRs %+v; statuses %v", mrs, w.statuses())
	})
	return iid
}

// auditKinds is the audit log's records of a kind, oldest first.
func auditOf(t *testing.T, base, kind string) []struct{ Kind, Stage, Actor, Detail string } {
	t.Helper()
	var all, out []struct{ Kind, Stage, Actor, Detail string }
	apiGet(t, base, "/api/v1/audit?app=shop&kind="+kind, &all)
	for i := len(all) - 1; i >= 0; i-- {
		out = append(out, all[i])
	}
	return out
}

// stays checks that production does not get img for a few ticks.
func stays(t *testing.T, w *world, img, why string) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond)
	if w.valuesDigest("production") == digestOf(img) {
		t.Fatal(why)
	}
}

// A Developer pushes to lotse's production branch after the first approval:
// the second approval must not merge it; the MR is closed as tampered, the
// status fails, the audit names the pusher.
func TestTamperedPromotionBranch(t *testing.T) {
	w := newWorld(t)
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]
	iid := toProduction(t, w, img)
	must(t, w.sim.Approve(gitopsProject, int(iid), "alice"))
	// dev1 lowers the approvals in lotse.yaml on the promotion branch.
	_, err := w.sim.Commit(gitopsProject, "dev1", gitlabsim.CommitSpec{Branch: "lotse/shop/production", Message: "tweak",
		Files: map[string]string{"lotse.yaml": strings.Replace(strings.ReplaceAll(lotseYAML, "REGISTRY", w.registry), "approvals: 2", "approvals: 1", 1)}})
	must(t, err)
	must(t, w.sim.Approve(gitopsProject, int(iid), "bob"))
	eventually(t, "the MR to be closed as tampered", 20*time.Second, func() (bool, string) {
		mr, err := w.sim.MergeRequest(gitopsProject, int(iid))
		must(t, err)
		return mr.State == "closed", mr.State
	})
	stays(t, w, img, "production was merged after a Developer pushed to lotse's branch")
	if st := w.statuses()["lotse/production"]; st != "failed" {
		t.Errorf("production status = %q, want failed", st)
	}
	a := auditOf(t, base, promotion.AuditTampered)
	if len(a) == 0 {
		t.Fatal("no tampered audit record")
	}
	// Whichever sees it first names dev1: the push's webhook (who pushed),
	// or the check before merging (the commit's author).
	byHook := strings.Contains(a[0].Detail, "@dev1 pushed commit") && strings.HasPrefix(a[0].Actor, "dev1 (#")
	byCheck := strings.Contains(a[0].Detail, "commits lotse did not write") && strings.Contains(a[0].Detail, "dev1")
	if !byHook && !byCheck {
		t.Errorf("tampered audit = %+v", a)
	}
	if c := lastNote(t, w, iid); !strings.Contains(c, "lotse closed this merge request unmerged") {
		t.Errorf("closing comment = %q", c)
	}
	// An operator opens a clean MR; it needs its own approvals.
	_, err = w.client("alice").CreateNote(context.Background(), gitopsProject, iid, "/lotse retry")
	must(t, err)
	eventually(t, "a clean production MR", 30*time.Second, func() (bool, string) {
		mr, ok := w.openMR("production")
		return ok && mr.IID != iid && mr.Author.Username == "lotse-bot", fmt.Sprint(mr.IID)
	})
}

func lastNote(t *testing.T, w *world, iid int64) string {
	t.Helper()
	mr, err := w.sim.MergeRequest(gitopsProject, int(iid))
	must(t, err)
	for i := len(mr.Notes) - 1; i >= 0; i-- {
		if !strings.HasPrefix(mr.Notes[i], "<!-- lotse") && !strings.HasPrefix(mr.Notes[i], "closed") {
			return mr.Notes[i]
		}
	}
	return ""
}

// A Developer opens an MR from lotse/shop/production first: lotse never
// reuses or merges it; it closes it and opens its own.
func TestDevelopersMROnPromotionBranch(t *testing.T) {
	w := newWorld(t)
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]
	_, err := w.sim.Commit(gitopsProject, "dev1", gitlabsim.CommitSpec{Branch: "lotse/shop/production", StartBranch: "main", Message: "prod",
		Files: map[string]string{"apps/shop/envs/production/values.yaml": "image: {repository: evil, digest: sha256:" + strings.Repeat("e", 64) + "}\n"}})
	must(t, err)
	devMR, err := w.sim.CreateMergeRequest(gitopsProject, "dev1", gitlabsim.MergeRequestSpec{SourceBranch: "lotse/shop/production", TargetBranch: "main", Title: "Promote"})
	must(t, err)
	iid := toProduction(t, w, img)
	if iid == int64(devMR) {
		t.Fatal("lotse reused the Developer's MR")
	}
	mr, err := w.sim.MergeRequest(gitopsProject, devMR)
	must(t, err)
	if mr.State != "closed" {
		t.Errorf("the Developer's MR is %s, want closed", mr.State)
	}
	eventually(t, "the tampered audit record", 10*time.Second, func() (bool, string) {
		a := auditOf(t, base, promotion.AuditTampered)
		return len(a) > 0 && strings.Contains(a[0].Detail, fmt.Sprintf("!%d by @dev1", devMR)), fmt.Sprint(a)
	})
	approve(t, w, iid, "alice", "bob")
	eventually(t, "lotse's own MR to merge", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), w.describeStatuses()
	})
}

func approve(t *testing.T, w *world, iid int64, users ...string) {
	t.Helper()
	for _, u := range users {
		must(t, w.sim.Approve(gitopsProject, int(iid), u))
	}
}

// An MR from a fork whose branch is called lotse/shop/production is not
// lotse's: approvals there do nothing, and lotse merges only its own MR.
func TestForkMRIgnored(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]
	fork, err := w.sim.ForkProject(gitopsProject, gitlabsim.ForkSpec{Path: "dev1/gitops", Username: "dev1"})
	must(t, err)
	_, err = w.sim.Commit(fork.PathWithNamespace, "dev1", gitlabsim.CommitSpec{Branch: "lotse/shop/production", StartBranch: "main", Message: "prod",
		Files: map[string]string{"lotse.yaml": "version: 1\n"}})
	must(t, err)
	forkMR, err := w.sim.CreateMergeRequest(fork.PathWithNamespace, "dev1", gitlabsim.MergeRequestSpec{SourceBranch: "lotse/shop/production",
		TargetBranch: "main", Title: "Promote", TargetProject: gitopsProject})
	must(t, err)
	approve(t, w, int64(forkMR), "alice", "bob")
	iid := toProduction(t, w, img)
	if iid == int64(forkMR) {
		t.Fatal("lotse took the fork's MR")
	}
	stays(t, w, img, "merged without approvals on lotse's own MR")
	if mr, _ := w.sim.MergeRequest(gitopsProject, forkMR); mr.State != "opened" {
		t.Errorf("fork MR is %s: lotse must leave it alone", mr.State)
	}
	approve(t, w, iid, "alice", "bob")
	eventually(t, "lotse's own MR to merge", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), w.describeStatuses()
	})
}

// Approvals belong to one version: v1's approval does not merge v2.
func TestApprovalsDoNotCarryToANewVersion(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	first := w.images["v1"]
	base, err := fixture.Image()
	must(t, err)
	v2 := w.release(mutate.Annotations(base, map[string]string{"version": "2"}).(v1.Image), "v2", true, "LOW")
	iid1 := toProduction(t, w, first)
	approve(t, w, iid1, "alice")
	iid2 := toProduction(t, w, v2)
	if iid2 == iid1 {
		t.Fatal("v2 reused v1's MR")
	}
	if mr, _ := w.sim.MergeRequest(gitopsProject, int(iid1)); mr.State != "closed" {
		t.Errorf("v1's MR is %s, want closed as superseded", mr.State)
	}
	approve(t, w, iid2, "bob")
	stays(t, w, v2, "v2 merged with one approval of its own and alice's approval of v1")
	approve(t, w, iid2, "alice")
	eventually(t, "v2 to merge with two approvals of its own", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(v2), stickyComment(t, w, iid2)
	})
}

// A Developer who pushed a commit into the change (not its MR's author)
// approves the production MR: it does not count. Neither does the change's
// author after renaming herself.
func TestCommitterAndRenamedAuthorDoNotCount(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	// The change: dev1's MR, with a commit by carl in it.
	_, err := w.sim.Commit(appProject, "dev1", gitlabsim.CommitSpec{Branch: "change2", StartBranch: "main", Message: "Part one",
		Files: map[string]string{"a.go": "package main\n"}})
	must(t, err)
	_, err = w.sim.Commit(appProject, "carl", gitlabsim.CommitSpec{Branch: "change2", Message: "Part two", Files: map[string]string{"b.go": "package main\n"}})
	must(t, err)
	mr, err := w.client("dev1").CreateMR(context.Background(), appProject, gitlab.CreateMRRequest{SourceBranch: "change2", TargetBranch: "main", Title: "Two parts"})
	must(t, err)
	w.source = mr.SHA
	img := w.images["v1"]
	iid := toProduction(t, w, img)
	must(t, w.sim.RenameUser(w.users["dev1"].ID, "dev1-renamed"))
	approve(t, w, iid, "carl", "dev1-renamed", "alice")
	stays(t, w, img, "merged with approvals of a committer of the change and its renamed author")
	c := stickyComment(t, w, iid)
	if !strings.Contains(c, "@carl: author or committer of the change") || !strings.Contains(c, "@dev1-renamed: author or committer of the change") {
		t.Errorf("sticky comment:\n%s", c)
	}
	approve(t, w, iid, "bob")
	eventually(t, "two valid approvals to merge", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), stickyComment(t, w, iid)
	})
}

// lotse's user cannot read the app project: the change's authors are
// unknown, no approval counts and the comment says why; once it can read
// them, two valid approvals merge.
func TestUnreadableChangeFailsClosed(t *testing.T) {
	w := newWorld(t)
	w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	must(t, w.sim.AddMember(appProject, "lotse-bot", 0))
	img := w.images["v1"]
	iid := toProduction(t, w, img)
	approve(t, w, iid, "alice", "bob")
	stays(t, w, img, "merged although the change's authors could not be read")
	if c := stickyComment(t, w, iid); !strings.Contains(c, "the change's authors are unknown") {
		t.Errorf("sticky comment does not say why:\n%s", c)
	}
	must(t, w.sim.AddMember(appProject, "lotse-bot", 30))
	eventually(t, "the merge once the authors are read", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), stickyComment(t, w, iid)
	})
}

// A Maintainer pushes a commit to main whose trailers claim a landing in
// staging: it is out-of-band, recorded, and never promoted to production.
func TestForgedTrailersAreOutOfBand(t *testing.T) {
	w := newWorld(t)
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["unsigned"]
	ref, err := gitops.ParseImageRef(img)
	must(t, err)
	values := strings.Replace(strings.ReplaceAll(strings.ReplaceAll(valuesYAML, "REGISTRY", w.registry), "STAGE", "staging"),
		`digest: ""`, "digest: "+ref.Digest, 1)
	msg := gitops.CommitMessage("Promote shop to staging", "", gitops.Trailers{App: "shop", Stage: "staging", Image: img,
		SourceProject: appProject, SourceCommit: w.source})
	_, err = w.sim.Commit(gitopsProject, "mallory", gitlabsim.CommitSpec{Branch: "main", Message: msg,
		Files: map[string]string{"apps/shop/envs/staging/values.yaml": values}})
	must(t, err)
	eventually(t, "the out-of-band record", 20*time.Second, func() (bool, string) {
		a := auditOf(t, base, promotion.AuditOutOfBand)
		return len(a) == 1 && strings.Contains(a[0].Detail, "pushed by @mallory"), fmt.Sprint(a)
	})
	if st := w.statuses()["lotse/staging"]; st != "failed" {
		t.Errorf("staging status = %q, want failed", st)
	}
	var board []struct {
		Stages []struct {
			Stage     string
			OutOfBand string `json:"out_of_band"`
		}
	}
	apiGet(t, base, "/api/v1/status", &board)
	if len(board) != 1 || !strings.Contains(board[0].Stages[1].OutOfBand, "by @mallory") {
		t.Errorf("status API = %+v, want staging's out-of-band change", board)
	}
	time.Sleep(time.Second)
	if _, ok := w.openMR("production"); ok {
		t.Fatal("an out-of-band landing was promoted to production")
	}
	// A writer's commit whose trailers do not match its change is too.
	msg = gitops.CommitMessage("Promote shop to dev", "", gitops.Trailers{App: "shop", Stage: "dev", Image: w.images["v1"], SourceProject: appProject})
	_, err = w.sim.Commit(gitopsProject, "ci", gitlabsim.CommitSpec{Branch: "main", Message: msg, Files: map[string]string{"README.md": "hi\n"}})
	must(t, err)
	eventually(t, "the mismatch record", 20*time.Second, func() (bool, string) {
		a := auditOf(t, base, promotion.AuditOutOfBand)
		return len(a) == 2 && strings.Contains(a[1].Detail, "trailers do not match"), fmt.Sprint(a)
	})
}

// GitLab is down for longer than lotsed retries deliveries (max-attempts
// 1: the approvals' deliveries die) while two reviewers approve; once GitLab
// answers again, lotsed's ticks read the MR back and merge it, with no
// delivery re-sent.
func TestOutageLongerThanRetries(t *testing.T) {
	w := newWorld(t)
	w.extraEnv = map[string]string{"LOTSE_MAX_ATTEMPTS": "1"}
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]
	iid := toProduction(t, w, img)
	w.sim.Faults(gitlabsim.Fault{Status: 503})
	approve(t, w, iid, "alice", "bob")
	// Each delivery dies after its GitLab calls gave up (about 2 s of
	// retries), one at a time per app, between the app's timer ticks,
	// which wait as long: four deliveries (the push, the pipeline, two
	// approvals) took 16 s on a quiet machine and over 20 s beside the
	// other packages' tests.
	eventually(t, "the approvals' deliveries to die", 60*time.Second, func() (bool, string) {
		var dead []struct{ Event string }
		apiGet(t, base, "/api/v1/events?state=dead", &dead)
		n := 0
		for _, d := range dead {
			if d.Event == "Merge Request Hook" {
				n++
			}
		}
		return n >= 2, fmt.Sprint(dead)
	})
	if mr, _ := w.sim.MergeRequest(gitopsProject, int(iid)); mr.State != "opened" {
		t.Fatalf("the MR is %s while GitLab was down", mr.State)
	}
	w.sim.Faults() // GitLab is back
	eventually(t, "the merge after the outage", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("production") == digestOf(img), w.describeStatuses()
	})
	for _, e := range w.sim.Events() {
		if e.Resend {
			t.Fatal("a delivery was re-sent")
		}
	}
}
