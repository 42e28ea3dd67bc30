// Package scaffold writes the files of a new GitOps repository for lotse:
// lotse.yaml, one values file per app and stage, a shared Helm chart, and the
// ArgoCD objects that deploy them (an AppProject, two ApplicationSets and the
// notifications that report health to lotsed).
//
// It is pure: Generate takes Options and returns file contents by path; the
// caller writes them (see lotse init gitops).
package scaffold

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/lotse/lotse/internal/gitops"
)

// Options say what to scaffold. Zero values of the optional fields take the
// defaults documented on each field (see WithDefaults).
type Options struct {
	Apps   []string // app names (DNS labels), at least one
	Stages []string // stage names in promotion order (DNS labels), at least two

	// Registry is where the apps' images live: the image of app A is
	// Registry/A. Default harbor.example.com/team.
	Registry string
	// SourceGroup is the GitLab group of the apps' projects: the source
	// project of app A is SourceGroup/A. Default: the path of Registry
	// (team for harbor.example.com/team).
	SourceGroup string
	// GitOpsProject is the GitLab path of the GitOps repository. Default
	// platform/gitops.
	GitOpsProject string
	// RepoURL is the URL ArgoCD clones the GitOps repository from. Default
	// https://gitlab.example.com/<GitOpsProject>.git.
	RepoURL string
	// Cluster is the API server URL of the destination cluster. Default
	// https://kubernetes.default.svc (the cluster ArgoCD runs in).
	Cluster string
	// NamespacePrefix goes before every namespace <app>-<stage>. When set,
	// the AppProject allows the destination namespaces <prefix>*; when empty
	// it lists each namespace.
	NamespacePrefix string
	// LotsedURL is the base URL of lotsed, for the ArgoCD notifications.
	// Default https://lotsed.example.com.
	LotsedURL string
	// PublicKey is a cosign public key (PEM). When set it is written to
	// keys/cosign.pub; otherwise keys/README.md says where to put it.
	PublicKey []byte
}

// Defaults of Options.
const (
	DefaultRegistry      = "harbor.example.com/team"
	DefaultGitOpsProject = "platform/gitops"
	DefaultCluster       = "https://kubernetes.default.svc"
	DefaultLotsedURL     = "https://lotsed.example.com"
	defaultGitLabURL     = "https://gitlab.example.com"
)

// Fixed names in the generated repository.
const (
	ConfigFile    = "lotse.yaml"
	SchemaFile    = "lotse.schema.json" // a copy of gitops.Schema, for editors
	ChartPath     = "charts/app"
	ArgoNamespace = "argocd"
	ProjectName   = "lotse"
	LabelApp      = "lotse.dev/app"
	LabelStage    = "lotse.dev/stage"
	publicKeyPath = "keys/cosign.pub"
)

var (
	dnsLabelRE    = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	prefixRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	projectPathRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$`)
	groupPathRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$`)
	scpURLRE      = regexp.MustCompile(`^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[A-Za-z0-9_./-]+$`)
)

// templates are Go templates of the repository's files; chart is copied
// as it is (its {{ }} are Helm's).
var (
	//go:embed tmpl
	templates embed.FS
	//go:embed chart
	chart embed.FS
)

// InputError lists everything wrong with Options, one problem a line.
type InputError struct {
	Problems []string
}

func (e *InputError) Error() string { return strings.Join(e.Problems, "; ") }

// WithDefaults returns o with the defaults filled in.
func (o Options) WithDefaults() Options {
	if o.Registry == "" {
		o.Registry = DefaultRegistry
	}
	if o.SourceGroup == "" {
		if _, p, ok := strings.Cut(o.Registry, "/"); ok {
			o.SourceGroup = p
		}
	}
	if o.GitOpsProject == "" {
		o.GitOpsProject = DefaultGitOpsProject
	}
	if o.RepoURL == "" {
		o.RepoURL = defaultGitLabURL + "/" + o.GitOpsProject + ".git"
	}
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	if o.LotsedURL == "" {
		o.LotsedURL = DefaultLotsedURL
	}
	o.LotsedURL = strings.TrimRight(o.LotsedURL, "/")
	return o
}

// Validate checks o (with defaults filled in) and returns an *InputError
// listing every problem, or nil.
func (o Options) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if len(o.Apps) == 0 {
		add("want at least one --app")
	}
	names(o.Apps, "app", add)
	if len(o.Stages) < 2 {
		add("want at least two stages in --stages (a promotion path), got %d", len(o.Stages))
	}
	names(o.Stages, "stage", add)
	prefixOK := o.NamespacePrefix == "" || prefixRE.MatchString(o.NamespacePrefix)
	if !prefixOK {
		add("bad --namespace-prefix %q: want lowercase letters, digits and -, starting with a letter or digit", o.NamespacePrefix)
	}
	for _, a := range o.Apps {
		if !prefixOK {
			break
		}
		for _, s := range o.Stages {
			if !dnsLabelRE.MatchString(a) || !dnsLabelRE.MatchString(s) {
				continue
			}
			if ns := o.Namespace(a, s); !dnsLabelRE.MatchString(ns) {
				add("namespace %q of app %q in stage %q is not a DNS label of at most 63 characters", ns, a, s)
			}
		}
	}
	for _, a := range o.Apps {
		if !dnsLabelRE.MatchString(a) {
			continue
		}
		if _, err := gitops.ParseImageRef(o.Registry + "/" + a + "@sha256:" + strings.Repeat("0", 64)); err != nil {
			add("bad --registry %q: %v", o.Registry, err)
			break
		}
	}
	switch {
	case o.SourceGroup == "":
		add("--source-group is needed when --registry %q has no path", o.Registry)
	case !groupPathRE.MatchString(o.SourceGroup):
		add("bad --source-group %q: want a GitLab group path like team or org/team", o.SourceGroup)
	}
	if !projectPathRE.MatchString(o.GitOpsProject) {
		add("bad --gitops-project %q: want a GitLab project path like platform/gitops", o.GitOpsProject)
	}
	if !gitURL(o.RepoURL) {
		add("bad --repo-url %q: want https://host/path.git, ssh://host/path.git or git@host:path.git", o.RepoURL)
	}
	if u, err := url.Parse(o.Cluster); err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(o.Cluster, " \t\n\"'") {
		add("bad --cluster %q: want the API server's https:// URL", o.Cluster)
	}
	if u, err := url.Parse(o.LotsedURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(o.LotsedURL, " \t\n\"'{}") {
		add("bad --lotsed-url %q: want http:// or https:// and a host", o.LotsedURL)
	}
	if len(o.PublicKey) > 0 && !bytes.Contains(o.PublicKey, []byte("-----BEGIN PUBLIC KEY-----")) {
		add("the public key is not a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	if len(problems) > 0 {
		return &InputError{Problems: problems}
	}
	return nil
}

// names checks a list of app or stage names: DNS labels, each once.
func names(list []string, kind string, add func(string, ...any)) {
	seen := map[string]bool{}
	for _, n := range list {
		switch {
		case !dnsLabelRE.MatchString(n):
			add("bad %s name %q: want a DNS label (lowercase letters, digits and -, at most 63)", kind, n)
		case seen[n]:
			add("%s %q is given twice", kind, n)
		}
		seen[n] = true
	}
}

func gitURL(s string) bool {
	if strings.ContainsAny(s, " \t\n\"'{}") {
		return false
	}
	if scpURLRE.MatchString(s) {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "ssh" || u.Scheme == "http") && u.Host != "" && len(u.Path) > 1
}

// Namespace is the Kubernetes namespace of app in stage.
func (o Options) Namespace(app, stage string) string {
	return o.NamespacePrefix + app + "-" + stage
}

// ValuesPath is the values file of app in stage, relative to the repository.
func ValuesPath(app, stage string) string {
	return path.Join("apps", app, "envs", stage, "values.yaml")
}

// Generate validates o (after WithDefaults) and returns the files of the
// GitOps repository by slash-separated path. The lotse.yaml it writes passes
// gitops.ParseConfig.
func Generate(o Options) (map[string][]byte, error) {
	o = o.WithDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"q":         quote,
		"namespace": o.Namespace,
		"last":      func(i int) bool { return i == len(o.Stages)-1 },
		"list":      func(v ...string) []string { return v },
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}).ParseFS(templates, "tmpl/*")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	d := data{Options: o, PreProd: o.Stages[:len(o.Stages)-1], Prod: o.Stages[len(o.Stages)-1],
		HasKey: len(o.PublicKey) > 0, ChartPath: ChartPath, Project: ProjectName, ArgoNamespace: ArgoNamespace,
		LabelApp: LabelApp, LabelStage: LabelStage}
	for _, a := range o.Apps {
		for _, s := range o.Stages {
			d.Namespaces = append(d.Namespaces, o.Namespace(a, s))
		}
	}
	sort.Strings(d.Namespaces)

	files := map[string][]byte{}
	render := func(path, name string, v any) error {
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, v); err != nil {
			return fmt.Errorf("render %s: %w", path, err)
		}
		files[path] = b.Bytes()
		return nil
	}
	static := map[string]string{
		ConfigFile:               "lotse.yaml",
		".gitlab-ci.yml":         "gitlab-ci.yml",
		"README.md":              "README.md",
		"argocd/appproject.yaml": "appproject.yaml",
		"argocd/applicationset-preproduction.yaml": "applicationset-preproduction.yaml",
		"argocd/applicationset-production.yaml":    "applicationset-production.yaml",
		"argocd/notifications-cm.yaml":             "notifications-cm.yaml",
	}
	for _, p := range slices.Sorted(maps.Keys(static)) {
		if err := render(p, static[p], d); err != nil {
			return nil, err
		}
	}
	err = fs.WalkDir(chart, "chart", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := chart.ReadFile(p)
		files[ChartPath+strings.TrimPrefix(p, "chart")] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	for _, a := range o.Apps {
		for _, s := range o.Stages {
			v := valuesData{App: a, Stage: s, Repository: o.Registry + "/" + a, Namespace: o.Namespace(a, s)}
			if err := render(ValuesPath(a, s), "values.yaml", v); err != nil {
				return nil, err
			}
		}
	}
	files[SchemaFile] = gitops.Schema
	if d.HasKey {
		files[publicKeyPath] = bytes.TrimSpace(o.PublicKey)
		files[publicKeyPath] = append(files[publicKeyPath], '\n')
	} else if err := render("keys/README.md", "keys-README.md", d); err != nil {
		return nil, err
	}
	// The one check that matters most: lotse itself must accept lotse.yaml.
	if _, err := gitops.ParseConfig(files[ConfigFile], ConfigFile); err != nil {
		return nil, fmt.Errorf("generated lotse.yaml is invalid (a bug in lotse init): %w", err)
	}
	return files, nil
}

// data is what the repository-wide templates see.
type data struct {
	Options
	PreProd       []string // every stage but the last: automated sync
	Prod          string   // the last stage: manual sync
	Namespaces    []string // every <prefix><app>-<stage>, sorted
	HasKey        bool
	ChartPath     string
	Project       string
	ArgoNamespace string
	LabelApp      string
	LabelStage    string
}

// valuesData is what a values file template sees.
type valuesData struct {
	App, Stage, Repository, Namespace string
}

// quote returns s as a YAML double-quoted scalar (JSON string syntax, which
// YAML accepts for printable text).
func quote(s string) string { return strconv.Quote(s) }
