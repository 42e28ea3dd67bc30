package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/pprof/profile"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/auditapi"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/sign/sigstoretest"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"lotse": func() { os.Exit(run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr)) },
	})
}

// shared is what every script gets: a loopback registry with the fixture
// images, the fixture vulnerability DB and a key pair.
type shared struct {
	registry string
	// registry2 is another registry (GitLab's registry to Harbor).
	registry2 string
	cacheDir  string
	keysDir   string
	files     string            // OCI layout and docker archive of the Debian image
	digests   map[string]string // DEBIAN_DIGEST, ALPINE_DIGEST, CLEAN_DIGEST, JAVA_DIGEST
	sim       *gitlabsim.Sim    // the GitLab simulator; each script makes its own GitOps project
	simURL    string
	botToken  string // token of the user lotse writes as
	// sigstore is a private Sigstore whose trusted root is
	// $KEYS/trusted_root.json; keylesssign and keylessattest sign with it.
	sigstore *sigstoretest.Sigstore
}

func setupShared(t *testing.T) *shared {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	srv2 := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv2.Close)
	s := &shared{registry: strings.TrimPrefix(srv.URL, "http://"), registry2: strings.TrimPrefix(srv2.URL, "http://"), cacheDir: t.TempDir(), keysDir: t.TempDir(), files: t.TempDir()}
	if err := fixture.WriteVulnDB(s.cacheDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := fixture.WriteJavaDB(s.cacheDir, time.Now()); err != nil {
		t.Fatal(err)
	}
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	alp, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	clean, err := fixture.Image()
	if err != nil {
		t.Fatal(err)
	}
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	lang, err := fixture.LangImage()
	if err != nil {
		t.Fatal(err)
	}
	// A builder's lie: the jar layer of java:1 claims the Debian layer's
	// diff ID, to borrow its cached analysis.
	cf, err := java.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = cf.RootFS.DiffIDs[0]
	liar, err := mutate.ConfigFile(java, cf)
	if err != nil {
		t.Fatal(err)
	}
	// licensed:1 is debian:12 with a Node.js package that names its
	// license only in a LICENSE file (syft scans it); licensed:2 adds a
	// layer with another such package, whose LICENSE is the same text.
	licensed := func(base v1.Image, pkg string) v1.Image {
		dir := "app/node_modules/" + pkg + "/"
		l, err := fixture.Layer(
			fixture.File{Path: dir + "package.json", Data: []byte(`{"name": "` + pkg + `", "version": "1.0.0"}`)},
			fixture.File{Path: dir + "LICENSE", Data: []byte(fixture.MITLicense)})
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, l)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	// rocky:1 has a real RPM database (CentOS 8.2's, with module streams)
	// and python3-six's metadata, which that database lists.
	rocky, err := fixture.RockyImage()
	if err != nil {
		t.Fatal(err)
	}
	// lang:2 is lang:1 with a layer that rewrites requests' METADATA:
	// syft reads its RECORD from the layer under it.
	rewrite, err := fixture.Layer(fixture.PythonMetadata("requests", "2.31.0", fixture.LangPackages[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	lang2, err := mutate.AppendLayers(lang, rewrite)
	if err != nil {
		t.Fatal(err)
	}
	licensed1 := licensed(deb, "a")
	licensed2 := licensed(licensed1, "b")
	s.digests = map[string]string{}
	for tag, img := range map[string]v1.Image{"debian:12": deb, "alpine:3.20": alp, "clean:1": clean, "java:1": java, "lang:1": lang, "lang:2": lang2, "liar:1": liar, "licensed:1": licensed1, "licensed:2": licensed2, "rocky:1": rocky} {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		s.digests[strings.ToUpper(strings.Split(tag, ":")[0])+"_DIGEST"] = d.String()
		ref, err := name.NewTag(s.registry + "/fixtures/" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	// The DB as an OCI artifact: an air-gapped site's Harbor mirror.
	dbImg, err := fixture.VulnDBImage(s.cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	dbRef, _ := name.NewTag(s.registry + "/mirror/trivy-db:2")
	if err := remote.Write(dbRef, dbImg); err != nil {
		t.Fatal(err)
	}
	javaDBImg, err := fixture.JavaDBImage(s.cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	javaDBRef, _ := name.NewTag(s.registry + "/mirror/trivy-java-db:1")
	if err := remote.Write(javaDBRef, javaDBImg); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(filepath.Join(s.files, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(deb, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "12"})); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("fixtures/debian:12")
	if err := tarball.WriteToFile(filepath.Join(s.files, "debian.tar"), tag, deb); err != nil {
		t.Fatal(err)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, other, err := sign.GenerateKeyPair([]byte("other"))
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{"cosign.key": priv, "cosign.pub": pub, "other.key": otherPriv, "other.pub": other} {
		if err := os.WriteFile(filepath.Join(s.keysDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if s.sigstore, err = sigstoretest.New(); err != nil {
		t.Fatal(err)
	}
	tr, err := s.sigstore.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.keysDir, "trusted_root.json"), tr, 0o644); err != nil {
		t.Fatal(err)
	}
	s.sim = gitlabsim.New(gitlabsim.Options{Dir: t.TempDir()})
	simSrv := httptest.NewServer(s.sim)
	t.Cleanup(func() { simSrv.Close(); s.sim.Close() })
	s.simURL = simSrv.URL
	for _, u := range []string{"lotse-bot", "approver"} {
		user, err := s.sim.CreateUser(gitlabsim.UserSpec{Username: u})
		if err != nil {
			t.Fatal(err)
		}
		if u == "lotse-bot" {
			s.botToken = user.Token
		}
	}
	return s
}

func TestScripts(t *testing.T) {
	s := setupShared(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(e *testscript.Env) error {
			e.Setenv("REGISTRY", s.registry)
			e.Setenv("LOTSE_CACHE_DIR", s.cacheDir)
			e.Setenv("KEYS", s.keysDir)
			e.Setenv("FILES", s.files)
			e.Setenv("COSIGN_PASSWORD", "s3cret")
			e.Setenv("HOME", e.WorkDir)
			for k, v := range s.digests {
				e.Setenv(k, v)
			}
			// Each script pushes to its own repository.
			e.Setenv("REPO", s.registry+"/"+strings.ToLower(filepath.Base(e.WorkDir)))
			e.Setenv("REPO2", s.registry2+"/"+strings.ToLower(filepath.Base(e.WorkDir)))
			// and writes to its own GitOps project (made by simproject).
			e.Setenv("LOTSE_GITLAB_URL", s.simURL)
			e.Setenv("LOTSE_GITLAB_TOKEN", s.botToken)
			e.Setenv("LOTSE_GITOPS_PROJECT", "gitops/"+strings.ToLower(filepath.Base(e.WorkDir)))
			e.Values["sim"] = s.sim
			e.Values["sigstore"] = s.sigstore
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":      cmdExitCode,
			"expand":        cmdExpand,
			"profile":       cmdProfile,
			"manifest":      cmdManifest,
			"simproject":    cmdSimProject,
			"simlotse":      cmdSimLotse,
			"simfile":       cmdSimFile,
			"simlog":        cmdSimLog,
			"simstate":      cmdSimState,
			"simmr":         cmdSimMR,
			"keylesssign":   cmdKeylessSign,
			"keylessattest": cmdKeylessAttest,
			"auditserver":   cmdAuditServer,
			"releaseserver": cmdReleaseServer,
			"statusserver":  cmdStatusServer,
			"doraserver":    cmdDoraServer,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "cosign" {
				_, err := exec.LookPath("cosign")
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// profile FILE TYPE checks that FILE is a profile as pprof reads it, with
// samples of TYPE (cpu, inuse_space...).
func cmdProfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: profile FILE TYPE")
	}
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	p, err := profile.Parse(f)
	ts.Check(err)
	var types []string
	for _, st := range p.SampleType {
		if st.Type == args[1] {
			return
		}
		types = append(types, st.Type)
	}
	ts.Fatalf("%s: no %s samples, only %v", args[0], args[1], types)
}

// expand FILE replaces $VAR and ${VAR} in FILE with the script's
// environment.
func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: expand FILE")
	}
	p := ts.MkAbs(args[0])
	b, err := os.ReadFile(p)
	ts.Check(err)
	ts.Check(os.WriteFile(p, []byte(os.Expand(string(b), ts.Getenv)), 0o644))
}

// exitcode N PROG ARGS... runs PROG and checks that it exits with N; its
// output is then checked with stdout and stderr as after exec.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// manifest exists|missing REF checks the registry for a manifest.
func cmdManifest(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || (args[0] != "exists" && args[0] != "missing") {
		ts.Fatalf("usage: manifest exists|missing REF")
	}
	ref, err := name.ParseReference(args[1])
	if err != nil {
		ts.Fatalf("manifest: %v", err)
	}
	_, err = remote.Head(ref)
	if (err == nil) != (args[0] == "exists") {
		ts.Fatalf("manifest %s: %s, got err=%v", args[0], ref, err)
	}
}

func sim(ts *testscript.TestScript) *gitlabsim.Sim {
	return ts.Value("sim").(*gitlabsim.Sim)
}

// simproject DIR [PROJECT] creates the GitOps project (default
// $LOTSE_GITOPS_PROJECT) in the simulator with the files under DIR, lotse-bot
// as Developer (who may push to main) and approver as Maintainer. ${PROJECT}
// in the files becomes the project's path (lotse.yaml's gitlab.project).
func cmdSimProject(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: simproject DIR [PROJECT]")
	}
	path := ts.Getenv("LOTSE_GITOPS_PROJECT")
	if len(args) == 2 {
		path = args[1]
	}
	root := ts.MkAbs(args[0])
	files, err := projectFiles(root, path)
	ts.Check(err)
	_, err = sim(ts).CreateProject(gitlabsim.ProjectSpec{Path: path, Files: files,
		Members:   []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}, {Username: "approver", Role: gitlabsim.RoleMaintainer}},
		Protected: []gitlabsim.ProtectedBranch{{Name: "main", PushAccessLevel: gitlabsim.AccessDevelopers, MergeAccessLevel: gitlabsim.AccessDevelopers}}})
	ts.Check(err)
}

// projectFiles reads the files under root for a simulated project, with
// ${PROJECT} in them replaced by the project's path.
func projectFiles(root, path string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = strings.ReplaceAll(string(b), "${PROJECT}", path)
		return err
	})
	return files, err
}

// simlotse DIR LOTSED_URL creates the GitOps project ($LOTSE_GITOPS_PROJECT)
// as README's "Adopting lotse" says: lotse-bot Maintainer, approver
// Developer, main and lotse/* protected for Maintainers, lotsed's webhook
// with every event; and the app project PROJECT-shop with lotse-bot as
// Developer. ${PROJECT} in the files becomes the project's path.
func cmdSimLotse(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: simlotse DIR LOTSED_URL")
	}
	path := ts.Getenv("LOTSE_GITOPS_PROJECT")
	root := ts.MkAbs(args[0])
	files, err := projectFiles(root, path)
	ts.Check(err)
	maintainers := gitlabsim.ProtectedBranch{PushAccessLevel: gitlabsim.AccessMaintainers, MergeAccessLevel: gitlabsim.AccessMaintainers}
	mainRule, lotseRule := maintainers, maintainers
	mainRule.Name, lotseRule.Name = "main", "lotse/*"
	_, err = sim(ts).CreateProject(gitlabsim.ProjectSpec{Path: path, Files: files,
		Members:   []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleMaintainer}, {Username: "approver", Role: gitlabsim.RoleDeveloper}},
		Protected: []gitlabsim.ProtectedBranch{mainRule, lotseRule}})
	ts.Check(err)
	_, err = sim(ts).CreateProject(gitlabsim.ProjectSpec{Path: path + "-shop",
		Members: []gitlabsim.Member{{Username: "lotse-bot", Role: gitlabsim.RoleDeveloper}, {Username: "approver", Role: gitlabsim.RoleMaintainer}}})
	ts.Check(err)
	_, err = sim(ts).AddHook(path, gitlabsim.AllEvents(strings.TrimRight(args[1], "/")+"/webhooks/gitlab", "webhook-secret"))
	ts.Check(err)
}

// git runs git on the bare repository of the script's GitOps project.
func simGit(ts *testscript.TestScript, args ...string) (string, error) {
	repo := sim(ts).Repo(ts.Getenv("LOTSE_GITOPS_PROJECT"))
	if repo == "" {
		ts.Fatalf("no GitOps project; run simproject first")
	}
	out, err := exec.Command("git", append([]string{"--git-dir", repo}, args...)...).CombinedOutput()
	return string(out), err
}

// simfile REF PATH OUT writes the file PATH at REF of the GitOps project to
// OUT; with !, checks that it does not exist.
func cmdSimFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: simfile REF PATH OUT")
	}
	out, err := simGit(ts, "show", args[0]+":"+args[1])
	if neg {
		if err == nil {
			ts.Fatalf("%s exists at %s", args[1], args[0])
		}
		return
	}
	if err != nil {
		ts.Fatalf("simfile: %v: %s", err, out)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(out), 0o644))
}

// simlog REF OUT writes the full message of the commit REF to OUT.
func cmdSimLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: simlog REF OUT")
	}
	out, err := simGit(ts, "log", "-1", "--format=%B", args[0])
	if err != nil {
		ts.Fatalf("simlog: %v: %s", err, out)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o644))
}

// simstate OUT writes every branch head and merge request of the GitOps
// project to OUT, to compare before and after a command that must not write.
func cmdSimState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: simstate OUT")
	}
	out, err := simGit(ts, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
	if err != nil {
		ts.Fatalf("simstate: %v: %s", err, out)
	}
	for iid := 1; ; iid++ {
		mr, err := sim(ts).MergeRequest(ts.Getenv("LOTSE_GITOPS_PROJECT"), iid)
		if err != nil {
			break
		}
		out += fmt.Sprintf("!%d %s %s %s\n", iid, mr.State, mr.SHA, mr.Title)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(out), 0o644))
}

// simmr IID OUT writes a merge request of the GitOps project to OUT as
// "key: value" lines: state, source, title, labels (sorted), automerge
// (set now or before the merge), then the description.
func cmdSimMR(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: simmr IID OUT")
	}
	iid, err := strconv.Atoi(args[0])
	ts.Check(err)
	mr, err := sim(ts).MergeRequest(ts.Getenv("LOTSE_GITOPS_PROJECT"), iid)
	ts.Check(err)
	auto := mr.AutoMerge
	for _, n := range mr.Notes {
		auto = auto || strings.HasPrefix(n, "enabled an automatic merge")
	}
	out := fmt.Sprintf("state: %s\nsource: %s\ntitle: %s\nlabels: %s\nautomerge: %v\n%s\n",
		mr.State, mr.SourceBranch, mr.Title, strings.Join(slices.Sorted(slices.Values(mr.Labels)), ","), auto, mr.Description)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o644))
}

// auditserver N [SQL...] starts lotsed's audit endpoint (auditapi.Handler,
// behind a bearer token) over a SQLite store with N records, then runs
// each SQL statement on the database the way an attacker with access to it
// would (the append-only triggers dropped first). It sets LOTSE_URL,
// LOTSE_API_TOKEN and AUDIT_HEAD, the head before the SQL ran.
func cmdAuditServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: auditserver N [SQL...]")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	path := ts.MkAbs("lotsed.db")
	for i := 2; ; i++ {
		if _, err := os.Stat(path); err != nil {
			break
		}
		path = ts.MkAbs(fmt.Sprintf("lotsed%d.db", i))
	}
	ctx := context.Background()
	db, err := store.Open(ctx, path)
	ts.Check(err)
	ts.Defer(func() { db.Close() })
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		r := audit.Record{At: t0.Add(time.Duration(i) * time.Hour), App: []string{"shop", "cart"}[i%2], Stage: "dev",
			Actor: "alice", Kind: "landed", Detail: fmt.Sprintf("record %d", i+1)}
		ts.Check(db.Audit(ctx, r))
	}
	head, err := db.AuditHead(ctx)
	ts.Check(err)
	if len(args) > 1 {
		raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		ts.Check(err)
		defer raw.Close()
		for _, q := range append([]string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"}, args[1:]...) {
			if _, err := raw.Exec(q); err != nil {
				ts.Fatalf("%s: %v", q, err)
			}
		}
	}
	const token = "audit-read-token"
	h := auditapi.Handler(db, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"no or wrong bearer token"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	ts.Defer(srv.Close)
	ts.Setenv("LOTSE_URL", srv.URL)
	ts.Setenv("LOTSE_API_TOKEN", token)
	ts.Setenv("AUDIT_HEAD", head.String())
}

// keylesssign IDENTITY ISSUER IMAGE@DIGEST signs the image keylessly, as
// cosign would with a GitLab id_token, with a certificate from the test's
// private Sigstore (trusted root: $KEYS/trusted_root.json).
func cmdKeylessSign(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: keylesssign IDENTITY ISSUER IMAGE@DIGEST")
	}
	ts.Check(ts.Value("sigstore").(*sigstoretest.Sigstore).Sign(args[2], args[0], args[1]))
}

// keylessattest IDENTITY ISSUER TYPE PREDICATE IMAGE@DIGEST attests the
// image keylessly with the predicate file.
func cmdKeylessAttest(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: keylessattest IDENTITY ISSUER TYPE PREDICATE IMAGE@DIGEST")
	}
	b, err := os.ReadFile(ts.MkAbs(args[3]))
	ts.Check(err)
	ts.Check(ts.Value("sigstore").(*sigstoretest.Sigstore).Attest(args[4], args[0], args[1], args[2], b))
}

// releaseserver STATUS FILE stands in for lotsed's POST /api/v1/releases:
// it answers STATUS with FILE's content, writes the request's body (and a
// newline) to release.req and its Authorization header to release.auth,
// and sets LOTSE_URL to itself.
func cmdReleaseServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: releaseserver STATUS FILE")
	}
	status, err := strconv.Atoi(args[0])
	ts.Check(err)
	answer := []byte(ts.ReadFile(args[1]))
	reqFile, authFile := ts.MkAbs("release.req"), ts.MkAbs("release.auth")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/releases" {
			http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		_ = os.WriteFile(reqFile, append(body, '\n'), 0o644)
		_ = os.WriteFile(authFile, []byte(r.Header.Get("Authorization")+"\n"), 0o644)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(answer)
	}))
	ts.Defer(srv.Close)
	ts.Setenv("LOTSE_URL", srv.URL)
}

// statusserver FILE stands in for lotsed's GET /api/v1/status: it answers
// FILE to the bearer token "read-token" and sets LOTSE_URL.
func cmdStatusServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: statusserver FILE")
	}
	answer := []byte(ts.ReadFile(args[0]))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet || r.URL.Path != "/api/v1/status":
			http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
		case r.Header.Get("Authorization") != "Bearer read-token":
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write(answer)
		}
	}))
	ts.Defer(srv.Close)
	ts.Setenv("LOTSE_URL", srv.URL)
}

// doraserver FILE stands in for lotsed's GET /api/v1/dora behind a bearer
// token: it answers FILE's content, writes the request's query (and a
// newline) to dora.query, and sets LOTSE_URL and LOTSE_API_TOKEN.
func cmdDoraServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: doraserver FILE")
	}
	const token = "dora-read-token"
	answer := []byte(ts.ReadFile(args[0]))
	queryFile := ts.MkAbs("dora.query")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"no or wrong bearer token"}`, http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/dora" {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		_ = os.WriteFile(queryFile, []byte(r.URL.RawQuery+"\n"), 0o644)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	ts.Defer(srv.Close)
	ts.Setenv("LOTSE_URL", srv.URL)
	ts.Setenv("LOTSE_API_TOKEN", token)
}
