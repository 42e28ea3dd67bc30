// Package deploy holds lotsed's Helm chart, dashboard and alert rules; its
// tests render the chart with Helm's engine and check the output with
// lotse's own guardrails.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"

	"github.com/lotse/lotse/internal/guardrails"
)

// render renders the chart with vals as helm template does and returns
// the manifests, one YAML stream.
func render(t *testing.T, vals map[string]any) ([]byte, error) {
	t.Helper()
	ch, err := loader.Load("chart")
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "lotsed", Namespace: "lotse", IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out bytes.Buffer
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") || strings.TrimSpace(files[n]) == "" {
			continue
		}
		out.WriteString("---\n# Source: " + n + "\n" + files[n] + "\n")
	}
	return out.Bytes(), nil
}

// objects decodes the manifests by "Kind/name".
func objects(t *testing.T, manifests []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("rendered manifests are not YAML: %v\n%s", err, manifests)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = o
	}
}

// get walks a decoded object along keys (ints index lists).
func get(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

// guard checks manifests with lotse's guardrails at every rule's default
// severity and images only from the chart's registry: nothing may be found.
func guard(t *testing.T, manifests []byte) {
	t.Helper()
	c, err := guardrails.NewChecker(guardrails.Policy{AllowedRegistries: []string{"registry.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Check("lotsed.yaml", manifests)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Workloads == 0 {
		t.Fatal("guardrails saw no workload")
	}
	if len(rep.Findings) > 0 {
		t.Fatalf("guardrails:\n%s", rep.Text(guardrails.SeverityInfo))
	}
}

func env(dep map[string]any) map[string]string {
	out := map[string]string{}
	for _, e := range get(dep, "spec", "template", "spec", "containers", 0, "env").([]any) {
		m := e.(map[string]any)
		v, _ := m["value"].(string)
		out[m["name"].(string)] = v
	}
	return out
}

func TestChartSQLite(t *testing.T) {
	out, err := render(t, map[string]any{"secrets": map[string]any{"existingSecret": "lotsed"}, "replicas": 5})
	if err != nil {
		t.Fatal(err)
	}
	guard(t, out)
	objs := objects(t, out)
	dep := objs["Deployment/lotsed"]
	if dep == nil {
		t.Fatalf("no Deployment in %v", keys(objs))
	}
	if r := get(dep, "spec", "replicas"); r != 1 {
		t.Errorf("sqlite replicas = %v, want 1 whatever replicas says", r)
	}
	if s := get(dep, "spec", "strategy", "type"); s != "Recreate" {
		t.Errorf("strategy %v, want Recreate", s)
	}
	if objs["PersistentVolumeClaim/lotsed-data"] == nil || objs["PodDisruptionBudget/lotsed"] != nil {
		t.Errorf("sqlite wants a PVC and no PDB: %v", keys(objs))
	}
	e := env(dep)
	if e["LOTSE_DATABASE_URL"] != "/var/lib/lotsed/lotsed.db" {
		t.Errorf("env %v", e)
	}
	for _, v := range []string{"LOTSE_GITLAB_TOKEN_FILE", "LOTSE_WEBHOOK_SECRET_FILE", "LOTSE_API_READ_TOKEN_FILE", "LOTSE_API_ADMIN_TOKEN_FILE"} {
		if !strings.HasPrefix(e[v], "/run/secrets/lotsed/") {
			t.Errorf("%s = %q", v, e[v])
		}
	}
	if _, ok := e["LOTSE_DATABASE_URL_FILE"]; ok {
		t.Error("sqlite mode reads a database URL from the Secret")
	}
	for _, p := range []string{"livenessProbe", "readinessProbe"} {
		path := get(dep, "spec", "template", "spec", "containers", 0, p, "httpGet", "path")
		if want := map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"}[p]; path != want {
			t.Errorf("%s on %v, want %s", p, path, want)
		}
	}
	sc := get(dep, "spec", "template", "spec", "containers", 0, "securityContext")
	if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false || get(sc, "runAsNonRoot") != true ||
		get(sc, "capabilities", "drop", 0) != "ALL" || get(sc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("container securityContext %v", sc)
	}
	if get(dep, "spec", "template", "spec", "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Error("pod seccomp profile")
	}
	for k := range objs {
		if strings.HasPrefix(k, "Secret/") || strings.HasPrefix(k, "ServiceMonitor/") || strings.HasPrefix(k, "Ingress/") {
			t.Errorf("%s rendered by default", k)
		}
	}
}

func TestChartPostgres(t *testing.T) {
	out, err := render(t, map[string]any{
		"database":       map[string]any{"mode": "postgres"},
		"replicas":       3,
		"secrets":        map[string]any{"existingSecret": "lotsed", "keys": map[string]any{"databaseUrl": "database-url", "argocdToken": "argocd-token"}},
		"ingress":        map[string]any{"enabled": true, "host": "lotsed.example.org", "tls": map[string]any{"secretName": "tls"}},
		"serviceMonitor": map[string]any{"enabled": true},
		"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	guard(t, out)
	objs := objects(t, out)
	dep := objs["Deployment/lotsed"]
	if r := get(dep, "spec", "replicas"); r != 3 {
		t.Errorf("replicas = %v, want 3", r)
	}
	if s := get(dep, "spec", "strategy", "type"); s != "RollingUpdate" {
		t.Errorf("strategy %v", s)
	}
	if objs["PodDisruptionBudget/lotsed"] == nil || objs["PersistentVolumeClaim/lotsed-data"] != nil {
		t.Errorf("postgres wants a PDB and no PVC: %v", keys(objs))
	}
	e := env(dep)
	if e["LOTSE_DATABASE_URL_FILE"] != "/run/secrets/lotsed/database-url" || e["LOTSE_ARGOCD_TOKEN_FILE"] != "/run/secrets/lotsed/argocd-token" {
		t.Errorf("env %v", e)
	}
	if _, ok := e["LOTSE_DATABASE_URL"]; ok {
		t.Error("postgres mode sets the SQLite path")
	}
	// One replica: no PDB, which would block every node drain.
	one, err := render(t, map[string]any{"database": map[string]any{"mode": "postgres"}, "replicas": 1,
		"secrets": map[string]any{"existingSecret": "lotsed", "keys": map[string]any{"databaseUrl": "database-url"}}})
	if err != nil {
		t.Fatal(err)
	}
	if objs := objects(t, one); objs["PodDisruptionBudget/lotsed"] != nil || get(objs["Deployment/lotsed"], "spec", "replicas") != 1 {
		t.Errorf("postgres with one replica: %v", keys(objs))
	}
	sm := objs["ServiceMonitor/lotsed"]
	if get(sm, "spec", "endpoints", 0, "authorization", "credentials", "key") != "api-read-token" || get(sm, "spec", "endpoints", 0, "path") != "/metrics" {
		t.Errorf("ServiceMonitor %v", sm)
	}
	if get(objs["Ingress/lotsed"], "spec", "rules", 0, "host") != "lotsed.example.org" {
		t.Errorf("Ingress %v", objs["Ingress/lotsed"])
	}
	// The PrometheusRule holds the rule file's groups unchanged, alert
	// templates ({{ $value }}) included.
	pr := objs["PrometheusRule/lotsed"]
	if get(pr, "metadata", "labels", "release") != "prometheus" {
		t.Errorf("PrometheusRule labels %v", get(pr, "metadata", "labels"))
	}
	raw, err := os.ReadFile("chart/files/lotsed-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if got, want := get(pr, "spec", "groups"), file["groups"]; !reflect.DeepEqual(got, want) || want == nil {
		t.Errorf("PrometheusRule groups differ from files/lotsed-rules.yaml:\n got %v\nwant %v", got, want)
	}
	if objects(t, one)["PrometheusRule/lotsed"] != nil {
		t.Error("a PrometheusRule was rendered without prometheusRule.enabled")
	}
}

// Values that would run lotsed unsafely or not at all are refused at
// render time, not found out in the cluster.
func TestChartRefuses(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"secrets": map[string]any{"existingSecret": "lotsed"}}
	}
	for name, mod := range map[string]func(map[string]any){
		"no Secret":                 func(v map[string]any) { v["secrets"] = map[string]any{"existingSecret": ""} },
		"postgres without its URL":  func(v map[string]any) { v["database"] = map[string]any{"mode": "postgres"} },
		"unknown database":          func(v map[string]any) { v["database"] = map[string]any{"mode": "mysql"} },
		"no digest":                 func(v map[string]any) { v["image"] = map[string]any{"digest": ""} },
		"a tag instead of a digest": func(v map[string]any) { v["image"] = map[string]any{"digest": "latest"} },
		"a digest that is not one":  func(v map[string]any) { v["image"] = map[string]any{"digest": "sha256:latest"} },
		"a tag in the repository": func(v map[string]any) {
			v["image"] = map[string]any{"repository": "registry.example.com/lotse/lotsed:latest"}
		},
		"replicas as text": func(v map[string]any) { v["replicas"] = "three" },
		"no replicas":      func(v map[string]any) { v["replicas"] = 0 },
		"a misspelt Secret key": func(v map[string]any) {
			v["secrets"] = map[string]any{"existingSecret": "lotsed", "keys": map[string]any{"gitlabTokn": "x"}}
		},
		"no resources": func(v map[string]any) { v["resources"] = map[string]any{"limits": map[string]any{"memory": nil}} },
		"metrics without the token": func(v map[string]any) {
			v["serviceMonitor"] = map[string]any{"enabled": true}
			v["secrets"] = map[string]any{"existingSecret": "lotsed", "keys": map[string]any{"apiReadToken": ""}}
		},
	} {
		v := base()
		mod(v)
		out, err := render(t, v)
		if err == nil {
			t.Errorf("%s: rendered\n%s", name, out)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

// What guard checks is what the cluster would run: a manifest with a tag
// instead of a digest, or without the security context, fails it.
func TestGuardrailsCatchTheChartsMistakes(t *testing.T) {
	out, err := render(t, map[string]any{"secrets": map[string]any{"existingSecret": "lotsed"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := guardrails.NewChecker(guardrails.Policy{AllowedRegistries: []string{"registry.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"tag":            bytes.Replace(out, []byte("@sha256:0000000000000000000000000000000000000000000000000000000000000000"), []byte(":latest"), 1),
		"writable root":  bytes.Replace(out, []byte("readOnlyRootFilesystem: true"), []byte("readOnlyRootFilesystem: false"), 1),
		"root allowed":   bytes.ReplaceAll(out, []byte("runAsNonRoot: true"), []byte("runAsNonRoot: false")),
		"other registry": bytes.Replace(out, []byte("registry.example.com/"), []byte("evil.example.net/"), 1),
	} {
		if bytes.Equal(bad, out) {
			t.Fatalf("%s: nothing replaced", name)
		}
		rep, err := c.Check("bad.yaml", bad)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.AtOrAbove(guardrails.SeverityMajor)) == 0 {
			t.Errorf("%s: guardrails found nothing", name)
		}
	}
}

// The ArgoCD Application installs this chart from this repository, and
// what it renders passes the guardrails.
func TestArgoCDApplication(t *testing.T) {
	data, err := os.ReadFile("argocd/lotsed-application.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var app map[string]any
	if err := yaml.Unmarshal(data, &app); err != nil {
		t.Fatal(err)
	}
	if app["apiVersion"] != "argoproj.io/v1alpha1" || app["kind"] != "Application" {
		t.Fatalf("not an ArgoCD Application: %v %v", app["apiVersion"], app["kind"])
	}
	path, _ := get(app, "spec", "source", "path").(string)
	if path != "webhook/deploy/chart" {
		t.Fatalf("source path %q", path)
	}
	if _, err := os.Stat(filepath.Join("..", "..", path, "Chart.yaml")); err != nil {
		t.Fatalf("the Application's path is not the chart: %v", err)
	}
	if get(app, "spec", "destination", "namespace") == nil || get(app, "spec", "syncPolicy", "automated") == nil {
		t.Error("destination namespace and automated sync wanted")
	}
	vals, _ := get(app, "spec", "source", "helm", "valuesObject").(map[string]any)
	if vals == nil {
		t.Fatal("no helm.valuesObject")
	}
	out, err := render(t, vals)
	if err != nil {
		t.Fatal(err)
	}
	guard(t, out)
	objs := objects(t, out)
	for _, want := range []string{"Deployment/lotsed", "Service/lotsed", "Ingress/lotsed", "ServiceMonitor/lotsed", "PersistentVolumeClaim/lotsed-data"} {
		if objs[want] == nil {
			t.Errorf("no %s in %v", want, keys(objs))
		}
	}
}

func keys(m map[string]map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
