package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzSetValues checks the promise of SetValues against an oracle that does
// not share its code: when an edit succeeds, every document of the result
// decodes to the input document or to the input document with only the path
// set to the value (as Helm sees it: keys as strings), the path reads back as
// the value in exactly one document, and the same edit again is a no-op.
func FuzzSetValues(f *testing.F) {
	seeds := []struct{ doc, path, value string }{
		{"image:\n  repository: x # repo\n  tag: 1.0 # the tag\n", "image.tag", "1.10"},
		{"image: {repository: x, tag: y}\n", "image.tag", "z"},
		{"image: {}\n", "image.pullPolicy", "Always"},
		{"a: 1\r\nb:\r\n  c: 2\r\n", "b.d", "x"},
		{"\ufeffa: 'q'\n", "a", "it's"},
		{"a: &t 1.0\nb: *t\n", "a", "2"},
		{"a: |\n  hi\n  there\nb: 1\n", "a", "x\ny"},
		{"a: >-\n  folded\n  text\n\nb: [1, 2]\n", "b[1]", "3"},
		{"a: multi\n  line\n   plain\nb: 1\n", "c.d", "true"},
		{"a: 1\n---\nb: 2\n...\n", "b", "0x1F"},
		{"", "image.tag", "x"},
		{"# only a comment", "a.\"b.c\".d", "v: 1"},
		{"list:\n- name: a\n  image: x\n- name: b\n", "list[1].image", "#x"},
		{"a:\n  b:\n    c: |\n      text\n      # not comment\n", "a.b.d", "y"},
		{"base: &b {x: 1}\nimage:\n  <<: *b\n  tag: 1\n", "image.x", "2"},
		{"a: \"multi\n  line\" # c\nb: 1\n", "a", "\t"},
		{"a:\n  - x\n  -\n", "b", "1"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.doc), s.path, s.value)
	}
	f.Fuzz(func(t *testing.T, doc []byte, path, value string) {
		out, changed, err := SetValues(doc, []Edit{{Path: path, Value: value}})
		if err != nil {
			return
		}
		segs, err := parsePath(path)
		if err != nil {
			t.Fatalf("SetValues accepted the bad path %q", path)
		}
		if !changed && !bytes.Equal(out, doc) {
			t.Fatalf("changed is false but the bytes differ")
		}
		in, inAliases, ok := helmView(t, doc)
		if !ok {
			t.Fatalf("SetValues accepted input it cannot have parsed:\n%s", doc)
		}
		got, _, ok := helmView(t, out)
		if !ok {
			t.Fatalf("output does not parse:\n%s", out)
		}
		if len(in) == 0 {
			in = []any{nil}
		}
		if len(got) != len(in) {
			t.Fatalf("%d documents in, %d out:\n%s", len(in), len(got), out)
		}
		hits := 0
		for i := range in {
			if v, ok := getPath(got[i], segs); ok && v == value {
				hits++
			}
			if inAliases || equalTrees(got[i], in[i]) {
				continue
			}
			want, ok := setPath(in[i], segs, value)
			if !ok {
				t.Fatalf("document %d: SetValues succeeded where the path cannot be set:\nin:\n%s\nout:\n%s", i+1, doc, out)
			}
			if !equalTrees(got[i], want) {
				t.Fatalf("document %d: more than the target changed:\nin:\n%s\nout:\n%s\ngot  %#v\nwant %#v", i+1, doc, out, got[i], want)
			}
		}
		if hits != 1 {
			t.Fatalf("the path reads back as the value in %d documents:\n%s", hits, out)
		}
		again, changed, err := SetValues(out, []Edit{{Path: path, Value: value}})
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("second edit is not a no-op: changed=%v err=%v\n%s\n---\n%s", changed, err, out, again)
		}
	})
}

// helmView decodes every document and turns keys into strings the way Helm
// does. aliases reports whether the documents use aliases or keys that are
// not strings, where comparing trees key by key says little.
func helmView(t *testing.T, doc []byte) (docs []any, aliases, ok bool) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, aliases, true
		}
		if err != nil {
			return nil, false, false
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, false, false
		}
		aliases = aliases || hasAlias(&n)
		v, odd := stringKeys(v)
		aliases = aliases || odd
		docs = append(docs, v)
	}
}

func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}

func stringKeys(v any) (any, bool) {
	odd := false
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			var o bool
			v[k], o = stringKeys(e)
			odd = odd || o
		}
		return v, odd
	case map[any]any:
		m := map[string]any{}
		for k, e := range v {
			key := fmt.Sprint(k)
			if k == nil {
				key = "null"
			}
			m[key], _ = stringKeys(e)
		}
		return m, true
	case []any:
		for i, e := range v {
			var o bool
			v[i], o = stringKeys(e)
			odd = odd || o
		}
	}
	return v, odd
}

func getPath(v any, segs []segment) (any, bool) {
	for _, s := range segs {
		if s.isIndex() {
			l, ok := v.([]any)
			if !ok || s.index >= len(l) {
				return nil, false
			}
			v = l[s.index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[s.key]; !ok {
			return nil, false
		}
	}
	return v, true
}

// setPath returns a copy of v with segs set to value, creating mappings for
// missing keys and for nulls.
func setPath(v any, segs []segment, value string) (any, bool) {
	if len(segs) == 0 {
		return value, true
	}
	s := segs[0]
	if s.isIndex() {
		l, ok := v.([]any)
		if !ok || s.index >= len(l) {
			return nil, false
		}
		c := append([]any(nil), l...)
		e, ok := setPath(l[s.index], segs[1:], value)
		c[s.index] = e
		return c, ok
	}
	m, ok := v.(map[string]any)
	if v == nil {
		m, ok = map[string]any{}, true
	}
	if !ok {
		return nil, false
	}
	c := make(map[string]any, len(m)+1)
	for k, e := range m {
		c[k] = e
	}
	e, ok := setPath(m[s.key], segs[1:], value)
	c[s.key] = e
	return c, ok
}
