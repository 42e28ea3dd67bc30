package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/releaseapi"
	"github.com/lotse/lotse/test/gitlabsim"
	"github.com/lotse/lotse/webhook"
)

// TestReleaseWithIDToken: the app's pipeline hands its release to lotsed
// with a GitLab CI ID token and holds no GitOps token. lotsed refuses a
// token of another project, commits the first stage as lotse's user, and
// the push hook of that commit starts the promotion to staging.
func TestReleaseWithIDToken(t *testing.T) {
	w := newWorld(t)
	// Releases come from the app's protected default branch.
	must(t, w.sim.UpdateProject(appProject, nil, []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: 40, MergeAccessLevel: 40}}, nil))
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	img := w.images["v1"]
	ctx := context.Background()
	head := func() string {
		h, err := w.client("alice").BranchHead(ctx, gitopsProject, "main")
		must(t, err)
		return h
	}
	before := head()

	// A job of another project (the GitOps project's own pipeline) may not
	// release shop; neither may a token for another audience.
	other, err := w.sim.IDToken(gitlabsim.IDTokenSpec{Project: gitopsProject, Aud: gitlabsim.Audience{base}, Username: "ci"})
	must(t, err)
	vault, err := w.sim.IDToken(gitlabsim.IDTokenSpec{Project: appProject, Aud: gitlabsim.Audience{"https://vault.example.com"}})
	must(t, err)
	for tok, want := range map[string]int{other: 403, vault: 401} {
		_, err := (&releaseapi.Client{URL: base, Token: tok, Attempts: 1}).Release(ctx, releaseapi.Request{App: "shop", Image: img})
		var re *releaseapi.Error
		if !errors.As(err, &re) || re.Status != want {
			t.Fatalf("release with a wrong token: %v, want %d", err, want)
		}
	}
	if head() != before {
		t.Fatal("a refused release moved the GitOps repository")
	}

	tok, err := w.sim.IDToken(gitlabsim.IDTokenSpec{Project: appProject, Aud: gitlabsim.Audience{base}})
	must(t, err)
	res, err := (&releaseapi.Client{URL: base, Token: tok}).Release(ctx, releaseapi.Request{App: "shop", Image: img, Stage: "dev"})
	must(t, err)
	if !res.Changed || res.Stage != "dev" || res.SourceProject != appProject || res.Commit == "" {
		t.Fatalf("release: %+v", res)
	}
	if got := w.valuesDigest("dev"); got != digestOf(img) {
		t.Fatalf("dev holds %q after the release", got)
	}
	cm, err := w.client("alice").GetCommit(ctx, gitopsProject, res.Commit)
	must(t, err)
	if !strings.Contains(cm.Message, "Lotse-Source-Commit: "+res.SourceCommit) || !strings.Contains(cm.Message, "Lotse-Pipeline: "+w.simURL+"/team/shop/-/pipelines/") {
		t.Errorf("commit message:\n%s", cm.Message)
	}

	// The rest of the flow: staging through its gates, then the production MR.
	eventually(t, "the released image to land in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(img), w.describeStatuses()
	})
	waitMR(t, w, "production")

	// The same release again commits nothing.
	again, err := (&releaseapi.Client{URL: base, Token: tok}).Release(ctx, releaseapi.Request{App: "shop", Image: img})
	must(t, err)
	if again.Changed {
		t.Errorf("the second release committed: %+v", again)
	}

	var audit []struct{ Kind, Actor, Detail string }
	apiGet(t, base, "/api/v1/audit?app=shop", &audit)
	kinds := map[string]int{}
	for _, a := range audit {
		kinds[a.Kind]++
	}
	// The other project's attempt is refused on record; the token for
	// another audience never got that far (invalid tokens are logged only).
	if kinds[webhook.AuditReleaseAccepted] != 2 || kinds[webhook.AuditReleaseRefused] != 1 {
		t.Errorf("audit of shop: %v", kinds)
	}
	var refused []struct{ Kind, Actor, Detail string }
	apiGet(t, base, "/api/v1/audit?kind="+webhook.AuditReleaseRefused, &refused)
	if len(refused) != 1 || refused[0].Actor != "ci" || !strings.Contains(refused[0].Detail, "403") {
		t.Errorf("refused releases in the audit log: %+v", refused)
	}
}
