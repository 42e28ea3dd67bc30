package guardrails

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const digest = "sha256:4f1c2a9b03de5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"

// baseDeployment follows every rule; the table cases change one line of it.
const baseDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: prod
spec:
  template:
    metadata:
      annotations: {}
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: app
          image: harbor.example.com/team/shop@` + digest + `
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: 500m, memory: 256Mi}
          livenessProbe: {httpGet: {path: /, port: 80}}
          readinessProbe: {httpGet: {path: /, port: 80}}
          securityContext:
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
      volumes: []
`

// short renders findings as "line rule container" for comparison.
func short(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = fmt.Sprintf("%d %s %s", f.Line, f.Rule, f.Container)
		if f.Exemption != "" {
			out[i] += " exempt"
		}
	}
	return out
}

func TestRules(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // replaced in baseDeployment
		policy   Policy
		want     []string
	}{
		{name: "compliant"},
		{name: "privileged", old: "allowPrivilegeEscalation: false\n", new: "allowPrivilegeEscalation: false\n            privileged: true\n",
			want: []string{"24 privileged app"}},
		{name: "privileged false is fine", old: "allowPrivilegeEscalation: false\n", new: "allowPrivilegeEscalation: false\n            privileged: false\n"},
		{name: "duplicate keys: the last wins, as in Kubernetes", old: "allowPrivilegeEscalation: false\n", new: "allowPrivilegeEscalation: false\n            privileged: false\n            privileged: true\n",
			want: []string{"25 privileged app"}},
		{name: "YAML 1.1 booleans", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: on"},
		{name: "quoted boolean is a string", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: 'true'",
			want: []string{"22 read-only-root-filesystem app"}},
		{name: "tagged boolean is a string", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: !!str true",
			want: []string{"22 read-only-root-filesystem app"}},
		{name: "container runAsNonRoot false overrides the pod", old: "readOnlyRootFilesystem: true\n", new: "readOnlyRootFilesystem: true\n            runAsNonRoot: false\n",
			want: []string{"23 run-as-non-root app"}},
		{name: "container runAsNonRoot true without pod", old: "        runAsNonRoot: true\n", new: "        fsGroup: 1000\n",
			want: []string{"14 run-as-non-root app"}},
		{name: "runAsUser 0 in hex", old: "        runAsNonRoot: true\n", new: "        runAsNonRoot: true\n        runAsUser: 0x0\n",
			want: []string{"13 run-as-non-root app"}},
		{name: "runAsUser 10001", old: "        runAsNonRoot: true\n", new: "        runAsNonRoot: true\n        runAsUser: 10001\n"},
		{name: "cpu request missing", old: "requests: {cpu: 100m, memory: 128Mi}", new: "requests: {memory: 128Mi}",
			want: []string{"17 resources-requests app"}},
		{name: "null limits", old: "limits: {cpu: 500m, memory: 256Mi}", new: "limits: ~",
			want: []string{"18 resources-limits app"}},
		{name: "readiness probe null", old: "readinessProbe: {httpGet: {path: /, port: 80}}", new: "readinessProbe: null",
			want: []string{"14 probes app"}},
		{name: "hostNetwork", old: "      securityContext:\n        runAsNonRoot", new: "      hostNetwork: true\n      securityContext:\n        runAsNonRoot",
			want: []string{"11 host-network "}},
		{name: "hostPID and hostIPC", old: "      securityContext:\n        runAsNonRoot", new: "      hostPID: yes\n      hostIPC: true\n      securityContext:\n        runAsNonRoot",
			want: []string{"11 host-pid ", "12 host-ipc "}},
		{name: "hostNetwork false", old: "      securityContext:\n        runAsNonRoot", new: "      hostNetwork: false\n      securityContext:\n        runAsNonRoot"},
		{name: "hostPath volume", old: "volumes: []", new: "volumes:\n        - name: sock\n          hostPath: {path: /var/run/docker.sock}\n        - name: tmp\n          emptyDir: {}",
			want: []string{"25 host-path "}},
		{name: "tag only", old: "shop@" + digest, new: "shop:1.0",
			want: []string{"15 image-digest app"}},
		{name: "tag and digest", old: "shop@" + digest, new: "shop:1.0@" + digest},
		{name: "short digest", old: digest, new: "sha256:abc",
			want: []string{"15 image-digest app"}},
		{name: "no image", old: "          image: harbor.example.com/team/shop@" + digest + "\n", new: "",
			want: []string{"14 image-digest app"}},
		{name: "registry not allowed", old: "harbor.example.com/team", new: "ghcr.io/team",
			policy: Policy{AllowedRegistries: []string{"harbor.example.com"}},
			want:   []string{"15 image-registry app"}},
		{name: "registry path prefix", old: "harbor.example.com/team", new: "harbor.example.com/other",
			policy: Policy{AllowedRegistries: []string{"harbor.example.com/team"}},
			want:   []string{"15 image-registry app"}},
		{name: "registry path prefix matches whole components", old: "harbor.example.com/team/shop", new: "harbor.example.com/teamx/shop",
			policy: Policy{AllowedRegistries: []string{"harbor.example.com/team"}},
			want:   []string{"15 image-registry app"}},
		{name: "Docker Hub image allowed as docker.io", old: "harbor.example.com/team/shop", new: "nginx",
			policy: Policy{AllowedRegistries: []string{"docker.io/library"}}},
		{name: "no registry list: the rule does nothing", old: "harbor.example.com/team", new: "ghcr.io/team"},
		{name: "disabled rule", old: "shop@" + digest, new: "shop:1.0",
			policy: Policy{Rules: map[string]RulePolicy{RuleImageDigest: {Disabled: true}}}},
		{name: "init container: no probes, but resources", old: "      containers:\n", new: "      initContainers:\n        - name: init\n          image: harbor.example.com/team/init@" + digest + "\n          securityContext: {runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}\n      containers:\n",
			want: []string{"14 resources-limits init", "14 resources-requests init"}},
		{name: "native sidecar takes probes", old: "      containers:\n", new: "      initContainers:\n        - name: side\n          restartPolicy: Always\n          image: harbor.example.com/team/init@" + digest + "\n          resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}\n          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}\n      containers:\n",
			want: []string{"14 probes side"}},
		{name: "merge keys", old: "          livenessProbe: {httpGet: {path: /, port: 80}}\n          readinessProbe: {httpGet: {path: /, port: 80}}\n", new: "          <<: {livenessProbe: {exec: {command: [a]}}, readinessProbe: {exec: {command: [a]}}}\n"},
		{name: "Job: no probes", old: "kind: Deployment", new: "kind: Job\n# no probes for Jobs",
			policy: Policy{}, want: nil},
		{name: "Rollout of another API group is no workload", old: "apiVersion: apps/v1\nkind: Deployment", new: "apiVersion: example.com/v1\nkind: Rollout"},
		{name: "unknown kind", old: "kind: Deployment", new: "kind: Widget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(baseDeployment, tt.old) {
				t.Fatalf("base does not contain %q", tt.old)
			}
			data := strings.Replace(baseDeployment, tt.old, tt.new, 1)
			rep, err := newChecker(t, tt.policy).Check("d.yaml", []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if got := short(rep.Findings); !slices.Equal(got, tt.want) {
				t.Errorf("findings %q, want %q\n%s", got, tt.want, data)
			}
		})
	}
}

func TestJobAndProbes(t *testing.T) {
	// A Job's pod has no probes and needs none; the same pod as a Deployment
	// does.
	data := strings.Replace(baseDeployment, "          livenessProbe: {httpGet: {path: /, port: 80}}\n          readinessProbe: {httpGet: {path: /, port: 80}}\n", "", 1)
	for kind, want := range map[string][]string{"Deployment": {"14 probes app"}, "Job": nil, "StatefulSet": {"14 probes app"}} {
		rep, err := newChecker(t, Policy{}).Check("d.yaml", []byte(strings.Replace(data, "kind: Deployment", "kind: "+kind, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if got := short(rep.Findings); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", kind, got, want)
		}
	}
	pod := "kind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  securityContext: {runAsNonRoot: true}\n  containers:\n  - name: c\n    image: harbor.example.com/a@" + digest +
		"\n    resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}\n    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}\n"
	rep, err := newChecker(t, Policy{}).Check("p.yaml", []byte(pod))
	if err != nil || len(rep.Findings) != 0 || rep.Workloads != 1 {
		t.Errorf("Pod with restartPolicy Never: %v %+v", err, rep)
	}
	rep, _ = newChecker(t, Policy{}).Check("p.yaml", []byte(strings.Replace(pod, "Never", "Always", 1)))
	if got := short(rep.Findings); !slices.Equal(got, []string{"7 probes c"}) {
		t.Errorf("Pod with restartPolicy Always: %q", got)
	}
}

func TestPolicySeverity(t *testing.T) {
	data := strings.Replace(baseDeployment, "shop@"+digest, "shop:1.0", 1)
	c := newChecker(t, Policy{Rules: map[string]RulePolicy{RuleImageDigest: {Severity: SeverityMinor}}})
	rep, err := c.Check("d.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Severity != SeverityMinor {
		t.Fatalf("findings %+v", rep.Findings)
	}
	if len(rep.AtOrAbove(SeverityMajor)) != 0 || len(rep.AtOrAbove(SeverityMinor)) != 1 || rep.AtOrAbove(SeverityNone) != nil {
		t.Errorf("AtOrAbove does not follow the severity")
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, p := range []Policy{
		{Rules: map[string]RulePolicy{"probe": {}}},
		{Rules: map[string]RulePolicy{RuleProbes: {Severity: 9}}},
		{AllowedRegistries: []string{"https://harbor.example.com"}},
		{AllowedRegistries: []string{""}},
		{AllowedRegistries: []string{"harbor.example.com/team:1.0"}},
		{AllowedRegistries: []string{"harbor.example.com/*"}},
	} {
		if _, err := NewChecker(p); err == nil {
			t.Errorf("NewChecker(%+v) accepted it", p)
		}
	}
}

func TestExemptions(t *testing.T) {
	cron := `apiVersion: batch/v1
kind: CronJob
metadata:
  name: c
  annotations:
    lotse.dev/exempt-host-pid: "   "
spec:
  jobTemplate:
    metadata:
      annotations:
        lotse.dev/exempt-host-pid: "profiles every process on the node"
    spec:
      template:
        metadata:
          annotations:
            lotse.dev/exempt-exemption: "cannot"
        spec:
          hostPID: true
          securityContext: {runAsNonRoot: true}
          containers:
          - name: c
            image: harbor.example.com/a@` + digest + `
            resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
            securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
`
	rep, err := newChecker(t, Policy{}).Check("c.yaml", []byte(cron))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"6 exemption ", "16 exemption ", "18 host-pid  exempt"}
	if got := short(rep.Findings); !slices.Equal(got, want) {
		t.Fatalf("findings %q, want %q", got, want)
	}
	if rep.Findings[2].Exemption != "profiles every process on the node" {
		t.Errorf("exemption reason %q", rep.Findings[2].Exemption)
	}
	if len(rep.AtOrAbove(SeverityInfo)) != 2 {
		t.Errorf("exempted findings count for the gate")
	}
	cq, err := rep.CodeQuality()
	if err != nil {
		t.Fatal(err)
	}
	var issues []map[string]any
	if err := json.Unmarshal(cq, &issues); err != nil || len(issues) != 2 {
		t.Errorf("code quality report keeps exempted findings: %s", cq)
	}
}

func TestLists(t *testing.T) {
	list := "kind: List\nitems:\n- kind: DeploymentList\n  items:\n  - " + strings.ReplaceAll(strings.Replace(baseDeployment, "shop@"+digest, "shop:1", 1), "\n", "\n    ") + "\n- kind: ConfigMap\n  data: {a: b}\n"
	rep, err := newChecker(t, Policy{}).Check("l.yaml", []byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Workloads != 1 || len(rep.Findings) != 1 || rep.Findings[0].Rule != RuleImageDigest || rep.Findings[0].Line != 19 {
		t.Errorf("nested lists: %+v", rep)
	}
}

func TestDecodeError(t *testing.T) {
	_, err := newChecker(t, Policy{}).Check("x.yaml", []byte("kind: Pod\n---\nspec: [\n  a: b\n"))
	var de *DecodeError
	if !errors.As(err, &de) || de.File != "x.yaml" || de.Line == 0 || !strings.HasPrefix(err.Error(), fmt.Sprintf("x.yaml:%d: not valid YAML: ", de.Line)) {
		t.Fatalf("err = %v", err)
	}
	for _, in := range []string{"", "\n", "---\n---\n", "# only a comment\n", "- a\n- b\n", "just a string\n", "kind: Deployment\nspec: 3\n"} {
		rep, err := newChecker(t, Policy{}).Check("x.yaml", []byte(in))
		if err != nil || rep.Workloads != 0 || len(rep.Findings) != 0 {
			t.Errorf("%q: %+v, %v", in, rep, err)
		}
	}
}

func TestSelfReferentialAliases(t *testing.T) {
	for _, in := range []string{
		"a: &a [*a]\n",
		"&x {kind: List, items: [*x]}\n",
		"&x {kind: Deployment, spec: {template: {spec: {<<: *x, containers: [*x]}}}}\n",
		"kind: Pod\nspec: &s {containers: &c [*c, {<<: *s}]}\n",
	} {
		if _, err := newChecker(t, Policy{}).Check("x.yaml", []byte(in)); err != nil {
			t.Logf("%q: %v", in, err)
		}
	}
}

// TestFingerprintsIgnoreLines checks that moving a manifest down keeps its
// fingerprints, and that the same object twice still gets distinct ones.
func TestFingerprintsIgnoreLines(t *testing.T) {
	data := strings.Replace(baseDeployment, "shop@"+digest, "shop:1", 1)
	c := newChecker(t, Policy{})
	a, _ := c.Check("d.yaml", []byte(data))
	b, _ := c.Check("d.yaml", []byte("# moved\n# down\n"+data))
	if a.Findings[0].Line == b.Findings[0].Line || a.Findings[0].Fingerprint() != b.Findings[0].Fingerprint() {
		t.Errorf("fingerprint depends on the line: %+v %+v", a.Findings[0], b.Findings[0])
	}
	twice, _ := c.Check("d.yaml", []byte(data+"---\n"+data))
	cq, err := twice.CodeQuality()
	if err != nil {
		t.Fatal(err)
	}
	var issues []struct{ Fingerprint string }
	if err := json.Unmarshal(cq, &issues); err != nil || len(issues) != 2 || issues[0].Fingerprint == issues[1].Fingerprint {
		t.Errorf("fingerprints not unique: %s", cq)
	}
}

func TestEmptyReports(t *testing.T) {
	var r Report
	cq, err := r.CodeQuality()
	if err != nil || string(cq) != "[]\n" {
		t.Errorf("empty code quality report %q, %v", cq, err)
	}
	js, err := r.JSON()
	if err != nil || !strings.Contains(string(js), `"findings": []`) {
		t.Errorf("empty JSON report %s, %v", js, err)
	}
	if got := r.Summary(SeverityMajor); got != "0 workload(s) in 0 file(s): no findings; 0 at or above major" {
		t.Errorf("summary %q", got)
	}
}

func TestImages(t *testing.T) {
	tests := []struct {
		ref, repo string
		pinned    bool
	}{
		{"nginx", "docker.io/library/nginx", false},
		{"nginx:1.27", "docker.io/library/nginx", false},
		{"bitnami/redis:7", "docker.io/bitnami/redis", false},
		{"index.docker.io/library/nginx@" + digest, "docker.io/library/nginx", true},
		{"localhost/app:1", "localhost/app", false},
		{"localhost:5000/app@" + digest, "localhost:5000/app", true},
		{"Harbor.Example.com:8443/team/app:1@" + digest, "harbor.example.com:8443/team/app", true},
		{"harbor.example.com/team/app@sha256:" + strings.ToUpper(digest[7:]), "harbor.example.com/team/app", false},
		{"harbor.example.com/team/app@md5:abc", "harbor.example.com/team/app", false},
	}
	for _, tt := range tests {
		img := parseImage(tt.ref)
		if img.repository != tt.repo || img.pinned() != tt.pinned {
			t.Errorf("parseImage(%q) = %+v, pinned %t; want %s, %t", tt.ref, img, img.pinned(), tt.repo, tt.pinned)
		}
	}
	for in, want := range map[string]string{"Harbor.example.com/": "harbor.example.com", "index.docker.io/library": "docker.io/library", "reg:5000/a/b": "reg:5000/a/b"} {
		if got, err := NormalizeRegistry(in); err != nil || got != want {
			t.Errorf("NormalizeRegistry(%q) = %q, %v", in, got, err)
		}
	}
}

func TestSeverities(t *testing.T) {
	for _, s := range []string{"info", "Minor", "MAJOR", "critical", "blocker"} {
		sev, err := ParseSeverity(s)
		if err != nil || !strings.EqualFold(sev.String(), s) {
			t.Errorf("ParseSeverity(%q) = %v, %v", s, sev, err)
		}
	}
	if _, err := ParseSeverity("high"); err == nil {
		t.Error("ParseSeverity(high) succeeded")
	}
	if _, err := SeverityNone.MarshalText(); err == nil {
		t.Error("SeverityNone has a name")
	}
	ids := map[string]bool{}
	for _, r := range Rules() {
		if ids[r.ID] || r.Severity == SeverityNone || r.Description == "" || r.Fix == "" {
			t.Errorf("rule %+v: duplicate or incomplete", r)
		}
		ids[r.ID] = true
	}
}

func TestExemptionLevels(t *testing.T) {
	data := strings.Replace(baseDeployment, "shop@"+digest, "shop:1.0", 1)
	for name, tt := range map[string]struct{ old, new string }{
		"pod template": {"      annotations: {}\n", "      annotations: {lotse.dev/exempt-image-digest: \"tags are immutable in this Harbor project\"}\n"},
		"object":       {"  namespace: prod\n", "  namespace: prod\n  annotations:\n    lotse.dev/exempt-image-digest: tags are immutable in this Harbor project\n"},
	} {
		rep, err := newChecker(t, Policy{}).Check("d.yaml", []byte(strings.Replace(data, tt.old, tt.new, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 1 || rep.Findings[0].Exemption != "tags are immutable in this Harbor project" || len(rep.AtOrAbove(SeverityInfo)) != 0 {
			t.Errorf("%s: %+v", name, rep.Findings)
		}
	}
}
