package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// chromium is the headless browser of the board test: $LOTSE_CHROMIUM
// (make test sets it through scripts/chromium.sh), else chromium on PATH.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LOTSE_CHROMIUM"); p != "" {
		return p
	}
	for _, c := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Skip("no chromium: scripts/chromium.sh installs Debian's (make test runs it)")
	return ""
}

// browse loads url in headless Chromium and returns the DOM it built.
func browse(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir()}, extra...)
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", extra, err)
	}
	return string(out)
}

// The board in a real browser, for a scripted history: dev and staging run
// a version, production waits for a second approval in its MR, and an
// out-of-band change is shown; the app page lists the audit log. A
// screenshot is written as a test artifact ($LOTSE_TEST_ARTIFACTS, else
// the test's temporary directory).
func TestBoardInChromium(t *testing.T) {
	bin := chromium(t)
	w := newTestWorld(t)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.runner.states = db
	w.runner.effects.(*effects).audit = db
	w.verifier.signed[img1] = true
	w.verifier.vulns[img1] = []string{"LOW"}
	for _, e := range []promotion.Event{landedIn("dev", img1, "c1"), landedIn("staging", img1, "c2")} {
		if err := w.apply(e); err != nil {
			t.Fatal(err)
		}
	}
	pr := w.record().State.Stage("production").Promotion
	w.gl.approved[int64(pr.MR.IID)] = []gitlab.User{{ID: 4, Username: "carol"}}
	if err := w.apply(promotion.Tick{}); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(promotion.OutOfBandChange{Stage: "dev", Commit: "0badc0ffee", Pusher: promotion.User{ID: 9, Username: "mallory"},
		Reason: "apps/shop/envs/dev/values.yaml changed without lotse trailers"}); err != nil {
		t.Fatal(err)
	}

	s, _, h := testServer(t, nil)
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return w.snap, nil }}
	s.views = &views{config: src, store: db, now: func() time.Time { return w.now }, gitlabURL: "https://gitlab.example.com", project: "platform/gitops"}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+readToken) // the browser's credentials
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)

	dom := browse(t, bin, srv.URL+"/board", "--dump-dom")
	for _, want := range []string{
		"lotse board", `href="board/shop"`, "running", "waiting for approvals", "approvals 1 of 2",
		`href="https://gitlab.example.com/platform/gitops/-/merge_requests/`, "signature: passed", "scan: passed",
		"out-of-band:", "by @mallory", shortImage(img1),
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the board does not show %q:\n%s", want, dom)
		}
	}
	app := browse(t, bin, srv.URL+"/board/shop", "--dump-dom")
	for _, want := range []string{"<h1>shop</h1>", "Audit log", "out-of-band", "approved", "Promotions", "awaiting-approval"} {
		if !strings.Contains(app, want) {
			t.Errorf("the app page does not show %q:\n%s", want, app)
		}
	}
	dir := os.Getenv("LOTSE_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "board.png")
	browse(t, bin, srv.URL+"/board", "--screenshot="+shot, "--window-size=1400,800", "--hide-scrollbars")
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
