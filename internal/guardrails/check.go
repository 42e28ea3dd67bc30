package guardrails

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Policy says which rules apply and how severe their findings are. The zero
// Policy applies every rule at its default severity, with no registry list.
type Policy struct {
	// Rules overrides rules by id; rules not named keep their defaults.
	Rules map[string]RulePolicy
	// AllowedRegistries are registry hosts or host/path prefixes images may
	// come from (see NormalizeRegistry). Empty: the image-registry rule does
	// nothing.
	AllowedRegistries []string
}

// RulePolicy overrides one rule.
type RulePolicy struct {
	Disabled bool     // the rule is not checked at all
	Severity Severity // SeverityNone keeps the default
}

// Finding is one violation of a rule by one workload or container.
type Finding struct {
	File      string   `json:"file"`
	Doc       int      `json:"doc"`  // 1-based number of the YAML document in the file
	Line      int      `json:"line"` // 1-based line of the offending field, else its container, else the object
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Container string   `json:"container,omitempty"` // "" for findings about the pod
	Init      bool     `json:"init,omitempty"`      // the container is an init container
	Rule      string   `json:"rule"`
	Severity  Severity `json:"severity"`
	Message   string   `json:"message"`
	// Detail names what inside the workload the finding is about when the
	// container does not (a volume, an annotation); with the file, object,
	// container and rule it makes the fingerprint.
	Detail string `json:"detail,omitempty"`
	// Exemption is the reason of the annotation that exempts the workload
	// from this rule; exempted findings never fail the gate.
	Exemption string `json:"exemption,omitempty"`
}

// Object is "Kind/name" of the finding's workload.
func (f Finding) Object() string { return f.Kind + "/" + f.Name }

// Checker checks manifests against one Policy.
type Checker struct {
	rules      map[string]Rule // enabled rules by id, severities resolved
	registries []string
}

// NewChecker validates p and returns a Checker for it.
func NewChecker(p Policy) (*Checker, error) {
	c := &Checker{rules: map[string]Rule{}}
	for _, r := range Rules() {
		c.rules[r.ID] = r
	}
	ids := make([]string, 0, len(p.Rules))
	for id := range p.Rules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		rp := p.Rules[id]
		r, ok := RuleByID(id)
		if !ok {
			return nil, fmt.Errorf("policy: unknown rule %q (rules: %s)", id, strings.Join(RuleIDs(), ", "))
		}
		if rp.Severity < SeverityNone || rp.Severity > SeverityBlocker {
			return nil, fmt.Errorf("policy: rule %s: bad severity %d", id, int(rp.Severity))
		}
		if rp.Disabled {
			delete(c.rules, id)
			continue
		}
		if rp.Severity != SeverityNone {
			r.Severity = rp.Severity
		}
		c.rules[id] = r
	}
	for _, e := range p.AllowedRegistries {
		n, err := NormalizeRegistry(e)
		if err != nil {
			return nil, fmt.Errorf("policy: allowed registries: %w", err)
		}
		c.registries = append(c.registries, n)
	}
	return c, nil
}

// DecodeError is input that is not YAML.
type DecodeError struct {
	File string
	Line int // 0 when unknown
	Err  error
}

// Error returns "file:line: not valid YAML: reason".
func (e *DecodeError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: not valid YAML: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: not valid YAML: %v", e.File, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// decodeError keeps the line of yaml.v3's "yaml: line N: reason" messages.
func decodeError(file string, err error) *DecodeError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if l, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(l, "line ") {
		if line, err := strconv.Atoi(strings.TrimPrefix(l, "line ")); err == nil {
			return &DecodeError{File: file, Line: line, Err: errors.New(rest)}
		}
	}
	return &DecodeError{File: file, Err: errors.New(msg)}
}

// Report is what checking found in one or more files.
type Report struct {
	Files     int       `json:"files"`
	Workloads int       `json:"workloads"` // pod templates checked
	Findings  []Finding `json:"findings"`
}

// Merge adds o to r, keeping the findings sorted.
func (r *Report) Merge(o Report) {
	r.Files += o.Files
	r.Workloads += o.Workloads
	r.Findings = append(r.Findings, o.Findings...)
	sortFindings(r.Findings)
}

// AtOrAbove returns the findings that fail a gate at th: not exempted and at
// or above th. th SeverityNone fails on nothing.
func (r Report) AtOrAbove(th Severity) []Finding {
	var out []Finding
	if th == SeverityNone {
		return nil
	}
	for _, f := range r.Findings {
		if f.Exemption == "" && f.Severity >= th {
			out = append(out, f)
		}
	}
	return out
}

// Check decodes the YAML documents in data (rendered manifests, as helm
// template or kustomize build print them; kind: List is unpacked) and checks
// every pod template in them. Objects that hold no pod template, empty
// documents and documents that are not objects are skipped. file names the
// input in findings and errors. Input that is not YAML is a *DecodeError.
func (c *Checker) Check(file string, data []byte) (Report, error) {
	rep := Report{Files: 1}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var d yaml.Node
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return Report{}, decodeError(file, err)
		}
		if len(d.Content) == 0 {
			continue
		}
		c.objects(d.Content[0], 0, func(obj *yaml.Node) {
			if w, ok := podTemplate(obj); ok {
				rep.Workloads++
				rep.Findings = append(rep.Findings, c.checkWorkload(file, doc, w)...)
			}
		})
	}
	sortFindings(rep.Findings)
	return rep, nil
}

// objects calls fn for every object in n, unpacking lists (kind: List, or
// any kind ending in List with items).
func (c *Checker) objects(n *yaml.Node, depth int, fn func(*yaml.Node)) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > maxDepth {
		return
	}
	if strings.HasSuffix(str(get(n, "kind")), "List") {
		if its := get(n, "items"); its != nil && its.Kind == yaml.SequenceNode {
			for _, it := range items(its) {
				c.objects(it, depth+1, fn)
			}
			return
		}
	}
	fn(n)
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if c := a.Line - b.Line; c != 0 {
			return c
		}
		if c := a.Doc - b.Doc; c != 0 {
			return c
		}
		if c := strings.Compare(a.Container, b.Container); c != 0 {
			return c
		}
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := strings.Compare(a.Detail, b.Detail); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}
