package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/vuln"
)

// Problem is one thing wrong in a lotse.yaml, at a 1-based line and column
// (0 when unknown).
type Problem struct {
	Line, Column int
	Message      string
}

// ValidationError lists every problem found in a lotse.yaml, in file order.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error returns one "file:line:column: message" line per problem.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		switch {
		case p.Line == 0:
			lines[i] = fmt.Sprintf("%s: %s", e.File, p.Message)
		case p.Column == 0:
			lines[i] = fmt.Sprintf("%s:%d: %s", e.File, p.Line, p.Message)
		default:
			lines[i] = fmt.Sprintf("%s:%d:%d: %s", e.File, p.Line, p.Column, p.Message)
		}
	}
	return strings.Join(lines, "\n")
}

var (
	// dnsLabelRE: names become branch names lotse/<app>/<stage> and often
	// Kubernetes and ArgoCD names as well.
	dnsLabelRE    = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	projectPathRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$`)
	kmsURIRE      = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://\S+$`)
	placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)
	yamlLineRE    = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// ParseConfig parses and validates a lotse.yaml. filename is used in
// messages only. When the file has problems the error is a
// *ValidationError listing all of them with their positions.
func ParseConfig(data []byte, filename string) (*Config, error) {
	v := &validator{}
	root := v.document(data)
	var cfg *Config
	if root != nil {
		cfg = v.config(root)
	}
	if len(v.problems) > 0 {
		sort.SliceStable(v.problems, func(i, j int) bool {
			a, b := v.problems[i], v.problems[j]
			return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
		})
		return nil, &ValidationError{File: filename, Problems: v.problems}
	}
	return cfg, nil
}

type validator struct {
	problems []Problem
}

func (v *validator) addf(n *yaml.Node, format string, args ...any) {
	p := Problem{Message: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	v.problems = append(v.problems, p)
}

// document parses data and returns its root node, which must be a mapping.
func (v *validator) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			v.problems = append(v.problems, Problem{Line: 1, Column: 1, Message: "the file is empty"})
			return nil
		}
		v.yamlError(err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		v.addf(&next, "lotse.yaml must hold one YAML document, this is a second one")
	case !errors.Is(err, io.EOF):
		v.yamlError(err)
	}
	var any any
	if err := doc.Decode(&any); err != nil {
		v.yamlError(err)
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		v.addf(root, "lotse.yaml must be a mapping with version, gitlab, apps and stages")
		return nil
	}
	return root
}

// yamlError turns a yaml.v3 error into problems, keeping the line numbers.
func (v *validator) yamlError(err error) {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if sm := yamlLineRE.FindStringSubmatch("yaml: " + m); sm != nil {
			line, _ := strconv.Atoi(sm[1])
			v.problems = append(v.problems, Problem{Line: line, Message: "not valid YAML: " + sm[2]})
			continue
		}
		if l, rest, ok := strings.Cut(m, ": "); ok && strings.HasPrefix(l, "line ") {
			if line, err := strconv.Atoi(strings.TrimPrefix(l, "line ")); err == nil {
				v.problems = append(v.problems, Problem{Line: line, Message: "not valid YAML: " + rest})
				continue
			}
		}
		v.problems = append(v.problems, Problem{Message: "not valid YAML: " + m})
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// field is a key of a mapping and its value.
type field struct {
	key, val *yaml.Node
}

// fields returns the entries of mapping n by key, reporting keys that are not
// in known (with a suggestion for typos) and keys given twice.
func (v *validator) fields(n *yaml.Node, where string, known ...string) map[string]field {
	out := map[string]field{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			v.addf(k, "%s: keys must be plain names", where)
			continue
		case k.ShortTag() == "!!merge":
			v.addf(k, "%s: merge keys (<<) are not supported in lotse.yaml", where)
			continue
		case !slices.Contains(known, k.Value):
			msg := fmt.Sprintf("%s: unknown key %q", where, k.Value)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
			}
			v.addf(k, "%s", msg)
			continue
		}
		if prev, ok := out[k.Value]; ok {
			v.addf(k, "%s: %q is given twice (first at line %d)", where, k.Value, prev.key.Line)
			continue
		}
		out[k.Value] = field{k, val}
	}
	return out
}

// suggest returns the known key closest to key, if it is close.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// mapping checks that n is a mapping.
func (v *validator) mapping(n *yaml.Node, where string) bool {
	if n.Kind != yaml.MappingNode {
		v.addf(n, "%s must be a mapping, not %s", where, describe(n))
		return false
	}
	return true
}

// list checks that n is a list and returns its items.
func (v *validator) list(n *yaml.Node, where string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		v.addf(n, "%s must be a list, not %s", where, describe(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items
}

// str returns the text of scalar n; ok is false (and a problem recorded) when
// n is not a non-empty scalar.
func (v *validator) str(n *yaml.Node, where string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || n.Value == "" {
		v.addf(n, "%s must be a non-empty string, not %s", where, describe(n))
		return "", false
	}
	return n.Value, true
}

func (v *validator) integer(n *yaml.Node, where string) (int, bool) {
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		v.addf(n, "%s must be a whole number, not %s", where, describe(n))
		return 0, false
	}
	return i, true
}

func (v *validator) boolean(n *yaml.Node, where string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		v.addf(n, "%s must be true or false, not %s", where, describe(n))
	}
	return b
}

// require reports a missing key of mapping n.
func (v *validator) require(n *yaml.Node, fs map[string]field, where, key, hint string) (field, bool) {
	f, ok := fs[key]
	if !ok {
		v.addf(n, "%s: %s is missing%s", where, key, hint)
	}
	return f, ok
}

// config validates the whole file.
func (v *validator) config(root *yaml.Node) *Config {
	cfg := &Config{GitLab: GitLab{DefaultBranch: "main"}}
	fs := v.fields(root, "lotse.yaml", "version", "gitlab", "signing", "apps", "stages", "guardrails", "freezes")

	if f, ok := v.require(root, fs, "lotse.yaml", "version", "; set version: 1"); ok {
		if n, ok := v.integer(f.val, "version"); ok {
			cfg.Version = n
			if n != 1 {
				v.addf(f.val, "version %d is not supported; this lotse reads version 1", n)
			}
		}
	}
	if f, ok := v.require(root, fs, "lotse.yaml", "gitlab", " (gitlab.project names this GitOps repository)"); ok {
		v.gitlab(f.val, &cfg.GitLab)
	}
	var signing *yaml.Node
	if f, ok := fs["signing"]; ok {
		signing = f.key
		v.signing(f.val, &cfg.Signing)
	}
	stageNodes := map[string]*yaml.Node{}
	if f, ok := v.require(root, fs, "lotse.yaml", "stages", ""); ok {
		for _, n := range v.list(f.val, "stages") {
			if s, ok := v.stage(n, stageNodes); ok {
				if s.Gates.Signature && cfg.Signing.PublicKey == "" && cfg.Signing.Keyless == nil && signing == nil {
					v.addf(n, "stage %q: gates.signature needs signing.publicKey or signing.keyless", s.Name)
				}
				cfg.Stages = append(cfg.Stages, s)
			}
		}
		if len(f.val.Content) == 0 && f.val.Kind == yaml.SequenceNode {
			v.addf(f.val, "stages must list at least one stage")
		}
	}
	if f, ok := v.require(root, fs, "lotse.yaml", "apps", ""); ok {
		apps := map[string]*yaml.Node{}
		for _, n := range v.list(f.val, "apps") {
			if a, ok := v.app(n, cfg, apps); ok {
				cfg.Apps = append(cfg.Apps, a)
			}
		}
		if len(f.val.Content) == 0 && f.val.Kind == yaml.SequenceNode {
			v.addf(f.val, "apps must list at least one app")
		}
	}
	if f, ok := fs["guardrails"]; ok {
		v.guardrails(f.val, cfg)
	}
	if f, ok := fs["freezes"]; ok {
		for i, n := range v.list(f.val, "freezes") {
			if fr, ok := v.freeze(n, fmt.Sprintf("freezes[%d]", i), cfg); ok {
				cfg.Freezes = append(cfg.Freezes, fr)
			}
		}
	}
	v.conflicts(cfg)
	return cfg
}

// freeze reads one freeze window: a reason, the stages (all when none), and
// either from and until (RFC 3339) or cron and duration.
func (v *validator) freeze(n *yaml.Node, where string, cfg *Config) (Freeze, bool) {
	var fr Freeze
	if !v.mapping(n, where) {
		return fr, false
	}
	fs := v.fields(n, where, "reason", "stages", "from", "until", "cron", "duration")
	ok := true
	if f, has := v.require(n, fs, where, "reason", " (said in the merge request and the commit status)"); has {
		fr.Reason, _ = v.str(f.val, where+".reason")
	} else {
		ok = false
	}
	if f, has := fs["stages"]; has {
		for _, sn := range v.list(f.val, where+".stages") {
			if st, good := v.str(sn, where+".stages"); good {
				if _, err := cfg.Stage(st); err != nil {
					v.addf(sn, "%s.stages: stage %q is not defined", where, st)
					ok = false
				}
				fr.Stages = append(fr.Stages, st)
			}
		}
	}
	when := func(key string) (time.Time, bool) {
		f, has := fs[key]
		if !has {
			return time.Time{}, false
		}
		s, _ := v.str(f.val, where+"."+key)
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			v.addf(f.val, "%s.%s: %q is not a time like 2026-12-24T00:00:00Z", where, key, s)
			ok = false
		}
		return t.UTC(), true
	}
	from, hasFrom := when("from")
	until, hasUntil := when("until")
	_, hasCron := fs["cron"]
	switch {
	case hasCron && (hasFrom || hasUntil):
		v.addf(n, "%s: give from and until, or cron and duration, not both", where)
		return fr, false
	case hasCron:
		s, _ := v.str(fs["cron"].val, where+".cron")
		c, err := parseCron(s)
		if err != nil {
			v.addf(fs["cron"].val, "%s.%v", where, err)
			return fr, false
		}
		fr.Cron, fr.cron = s, c
		f, has := v.require(n, fs, where, "duration", " (how long each window lasts, like 64h)")
		if !has {
			return fr, false
		}
		ds, _ := v.str(f.val, where+".duration")
		d, err := time.ParseDuration(ds)
		if err != nil || d <= 0 || d > 31*24*time.Hour {
			v.addf(f.val, "%s.duration: %q is not a duration like 64h (at most 31 days)", where, ds)
			return fr, false
		}
		fr.Duration = d
	case hasFrom && hasUntil:
		if !until.After(from) {
			v.addf(n, "%s: until must be after from", where)
			return fr, false
		}
		fr.From, fr.Until = from, until
	default:
		v.addf(n, "%s: give from and until (a dated window) or cron and duration (a recurring one)", where)
		return fr, false
	}
	return fr, ok
}

func (v *validator) gitlab(n *yaml.Node, g *GitLab) {
	if !v.mapping(n, "gitlab") {
		return
	}
	fs := v.fields(n, "gitlab", "project", "defaultBranch")
	if f, ok := v.require(n, fs, "gitlab", "project", " (the path of this GitOps repository, like platform/gitops)"); ok {
		if s, ok := v.str(f.val, "gitlab.project"); ok {
			g.Project = s
			if !projectPathRE.MatchString(s) {
				v.addf(f.val, "gitlab.project %q must be a GitLab project path like group/project", s)
			}
		}
	}
	if f, ok := fs["defaultBranch"]; ok {
		if s, ok := v.str(f.val, "gitlab.defaultBranch"); ok {
			g.DefaultBranch = s
			if err := checkBranch(s); err != nil {
				v.addf(f.val, "gitlab.defaultBranch: %v", err)
			}
		}
	}
}

func (v *validator) signing(n *yaml.Node, s *Signing) {
	if !v.mapping(n, "signing") {
		return
	}
	fs := v.fields(n, "signing", "publicKey", "keyless")
	pk, hasKey := fs["publicKey"]
	kl, hasKeyless := fs["keyless"]
	switch {
	case hasKey && hasKeyless:
		v.addf(n, "signing: give publicKey or keyless, not both")
		return
	case !hasKey && !hasKeyless:
		v.addf(n, "signing needs publicKey (a path in this repository or a KMS URI) or keyless (issuer and identity)")
		return
	case hasKeyless:
		s.Keyless = v.keyless(kl.val)
		return
	}
	if k, ok := v.str(pk.val, "signing.publicKey"); ok {
		s.PublicKey = k
		if !kmsURIRE.MatchString(k) {
			if err := checkRepoPath(k); err != nil {
				v.addf(pk.val, "signing.publicKey: %v (or give a KMS URI like awskms:///alias/cosign)", err)
			}
		}
	}
}

// keyless reads signing.keyless: the issuer, the identity exactly or as a
// regular expression lotse anchors, and an optional trusted root in this
// repository (default: Sigstore's public-good instance).
func (v *validator) keyless(n *yaml.Node) *trust.Keyless {
	if !v.mapping(n, "signing.keyless") {
		return nil
	}
	fs := v.fields(n, "signing.keyless", "issuer", "identity", "identityRegexp", "trustedRoot")
	k := &trust.Keyless{}
	for _, x := range []struct {
		name string
		dst  *string
	}{{"issuer", &k.Issuer}, {"identity", &k.Identity}, {"identityRegexp", &k.IdentityRegexp}, {"trustedRoot", &k.TrustedRoot}} {
		name, dst := x.name, x.dst
		if f, ok := fs[name]; ok {
			if s, ok := v.str(f.val, "signing.keyless."+name); ok {
				*dst = s
			}
		}
	}
	if err := k.Check(); err != nil {
		v.addf(n, "signing.keyless: %v", err)
		return nil
	}
	if k.TrustedRoot != "" {
		if err := checkRepoPath(k.TrustedRoot); err != nil {
			v.addf(fs["trustedRoot"].val, "signing.keyless.trustedRoot: %v", err)
			return nil
		}
	}
	return k
}

// uniqueName reads the required name of a stage or an app (kind): read says
// whether there was a string to read, valid whether it is a good name that
// no earlier entry (in seen) has.
func (v *validator) uniqueName(n *yaml.Node, fs map[string]field, kind string, seen map[string]*yaml.Node) (name string, read, valid bool) {
	f, ok := v.require(n, fs, kind, "name", "")
	if !ok {
		return "", false, false
	}
	if name, ok = v.str(f.val, kind+" name"); !ok {
		return "", false, false
	}
	valid = v.name(f.val, kind, name)
	if prev, dup := seen[name]; dup {
		v.addf(f.val, "%s %q is defined twice (first at line %d)", kind, name, prev.Line)
		return name, true, false
	}
	seen[name] = f.val
	return name, true, valid
}

// stage validates one entry of stages.
func (v *validator) stage(n *yaml.Node, seen map[string]*yaml.Node) (Stage, bool) {
	var s Stage
	if !v.mapping(n, "a stage") {
		return s, false
	}
	where := "stage"
	fs := v.fields(n, where, "name", "promotion", "approvals", "gates", "labels", "sync", "pipeline", "tier", "url")
	name, read, valid := v.uniqueName(n, fs, "stage", seen)
	if read {
		s.Name, where = name, fmt.Sprintf("stage %q", name)
	}
	if f, ok := v.require(n, fs, where, "promotion", " (commit, merge-request or approval)"); ok {
		if p, ok := v.str(f.val, where+": promotion"); ok {
			s.Promotion = Promotion(p)
			switch s.Promotion {
			case PromotionCommit, PromotionMergeRequest, PromotionApproval:
			default:
				v.addf(f.val, "%s: unknown promotion %q (want commit, merge-request or approval)", where, p)
			}
		}
	}
	f, ok := fs["approvals"]
	switch {
	case ok:
		if a, ok := v.integer(f.val, where+": approvals"); ok {
			s.Approvals = a
			if s.Promotion != PromotionApproval && s.Promotion != "" {
				v.addf(f.key, "%s: approvals only applies to promotion: approval, not %s", where, s.Promotion)
			} else if a < 1 {
				v.addf(f.val, "%s: approvals must be at least 1", where)
			}
		}
	case s.Promotion == PromotionApproval:
		v.addf(n, "%s: promotion approval needs approvals (at least 1 distinct approver)", where)
	}
	if f, ok := fs["gates"]; ok {
		s.Gates = v.gates(f.val, where)
	}
	if f, ok := fs["labels"]; ok {
		labels := map[string]bool{}
		for _, l := range v.list(f.val, where+": labels") {
			if text, ok := v.str(l, where+": a label"); ok {
				switch {
				case strings.Contains(text, ","):
					v.addf(l, "%s: label %q must not contain a comma", where, text)
				case labels[text]:
					v.addf(l, "%s: label %q is given twice", where, text)
				}
				labels[text] = true
				s.Labels = append(s.Labels, text)
			}
		}
	}
	s.Pipeline = s.Promotion == PromotionApproval
	if f, ok := fs["pipeline"]; ok {
		if text, ok := v.str(f.val, where+": pipeline"); ok {
			switch text {
			case "required":
				s.Pipeline = true
			case "optional":
				s.Pipeline = false
			default:
				v.addf(f.val, "%s: pipeline %q: want required or optional", where, text)
			}
		}
	}
	s.Sync = SyncAuto
	if f, ok := fs["sync"]; ok {
		if text, ok := v.str(f.val, where+": sync"); ok {
			switch Sync(text) {
			case SyncAuto, SyncManual:
				s.Sync = Sync(text)
			default:
				v.addf(f.val, "%s: sync %q: want auto or manual (as the stage's ArgoCD Application syncs)", where, text)
			}
		}
	}
	if f, ok := fs["tier"]; ok {
		if text, ok := v.str(f.val, where+": tier"); ok {
			if !slices.Contains(Tiers, text) {
				v.addf(f.val, "%s: tier %q: want one of %s (GitLab's environment tiers)", where, text, strings.Join(Tiers, ", "))
			}
			s.Tier = text
		}
	}
	if f, ok := fs["url"]; ok {
		if text, ok := v.str(f.val, where+": url"); ok {
			u, err := url.Parse(strings.ReplaceAll(text, "{app}", "app"))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				v.addf(f.val, "%s: url %q: want an http(s) URL without credentials, {app} standing for the app's name", where, text)
			}
			s.URL = text
		}
	}
	return s, valid
}

func (v *validator) gates(n *yaml.Node, where string) Gates {
	var g Gates
	if !v.mapping(n, where+": gates") {
		return g
	}
	where += ": gates"
	fs := v.fields(n, where, "signature", "maxSeverity", "maxScanAge", "soak", "health")
	if f, ok := fs["signature"]; ok {
		g.Signature = v.boolean(f.val, where+".signature")
	}
	if f, ok := fs["health"]; ok {
		g.Health = v.boolean(f.val, where+".health")
	}
	if f, ok := fs["maxSeverity"]; ok {
		if s, ok := v.str(f.val, where+".maxSeverity"); ok {
			if sev, err := vuln.ParseSeverity(s); err != nil {
				v.addf(f.val, "%s.maxSeverity: %v", where, err)
			} else {
				g.MaxSeverity = &sev
			}
		}
	}
	if f, ok := fs["soak"]; ok {
		if s, ok := v.str(f.val, where+".soak"); ok {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				v.addf(f.val, "%s.soak: %q is not a duration like 30m or 1h30m", where, s)
			case d < 0:
				v.addf(f.val, "%s.soak must not be negative", where)
			}
			g.Soak = d
		}
	}
	if f, ok := fs["maxScanAge"]; ok {
		g.MaxScanAge = v.maxScanAge(f.val, where, g.MaxSeverity != nil)
	}
	return g
}

// name checks an app or stage name.
func (v *validator) name(n *yaml.Node, kind, name string) bool {
	if !dnsLabelRE.MatchString(name) {
		v.addf(n, "%s name %q must be a DNS label: lowercase letters, digits and -, at most 63 characters, starting and ending with a letter or digit", kind, name)
		return false
	}
	return true
}

// app validates one entry of apps; cfg.Stages must be complete.
func (v *validator) app(n *yaml.Node, cfg *Config, seen map[string]*yaml.Node) (App, bool) {
	var a App
	if !v.mapping(n, "an app") {
		return a, false
	}
	where := "app"
	fs := v.fields(n, where, "name", "sourceProject", "image", "values", "set", "stages", "releases")
	name, read, valid := v.uniqueName(n, fs, "app", seen)
	if read {
		a.Name, where = name, fmt.Sprintf("app %q", name)
	}
	if f, ok := v.require(n, fs, where, "sourceProject", " (the GitLab project that builds the image)"); ok {
		if s, ok := v.str(f.val, where+": sourceProject"); ok {
			a.SourceProject = s
			if !projectPathRE.MatchString(s) {
				v.addf(f.val, "%s: sourceProject %q must be a GitLab project path like group/project", where, s)
			}
		}
	}
	if f, ok := v.require(n, fs, where, "image", " (the image repository, like registry.example.com/team/app)"); ok {
		if s, ok := v.str(f.val, where+": image"); ok {
			a.Image = s
			if err := checkRepository(s); err != nil {
				v.addf(f.val, "%s: %v", where, err)
			}
		}
	}

	// Stages first: the values template check depends on how many there are.
	a.Stages = cfg.stageNames()
	if f, ok := fs["stages"]; ok {
		a.Stages = nil
		last, lastName := -1, ""
		for _, s := range v.list(f.val, where+": stages") {
			name, ok := v.str(s, where+": a stage")
			if !ok {
				continue
			}
			i := slices.Index(cfg.stageNames(), name)
			switch {
			case i < 0:
				v.addf(s, "%s: stage %q is not defined (stages: %s)", where, name, strings.Join(cfg.stageNames(), ", "))
			case slices.Contains(a.Stages, name):
				v.addf(s, "%s: stage %q is listed twice", where, name)
			case i < last:
				v.addf(s, "%s: stage %q must come before %q, as in the global stages", where, name, lastName)
			default:
				last, lastName = i, name
				a.Stages = append(a.Stages, name)
			}
		}
		if len(f.val.Content) == 0 && f.val.Kind == yaml.SequenceNode {
			v.addf(f.val, "%s: stages must list at least one stage, or be left out for all stages", where)
		}
	}

	if f, ok := v.require(n, fs, where, "values", " (the values file path, like apps/{app}/envs/{stage}/values.yaml)"); ok {
		if s, ok := v.str(f.val, where+": values"); ok {
			a.Values = s
			v.valuesTemplate(f.val, where, s, len(a.Stages))
		}
	}
	if f, ok := v.require(n, fs, where, "set", " (which values paths receive the image, like image.tag: tag)"); ok {
		a.Set = v.set(f.val, where)
	}
	if f, ok := fs["releases"]; ok {
		a.Releases = v.releases(f.val, where)
	}
	return a, valid
}

// releases validates an app's releases settings.
func (v *validator) releases(n *yaml.Node, where string) Releases {
	var r Releases
	where += ": releases"
	if !v.mapping(n, where) {
		return r
	}
	fs := v.fields(n, where, "allowUnprotectedRefs")
	if f, ok := fs["allowUnprotectedRefs"]; ok {
		r.AllowUnprotectedRefs = v.boolean(f.val, where+".allowUnprotectedRefs")
	}
	return r
}

func (v *validator) valuesTemplate(n *yaml.Node, where, tmpl string, stages int) {
	for _, p := range placeholderRE.FindAllString(tmpl, -1) {
		if p != "{app}" && p != "{stage}" {
			v.addf(n, "%s: values: unknown placeholder %s (use {app} and {stage})", where, p)
		}
	}
	if stages > 1 && !strings.Contains(tmpl, "{stage}") {
		v.addf(n, "%s: values %q must contain {stage}: the app has %d stages and each needs its own file", where, tmpl, stages)
	}
	if err := checkRepoPath(tmpl); err != nil {
		v.addf(n, "%s: values: %v", where, err)
	}
}

// set validates the set mapping of an app.
func (v *validator) set(n *yaml.Node, where string) []Target {
	if !v.mapping(n, where+": set") {
		return nil
	}
	if len(n.Content) == 0 {
		v.addf(n, "%s: set must map at least one values path to a part of the image (%s)", where, joinParts())
		return nil
	}
	var targets []Target
	paths := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], resolve(n.Content[i+1])
		p, ok := v.str(k, where+": a set path")
		if !ok {
			continue
		}
		segs, err := parsePath(p)
		if err != nil {
			v.addf(k, "%s: set: %v", where, err)
			continue
		}
		canon := formatPath(segs)
		for _, ph := range placeholderRE.FindAllString(canon, -1) {
			if ph != "{app}" {
				v.addf(k, "%s: set: %s: unknown placeholder %s (only {app} is replaced in set paths)", where, p, ph)
			}
		}
		if prev, ok := paths[canon]; ok {
			v.addf(k, "%s: set: %s is given twice (first at line %d)", where, p, prev.Line)
			continue
		}
		for other, on := range paths {
			if strings.HasPrefix(canon, other+".") || strings.HasPrefix(canon, other+"[") ||
				strings.HasPrefix(other, canon+".") || strings.HasPrefix(other, canon+"[") {
				v.addf(k, "%s: set: %s and %s (line %d) overlap; one is inside the other", where, p, other, on.Line)
			}
		}
		paths[canon] = k
		part, ok := v.str(val, where+": set: "+p)
		if !ok {
			continue
		}
		if !slices.Contains(Parts, Part(part)) {
			v.addf(val, "%s: set: %s: unknown part %q (want one of %s)", where, p, part, joinParts())
			continue
		}
		targets = append(targets, Target{Path: canon, Part: Part(part)})
	}
	return targets
}

// conflicts reports values paths that two apps write for the same stage.
func (v *validator) conflicts(cfg *Config) {
	owner := map[string]string{}
	for _, a := range cfg.Apps {
		for _, s := range a.Stages {
			file := path.Clean(a.ValuesPath(s))
			for _, t := range a.Set {
				key := file + "\x00" + a.SetPath(t)
				if prev, ok := owner[key]; ok && prev != a.Name {
					v.problems = append(v.problems, Problem{Message: fmt.Sprintf(
						"apps %q and %q both set %s in %s for stage %q", prev, a.Name, a.SetPath(t), file, s)})
					continue
				}
				owner[key] = a.Name
			}
		}
	}
}

// checkRepoPath checks a path inside the GitOps repository.
func checkRepoPath(p string) error {
	switch {
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must be relative to the repository root, without a leading /", p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("%q must use / as separator", p)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return fmt.Errorf("%q must not contain ..", p)
	case path.Clean(p) != p || p == ".":
		return fmt.Errorf("%q is not a clean path (want %q)", p, path.Clean(p))
	}
	return nil
}

// checkBranch applies the main rules of git check-ref-format to a branch.
func checkBranch(b string) error {
	if strings.ContainsAny(b, " ~^:?*[\\\t") || strings.Contains(b, "..") || strings.Contains(b, "@{") ||
		strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".lock") ||
		strings.HasPrefix(b, "-") || strings.Contains(b, "//") || strings.ContainsFunc(b, isControl) {
		return fmt.Errorf("%q is not a valid branch name", b)
	}
	return nil
}
