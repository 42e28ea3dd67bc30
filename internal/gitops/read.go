package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// GetValue reads the string at path (syntax as in Edit) from the YAML
// documents in doc. found is false when the path does not exist or ends at a
// null. As with SetValues the path must exist in at most one document of a
// multi-document file. Aliases are followed: reading through them is
// harmless. A value that is a mapping or a list is an error.
func GetValue(doc []byte, path string) (value string, found bool, err error) {
	segs, err := parsePath(path)
	if err != nil {
		return "", false, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	var hit *yaml.Node
	for {
		var d yaml.Node
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", false, fmt.Errorf("not valid YAML: %w", err)
		}
		if len(d.Content) == 0 {
			continue
		}
		n := lookup(d.Content[0], segs)
		if n == nil {
			continue
		}
		if hit != nil {
			return "", false, fmt.Errorf("%s exists in more than one document (lines %d and %d)", path, hit.Line, n.Line)
		}
		hit = n
	}
	if hit == nil || hit.Kind == yaml.ScalarNode && hit.ShortTag() == "!!null" {
		return "", false, nil
	}
	if hit.Kind != yaml.ScalarNode {
		return "", false, fmt.Errorf("%s is %s, not a single value (line %d)", path, describe(hit), hit.Line)
	}
	return hit.Value, true, nil
}

// lookup follows segs from n, resolving aliases; nil when the path is absent.
func lookup(n *yaml.Node, segs []segment) *yaml.Node {
	for _, seg := range segs {
		n = resolve(n)
		if n == nil {
			return nil
		}
		if seg.isIndex() {
			if n.Kind != yaml.SequenceNode || seg.index >= len(n.Content) {
				return nil
			}
			n = n.Content[seg.index]
			continue
		}
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			k := n.Content[j]
			if k.Kind == yaml.ScalarNode && k.ShortTag() != "!!merge" && helmKey(k) == seg.key {
				next = n.Content[j+1]
			}
		}
		if next == nil {
			// Helm resolves merge keys: a value may come from <<.
			for j := 0; j+1 < len(n.Content); j += 2 {
				if k := n.Content[j]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
					if v := mergedValue(n.Content[j+1], seg.key, 0); v != nil {
						next = v
						break
					}
				}
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return resolve(n)
}

// CurrentImage reads back the image reference the app's set paths hold in
// the values file doc: the inverse of Edits followed by SetValues. Parts the
// app does not set stay empty, except the repository, which defaults to the
// app's image. ok is false when none of the set paths holds a value (the app
// was never deployed to that stage). A reference part that does not parse, or
// a repository that is not the app's, is an error.
func (a *App) CurrentImage(doc []byte) (ref ImageRef, ok bool, err error) {
	ref.Repository = a.Image
	for _, t := range a.Set {
		path := a.SetPath(t)
		v, found, err := GetValue(doc, path)
		if err != nil {
			return ImageRef{}, false, fmt.Errorf("app %q: %w", a.Name, err)
		}
		if !found || v == "" {
			continue
		}
		ok = true
		switch t.Part {
		case PartRepository:
			ref.Repository = v
		case PartTag:
			ref.Tag = v
		case PartDigest:
			if !digestRE.MatchString(v) {
				return ImageRef{}, false, fmt.Errorf("app %q: %s holds %q, not a digest (sha256:...)", a.Name, path, v)
			}
			ref.Digest = v
		case PartReference:
			name, digest, _ := strings.Cut(v, "@")
			if !digestRE.MatchString(digest) {
				return ImageRef{}, false, fmt.Errorf("app %q: %s holds %q, not a reference repository@sha256:...", a.Name, path, v)
			}
			ref.Repository, ref.Digest = name, digest
		}
	}
	if ok && ref.Repository != a.Image {
		return ImageRef{}, false, fmt.Errorf("app %q: the values file points at %s, not at the app's image %s", a.Name, ref.Repository, a.Image)
	}
	return ref, ok, nil
}
