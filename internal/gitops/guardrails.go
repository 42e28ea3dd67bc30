package gitops

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Guardrails is the guardrails section of lotse.yaml: the policy of
// lotse guardrails check for rendered manifests.
//
//	guardrails:
//	  allowedRegistries: [harbor.example.com, registry.k8s.io/ingress-nginx]
//	  rules:                            # every stage
//	    probes: {severity: minor}
//	  stages:                           # per stage, over rules
//	    dev:
//	      rules:
//	        image-digest: {enabled: false}
//	        resources-limits: {severity: minor}
//
// Stage settings take precedence over the global ones, field by field, so a
// stage can switch a rule back on that the global rules switch off.
type Guardrails struct {
	// AllowedRegistries are registry hosts (harbor.example.com) or host and
	// path prefixes (harbor.example.com/team) images may come from. Empty:
	// the image-registry rule does nothing.
	AllowedRegistries []string
	Rules             map[string]GuardrailRule            // by rule id, for every stage
	Stages            map[string]map[string]GuardrailRule // by stage, then rule id
}

// GuardrailRule overrides one guardrails rule.
type GuardrailRule struct {
	Severity string // info, minor, major, critical or blocker; "" keeps the rule's default
	Enabled  *bool  // nil keeps the setting from the level above (default on)
}

// ForStage returns the rule settings that apply in stage: the global rules
// with the stage's settings laid over them, field by field. stage "" gives
// the global rules.
func (g Guardrails) ForStage(stage string) map[string]GuardrailRule {
	out := map[string]GuardrailRule{}
	for id, r := range g.Rules {
		out[id] = r
	}
	for id, r := range g.Stages[stage] {
		m := out[id]
		if r.Severity != "" {
			m.Severity = r.Severity
		}
		if r.Enabled != nil {
			m.Enabled = r.Enabled
		}
		out[id] = m
	}
	return out
}

// GuardrailRuleIDs returns the ids of the guardrails rules lotse.yaml may
// configure, in the order of the guardrails package (a test keeps the two in
// step; gitops does not import guardrails).
func GuardrailRuleIDs() []string {
	return []string{
		"resources-requests", "resources-limits", "probes", "run-as-non-root",
		"read-only-root-filesystem", "privilege-escalation", "privileged",
		"image-digest", "image-registry", "host-path", "host-network", "host-pid",
		"host-ipc", "exemption",
	}
}

// GuardrailSeverities returns GitLab's code quality severities, lowest first.
func GuardrailSeverities() []string {
	return []string{"info", "minor", "major", "critical", "blocker"}
}

// registryRE is a registry host with optional port and path prefix, without
// scheme, tag, digest or wildcards.
func registryRE() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$`)
}

// guardrails validates the guardrails section; cfg.Stages must be complete.
func (v *validator) guardrails(n *yaml.Node, cfg *Config) {
	g := &cfg.Guardrails
	if !v.mapping(n, "guardrails") {
		return
	}
	fs := v.fields(n, "guardrails", "allowedRegistries", "rules", "stages")
	if f, ok := fs["allowedRegistries"]; ok {
		re := registryRE()
		for _, r := range v.list(f.val, "guardrails.allowedRegistries") {
			s, ok := v.str(r, "guardrails.allowedRegistries: an entry")
			switch {
			case !ok:
			case !re.MatchString(s):
				v.addf(r, "guardrails.allowedRegistries: %q must be a registry host, like harbor.example.com, optionally with a path, like harbor.example.com/team (no scheme, tag or wildcard)", s)
			case slices.Contains(g.AllowedRegistries, s):
				v.addf(r, "guardrails.allowedRegistries: %q is given twice", s)
			default:
				g.AllowedRegistries = append(g.AllowedRegistries, s)
			}
		}
	}
	if f, ok := fs["rules"]; ok {
		g.Rules = v.guardrailRules(f.val, "guardrails.rules")
	}
	if f, ok := fs["stages"]; ok && v.mapping(f.val, "guardrails.stages") {
		g.Stages = map[string]map[string]GuardrailRule{}
		names := cfg.stageNames()
		for i := 0; i+1 < len(f.val.Content); i += 2 {
			k, val := f.val.Content[i], resolve(f.val.Content[i+1])
			name, ok := v.str(k, "guardrails.stages: a stage")
			if !ok {
				continue
			}
			where := fmt.Sprintf("guardrails.stages.%s", name)
			switch {
			case !slices.Contains(names, name):
				v.addf(k, "guardrails.stages: stage %q is not defined (stages: %s)", name, strings.Join(names, ", "))
				continue
			case g.Stages[name] != nil:
				v.addf(k, "guardrails.stages: %q is given twice", name)
				continue
			}
			g.Stages[name] = map[string]GuardrailRule{}
			if !v.mapping(val, where) {
				continue
			}
			sfs := v.fields(val, where, "rules")
			if f, ok := sfs["rules"]; ok {
				g.Stages[name] = v.guardrailRules(f.val, where+".rules")
			}
		}
	}
}

// guardrailRules validates a mapping of rule ids to {severity, enabled}.
func (v *validator) guardrailRules(n *yaml.Node, where string) map[string]GuardrailRule {
	out := map[string]GuardrailRule{}
	if !v.mapping(n, where) {
		return out
	}
	ids := GuardrailRuleIDs()
	for _, f := range v.orderedFields(n, where, ids) {
		id := f.key.Value
		rw := where + "." + id
		if !v.mapping(f.val, rw) {
			continue
		}
		var r GuardrailRule
		rfs := v.fields(f.val, rw, "severity", "enabled")
		if sf, ok := rfs["severity"]; ok {
			if s, ok := v.str(sf.val, rw+".severity"); ok {
				if i := slices.IndexFunc(GuardrailSeverities(), func(x string) bool { return strings.EqualFold(x, s) }); i >= 0 {
					r.Severity = GuardrailSeverities()[i]
				} else {
					v.addf(sf.val, "%s.severity: unknown severity %q (want one of %s)", rw, s, strings.Join(GuardrailSeverities(), ", "))
				}
			}
		}
		if ef, ok := rfs["enabled"]; ok {
			b := v.boolean(ef.val, rw+".enabled")
			r.Enabled = &b
		}
		out[id] = r
	}
	return out
}

// orderedFields is fields for mappings whose keys are names from known
// (reported as rules, not keys), in file order.
func (v *validator) orderedFields(n *yaml.Node, where string, known []string) []field {
	var out []field
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge":
			v.addf(k, "%s: keys must be rule ids", where)
			continue
		case !slices.Contains(known, k.Value):
			msg := fmt.Sprintf("%s: unknown rule %q", where, k.Value)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (rules: %s)", strings.Join(known, ", "))
			}
			v.addf(k, "%s", msg)
			continue
		case seen[k.Value] != nil:
			v.addf(k, "%s: %q is given twice (first at line %d)", where, k.Value, seen[k.Value].Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, field{k, val})
	}
	return out
}
