package scaffold

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/rogpeppe/go-internal/txtar"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/vuln"
)

var update = flag.Bool("update", false, "rewrite the golden trees in testdata/golden")

const testKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEq6mQqHqfb1Y0QO2ugHp0v+3S9nYh
u0Mdn1QZ2+8MvG4+YHgQmY4GvF9bH0y+0pWcZs1W4E0Ih6KqoA4y7Ic1Gg==
-----END PUBLIC KEY-----
`

// cases are the option sets the golden trees and the checks run over: the
// defaults, and every option changed.
var cases = []struct {
	name string
	opts Options
}{
	{"default", Options{Apps: []string{"shop", "cart"}, Stages: []string{"dev", "staging", "production"}}},
	{"custom", Options{
		Apps:            []string{"api"},
		Stages:          []string{"dev", "test", "staging", "prod"},
		Registry:        "registry.example.com:5000/acme/web",
		SourceGroup:     "acme/services",
		GitOpsProject:   "acme/deploy",
		RepoURL:         "git@gitlab.example.com:acme/deploy.git",
		Cluster:         "https://10.0.0.1:6443",
		NamespacePrefix: "acme-",
		LotsedURL:       "https://lotsed.acme.test/",
		PublicKey:       []byte(testKey),
	}},
	{"two-stages", Options{Apps: []string{"a", "b", "c"}, Stages: []string{"staging", "production"}}},
}

func generate(t *testing.T, o Options) map[string][]byte {
	t.Helper()
	files, err := Generate(o)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return files
}

func TestGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := generate(t, c.opts)
			delete(files, SchemaFile) // gitops.Schema, tested there
			ar := &txtar.Archive{Comment: []byte("lotse init gitops: " + c.name + "\n")}
			for _, p := range slices.Sorted(maps.Keys(files)) {
				ar.Files = append(ar.Files, txtar.File{Name: p, Data: files[p]})
			}
			got := txtar.Format(ar)
			golden := filepath.Join("testdata", "golden", c.name+".txtar")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("generated tree differs from %s (go test -update rewrites it):\n%s", golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first lines that differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b)
		}
	}
	return ""
}

func TestGeneratedConfigIsValid(t *testing.T) {
	schema := compileSchema(t, "lotse.schema.json", gitops.Schema)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts.WithDefaults()
			files := generate(t, c.opts)
			cfg, err := gitops.ParseConfig(files[ConfigFile], ConfigFile)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if err := validateYAML(schema, files[ConfigFile]); err != nil {
				t.Fatalf("lotse.yaml against lotse.schema.json: %v", err)
			}
			if !bytes.Equal(files[SchemaFile], gitops.Schema) {
				t.Errorf("%s is not gitops.Schema", SchemaFile)
			}
			if cfg.GitLab.Project != o.GitOpsProject || cfg.Signing.PublicKey != "keys/cosign.pub" {
				t.Errorf("gitlab/signing = %+v %+v", cfg.GitLab, cfg.Signing)
			}
			_, hasKey := files["keys/cosign.pub"]
			if hasKey != (len(o.PublicKey) > 0) || (!hasKey && files["keys/README.md"] == nil) {
				t.Errorf("keys/: cosign.pub written %v, want %v (README otherwise)", hasKey, len(o.PublicKey) > 0)
			}
			if !slices.Equal(cfg.Guardrails.AllowedRegistries, []string{o.Registry}) {
				t.Errorf("guardrails allow %v, want only %s", cfg.Guardrails.AllowedRegistries, o.Registry)
			}
			if got := stageNames(cfg); !slices.Equal(got, o.Stages) {
				t.Errorf("stages %v, want %v", got, o.Stages)
			}
			for i, s := range cfg.Stages {
				switch {
				case i == 0:
					if s.Promotion != gitops.PromotionCommit || s.Gates != (gitops.Gates{}) {
						t.Errorf("first stage %+v, want a commit without gates", s)
					}
				case i == len(cfg.Stages)-1:
					if s.Promotion != gitops.PromotionApproval || s.Approvals != 2 || !s.Gates.Signature || !s.Gates.Health ||
						s.Gates.MaxSeverity == nil || *s.Gates.MaxSeverity != vuln.Medium || s.Gates.Soak == 0 {
						t.Errorf("last stage %+v, want approval by 2 with every gate", s)
					}
				default:
					if s.Promotion != gitops.PromotionMergeRequest || !s.Gates.Signature || !s.Gates.Health ||
						s.Gates.MaxSeverity == nil || *s.Gates.MaxSeverity != vuln.High || s.Gates.Soak == 0 {
						t.Errorf("middle stage %+v, want a merge request with every gate", s)
					}
				}
			}
			if len(cfg.Apps) != len(o.Apps) {
				t.Fatalf("%d apps, want %d", len(cfg.Apps), len(o.Apps))
			}
			digest := "sha256:" + strings.Repeat("ab", 32)
			for i, a := range cfg.Apps {
				if a.Name != o.Apps[i] || a.Image != o.Registry+"/"+a.Name || a.SourceProject != o.SourceGroup+"/"+a.Name {
					t.Errorf("app %+v", a)
				}
				ref, err := gitops.ParseImageRef(a.Image + "@" + digest)
				if err != nil {
					t.Fatal(err)
				}
				edits, err := a.Edits(ref)
				if err != nil {
					t.Fatalf("edits: %v", err)
				}
				for _, s := range o.Stages {
					p := a.ValuesPath(s)
					if p != ValuesPath(a.Name, s) {
						t.Errorf("lotse.yaml puts %s/%s at %s, the scaffold at %s", a.Name, s, p, ValuesPath(a.Name, s))
					}
					// What lotse bump does to the file: only the digest changes.
					out, changed, err := gitops.SetValues(files[p], edits)
					if err != nil || !changed {
						t.Fatalf("bump %s: changed=%v err=%v", p, changed, err)
					}
					// The quotes stay: lotse keeps the file's style.
					if want := strings.Replace(string(files[p]), `digest: ""`, `digest: "`+digest+`"`, 1); string(out) != want {
						t.Errorf("bump of %s changed more than the digest:\n%s", p, out)
					}
				}
			}
		})
	}
}

func stageNames(cfg *gitops.Config) []string {
	var n []string
	for _, s := range cfg.Stages {
		n = append(n, s.Name)
	}
	return n
}

// decodeStrict decodes the one YAML document in data into T, refusing
// unknown fields.
func decodeStrict[T any](t *testing.T, name string, data []byte) T {
	t.Helper()
	var v T
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: more than one document (%v)", name, err)
	}
	return v
}

func compileSchema(t *testing.T, name string, data []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func compileSchemaFile(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return compileSchema(t, file, data)
}

// validateYAML checks a YAML document against a JSON schema, through JSON
// so that the types are JSON's.
func validateYAML(s *jsonschema.Schema, data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return s.Validate(doc)
}

func TestArgoCDManifests(t *testing.T) {
	appSetSchema := compileSchemaFile(t, "applicationset.schema.json")
	projectSchema := compileSchemaFile(t, "appproject.schema.json")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts.WithDefaults()
			files := generate(t, c.opts)

			pf := "argocd/appproject.yaml"
			if err := validateYAML(projectSchema, files[pf]); err != nil {
				t.Fatalf("%s: %v", pf, err)
			}
			proj := decodeStrict[appProject](t, pf, files[pf])
			if proj.Kind != "AppProject" || proj.Metadata.Name != ProjectName || proj.Metadata.Namespace != ArgoNamespace {
				t.Errorf("AppProject %+v", proj.Metadata)
			}
			if !slices.Equal(proj.Spec.SourceRepos, []string{o.RepoURL}) {
				t.Errorf("sourceRepos %v, want only %s", proj.Spec.SourceRepos, o.RepoURL)
			}
			if !slices.Equal(proj.Spec.ClusterResourceWhitelist, []groupKind{{"", "Namespace"}}) {
				t.Errorf("clusterResourceWhitelist %v, want only Namespace", proj.Spec.ClusterResourceWhitelist)
			}
			if !slices.Contains(proj.Spec.NamespaceResourceWhitelist, groupKind{"apps", "Deployment"}) ||
				!slices.Contains(proj.Spec.NamespaceResourceWhitelist, groupKind{"", "Service"}) {
				t.Errorf("namespaceResourceWhitelist %v lacks what the chart renders", proj.Spec.NamespaceResourceWhitelist)
			}
			for _, d := range proj.Spec.Destinations {
				if d.Server != o.Cluster || d.Namespace == "*" || d.Namespace == "" {
					t.Errorf("destination %+v is wider than %s and the apps' namespaces", d, o.Cluster)
				}
			}

			var sets []applicationSet
			for _, f := range []string{"argocd/applicationset-preproduction.yaml", "argocd/applicationset-production.yaml"} {
				if err := validateYAML(appSetSchema, files[f]); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				sets = append(sets, decodeStrict[applicationSet](t, f, files[f]))
			}

			// Play the git directory generator over the generated tree:
			// each apps/<app>/envs/<stage> is picked by exactly one set and
			// becomes the Application ArgoCD would create.
			for _, app := range o.Apps {
				for i, stage := range o.Stages {
					dir := path.Dir(ValuesPath(app, stage))
					var matched []applicationSet
					for _, s := range sets {
						if generatorMatches(t, s, dir) {
							matched = append(matched, s)
						}
					}
					if len(matched) != 1 {
						t.Fatalf("%s is generated by %d ApplicationSets, want 1", dir, len(matched))
					}
					s := matched[0]
					params := map[string]any{"path": map[string]any{
						"path": dir, "basename": path.Base(dir), "segments": strings.Split(dir, "/"),
					}}
					tpl := s.Spec.Template
					name := render(t, tpl.Metadata.Name, params)
					ns := render(t, tpl.Spec.Destination.Namespace, params)
					if name != app+"-"+stage || ns != o.Namespace(app, stage) {
						t.Errorf("%s: Application %s in %s, want %s-%s in %s", dir, name, ns, app, stage, o.Namespace(app, stage))
					}
					if render(t, tpl.Metadata.Labels[LabelApp], params) != app || render(t, tpl.Metadata.Labels[LabelStage], params) != stage {
						t.Errorf("%s: labels %v", dir, tpl.Metadata.Labels)
					}
					if _, ok := tpl.Metadata.Annotations["notifications.argoproj.io/subscribe.on-lotse-health.lotsed"]; !ok {
						t.Errorf("%s: not subscribed to the lotsed notifications", dir)
					}
					if !allowed(proj, tpl.Spec.Destination.Server, ns) {
						t.Errorf("%s: destination %s %s is not allowed by the AppProject", dir, tpl.Spec.Destination.Server, ns)
					}
					src := tpl.Spec.Source
					if tpl.Spec.Project != proj.Metadata.Name || !slices.Contains(proj.Spec.SourceRepos, src.RepoURL) {
						t.Errorf("%s: project %s, repo %s not allowed", dir, tpl.Spec.Project, src.RepoURL)
					}
					if _, ok := files[path.Join(src.Path, "Chart.yaml")]; !ok {
						t.Errorf("%s: no chart at %s", dir, src.Path)
					}
					if len(src.Helm.ValueFiles) != 1 || path.Join(src.Path, render(t, src.Helm.ValueFiles[0], params)) != ValuesPath(app, stage) {
						t.Errorf("%s: value files %v do not resolve to %s", dir, src.Helm.ValueFiles, ValuesPath(app, stage))
					}
					auto := tpl.Spec.SyncPolicy.Automated
					if last := i == len(o.Stages)-1; last {
						if auto != nil {
							t.Errorf("%s: production syncs automatically: %+v", dir, auto)
						}
					} else if auto == nil || !auto.Prune || !auto.SelfHeal {
						t.Errorf("%s: pre-production sync policy %+v, want automated prune and selfHeal", dir, auto)
					}
					if !slices.Contains(tpl.Spec.SyncPolicy.SyncOptions, "CreateNamespace=true") {
						t.Errorf("%s: no CreateNamespace", dir)
					}
				}
			}
		})
	}
}

// generatorMatches reports whether the git directory generator of s picks dir.
func generatorMatches(t *testing.T, s applicationSet, dir string) bool {
	t.Helper()
	match := false
	for _, g := range s.Spec.Generators {
		if g.Git == nil {
			t.Fatalf("%s: a generator that is not git", s.Metadata.Name)
		}
		for _, d := range g.Git.Directories {
			ok, err := path.Match(d.Path, dir)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				match = !d.Exclude
			}
		}
	}
	return match
}

// render executes an ApplicationSet Go template field as ArgoCD does with
// goTemplate and missingkey=error (its functions are sprig's).
func render(t *testing.T, text string, params map[string]any) string {
	t.Helper()
	tpl, err := template.New("").Option("missingkey=error").Funcs(sprig.TxtFuncMap()).Parse(text)
	if err != nil {
		t.Fatalf("template %q: %v", text, err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, params); err != nil {
		t.Fatalf("template %q: %v", text, err)
	}
	return b.String()
}

// allowed is the AppProject's destination check: server and namespace match
// a destination, with globs.
func allowed(p appProject, server, ns string) bool {
	for _, d := range p.Spec.Destinations {
		sOK, _ := path.Match(d.Server, server)
		nOK, _ := path.Match(d.Namespace, ns)
		if sOK && nOK {
			return true
		}
	}
	return false
}

// TestChecksCatchMistakes makes sure the schema subsets and the strict
// decoding above are not vacuous: a misspelt field, a wrong type and a
// missing required field in the generated manifests are each caught.
func TestChecksCatchMistakes(t *testing.T) {
	files := generate(t, cases[0].opts)
	appSetSchema := compileSchemaFile(t, "applicationset.schema.json")
	projectSchema := compileSchemaFile(t, "appproject.schema.json")
	for _, c := range []struct {
		name, file, old, new string
		schema               *jsonschema.Schema
		strict               func([]byte) error
	}{
		{"misspelt selfHeal", "argocd/applicationset-preproduction.yaml", "selfHeal:", "selfheal:", appSetSchema, strictAppSet},
		{"retry limit as a string", "argocd/applicationset-preproduction.yaml", "limit: 5", `limit: "5"`, appSetSchema, nil},
		{"git generator without revision", "argocd/applicationset-production.yaml", "        revision: main\n", "", appSetSchema, nil},
		{"project under template", "argocd/applicationset-production.yaml", "    spec:\n      project: lotse", "    project: lotse\n    spec:\n      x: y", appSetSchema, strictAppSet},
		{"group kind without group", "argocd/appproject.yaml", "    - group: \"\"\n      kind: Namespace", "    - kind: Namespace", projectSchema, nil},
		{"sourceRepo typo", "argocd/appproject.yaml", "sourceRepos:", "sourceRepo:", projectSchema, strictProject},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(string(files[c.file]), c.old, c.new, 1)
			if bad == string(files[c.file]) {
				t.Fatalf("%q is not in %s", c.old, c.file)
			}
			if err := validateYAML(c.schema, []byte(bad)); err == nil {
				t.Errorf("the schema accepts it")
			}
			if c.strict != nil && c.strict([]byte(bad)) == nil {
				t.Errorf("strict decoding accepts it")
			}
		})
	}
}

func strictAppSet(b []byte) error  { return strictDecode(b, &applicationSet{}) }
func strictProject(b []byte) error { return strictDecode(b, &appProject{}) }

func strictDecode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// The GitOps project's pipeline renders every app in every stage and runs
// the guardrails component once per stage on what that stage renders: the
// pipeline lotsed requires on approval stages.
func TestGitOpsPipeline(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts.WithDefaults()
			files := generate(t, c.opts)
			var ci struct {
				Stages  []string                  `yaml:"stages"`
				Render  struct{ Script []string } `yaml:"render"`
				Include []struct {
					Component string
					Inputs    map[string]string
				} `yaml:"include"`
			}
			if err := yaml.Unmarshal(files[".gitlab-ci.yml"], &ci); err != nil {
				t.Fatalf(".gitlab-ci.yml: %v", err)
			}
			if len(ci.Include) != len(o.Stages) || len(ci.Render.Script) != 1+len(o.Apps)*len(o.Stages) {
				t.Fatalf(".gitlab-ci.yml = %+v", ci)
			}
			for i, s := range o.Stages {
				inc := ci.Include[i]
				if !strings.Contains(inc.Component, "/guardrails@") || inc.Inputs["gitops-stage"] != s || inc.Inputs["paths"] != "manifests/*-"+s+".yaml" {
					t.Errorf("include %d = %+v", i, inc)
				}
			}
		})
	}
}
