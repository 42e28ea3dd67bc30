package gitops

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/vuln"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("lotse.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("lotse.schema.json")
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return s
}

// validateSchema checks a YAML file against the JSON schema.
func validateSchema(t *testing.T, s *jsonschema.Schema, data []byte) error {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	return s.Validate(v)
}

func TestExamples(t *testing.T) {
	schema := compileSchema(t)
	files, _ := filepath.Glob("testdata/config/*.lotse.yaml")
	if len(files) < 2 {
		t.Fatalf("want the full and the minimal example, found %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseConfig(data, filepath.Base(f)); err != nil {
				t.Errorf("ParseConfig:\n%v", err)
			}
			if err := validateSchema(t, schema, data); err != nil {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

func TestBadExamples(t *testing.T) {
	schema := compileSchema(t)
	files, _ := filepath.Glob("testdata/config/bad/*.lotse.yaml")
	if len(files) == 0 {
		t.Fatal("no bad examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseConfig(data, filepath.Base(f)); err == nil {
				t.Errorf("ParseConfig accepted it")
			}
			if err := validateSchema(t, schema, data); err == nil {
				t.Errorf("the schema accepted it")
			}
		})
	}
}

func TestFullExample(t *testing.T) {
	data, err := os.ReadFile("testdata/config/full.lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 || c.GitLab.Project != "platform/gitops" || c.GitLab.DefaultBranch != "main" || c.Signing.PublicKey != "keys/cosign.pub" {
		t.Errorf("header: %+v", c)
	}
	prod, err := c.Stage("production")
	if err != nil {
		t.Fatal(err)
	}
	g := prod.Gates
	gatesOK := g.Signature && g.MaxSeverity != nil && *g.MaxSeverity == vuln.Medium && g.MaxScanAge == 24*time.Hour && g.Soak == 90*time.Minute && g.Health
	if prod.Promotion != PromotionApproval || prod.Approvals != 2 || !gatesOK || !slices.Equal(prod.Labels, []string{"promotion", "production"}) {
		t.Errorf("production: %+v", prod)
	}
	if prod.Tier != "production" || prod.URLFor("shop") != "https://shop.example.com" {
		t.Errorf("production environment: tier %q, url %q", prod.Tier, prod.URLFor("shop"))
	}
	shop, err := c.App("shop")
	if err != nil {
		t.Fatal(err)
	}
	wantSet := []Target{{"image.repository", PartRepository}, {"image.tag", PartTag}, {"image.digest", PartDigest}}
	if !slices.Equal(shop.Set, wantSet) || !slices.Equal(shop.Stages, []string{"dev", "staging", "production"}) {
		t.Errorf("shop: %+v", shop)
	}
	if got := shop.ValuesPath("staging"); got != "apps/shop/envs/staging/values.yaml" {
		t.Errorf("ValuesPath = %q", got)
	}
	worker, _ := c.App("checkout-worker")
	if !slices.Equal(worker.Stages, []string{"staging", "production"}) || worker.Set[1].Path != `podAnnotations."lotse.dev/digest"` {
		t.Errorf("worker: %+v", worker)
	}
	if shop.Releases.AllowUnprotectedRefs || !worker.Releases.AllowUnprotectedRefs {
		t.Errorf("releases: shop %+v (want the default, protected refs only), worker %+v", shop.Releases, worker.Releases)
	}
}

func TestDefaultsOfMinimalExample(t *testing.T) {
	data, err := os.ReadFile("testdata/config/minimal.lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.GitLab.DefaultBranch != "main" || c.Signing.PublicKey != "" || !slices.Equal(c.Apps[0].Stages, []string{"prod"}) {
		t.Errorf("defaults: %+v", c)
	}
}

// base is a valid config that the problem cases below change one line of.
const base = `version: 1
gitlab:
  project: platform/gitops
signing:
  publicKey: keys/cosign.pub
apps:
  - name: shop
    sourceProject: team/shop
    image: harbor.example.com/team/shop
    values: apps/{app}/envs/{stage}/values.yaml
    set:
      image.tag: tag
stages:
  - name: dev
    promotion: commit
  - name: staging
    promotion: merge-request
    gates: {signature: true, maxSeverity: high, soak: 30m, health: true}
  - name: production
    promotion: approval
    approvals: 2
`

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name    string
		old     string // replaced in base by new
		new     string
		want    []string
		wantErr bool
	}{
		{
			name: "unknown stage",
			old:  "    set:\n", new: "    stages: [dev, prod]\n    set:\n",
			want: []string{`lotse.yaml:11:19: app "shop": stage "prod" is not defined (stages: dev, staging, production)`},
		},
		{
			name: "typo with suggestion",
			old:  "  project: platform/gitops\n", new: "  project: platform/gitops\n  defaultbranch: main\n",
			want: []string{`lotse.yaml:4:3: gitlab: unknown key "defaultbranch" (did you mean "defaultBranch"?)`},
		},
		{
			name: "unknown key without suggestion",
			old:  "version: 1\n", new: "version: 1\nfrobnicate: yes\n",
			want: []string{`lotse.yaml:2:1: lotse.yaml: unknown key "frobnicate" (known keys: version, gitlab, signing, apps, stages, guardrails, freezes)`},
		},
		{
			name: "duplicate app",
			old:  "stages:\n", new: "  - name: shop\n    sourceProject: team/shop2\n    image: harbor.example.com/team/shop2\n    values: x/{stage}.yaml\n    set: {image.tag: tag}\nstages:\n",
			want: []string{`lotse.yaml:13:11: app "shop" is defined twice (first at line 7)`},
		},
		{
			name: "duplicate stage",
			old:  "    approvals: 2\n", new: "    approvals: 2\n  - name: dev\n    promotion: commit\n",
			want: []string{`lotse.yaml:22:11: stage "dev" is defined twice (first at line 14)`},
		},
		{
			name: "bad names",
			old:  "  - name: shop\n", new: "  - name: Shop_1\n",
			want: []string{`lotse.yaml:7:11: app name "Shop_1" must be a DNS label: lowercase letters, digits and -, at most 63 characters, starting and ending with a letter or digit`},
		},
		{
			name: "promotion",
			old:  "promotion: commit", new: "promotion: push",
			want: []string{`lotse.yaml:15:16: stage "dev": unknown promotion "push" (want commit, merge-request or approval)`},
		},
		{
			name: "approvals zero",
			old:  "approvals: 2", new: "approvals: 0",
			want: []string{`lotse.yaml:21:16: stage "production": approvals must be at least 1`},
		},
		{
			name: "approvals missing",
			old:  "    approvals: 2\n", new: "",
			want: []string{`lotse.yaml:19:5: stage "production": promotion approval needs approvals (at least 1 distinct approver)`},
		},
		{
			name: "approvals on a commit stage",
			old:  "promotion: commit\n", new: "promotion: commit\n    approvals: 1\n",
			want: []string{`lotse.yaml:16:5: stage "dev": approvals only applies to promotion: approval, not commit`},
		},
		{
			name: "image with tag",
			old:  "team/shop\n    values", new: "team/shop:1.0\n    values",
			want: []string{`lotse.yaml:9:12: app "shop": image repository "harbor.example.com/team/shop:1.0" carries a tag; give the repository only`},
		},
		{
			name: "image with digest",
			old:  "team/shop\n    values", new: "team/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000\n    values",
			want: []string{`lotse.yaml:9:12: app "shop": image repository "harbor.example.com/team/shop@sha256:0000000000000000000000000000000000000000000000000000000000000000" carries a digest; give the repository only`},
		},
		{
			name: "values without stage",
			old:  "apps/{app}/envs/{stage}/values.yaml", new: "apps/{app}/values.yaml",
			want: []string{`lotse.yaml:10:13: app "shop": values "apps/{app}/values.yaml" must contain {stage}: the app has 3 stages and each needs its own file`},
		},
		{
			name: "values escaping the repository",
			old:  "apps/{app}/envs/{stage}/values.yaml", new: "../{app}/{stage}.yaml",
			want: []string{`lotse.yaml:10:13: app "shop": values: "../{app}/{stage}.yaml" must not contain ..`},
		},
		{
			name: "values absolute and unknown placeholder",
			old:  "apps/{app}/envs/{stage}/values.yaml", new: "/apps/{name}/{stage}.yaml",
			want: []string{
				`lotse.yaml:10:13: app "shop": values: unknown placeholder {name} (use {app} and {stage})`,
				`lotse.yaml:10:13: app "shop": values: "/apps/{name}/{stage}.yaml" must be relative to the repository root, without a leading /`,
			},
		},
		{
			name: "bad set path and part",
			old:  "      image.tag: tag\n", new: "      image..tag: tag\n      image.repo: repo\n",
			want: []string{
				`lotse.yaml:12:7: app "shop": set: bad path "image..tag": empty key at offset 6`,
				`lotse.yaml:13:19: app "shop": set: image.repo: unknown part "repo" (want one of repository, tag, digest, reference)`,
			},
		},
		{
			name: "overlapping set paths",
			old:  "      image.tag: tag\n", new: "      image.tag: tag\n      image: reference\n",
			want: []string{`lotse.yaml:13:7: app "shop": set: image and image.tag (line 12) overlap; one is inside the other`},
		},
		{
			name: "releases: not a boolean, unknown key",
			old:  "    set:\n", new: "    releases: {allowUnprotectedRefs: yes please, protectedOnly: true}\n    set:\n",
			want: []string{
				`lotse.yaml:11:38: app "shop": releases.allowUnprotectedRefs must be true or false, not a string`,
				`lotse.yaml:11:50: app "shop": releases: unknown key "protectedOnly" (known keys: allowUnprotectedRefs)`,
			},
		},
		{
			name: "releases not a mapping",
			old:  "    set:\n", new: "    releases: true\n    set:\n",
			want: []string{`lotse.yaml:11:15: app "shop": releases must be a mapping, not a boolean`},
		},
		{
			name: "version",
			old:  "version: 1", new: "version: 2",
			want: []string{`lotse.yaml:1:10: version 2 is not supported; this lotse reads version 1`},
		},
		{
			name: "version missing",
			old:  "version: 1\n", new: "",
			want: []string{`lotse.yaml:1:1: lotse.yaml: version is missing; set version: 1`},
		},
		{
			name: "severity and soak",
			old:  "maxSeverity: high, soak: 30m", new: "maxSeverity: severe, soak: 30 minutes",
			want: []string{
				`lotse.yaml:18:43: stage "staging": gates.maxSeverity: unknown severity "severe" (want one of unknown, low, medium, high, critical)`,
				`lotse.yaml:18:57: stage "staging": gates.soak: "30 minutes" is not a duration like 30m or 1h30m`,
			},
		},
		{
			name: "maxScanAge not a duration",
			old:  "maxSeverity: high, soak: 30m", new: "maxSeverity: high, maxScanAge: 7d, soak: 30m",
			want: []string{`lotse.yaml:18:61: stage "staging": gates.maxScanAge: "7d" is not a duration like 24h or 168h`},
		},
		{
			name: "maxScanAge zero",
			old:  "maxSeverity: high, soak: 30m", new: "maxSeverity: high, maxScanAge: 0s, soak: 30m",
			want: []string{`lotse.yaml:18:61: stage "staging": gates.maxScanAge must be positive (leave it out for no limit)`},
		},
		{
			name: "maxScanAge negative",
			old:  "maxSeverity: high, soak: 30m", new: "maxSeverity: high, maxScanAge: -24h, soak: 30m",
			want: []string{`lotse.yaml:18:61: stage "staging": gates.maxScanAge must be positive (leave it out for no limit)`},
		},
		{
			name: "maxScanAge without maxSeverity",
			old:  "maxSeverity: high, soak: 30m", new: "maxScanAge: 24h, soak: 30m",
			want: []string{`lotse.yaml:18:42: stage "staging": gates.maxScanAge needs maxSeverity: it limits the age of the scan the scan gate reads`},
		},
		{
			name: "maxScanAge not a string",
			old:  "maxSeverity: high, soak: 30m", new: "maxSeverity: high, maxScanAge: [24h], soak: 30m",
			want: []string{`lotse.yaml:18:61: stage "staging": gates.maxScanAge must be a non-empty string, not a list`},
		},
		{
			name: "signature gate without key",
			old:  "signing:\n  publicKey: keys/cosign.pub\n", new: "",
			want: []string{`lotse.yaml:14:5: stage "staging": gates.signature needs signing.publicKey or signing.keyless`},
		},
		{
			name: "keyless and a key",
			old:  "  publicKey: keys/cosign.pub\n", new: "  publicKey: keys/cosign.pub\n  keyless: {issuer: https://gitlab.example.com, identity: x}\n",
			want: []string{`lotse.yaml:5:3: signing: give publicKey or keyless, not both`},
		},
		{
			name: "keyless without identity",
			old:  "  publicKey: keys/cosign.pub\n", new: "  keyless: {issuer: https://gitlab.example.com}\n",
			want: []string{`lotse.yaml:5:12: signing.keyless: keyless verification needs the signer's identity, exact or as a regular expression`},
		},
		{
			name: "keyless regexp escaping its anchors",
			old:  "  publicKey: keys/cosign.pub\n", new: "  keyless: {issuer: https://gitlab.example.com, identityRegexp: 'x)|.*|(y'}\n",
			want: []string{"lotse.yaml:5:12: signing.keyless: identity regular expression: error parsing regexp: unexpected ): `x)|.*|(y`"},
		},
		{
			name: "app stages out of order",
			old:  "    set:\n", new: "    stages: [staging, dev]\n    set:\n",
			want: []string{`lotse.yaml:11:23: app "shop": stage "dev" must come before "staging", as in the global stages`},
		},
		{
			name: "two apps write the same value",
			old:  "stages:\n", new: "  - name: shop2\n    sourceProject: team/shop\n    image: harbor.example.com/team/shop\n    values: apps/shop/envs/{stage}/values.yaml\n    set: {image.tag: tag}\nstages:\n",
			want: []string{`lotse.yaml: apps "shop" and "shop2" both set image.tag in apps/shop/envs/dev/values.yaml for stage "dev"`,
				`lotse.yaml: apps "shop" and "shop2" both set image.tag in apps/shop/envs/staging/values.yaml for stage "staging"`,
				`lotse.yaml: apps "shop" and "shop2" both set image.tag in apps/shop/envs/production/values.yaml for stage "production"`},
		},
		{
			name: "guardrails: unknown rule, severity and stage",
			old:  base, new: base + "guardrails:\n  rules:\n    probe: {severity: minor}\n    privileged: {severity: high, enabled: nope}\n  stages:\n    prod: {rules: {}}\n    dev: {rule: {}}\n",
			want: []string{
				`lotse.yaml:24:5: guardrails.rules: unknown rule "probe" (did you mean "probes"?)`,
				`lotse.yaml:25:28: guardrails.rules.privileged.severity: unknown severity "high" (want one of info, minor, major, critical, blocker)`,
				`lotse.yaml:25:43: guardrails.rules.privileged.enabled must be true or false, not a string`,
				`lotse.yaml:27:5: guardrails.stages: stage "prod" is not defined (stages: dev, staging, production)`,
				`lotse.yaml:28:11: guardrails.stages.dev: unknown key "rule" (did you mean "rules"?)`,
			},
		},
		{
			name: "guardrails: registries",
			old:  base, new: base + "guardrails:\n  allowedRegistries: [https://harbor.example.com, 'harbor.example.com/*', harbor.example.com, harbor.example.com]\n",
			want: []string{
				`lotse.yaml:23:23: guardrails.allowedRegistries: "https://harbor.example.com" must be a registry host, like harbor.example.com, optionally with a path, like harbor.example.com/team (no scheme, tag or wildcard)`,
				`lotse.yaml:23:51: guardrails.allowedRegistries: "harbor.example.com/*" must be a registry host, like harbor.example.com, optionally with a path, like harbor.example.com/team (no scheme, tag or wildcard)`,
				`lotse.yaml:23:95: guardrails.allowedRegistries: "harbor.example.com" is given twice`,
			},
		},
		{
			name: "not YAML",
			old:  "version: 1\n", new: "version: [1\n",
			wantErr: true,
		},
		{
			name: "empty",
			old:  base, new: "",
			want: []string{`lotse.yaml:1:1: the file is empty`},
		},
		{
			name: "not a mapping",
			old:  base, new: "- a\n",
			want: []string{`lotse.yaml:1:1: lotse.yaml must be a mapping with version, gitlab, apps and stages`},
		},
		{
			name: "two documents",
			old:  base, new: base + "---\nversion: 1\n",
			want: []string{`lotse.yaml:22:1: lotse.yaml must hold one YAML document, this is a second one`},
		},
		{
			name: "several problems at once, in file order",
			old:  "version: 1\ngitlab:\n  project: platform/gitops\n", new: "version: 3\ngitlab:\n  project: platform\n  defaultBranch: a..b\n",
			want: []string{
				`lotse.yaml:1:10: version 3 is not supported; this lotse reads version 1`,
				`lotse.yaml:3:12: gitlab.project "platform" must be a GitLab project path like group/project`,
				`lotse.yaml:4:18: gitlab.defaultBranch: "a..b" is not a valid branch name`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.old) {
				t.Fatalf("base does not contain %q", tt.old)
			}
			data := strings.Replace(base, tt.old, tt.new, 1)
			_, err := ParseConfig([]byte(data), "lotse.yaml")
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if tt.wantErr {
				return
			}
			got := strings.Split(err.Error(), "\n")
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestBaseIsValid(t *testing.T) {
	if _, err := ParseConfig([]byte(base), "lotse.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestYAMLErrorKeepsLine(t *testing.T) {
	_, err := ParseConfig([]byte("version: 1\ngitlab:\n  project: [a\n"), "lotse.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "lotse.yaml:") || !strings.Contains(err.Error(), "not valid YAML") {
		t.Fatalf("err = %v", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Line == 0 {
		t.Fatalf("want a line: %#v", ve)
	}
}

func TestStageNavigation(t *testing.T) {
	c, err := ParseConfig([]byte(strings.Replace(base, "    set:\n", "    stages: [dev, production]\n    set:\n", 1)), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stages, err := c.StagesFor("shop")
	if err != nil || len(stages) != 2 || stages[0].Name != "dev" || stages[1].Name != "production" {
		t.Fatalf("StagesFor = %v, %v", stages, err)
	}
	tests := []struct {
		stage      string
		next, prev string // "" when there is none
		err        bool
	}{
		{stage: "dev", next: "production"},
		{stage: "production", prev: "dev"},
		{stage: "staging", err: true}, // defined, but not for this app
		{stage: "nope", err: true},
	}
	for _, tt := range tests {
		next, ok, err := c.NextStage("shop", tt.stage)
		if (err != nil) != tt.err || ok != (tt.next != "") || ok && next.Name != tt.next {
			t.Errorf("NextStage(%s) = %v, %v, %v", tt.stage, next, ok, err)
		}
		prev, ok, err := c.PrevStage("shop", tt.stage)
		if (err != nil) != tt.err || ok != (tt.prev != "") || ok && prev.Name != tt.prev {
			t.Errorf("PrevStage(%s) = %v, %v, %v", tt.stage, prev, ok, err)
		}
	}
	if _, err := c.App("nope"); err == nil || err.Error() != `app "nope" is not defined (apps: shop)` {
		t.Errorf("App(nope) err = %v", err)
	}
	if _, err := c.Stage("prod"); err == nil || err.Error() != `stage "prod" is not defined (stages: dev, staging, production)` {
		t.Errorf("Stage(prod) err = %v", err)
	}
	if _, err := c.StagesFor("nope"); err == nil {
		t.Error("StagesFor(nope) succeeded")
	}
}

func TestBranchName(t *testing.T) {
	if got := BranchName("shop", "dev"); got != "lotse/shop/dev" {
		t.Errorf("BranchName = %q", got)
	}
}

func TestFullExampleGuardrails(t *testing.T) {
	data, err := os.ReadFile("testdata/config/full.lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data, "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Guardrails
	if !slices.Equal(g.AllowedRegistries, []string{"harbor.example.com", "registry.k8s.io/ingress-nginx"}) {
		t.Errorf("allowedRegistries %v", g.AllowedRegistries)
	}
	off := false
	dev := g.ForStage("dev")
	want := map[string]GuardrailRule{
		"probes":           {Severity: "minor"},
		"host-path":        {Severity: "blocker"},
		"image-digest":     {Enabled: &off},
		"resources-limits": {Severity: "minor"},
	}
	if len(dev) != len(want) {
		t.Errorf("dev rules %v", dev)
	}
	for id, w := range want {
		got := dev[id]
		if got.Severity != w.Severity || (got.Enabled == nil) != (w.Enabled == nil) || got.Enabled != nil && *got.Enabled != *w.Enabled {
			t.Errorf("dev %s = %+v, want %+v", id, got, w)
		}
	}
	if prod := g.ForStage("production"); prod["probes"].Severity != "major" || prod["host-path"].Severity != "blocker" || len(prod) != 2 {
		t.Errorf("production rules %v", prod)
	}
	if staging := g.ForStage("staging"); staging["probes"].Severity != "minor" || len(staging) != 2 {
		t.Errorf("staging rules (the global ones) %v", staging)
	}
}

// TestSchemaGuardrailRules keeps the schema's rule ids and GuardrailRuleIDs
// in step.
func TestSchemaGuardrailRules(t *testing.T) {
	var s struct {
		Defs struct {
			GuardrailRules struct {
				PropertyNames struct {
					Enum []string `yaml:"enum"`
				} `yaml:"propertyNames"`
			} `yaml:"guardrailRules"`
		} `yaml:"$defs"`
	}
	if err := yaml.Unmarshal(Schema, &s); err != nil {
		t.Fatal(err)
	}
	if got := s.Defs.GuardrailRules.PropertyNames.Enum; !slices.Equal(got, GuardrailRuleIDs()) {
		t.Errorf("schema rule ids %v, want %v", got, GuardrailRuleIDs())
	}
}

func TestSchemaIsDraft2020AndStrict(t *testing.T) {
	var s map[string]any
	if err := yaml.Unmarshal(Schema, &s); err != nil {
		t.Fatal(err)
	}
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" || s["additionalProperties"] != false {
		t.Errorf("schema header: %v %v", s["$schema"], s["additionalProperties"])
	}
}

// FuzzParseConfig checks that ParseConfig never panics and that it reports
// failures as a *ValidationError whose problems point into the file.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(base))
	for _, name := range []string{"testdata/config/full.lotse.yaml", "testdata/config/minimal.lotse.yaml", "testdata/config/bad/typo.lotse.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("version: 1\napps: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "lotse.yaml")
		if err == nil {
			if c == nil || c.Version != 1 || len(c.Apps) == 0 || len(c.Stages) == 0 {
				t.Fatalf("accepted an incomplete config: %+v", c)
			}
			for _, a := range c.Apps {
				if _, err := c.StagesFor(a.Name); err != nil {
					t.Fatalf("accepted config with broken stages: %v", err)
				}
			}
			return
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("err = %#v", err)
		}
		lines := len(newSource(data).starts)
		for _, p := range ve.Problems {
			if p.Line < 0 || p.Line > lines+1 || p.Message == "" {
				t.Fatalf("problem outside the file (%d lines): %+v", lines, p)
			}
		}
	})
}

// signing.keyless is read as the gates verify it: issuer and identity
// exactly, or an anchored regexp, and a trusted root in the repository.
func TestKeylessSigning(t *testing.T) {
	y := strings.Replace(base, "  publicKey: keys/cosign.pub\n",
		"  keyless:\n    issuer: https://gitlab.example.com\n    identityRegexp: 'https://gitlab.example.com/team/shop//.gitlab-ci.yml@refs/heads/(main|release)'\n    trustedRoot: keys/trusted_root.json\n", 1)
	cfg, err := ParseConfig([]byte(y), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Signing.Keyless
	if k == nil || cfg.Signing.PublicKey != "" || k.Issuer != "https://gitlab.example.com" || k.TrustedRoot != "keys/trusted_root.json" ||
		k.AnchoredIdentityRegexp() != "^(?:https://gitlab.example.com/team/shop//.gitlab-ci.yml@refs/heads/(main|release))$" {
		t.Fatalf("signing = %+v %+v", cfg.Signing, k)
	}
}
