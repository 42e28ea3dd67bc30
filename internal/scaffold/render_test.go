package scaffold

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v3"
)

// TestNotifications renders the lotsed notification the way ArgoCD's
// notifications engine does (Go templates with sprig) over Applications as
// the controller holds them (unstructured maps), and checks that the body is
// exactly lotsed's ArgoCDNotification.
func TestNotifications(t *testing.T) {
	o := cases[1].opts.WithDefaults()
	files := generate(t, cases[1].opts)
	cm := decodeStrict[configMap](t, "notifications-cm", files["argocd/notifications-cm.yaml"])
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-notifications-cm" || cm.Metadata.Namespace != ArgoNamespace {
		t.Fatalf("ConfigMap %+v", cm.Metadata)
	}
	if keys := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(keys, []string{"service.webhook.lotsed", "template.lotse-health", "trigger.on-lotse-health"}) {
		t.Fatalf("data keys %v", keys)
	}
	svc := decodeStrict[notificationWebhookService](t, "service", []byte(cm.Data["service.webhook.lotsed"]))
	tpl := decodeStrict[notificationTemplate](t, "template", []byte(cm.Data["template.lotse-health"]))
	triggers := decodeStrict[[]notificationTrigger](t, "trigger", []byte(cm.Data["trigger.on-lotse-health"]))
	hook, ok := tpl.Webhook["lotsed"]
	if !ok || hook.Method != "POST" || svc.URL+hook.Path != strings.TrimRight(o.LotsedURL, "/")+"/webhooks/argocd" {
		t.Fatalf("posts %s %s%s, want POST %s/webhooks/argocd", hook.Method, svc.URL, hook.Path, o.LotsedURL)
	}
	headers := map[string]string{}
	for _, h := range svc.Headers {
		headers[h.Name] = h.Value
	}
	if headers["Authorization"] != "Bearer $lotsed-token" || headers["Content-Type"] != "application/json" {
		t.Errorf("headers %v", headers)
	}
	for _, tr := range triggers {
		if !slices.Equal(tr.Send, []string{"lotse-health"}) || tr.When == "" || tr.OncePer == "" {
			t.Errorf("trigger %+v", tr)
		}
	}

	full := map[string]any{
		"metadata": map[string]any{"name": "api-staging", "namespace": "argocd",
			"labels": map[string]any{LabelApp: "api", LabelStage: "staging"}},
		"status": map[string]any{
			"health":         map[string]any{"status": "Degraded", "message": `Back-off pulling image "x"`},
			"sync":           map[string]any{"status": "Synced", "revision": "0123abcd"},
			"summary":        map[string]any{"images": []any{"registry.example.com:5000/acme/web/api@sha256:" + strings.Repeat("1", 64)}},
			"operationState": map[string]any{"phase": "Succeeded", "message": "successfully synced"},
		},
	}
	bare := map[string]any{"metadata": map[string]any{"name": "api-dev", "labels": map[string]any{LabelApp: "api", LabelStage: "dev"}}}
	for _, c := range []struct {
		name string
		app  map[string]any
		want argoCDNotification
	}{
		{"full", full, argoCDNotification{App: "api", Stage: "staging", Application: "api-staging", Health: "Degraded", Sync: "Synced",
			Revision: "0123abcd", Images: []string{"registry.example.com:5000/acme/web/api@sha256:" + strings.Repeat("1", 64)},
			Message: `Back-off pulling image "x"`}},
		{"no status yet", bare, argoCDNotification{App: "api", Stage: "dev", Application: "api-dev", Images: []string{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := render(t, hook.Body, map[string]any{"app": c.app, "context": map[string]any{}})
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			var got argoCDNotification
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("body is not an ArgoCDNotification: %v\n%s", err, body)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw) != 8 {
				t.Errorf("body has %d fields, want the 8 of ArgoCDNotification: %v", len(raw), err)
			}
		})
	}
}

// TestChart renders the shared chart the way Helm does (Go templates, sprig,
// toYaml, chart values under the stage's values) and checks the workload:
// nothing before the first bump, then the promoted digest with the security
// settings lotse guardrails checks.
func TestChart(t *testing.T) {
	files := generate(t, cases[0].opts)
	var defaults map[string]any
	if err := yaml.Unmarshal(files[ChartPath+"/values.yaml"], &defaults); err != nil {
		t.Fatal(err)
	}
	var templates []string
	for p := range files {
		if strings.HasPrefix(p, ChartPath+"/templates/") {
			templates = append(templates, p)
		}
	}
	slices.Sort(templates)
	if len(templates) != 2 {
		t.Fatalf("chart templates %v", templates)
	}
	renderChart := func(values []byte) map[string][]byte {
		var stage map[string]any
		if err := yaml.Unmarshal(values, &stage); err != nil {
			t.Fatal(err)
		}
		vals := merge(deepCopy(defaults), stage)
		out := map[string][]byte{}
		for _, p := range templates {
			funcs := sprig.TxtFuncMap()
			funcs["toYaml"] = func(v any) string {
				b, err := yaml.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSuffix(string(b), "\n")
			}
			tpl, err := template.New(path.Base(p)).Funcs(funcs).Parse(string(files[p]))
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			var b bytes.Buffer
			if err := tpl.Execute(&b, map[string]any{"Values": vals, "Release": map[string]any{"Name": "shop", "Service": "Helm", "Namespace": "shop-dev"}}); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[path.Base(p)] = b.Bytes()
		}
		return out
	}

	values := files[ValuesPath("shop", "dev")]
	for name, b := range renderChart(values) {
		if len(bytes.TrimSpace(b)) != 0 {
			t.Errorf("%s renders before the first bump:\n%s", name, b)
		}
	}

	digest := "sha256:" + strings.Repeat("c", 64)
	bumped := bytes.Replace(values, []byte(`digest: ""`), []byte(`digest: "`+digest+`"`), 1)
	out := renderChart(bumped)
	d := decodeStrict[deployment](t, "deployment.yaml", out["deployment.yaml"])
	svc := decodeStrict[service](t, "service.yaml", out["service.yaml"])
	if d.Kind != "Deployment" || d.APIVersion != "apps/v1" || d.Metadata.Name != "shop" || svc.Kind != "Service" {
		t.Fatalf("rendered %s/%s %s and %s", d.APIVersion, d.Kind, d.Metadata.Name, svc.Kind)
	}
	if !reflect.DeepEqual(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) || !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Template.Metadata.Labels) {
		t.Errorf("selectors %v / %v do not match the pod labels %v", d.Spec.Selector.MatchLabels, svc.Spec.Selector, d.Spec.Template.Metadata.Labels)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers %+v", pod.Containers)
	}
	c := pod.Containers[0]
	if c.Image != "harbor.example.com/team/shop@"+digest {
		t.Errorf("image %s, want the promoted digest", c.Image)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			t.Errorf("resources %+v lack %s", c.Resources, r)
		}
	}
	sc := c.SecurityContext
	if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe.HTTPGet.Port != "http" ||
		!isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || !isTrue(pod.SecurityContext.RunAsNonRoot) {
		t.Errorf("container is not locked down: %+v", c)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != "http" || len(c.Ports) != 1 || c.Ports[0].Name != "http" {
		t.Errorf("service ports %+v, container ports %+v", svc.Spec.Ports, c.Ports)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// merge puts src over dst the way Helm coalesces values files.
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sm, ok := v.(map[string]any); ok {
			v = deepCopy(sm)
		}
		out[k] = v
	}
	return out
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		want []string // every problem, in order
	}{
		{"no apps", Options{Stages: []string{"dev", "prod"}}, []string{"want at least one --app"}},
		{"bad and duplicate names", Options{Apps: []string{"Shop", "cart", "cart", "a_b"}, Stages: []string{"dev", "dev"}}, []string{
			`bad app name "Shop"`, `app "cart" is given twice`, `bad app name "a_b"`, `stage "dev" is given twice`}},
		{"one stage", Options{Apps: []string{"shop"}, Stages: []string{"dev"}}, []string{"want at least two stages"}},
		{"long namespace", Options{Apps: []string{strings.Repeat("a", 40)}, Stages: []string{strings.Repeat("b", 30), "prod"}},
			[]string{"is not a DNS label of at most 63 characters"}},
		{"bad prefix", Options{Apps: []string{"shop"}, Stages: []string{"dev", "prod"}, NamespacePrefix: "-x"}, []string{"bad --namespace-prefix"}},
		{"registry with tag", Options{Apps: []string{"shop"}, Stages: []string{"dev", "prod"}, Registry: "harbor.example.com/Team"}, []string{"bad --registry"}},
		{"registry without path", Options{Apps: []string{"shop"}, Stages: []string{"dev", "prod"}, Registry: "harbor.example.com:5000"}, []string{"--source-group is needed"}},
		{"bad urls", Options{Apps: []string{"shop"}, Stages: []string{"dev", "prod"}, GitOpsProject: "gitops", RepoURL: "file:///tmp/x",
			Cluster: "http://k8s", LotsedURL: "lotsed"}, []string{"bad --gitops-project", "bad --repo-url", "bad --cluster", "bad --lotsed-url"}},
		{"bad key", Options{Apps: []string{"shop"}, Stages: []string{"dev", "prod"}, PublicKey: []byte("ssh-ed25519 AAAA")}, []string{"not a PEM public key"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			files, err := Generate(c.opts)
			var ie *InputError
			if !errors.As(err, &ie) || files != nil {
				t.Fatalf("Generate = %d files, %v; want an InputError and no files", len(files), err)
			}
			if len(ie.Problems) != len(c.want) {
				t.Fatalf("problems %q, want %d", ie.Problems, len(c.want))
			}
			for i, w := range c.want {
				if !strings.Contains(ie.Problems[i], w) {
					t.Errorf("problem %d = %q, want %q", i, ie.Problems[i], w)
				}
			}
		})
	}
}
