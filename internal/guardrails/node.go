package guardrails

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxDepth bounds how deep lookups follow aliases, merge keys and nested
// lists. YAML allows an anchor to contain an alias of itself, so without a
// bound a crafted input would recurse forever.
const maxDepth = 8

// resolve follows aliases to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// get returns the value of key in mapping m (nil when m is not a mapping or
// has no such key). As in the JSON decoders Kubernetes uses, the last of
// duplicate keys wins; keys written out win over merged ones (<<).
func get(m *yaml.Node, key string) *yaml.Node {
	return getDepth(m, key, 0)
}

func getDepth(m *yaml.Node, key string, depth int) *yaml.Node {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode || depth > maxDepth {
		return nil
	}
	var hit *yaml.Node
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		switch {
		case k.Kind == yaml.ScalarNode && k.Value == key && k.ShortTag() != "!!merge":
			hit = m.Content[i+1]
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merges = append(merges, m.Content[i+1])
		}
	}
	if hit != nil {
		return resolve(hit)
	}
	for _, mv := range merges {
		mv = resolve(mv)
		if mv == nil {
			continue
		}
		srcs := []*yaml.Node{mv}
		if mv.Kind == yaml.SequenceNode {
			srcs = mv.Content
		}
		// In a list of merged mappings the first one wins.
		for _, s := range srcs {
			if v := getDepth(s, key, depth+1); v != nil {
				return v
			}
		}
	}
	return nil
}

// path follows keys from n.
func path(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n = get(n, k); n == nil {
			return nil
		}
	}
	return n
}

// items returns the entries of a sequence, aliases resolved; nil otherwise.
func items(n *yaml.Node) []*yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		if c = resolve(c); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// isNull reports whether n is missing or a YAML null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// str returns the text of a scalar, "" for anything else.
func str(n *yaml.Node) string {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return ""
	}
	return n.Value
}

// quoted reports whether a scalar is written in quotes, as a block scalar or
// with an explicit tag: then it is not a boolean or number to Kubernetes.
func quoted(n *yaml.Node) bool {
	return n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle|yaml.TaggedStyle) != 0
}

// boolean reads n as Kubernetes does. Manifests are decoded with YAML 1.1
// rules (sigs.k8s.io/yaml), so a plain yes, on or y is true as well; a quoted
// "true" is a string there and not a boolean. ok is false for anything that
// is not a boolean.
func boolean(n *yaml.Node) (value, ok bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || quoted(n) {
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y":
		return true, true
	case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N":
		return false, true
	}
	return false, false
}

// isTrue reports whether n is the boolean true.
func isTrue(n *yaml.Node) bool {
	v, ok := boolean(n)
	return ok && v
}

// isFalse reports whether n is the boolean false.
func isFalse(n *yaml.Node) bool {
	v, ok := boolean(n)
	return ok && !v
}

// isZero reports whether n is the integer 0 (in any base YAML allows).
func isZero(n *yaml.Node) bool {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || quoted(n) {
		return false
	}
	v := strings.ReplaceAll(n.Value, "_", "")
	i, err := strconv.ParseInt(strings.TrimPrefix(v, "+"), 0, 64)
	return err == nil && i == 0
}

// lineOf returns the line of the first node that is not nil.
func lineOf(ns ...*yaml.Node) int {
	for _, n := range ns {
		if n != nil && n.Line > 0 {
			return n.Line
		}
	}
	return 0
}
