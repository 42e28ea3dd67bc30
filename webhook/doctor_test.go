package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/doctor"
	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

// GET /api/v1/doctor reports on the GitOps project with lotsed's own client
// and settings, behind the read token, and keeps a report for a while so
// that polling it does not flood GitLab.
func TestDoctorEndpoint(t *testing.T) {
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	gs := httptest.NewServer(sim)
	t.Cleanup(func() { gs.Close(); sim.Close() })
	bot, err := sim.CreateUser(gitlabsim.UserSpec{Username: "lotse-bot"})
	if err != nil {
		t.Fatal(err)
	}
	yaml := "version: 1\ngitlab:\n  project: " + testProject + "\napps:\n  - name: shop\n    sourceProject: team/shop\n    image: registry.example.com/team/shop\n" +
		"    values: apps/{app}/{stage}/values.yaml\n    set:\n      image.digest: digest\nstages:\n  - name: dev\n    promotion: commit\n"
	maint := gitlabsim.ProtectedBranch{PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	mainRule, lotseRule := maint, maint
	mainRule.Name, lotseRule.Name = "main", "lotse/*"
	for _, p := range []gitlabsim.ProjectSpec{
		{Path: testProject, Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleMaintainer}},
			Protected: []gitlabsim.ProtectedBranch{mainRule, lotseRule}, Files: map[string]string{"lotse.yaml": yaml, "apps/shop/dev/values.yaml": "image: {}\n"}},
		{Path: "team/shop", Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}}},
	} {
		if _, err := sim.CreateProject(p); err != nil {
			t.Fatal(err)
		}
	}
	const public = "https://lotsed.example.com"
	if _, err := sim.AddHook(testProject, gitlabsim.AllEvents(public+"/webhooks/gitlab", testToken)); err != nil {
		t.Fatal(err)
	}
	gl, err := gitlab.New(gs.URL, bot.Token, gitlab.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	s, _, h := testServer(t, func(c *Config) { c.PublicURL = public; c.PublicKey = "awskms:///alias/lotse" })
	get := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/doctor", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := get(readToken); rec.Code != http.StatusNotFound {
		t.Fatalf("without a doctor: %d %s", rec.Code, rec.Body)
	}
	now := time.Now()
	cfg := &Config{GitOpsProject: testProject, PublicURL: public, PublicKey: "awskms:///alias/lotse"}
	s.doctor = newDoctorCheck(cfg, gl, func() time.Time { return now })

	for _, tok := range []string{"", "wrong"} {
		if rec := get(tok); rec.Code != http.StatusUnauthorized {
			t.Fatalf("token %q: %d", tok, rec.Code)
		}
	}
	report := func() doctor.Report {
		t.Helper()
		rec := get(readToken)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		var r doctor.Report
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := report()
	if !r.OK || r.Errors != 0 || r.Warnings != 0 || r.Project != testProject || len(r.Findings) != 10 {
		t.Fatalf("good project: %+v", r)
	}
	for _, f := range r.Findings {
		if f.Check == doctor.CheckSigningKey && f.Detail != "lotsed's own public key awskms:///alias/lotse (it wins over signing.publicKey)" {
			t.Errorf("lotsed's key: %+v", f)
		}
	}
	if rec := get(adminToken); rec.Code != http.StatusOK {
		t.Fatalf("admin token: %d", rec.Code)
	}

	// The bot loses its Maintainer role: within the cache time the report
	// stays, without asking GitLab again; then it shows.
	if err := sim.AddMember(testProject, "lotse-bot", gitlabsim.RoleDeveloper); err != nil {
		t.Fatal(err)
	}
	sim.ClearRequests()
	if r := report(); !r.OK {
		t.Fatalf("cached report changed: %+v", r)
	}
	if n := len(sim.Requests()); n != 0 {
		t.Fatalf("a cached report asked GitLab %d times", n)
	}
	now = now.Add(doctorCacheFor)
	r = report()
	if r.OK || r.Errors == 0 {
		t.Fatalf("demoted bot: %+v", r)
	}
	found := false
	for _, f := range r.Findings {
		if f.Check == doctor.CheckBotRole && !f.OK && f.Severity == doctor.SeverityError && f.Fix != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no bot-role error: %+v", r)
	}
}
