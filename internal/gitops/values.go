package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Edit sets the value at Path in a values file to the string Value.
//
// Path is a dotted path of mapping keys with optional list indexes, such as
// image.tag, ingress.annotations."nginx.ingress.kubernetes.io/ssl-redirect"
// or containers[0].image. A key containing ., [, ], " or \ is written in
// double quotes, with \" and \\ as the only escapes. Keys match the way
// Helm reads them, as strings: the path segment 0 matches the key 00, true
// matches True.
type Edit struct {
	Path  string
	Value string
}

// SetValues applies edits, in order, to the YAML document doc and returns the
// new bytes, whether they differ from doc, and an error naming the edit and
// the problem.
//
// Only the text of each target scalar changes; every other byte of doc is
// kept: comments (also a comment after the value on the same line), key
// order, indentation, anchors, flow style, document markers, a byte order
// mark and the line endings. The rules are:
//
//   - Quoting: a double- or single-quoted value keeps its quotes. A plain
//     value stays plain when the new value reads back as the same string in
//     YAML 1.2 and in YAML 1.1 (which Helm uses); otherwise it is double
//     quoted, so a tag like 1.10, true, 0x1F or 2024-01-01 stays a string.
//     A block scalar (| or >) is replaced by a single-line scalar and keeps
//     the comment on its header line.
//   - Anchors and tags: an anchored value can be set and keeps its anchor, so
//     its aliases see the new value too. A path that goes through an alias,
//     or ends at one, is an error: lotse does not decide for the author
//     whether the shared value or just this use of it should change. A value
//     with an explicit tag other than !!str is an error.
//   - Missing keys: when the path does not exist, the missing keys are added
//     at the end of the deepest mapping that exists, with the indentation the
//     file already uses and the file's line ending; inside a flow mapping
//     they are added as ", key: value". An empty value (key: with nothing
//     after it) is filled in as a mapping. An empty file (or one with only
//     comments) gets the keys appended. List items are never created.
//   - Several documents: the path must exist in exactly one document of the
//     stream, which is then edited; lotse does not guess which document of a
//     multi-document file should receive a new key.
//   - No-op: when the value is already the string Value, doc is returned
//     unchanged with changed false.
//
// Each edit is verified by parsing the result: the decoded documents must
// equal the decoded input with only the target set to the new value, or the
// edit is refused.
func SetValues(doc []byte, edits []Edit) (out []byte, changed bool, err error) {
	out = doc
	for _, e := range edits {
		next, ch, err := setValue(out, e)
		if err != nil {
			return nil, false, fmt.Errorf("set %s: %w", e.Path, err)
		}
		out, changed = next, changed || ch
	}
	return out, changed, nil
}

// splice replaces b[start:end] with text.
type splice struct {
	start, end int
	text       string
}

func setValue(src []byte, e Edit) ([]byte, bool, error) {
	segs, err := parsePath(e.Path)
	if err != nil {
		return nil, false, err
	}
	if !utf8.ValidString(e.Value) {
		return nil, false, errors.New("the value is not valid UTF-8")
	}
	if bytes.HasPrefix(src, []byte("\xFF\xFE")) || bytes.HasPrefix(src, []byte("\xFE\xFF")) {
		return nil, false, errors.New("the file is UTF-16; lotse edits UTF-8 values files only")
	}
	roots, err := parseRoots(src)
	if err != nil {
		return nil, false, err
	}
	if _, err := decodeRoots(roots); err != nil {
		return nil, false, fmt.Errorf("not valid YAML: %w", err)
	}

	s := newSource(src)
	sp, roots, err := plan(s, roots, segs, e.Value)
	if err != nil {
		return nil, false, err
	}
	if sp == nil {
		return src, false, nil
	}
	out := make([]byte, 0, len(src)+len(sp.text))
	out = append(out, src[:sp.start]...)
	out = append(out, sp.text...)
	out = append(out, src[sp.end:]...)

	// roots now holds the input's trees with the edit applied.
	want, err := decodeRoots(roots)
	if err != nil {
		return nil, false, fmt.Errorf("internal error: cannot decode the edited tree: %w", err)
	}
	outRoots, err := parseRoots(out)
	if err != nil {
		return nil, false, fmt.Errorf("internal error: the edit would make the file invalid (%w); refusing it", err)
	}
	got, err := decodeRoots(outRoots)
	if err != nil || !equalTrees(got, want) {
		return nil, false, errors.New("internal error: the edit would change more than its target; refusing it")
	}
	return out, true, nil
}

// parseRoots parses every document in src and returns their root nodes.
func parseRoots(src []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var roots []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return roots, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not valid YAML: %w", err)
		}
		if n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
			return nil, errors.New("not valid YAML: unexpected document structure")
		}
		roots = append(roots, n.Content[0])
	}
}

func decodeRoots(roots []*yaml.Node) ([]any, error) {
	vs := make([]any, len(roots))
	for i, r := range roots {
		if err := r.Decode(&vs[i]); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

// plan works out the splice for setting segs to value and applies the same
// edit to the node trees, which it returns (with a new document when the file
// had none). A nil splice means the value is already set.
func plan(s *source, roots []*yaml.Node, segs []segment, value string) (*splice, []*yaml.Node, error) {
	if len(roots) == 0 {
		// An empty file, or only comments: append the keys.
		if err := checkCreatable(segs); err != nil {
			return nil, nil, err
		}
		at := len(s.b)
		root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		return appendDocument(s, at, root, segs, value), []*yaml.Node{root}, nil
	}
	f, err := findTarget(roots, segs)
	if err != nil {
		return nil, nil, err
	}
	if len(f.rest) == 0 {
		sp, err := replaceScalar(s, f, value)
		return sp, roots, err
	}
	sp, err := create(s, roots, f, value)
	return sp, roots, err
}

// appendDocument adds segs: value as a block mapping at offset at, on a line
// of its own, and records it in root.
func appendDocument(s *source, at int, root *yaml.Node, segs []segment, value string) *splice {
	text := renderBlock(segs, value, 0, 2, s.eol) + s.eol
	if at > s.starts[0] && breakLen(s.b, at-1) == 0 && !bytes.HasSuffix(s.b[:at], []byte("\u2028")) &&
		!bytes.HasSuffix(s.b[:at], []byte("\u2029")) && !bytes.HasSuffix(s.b[:at], []byte("\u0085")) {
		text = s.eol + text
	}
	addKeys(root, segs, value)
	return &splice{start: at, end: at, text: text}
}

// found is where a path lookup ended.
type found struct {
	node *yaml.Node // the target, or the deepest node that exists
	key  *yaml.Node // the mapping key of node, if node is a mapping value
	// parentIndent is the indentation that block content of node must exceed.
	parentIndent int
	flow         bool      // node is inside a flow collection
	rest         []segment // the part of the path that does not exist
	doc          int       // index of the document
}

// findTarget looks segs up in every document; see SetValues for the rules.
func findTarget(roots []*yaml.Node, segs []segment) (found, error) {
	if len(roots) == 1 {
		return locate(roots[0], segs)
	}
	var hits []found
	var misses []string
	for i, r := range roots {
		f, err := locate(r, segs)
		f.doc = i
		switch {
		case err != nil:
			misses = append(misses, fmt.Sprintf("document %d: %v", i+1, err))
		case len(f.rest) > 0:
			misses = append(misses, fmt.Sprintf("document %d: %q does not exist", i+1, formatPath(segs[:len(segs)-len(f.rest)+1])))
		default:
			hits = append(hits, f)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return found{}, fmt.Errorf("the path is in none of the %d documents, and lotse adds keys only to single-document files (%s)",
			len(roots), strings.Join(misses, "; "))
	}
	return found{}, fmt.Errorf("the path is in documents %d and %d (at least); lotse edits exactly one place", hits[0].doc+1, hits[1].doc+1)
}

// locate follows segs from root as far as they exist.
func locate(root *yaml.Node, segs []segment) (found, error) {
	f := found{node: root, parentIndent: -1}
	for i, seg := range segs {
		cur, at := f.node, formatPath(segs[:i])
		if cur.Kind == yaml.AliasNode {
			return f, aliasError(at, cur, "goes through")
		}
		if seg.isIndex() {
			if cur.Kind != yaml.SequenceNode {
				return f, fmt.Errorf("%q is %s, not a list (line %d)", at, describe(cur), cur.Line)
			}
			if seg.index >= len(cur.Content) {
				return f, fmt.Errorf("%q has %d items, so there is no item %d, and lotse does not add list items", at, len(cur.Content), seg.index)
			}
			f = found{node: cur.Content[seg.index], parentIndent: cur.Column - 1, flow: f.flow || cur.Style&yaml.FlowStyle != 0}
			continue
		}
		if isImplicitNull(cur) && (f.key != nil || i == 0) {
			f.rest = segs[i:]
			return f, nil
		}
		if cur.Kind != yaml.MappingNode {
			if i == 0 {
				return f, fmt.Errorf("the document is %s, not a mapping (line %d)", describe(cur), cur.Line)
			}
			return f, fmt.Errorf("%q is %s, not a mapping (line %d)", at, describe(cur), cur.Line)
		}
		var key, val *yaml.Node
		for j := 0; j+1 < len(cur.Content); j += 2 {
			k := cur.Content[j]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" || helmKey(k) != seg.key {
				continue
			}
			if key != nil {
				return f, fmt.Errorf("key %q is in the mapping twice as Helm reads keys (lines %d and %d)", seg.key, key.Line, k.Line)
			}
			key, val = k, cur.Content[j+1]
		}
		if key == nil {
			if err := checkKeyClash(cur, seg.key, i == len(segs)-1); err != nil {
				return f, err
			}
			f.rest = segs[i:]
			return f, nil
		}
		f = found{node: val, key: key, parentIndent: key.Column - 1, flow: f.flow || cur.Style&yaml.FlowStyle != 0}
	}
	if f.node.Kind == yaml.AliasNode {
		return f, aliasError(formatPath(segs), f.node, "ends at")
	}
	return f, nil
}

// helmKey returns key k as Helm sees it, which is what a path segment
// matches: Helm turns keys into strings, so 00 is "0", 1.0 is "1", true is
// "true" and ~ is "null".
func helmKey(k *yaml.Node) string {
	if k.ShortTag() == "!!str" {
		return k.Value
	}
	var v any
	if k.Decode(&v) != nil {
		return k.Value
	}
	if v == nil {
		return "null"
	}
	return fmt.Sprint(v)
}

// checkKeyClash refuses to add key to mapping m when key comes from a merge
// key (<<), unless the new key is the last one of the path and overrides a
// single value: a new key would hide a merged mapping or list as a whole.
func checkKeyClash(m *yaml.Node, key string, leaf bool) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			continue
		}
		if v := mergedValue(m.Content[i+1], key, 0); v != nil && (!leaf || v.Kind != yaml.ScalarNode) {
			return fmt.Errorf("%q comes from the merge key at line %d as %s; lotse does not add a key that would hide it", key, k.Line, describe(v))
		}
	}
	return nil
}

// mergedValue returns the value of key in the mappings merged by the value of
// a merge key (an alias of a mapping or a list of them), or nil.
func mergedValue(n *yaml.Node, key string, depth int) *yaml.Node {
	if depth > 32 {
		return nil
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if v := mergedValue(c, key, depth+1); v != nil {
				return v
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Value == key {
				if v.Kind == yaml.AliasNode && v.Alias != nil {
					v = v.Alias
				}
				return v
			}
			if k.ShortTag() == "!!merge" {
				if v := mergedValue(v, key, depth+1); v != nil {
					return v
				}
			}
		}
	}
	return nil
}

func aliasError(at string, n *yaml.Node, verb string) error {
	line := 0
	if n.Alias != nil {
		line = n.Alias.Line
	}
	return fmt.Errorf("%q is an alias of &%s (line %d) and the path %s it; lotse does not edit through aliases, so set the anchored value or replace the alias with the value",
		at, n.Value, line, verb)
}

// describe names the kind of value n holds, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	}
	return "a scalar"
}

// replaceScalar plans setting the existing value f.node.
func replaceScalar(s *source, f found, value string) (*splice, error) {
	n := f.node
	if n.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("the value is %s, not a single value (line %d)", describe(n), n.Line)
	}
	if n.Style&yaml.TaggedStyle != 0 && n.ShortTag() != "!!str" {
		return nil, fmt.Errorf("the value has the explicit tag %s (line %d); lotse writes strings only", n.Tag, n.Line)
	}
	if n.ShortTag() == "!!str" && n.Value == value {
		return nil, nil
	}
	var sp *splice
	if isImplicitNull(n) {
		if f.key == nil {
			return nil, fmt.Errorf("the list item at line %d is empty; lotse does not fill empty list items", n.Line)
		}
		colon, err := s.colonAfter(f.key)
		if err != nil {
			return nil, err
		}
		sp = &splice{start: colon + 1, end: colon + 1, text: " " + renderScalar(value, 0, f.flow)}
	} else {
		start, end, comment, err := s.scalarExtent(n, f.parentIndent)
		if err != nil {
			return nil, err
		}
		text := renderScalar(value, n.Style, f.flow)
		if start == end && start > 0 && !isBlankOrBreak(s.b, start-1) {
			text = " " + text // after a tag or anchor
		}
		if comment != "" {
			text += " " + comment
		}
		sp = &splice{start: start, end: end, text: text}
	}
	n.Kind, n.Tag, n.Style, n.Value, n.Content = yaml.ScalarNode, "!!str", yaml.DoubleQuotedStyle, value, nil
	return sp, nil
}

// create plans adding the missing keys f.rest below f.node.
func create(s *source, roots []*yaml.Node, f found, value string) (*splice, error) {
	if err := checkCreatable(f.rest); err != nil {
		return nil, err
	}
	n := f.node
	step := indentStep(roots[f.doc])
	var sp *splice
	switch {
	case isImplicitNull(n) && f.key != nil && !f.flow:
		// key: (nothing) becomes a mapping on the following lines.
		line := f.key.Line
		indent := f.key.Column - 1 + step
		sp = &splice{start: s.lineEnd(line), end: s.lineEnd(line), text: s.eol + renderBlock(f.rest, value, indent, step, s.eol)}
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
	case isImplicitNull(n) && f.key != nil:
		colon, err := s.colonAfter(f.key)
		if err != nil {
			return nil, err
		}
		sp = &splice{start: colon + 1, end: colon + 1, text: " {" + renderFlow(f.rest, value) + "}"}
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
	case isImplicitNull(n) && n == roots[f.doc] && len(roots) == 1:
		// A document with nothing but comments.
		at, err := s.start(n)
		if err != nil {
			return nil, err
		}
		root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		sp = appendDocument(s, at, root, f.rest, value)
		*n = *root
		return sp, nil
	case n.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("the document is %s, not a mapping (line %d)", describe(n), n.Line)
	case n.Style&yaml.FlowStyle != 0 && len(n.Content) == 0:
		off, err := s.start(n)
		if err != nil {
			return nil, err
		}
		_, off = s.skipProps(off)
		if off >= len(s.b) || s.b[off] != '{' {
			return nil, fmt.Errorf("cannot find the { of the mapping at line %d", n.Line)
		}
		sp = &splice{start: off + 1, end: off + 1, text: renderFlow(f.rest, value)}
	case n.Style&yaml.FlowStyle != 0:
		lastKey, lastVal := n.Content[len(n.Content)-2], n.Content[len(n.Content)-1]
		end, err := s.nodeEnd(lastVal, -1)
		if err != nil {
			return nil, err
		}
		if end < 0 {
			colon, err := s.colonAfter(lastKey)
			if err != nil {
				return nil, err
			}
			end = colon + 1
		}
		sp = &splice{start: end, end: end, text: ", " + renderFlow(f.rest, value)}
	default:
		line, err := s.blockMappingEnd(n)
		if err != nil {
			return nil, err
		}
		indent := n.Content[0].Column - 1
		sp = &splice{start: s.lineEnd(line), end: s.lineEnd(line), text: s.eol + renderBlock(f.rest, value, indent, step, s.eol)}
	}
	addKeys(n, f.rest, value)
	return sp, nil
}

// checkCreatable refuses to create a path with list indexes.
func checkCreatable(segs []segment) error {
	for _, seg := range segs {
		if seg.isIndex() {
			return fmt.Errorf("%q does not exist, and lotse does not add list items", formatPath(segs))
		}
	}
	return nil
}

// addKeys adds segs: value to mapping m, creating the nested mappings.
func addKeys(m *yaml.Node, segs []segment, value string) {
	for i, seg := range segs {
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg.key}
		v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if i == len(segs)-1 {
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: value}
		}
		m.Content = append(m.Content, k, v)
		m = v
	}
}

// renderBlock writes segs: value as nested block mappings, the first key
// indented by indent spaces and each level by step more, without a final line
// break.
func renderBlock(segs []segment, value string, indent, step int, eol string) string {
	var b strings.Builder
	for i, seg := range segs {
		b.WriteString(strings.Repeat(" ", indent+i*step))
		b.WriteString(renderScalar(seg.key, 0, false))
		b.WriteByte(':')
		if i < len(segs)-1 {
			b.WriteString(eol)
		}
	}
	b.WriteString(" " + renderScalar(value, 0, false))
	return b.String()
}

// renderFlow writes segs: value as the inside of a flow mapping.
func renderFlow(segs []segment, value string) string {
	text := renderScalar(value, 0, true)
	for i := len(segs) - 1; i >= 0; i-- {
		if i < len(segs)-1 {
			text = "{" + text + "}"
		}
		text = renderScalar(segs[i].key, 0, true) + ": " + text
	}
	return text
}

// indentStep returns how many spaces the document indents a nested block
// mapping, or 2 if it has none.
func indentStep(root *yaml.Node) int {
	var walk func(n *yaml.Node) int
	walk = func(n *yaml.Node) int {
		if n.Kind == yaml.MappingNode && n.Style&yaml.FlowStyle == 0 {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 &&
					v.Content[0].Line > k.Line && v.Content[0].Column > k.Column {
					return v.Content[0].Column - k.Column
				}
			}
		}
		for _, c := range n.Content {
			if step := walk(c); step > 0 {
				return step
			}
		}
		return 0
	}
	if step := walk(root); step > 0 {
		return step
	}
	return 2
}

// equalTrees compares decoded YAML values, treating NaN as equal to itself.
func equalTrees(a, b any) bool {
	switch a := a.(type) {
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalTrees(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		return ok && equalMaps(a, b)
	case map[any]any:
		b, ok := b.(map[any]any)
		return ok && equalMaps(a, b)
	case float64:
		b, ok := b.(float64)
		return ok && (a == b || math.IsNaN(a) && math.IsNaN(b))
	}
	return a == b
}

// equalMaps is equalTrees for the two map types YAML decodes to.
func equalMaps[K comparable](a, b map[K]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !equalTrees(v, w) {
			return false
		}
	}
	return true
}
