package doctor_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/doctor"
	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/test/gitlabsim"
)

const (
	gitopsProject = "platform/gitops"
	appProject    = "team/shop"
	lotsedURL     = "https://lotsed.example.com"
)

const lotseYAML = `version: 1
gitlab:
  project: PROJECT
signing:
  publicKey: keys/cosign.pub
apps:
  - name: shop
    sourceProject: team/shop
    image: registry.example.com/team/shop
    values: apps/{app}/{stage}/values.yaml
    set:
      image.digest: digest
stages:
  - name: dev
    promotion: commit
  - name: production
    promotion: approval
    approvals: 1
    gates: {signature: true}
`

func pubKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// setup is a GitOps project set up as README's "Adopting lotse" says; each
// test case breaks one thing.
type setup struct {
	gitops   gitlabsim.ProjectSpec
	app      *gitlabsim.ProjectSpec // nil: no app project
	hooks    []gitlabsim.HookSpec
	faults   []gitlabsim.Fault
	opts     doctor.Options
	botToken string // set by run
}

func goodSetup(t *testing.T) *setup {
	t.Helper()
	hook := gitlabsim.AllEvents(lotsedURL+"/webhooks/gitlab", "secret")
	return &setup{
		gitops: gitlabsim.ProjectSpec{Path: gitopsProject,
			Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleMaintainer}, {Username: "alice", Role: gitlabsim.RoleDeveloper}},
			Protected: []gitlabsim.ProtectedBranch{
				{Name: "main", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers},
				{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}},
			Files: map[string]string{"lotse.yaml": strings.ReplaceAll(lotseYAML, "PROJECT", gitopsProject), "keys/cosign.pub": pubKey(t),
				"apps/shop/dev/values.yaml": "image: {}\n", "apps/shop/production/values.yaml": "image: {}\n"}},
		app: &gitlabsim.ProjectSpec{Path: appProject,
			Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}, {Username: "alice", Role: gitlabsim.RoleMaintainer}}},
		hooks: []gitlabsim.HookSpec{hook},
		opts:  doctor.Options{Project: gitopsProject, LotsedURL: lotsedURL},
	}
}

func (s *setup) run(t *testing.T) doctor.Report {
	t.Helper()
	sim := gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	for _, u := range []string{"lotse-bot", "alice", "bob"} {
		usr, err := sim.CreateUser(gitlabsim.UserSpec{Username: u})
		if err != nil {
			t.Fatal(err)
		}
		if u == "lotse-bot" {
			s.botToken = usr.Token
		}
	}
	if _, err := sim.CreateProject(s.gitops); err != nil {
		t.Fatal(err)
	}
	if s.app != nil {
		if _, err := sim.CreateProject(*s.app); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range s.hooks {
		if _, err := sim.AddHook(gitopsProject, h); err != nil {
			t.Fatal(err)
		}
	}
	sim.Faults(s.faults...)
	gl, err := gitlab.New(srv.URL, s.botToken, gitlab.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := doctor.Check(ctx, gl, s.opts)
	if strings.Contains(mustJSON(t, r), s.botToken) {
		t.Fatal("the report shows the token")
	}
	return r
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// failed maps each failed check to its worst severity.
func failed(r doctor.Report) map[string]doctor.Severity {
	out := map[string]doctor.Severity{}
	for _, f := range r.Findings {
		if !f.OK && out[f.Check] != doctor.SeverityError {
			out[f.Check] = f.Severity
		}
	}
	return out
}

func find(r doctor.Report, check string) []doctor.Finding {
	var out []doctor.Finding
	for _, f := range r.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

// keyless replaces signing.publicKey with signing.keyless (issuer
// https://gitlab.example.com and fields), and writes keys/trusted_root.json
// when root is not empty.
func keyless(fields, root string) func(*setup) {
	return func(s *setup) {
		delete(s.gitops.Files, "keys/cosign.pub")
		s.gitops.Files["lotse.yaml"] = strings.Replace(s.gitops.Files["lotse.yaml"], "  publicKey: keys/cosign.pub\n",
			"  keyless:\n    issuer: https://gitlab.example.com\n    "+fields+"\n", 1)
		if root != "" {
			s.gitops.Files["keys/trusted_root.json"] = root
		}
	}
}

func TestCheck(t *testing.T) {
	E, W := doctor.SeverityError, doctor.SeverityWarning
	protect := func(rules ...gitlabsim.ProtectedBranch) func(*setup) {
		return func(s *setup) { s.gitops.Protected = rules }
	}
	main40 := gitlabsim.ProtectedBranch{Name: "main", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	lotse40 := gitlabsim.ProtectedBranch{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	tr, fa := true, false
	tests := []struct {
		name  string
		mod   func(*setup)
		fails map[string]doctor.Severity // exactly the checks that fail
		// problem is a part of the failing finding's problem text.
		problem string
	}{
		{name: "set up right", mod: func(*setup) {}},
		{name: "default branch not protected", mod: protect(lotse40),
			fails: map[string]doctor.Severity{doctor.CheckProtectDefault: E, doctor.CheckMergeAccess: W}, problem: "main is not protected"},
		{name: "developers may push to main", mod: protect(gitlabsim.ProtectedBranch{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessMaintainers}, lotse40),
			fails: map[string]doctor.Severity{doctor.CheckProtectDefault: E}, problem: "Developers + Maintainers may push to main"},
		{name: "developers may merge into main", mod: protect(gitlabsim.ProtectedBranch{Name: "main", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessDevelopers}, lotse40),
			fails: map[string]doctor.Severity{doctor.CheckProtectDefault: E, doctor.CheckMergeAccess: W}, problem: "may merge into main"},
		// GitLab lets the most permissive matching rule decide: a wildcard
		// that also matches main undoes main's own rule.
		{name: "a wildcard opens main to developers", mod: protect(main40, lotse40, gitlabsim.ProtectedBranch{Name: "ma*", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}),
			fails: map[string]doctor.Severity{doctor.CheckProtectDefault: E, doctor.CheckMergeAccess: W}, problem: "Developers + Maintainers may push to main"},
		{name: "no one may merge into main, not even lotse", mod: protect(gitlabsim.ProtectedBranch{Name: "main", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessNoOne}, lotse40),
			fails: map[string]doctor.Severity{doctor.CheckProtectDefault: E}, problem: "lotse's user may not merge into main"},
		{name: "lotse/* not protected", mod: protect(main40),
			fails: map[string]doctor.Severity{doctor.CheckProtectPromotion: E}, problem: "lotse/* is not protected"},
		{name: "only the dev promotion branch protected", mod: protect(main40, gitlabsim.ProtectedBranch{Name: "lotse/shop/dev", PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}),
			fails: map[string]doctor.Severity{doctor.CheckProtectPromotion: E}, problem: "no rule matches lotse/shop/production"},
		{name: "developers may push to lotse/*", mod: protect(main40, gitlabsim.ProtectedBranch{Name: "lotse/*", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessMaintainers}),
			fails: map[string]doctor.Severity{doctor.CheckProtectPromotion: E}, problem: "Developers + Maintainers may push to lotse/shop/production"},
		{name: "bot is Developer", mod: func(s *setup) { s.gitops.Members[0].Role = gitlabsim.RoleDeveloper },
			fails:   map[string]doctor.Severity{doctor.CheckBotRole: E, doctor.CheckWebhook: E},
			problem: "lotse-bot is Developer, not Maintainer"},
		{name: "bot is not a member", mod: func(s *setup) { s.gitops.Members = s.gitops.Members[1:]; s.gitops.Visibility = "internal" },
			fails: map[string]doctor.Severity{doctor.CheckBotRole: E, doctor.CheckWebhook: E}, problem: "lotse-bot is not a member"},
		{name: "a human Maintainer besides lotse", mod: func(s *setup) { s.gitops.Members[1].Role = gitlabsim.RoleMaintainer },
			fails: map[string]doctor.Severity{doctor.CheckMergeAccess: W}, problem: "besides lotse's user, alice may merge into main"},
		{name: "too few approvers", mod: func(s *setup) {
			s.gitops.Files["lotse.yaml"] = strings.Replace(s.gitops.Files["lotse.yaml"], "approvals: 1", "approvals: 2", 1)
		}, fails: map[string]doctor.Severity{doctor.CheckApprovers: E}, problem: "production needs 2 distinct approvers besides lotse's user, but only 1 member(s) may approve"},
		{name: "a Reporter cannot approve", mod: func(s *setup) { s.gitops.Members[1].Role = gitlabsim.RoleReporter },
			fails: map[string]doctor.Severity{doctor.CheckApprovers: E}, problem: "only 0 member(s) may approve"},
		{name: "no webhook", mod: func(s *setup) { s.hooks = nil },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "no webhook of platform/gitops delivers to https://lotsed.example.com/webhooks/gitlab"},
		{name: "webhook to another service", mod: func(s *setup) { s.hooks[0].URL = "https://other.example.com/webhooks/gitlab" },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "no webhook"},
		{name: "webhook without note events", mod: func(s *setup) { s.hooks[0].NoteEvents = false },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "does not send comment (note) events"},
		{name: "webhook without push and pipeline events", mod: func(s *setup) { s.hooks[0].PushEvents = &fa; s.hooks[0].PipelineEvents = false },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "does not send push, pipeline events"},
		{name: "webhook without merge request events", mod: func(s *setup) { s.hooks[0].MergeRequestsEvents = false },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "does not send merge request events"},
		{name: "webhook push filter leaves out main", mod: func(s *setup) { s.hooks[0].PushEvents = &tr; s.hooks[0].PushEventsBranchFilter = "lotse/*" },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: `filtered to "lotse/*"`},
		{name: "webhook registered twice", mod: func(s *setup) { s.hooks = append(s.hooks, s.hooks[0]) },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: W}, problem: "2 hooks deliver to lotsed"},
		{name: "webhook URL differs in case and trailing slash", mod: func(s *setup) { s.hooks[0].URL = "https://LOTSED.example.com/webhooks/gitlab/" }},
		{name: "webhook to a look-alike host", mod: func(s *setup) { s.hooks[0].URL = "https://lotsed.example.com.evil.example/webhooks/gitlab" },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "no webhook"},
		{name: "webhook to another path of lotsed's host", mod: func(s *setup) { s.hooks[0].URL = "https://lotsed.example.com/x/webhooks/gitlab" },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "no webhook"},
		// The report is served to read-token holders: a secret in the
		// hook's URL stays out of it.
		{name: "webhook URL with a secret in it", mod: func(s *setup) {
			s.hooks[0].URL = "https://user:hunter2@lotsed.example.com/webhooks/gitlab?token=hunter2#hunter2"
			s.hooks[0].NoteEvents = false
		}, fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "does not send comment (note) events"},
		{name: "lotsed URL unknown: matched by path", mod: func(s *setup) { s.opts.LotsedURL = "" }},
		{name: "hooks unreadable", mod: func(s *setup) { s.faults = []gitlabsim.Fault{{Class: "hooks", Status: 500}} },
			fails: map[string]doctor.Severity{doctor.CheckWebhook: E}, problem: "cannot list the webhooks"},
		{name: "app project the bot cannot read", mod: func(s *setup) { s.app.Members = s.app.Members[1:] },
			fails: map[string]doctor.Severity{doctor.CheckSourceProject: E}, problem: "lotse-bot cannot read team/shop"},
		{name: "app project does not exist", mod: func(s *setup) { s.app = nil },
			fails: map[string]doctor.Severity{doctor.CheckSourceProject: E}, problem: "cannot read team/shop"},
		{name: "app project readable but bot only Reporter", mod: func(s *setup) { s.app.Members[0].Role = gitlabsim.RoleReporter },
			fails: map[string]doctor.Severity{doctor.CheckSourceProject: E}, problem: "lotse-bot is Reporter in team/shop"},
		{name: "public app project, bot not a member", mod: func(s *setup) { s.app.Members = s.app.Members[1:]; s.app.Visibility = "public" },
			fails: map[string]doctor.Severity{doctor.CheckSourceProject: E}, problem: "is not a member: it cannot post commit statuses"},
		{name: "signing key missing", mod: func(s *setup) { delete(s.gitops.Files, "keys/cosign.pub") },
			fails: map[string]doctor.Severity{doctor.CheckSigningKey: E}, problem: "signing.publicKey keys/cosign.pub is not in platform/gitops"},
		{name: "signing key is a private key", mod: func(s *setup) {
			s.gitops.Files["keys/cosign.pub"] = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
		}, fails: map[string]doctor.Severity{doctor.CheckSigningKey: E}, problem: "is it the private key?"},
		{name: "signing key is a KMS URI", mod: func(s *setup) {
			s.gitops.Files["lotse.yaml"] = strings.Replace(s.gitops.Files["lotse.yaml"], "keys/cosign.pub", "awskms:///alias/lotse", 1)
		}},
		{name: "keyless with a trusted root", mod: keyless("identity: https://gitlab.example.com/team/shop//.gitlab-ci.yml@refs/heads/main\n    trustedRoot: keys/trusted_root.json",
			`{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)},
		{name: "keyless on Sigstore's public-good instance", mod: keyless("identityRegexp: 'https://gitlab.example.com/team/shop//.gitlab-ci.yml@refs/heads/(main|release)'", "")},
		{name: "keyless trusted root missing", mod: keyless("identity: x\n    trustedRoot: keys/trusted_root.json", ""),
			fails: map[string]doctor.Severity{doctor.CheckSigningKey: E}, problem: "signing.keyless.trustedRoot keys/trusted_root.json is not in platform/gitops"},
		{name: "keyless trusted root is something else", mod: keyless("identity: x\n    trustedRoot: keys/trusted_root.json", `{"keys": []}`),
			fails: map[string]doctor.Severity{doctor.CheckSigningKey: E}, problem: "is not a Sigstore trusted root"},
		// An identity regexp that admits every project's pipeline lets
		// anyone on the GitLab instance sign images that pass the gates.
		{name: "keyless identity regexp too broad", mod: keyless("identityRegexp: 'https://gitlab.example.com/.*//.gitlab-ci.yml@refs/heads/main'", ""),
			fails: map[string]doctor.Severity{doctor.CheckSigningKey: W}, problem: "a pipeline of any project under that issuer can sign"},
		{name: "lotsed's own key wins", mod: func(s *setup) { delete(s.gitops.Files, "keys/cosign.pub"); s.opts.PublicKey = "/etc/lotsed/cosign.pub" }},
		{name: "no signing key at all", mod: func(s *setup) {
			y := strings.Replace(s.gitops.Files["lotse.yaml"], "signing:\n  publicKey: keys/cosign.pub\n", "", 1)
			s.gitops.Files["lotse.yaml"] = strings.Replace(y, "    gates: {signature: true}\n", "", 1)
		}, fails: map[string]doctor.Severity{doctor.CheckSigningKey: W}, problem: "no stage can require a signature"},
		{name: "lotse.yaml missing", mod: func(s *setup) { delete(s.gitops.Files, "lotse.yaml") },
			fails: map[string]doctor.Severity{doctor.CheckConfig: E}, problem: "lotse.yaml is not on the default branch"},
		{name: "lotse.yaml invalid", mod: func(s *setup) { s.gitops.Files["lotse.yaml"] = "version: 1\napps: [\n" },
			fails: map[string]doctor.Severity{doctor.CheckConfig: E}},
		{name: "lotse.yaml of another project", mod: func(s *setup) {
			s.gitops.Files["lotse.yaml"] = strings.ReplaceAll(lotseYAML, "PROJECT", "other/gitops")
		}, fails: map[string]doctor.Severity{doctor.CheckConfig: E}, problem: `gitlab.project "other/gitops"`},
		{name: "lotse.yaml names another default branch", mod: func(s *setup) {
			s.gitops.Files["lotse.yaml"] = strings.Replace(s.gitops.Files["lotse.yaml"], "  project: platform/gitops\n", "  project: platform/gitops\n  defaultBranch: release\n", 1)
		}, fails: map[string]doctor.Severity{doctor.CheckDefaultBranch: E, doctor.CheckProtectDefault: E, doctor.CheckMergeAccess: W, doctor.CheckSigningKey: E},
			problem: "defaultBranch release but the project's default branch is main"},
		{name: "GitOps project unknown", mod: func(s *setup) { s.opts.Project = "platform/nothing" },
			fails: map[string]doctor.Severity{doctor.CheckProject: E}, problem: "platform/nothing does not exist or lotse's user cannot see it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := goodSetup(t)
			tc.mod(s)
			r := s.run(t)
			got := failed(r)
			want := tc.fails
			if want == nil {
				want = map[string]doctor.Severity{}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("failed checks %v, want %v\n%s", got, want, mustJSON(t, r))
			}
			errs := 0
			for _, sev := range want {
				if sev == doctor.SeverityError {
					errs++
				}
			}
			if r.OK != (errs == 0) || (errs > 0) != (r.Errors > 0) {
				t.Errorf("OK %v, errors %d, want %d error checks", r.OK, r.Errors, errs)
			}
			for _, f := range r.Findings {
				if f.OK && (f.Problem != "" || f.Severity != "") || !f.OK && (f.Problem == "" || f.Fix == "" || f.Severity == "") {
					t.Errorf("finding %+v: a failed check needs a problem, a fix and a severity; a passed one neither", f)
				}
			}
			if strings.Contains(mustJSON(t, r), "hunter2") {
				t.Errorf("the report shows the hook URL's secret: %s", mustJSON(t, r))
			}
			if tc.problem != "" && !slices.ContainsFunc(r.Findings, func(f doctor.Finding) bool { return !f.OK && strings.Contains(f.Problem, tc.problem) }) {
				t.Errorf("no problem mentions %q:\n%s", tc.problem, mustJSON(t, r))
			}
		})
	}
}

// The good project's report names what it found, so that a platform team
// can read it as a record of the set-up.
func TestCheckGoodDetails(t *testing.T) {
	s := goodSetup(t)
	r := s.run(t)
	if !r.OK || r.Errors != 0 || r.Warnings != 0 || r.Project != gitopsProject {
		t.Fatalf("%s", mustJSON(t, r))
	}
	want := []string{doctor.CheckProject, doctor.CheckConfig, doctor.CheckDefaultBranch, doctor.CheckBotRole, doctor.CheckProtectDefault,
		doctor.CheckProtectPromotion, doctor.CheckMergeAccess, doctor.CheckApprovers, doctor.CheckWebhook, doctor.CheckSigningKey, doctor.CheckSourceProject}
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Check)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("checks %v, want %v", got, want)
	}
	for check, part := range map[string]string{
		doctor.CheckBotRole:          "lotse-bot is Maintainer",
		doctor.CheckProtectDefault:   "main (rules main): push Maintainers, merge Maintainers",
		doctor.CheckProtectPromotion: "lotse/shop/production (rules lotse/*): push Maintainers",
		doctor.CheckMergeAccess:      "merge Maintainers: lotse-bot (Maintainer)",
		doctor.CheckApprovers:        "production needs 1 approval(s); may approve: alice",
		doctor.CheckWebhook:          "https://lotsed.example.com/webhooks/gitlab: push, merge request, comment and pipeline events",
		doctor.CheckSigningKey:       "signature gates: production",
		doctor.CheckSourceProject:    "team/shop (app shop): lotse-bot is Developer",
	} {
		if fs := find(r, check); len(fs) != 1 || !strings.Contains(fs[0].Detail, part) {
			t.Errorf("%s: %+v, want detail with %q", check, fs, part)
		}
	}
	// lotsed's --bot-user names the bot when the token is another user's.
	s.opts.BotUsername = "alice"
	r = s.run(t)
	if fs := find(r, doctor.CheckBotRole); len(fs) != 1 || fs[0].OK || !strings.Contains(fs[0].Problem, "alice is Developer") {
		t.Fatalf("bot user alice: %+v", fs)
	}
}

func TestCheckNoProject(t *testing.T) {
	r := doctor.Check(context.Background(), nil, doctor.Options{})
	if r.OK || len(r.Findings) != 1 || r.Findings[0].Check != doctor.CheckProject {
		t.Fatalf("%+v", r)
	}
}
