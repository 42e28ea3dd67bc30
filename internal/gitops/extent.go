package gitops

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file finds where nodes end in the source text. yaml.v3 records only
// where a node starts, so the end is found by scanning from there.

// start returns the offset where n's text starts (at its anchor or tag, if any).
func (s *source) start(n *yaml.Node) (int, error) {
	return s.offset(n.Line, n.Column)
}

// skipProps skips an anchor and a tag at off. It returns the offset just after
// the last property and the offset where the node's content starts.
func (s *source) skipProps(off int) (afterProps, content int) {
	b := s.b
	afterProps = off
	for off < len(b) && (b[off] == '&' || b[off] == '!') {
		if bytes.HasPrefix(b[off:], []byte("!<")) {
			if i := bytes.IndexByte(b[off:], '>'); i > 0 {
				off += i + 1
			}
		}
		for off < len(b) && !isBlankOrBreak(b, off) && !isFlowIndicator(b[off]) {
			off++
		}
		afterProps = off
		off = s.skipSpace(off)
	}
	return afterProps, off
}

// skipSpace skips spaces, tabs, line breaks and comments.
func (s *source) skipSpace(off int) int {
	b := s.b
	for off < len(b) {
		switch {
		case b[off] == ' ' || b[off] == '\t':
			off++
		case breakLen(b, off) > 0:
			off += breakLen(b, off)
		case b[off] == '#':
			for off < len(b) && breakLen(b, off) == 0 {
				off++
			}
		default:
			return off
		}
	}
	return off
}

func isBlankOrBreak(b []byte, i int) bool {
	return b[i] == ' ' || b[i] == '\t' || breakLen(b, i) > 0
}

func isFlowIndicator(c byte) bool { return strings.IndexByte(",[]{}", c) >= 0 }

// isImplicitNull reports whether n is an empty scalar with no text at all, as
// in "key:" with nothing after the colon. yaml.v3 places such a node at the
// next token, so its position says nothing about where it is.
func isImplicitNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "" && n.Tag == "!!null" && n.Style == 0 && n.Anchor == ""
}

// scalarExtent returns the byte range [start, end) of the text of scalar n,
// without its anchor and tag. parentIndent is the indentation its block
// scalar content must exceed. For block scalars it also returns the comment on
// the header line, if any.
func (s *source) scalarExtent(n *yaml.Node, parentIndent int) (start, end int, comment string, err error) {
	off, err := s.start(n)
	if err != nil {
		return 0, 0, "", err
	}
	afterProps, start := s.skipProps(off)
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		end, err = s.quotedEnd(start, '"')
	case n.Style&yaml.SingleQuotedStyle != 0:
		end, err = s.quotedEnd(start, '\'')
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		end, comment, err = s.blockEnd(start, parentIndent)
	case n.Value == "":
		return afterProps, afterProps, "", nil
	default:
		end, err = s.plainEnd(start, n.Value)
	}
	if err != nil {
		return 0, 0, "", fmt.Errorf("cannot find the text of the value at line %d column %d: %w", n.Line, n.Column, err)
	}
	return start, end, comment, nil
}

// quotedEnd returns the offset just after the quoted scalar starting at off.
func (s *source) quotedEnd(off int, quote byte) (int, error) {
	b := s.b
	if off >= len(b) || b[off] != quote {
		return 0, fmt.Errorf("no %c at the start", quote)
	}
	for i := off + 1; i < len(b); i++ {
		switch {
		case quote == '"' && b[i] == '\\':
			i++
		case b[i] == quote && quote == '\'' && i+1 < len(b) && b[i+1] == '\'':
			i++
		case b[i] == quote:
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c", quote)
}

// plainEnd returns the end of the plain scalar starting at off by matching its
// value against the text. Within a line the text is the value; a line break
// with the whitespace around it folds to a space, and n line breaks fold to
// n-1 newlines.
func (s *source) plainEnd(off int, value string) (int, error) {
	b, i, j := s.b, off, 0
	for j < len(value) {
		if i >= len(b) {
			return 0, fmt.Errorf("text ends before the value")
		}
		if b[i] == ' ' || b[i] == '\t' || breakLen(b, i) > 0 {
			k, breaks := i, 0
			for k < len(b) && isBlankOrBreak(b, k) {
				if n := breakLen(b, k); n > 0 {
					breaks++
					k += n
				} else {
					k++
				}
			}
			if breaks > 0 {
				fold := " "
				if breaks > 1 {
					fold = strings.Repeat("\n", breaks-1)
				}
				if !strings.HasPrefix(value[j:], fold) {
					return 0, fmt.Errorf("folded text does not match the value")
				}
				i, j = k, j+len(fold)
				continue
			}
		}
		if b[i] != value[j] {
			return 0, fmt.Errorf("text does not match the value")
		}
		i, j = i+1, j+1
	}
	return i, nil
}

// blockEnd returns the end of the block scalar (| or >) whose indicator is at
// off: the end of its last content line, or of its header line when it has
// no content. Content lines are the lines indented more than parentIndent;
// with keep chomping (+) the trailing blank lines belong to it as well.
func (s *source) blockEnd(off, parentIndent int) (end int, comment string, err error) {
	b := s.b
	if off >= len(b) || (b[off] != '|' && b[off] != '>') {
		return 0, "", fmt.Errorf("no block scalar indicator")
	}
	header := s.line(off)
	i := off + 1
	keep := false
	for i < len(b) && strings.IndexByte("+-0123456789", b[i]) >= 0 {
		keep = keep || b[i] == '+'
		i++
	}
	rest := strings.TrimLeft(string(b[i:s.lineEnd(header)]), " \t")
	if strings.HasPrefix(rest, "#") {
		comment = rest
	}
	last := header
	for l := header + 1; l <= len(s.starts); l++ {
		if s.starts[l-1] == len(b) {
			break // the empty "line" after a final line break
		}
		ind, blank := s.indent(l)
		if blank {
			if keep {
				last = l
			}
			continue
		}
		if ind <= parentIndent {
			break
		}
		last = l
	}
	return s.lineEnd(last), comment, nil
}

// flowEnd returns the offset just after the flow collection whose opening
// bracket is at off.
func (s *source) flowEnd(off int) (int, error) {
	b := s.b
	depth := 0
	for i := off; i < len(b); i++ {
		switch c := b[i]; {
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case c == '"' || c == '\'':
			end, err := s.quotedEnd(i, c)
			if err != nil {
				return 0, err
			}
			i = end - 1
		case c == '#' && (i == 0 || isBlankOrBreak(b, i-1)):
			for i < len(b) && breakLen(b, i) == 0 {
				i++
			}
		}
	}
	return 0, fmt.Errorf("unterminated flow collection")
}

// nodeEnd returns the offset just after the text of n, or -1 when n has no
// text (an implicit null). parentIndent is as for scalarExtent.
func (s *source) nodeEnd(n *yaml.Node, parentIndent int) (int, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if isImplicitNull(n) {
			return -1, nil
		}
		_, end, _, err := s.scalarExtent(n, parentIndent)
		return end, err
	case yaml.AliasNode:
		off, err := s.start(n)
		if err != nil {
			return 0, err
		}
		for off < len(s.b) && !isBlankOrBreak(s.b, off) && !isFlowIndicator(s.b[off]) {
			off++
		}
		return off, nil
	case yaml.MappingNode, yaml.SequenceNode:
		if n.Style&yaml.FlowStyle != 0 {
			off, err := s.start(n)
			if err != nil {
				return 0, err
			}
			_, off = s.skipProps(off)
			return s.flowEnd(off)
		}
		end := -1
		for i, c := range n.Content {
			indent := n.Column - 1
			if n.Kind == yaml.MappingNode && i%2 == 1 {
				indent = n.Content[i-1].Column - 1
			}
			e, err := s.nodeEnd(c, indent)
			if err != nil {
				return 0, err
			}
			end = max(end, e)
		}
		return end, nil
	}
	return -1, nil
}

// colonAfter returns the offset of the colon that follows mapping key k.
func (s *source) colonAfter(k *yaml.Node) (int, error) {
	end, err := s.nodeEnd(k, -1)
	if err != nil {
		return 0, err
	}
	if end < 0 {
		return 0, fmt.Errorf("empty key at line %d", k.Line)
	}
	for i := end; i < len(s.b); i++ {
		switch s.b[i] {
		case ':':
			return i, nil
		case ' ', '\t':
		default:
			return 0, fmt.Errorf("no colon after the key at line %d", k.Line)
		}
	}
	return 0, fmt.Errorf("no colon after the key at line %d", k.Line)
}

// blockMappingEnd returns the line after which a new entry of block mapping m
// goes: the last line of its last entry, not counting comments and blank
// lines that follow it.
func (s *source) blockMappingEnd(m *yaml.Node) (int, error) {
	indent := m.Content[0].Column - 1
	lastKey, lastVal := m.Content[len(m.Content)-2], m.Content[len(m.Content)-1]
	last := lastKey.Line
	end, err := s.nodeEnd(lastVal, lastKey.Column-1)
	if err != nil {
		return 0, err
	}
	if end >= 0 {
		last = max(last, s.line(end))
	}
	for l := lastKey.Line + 1; l <= len(s.starts); l++ {
		ind, blank := s.indent(l)
		if blank {
			continue
		}
		text := s.text(l)
		if isDocumentMarker(text) || ind < indent {
			break
		}
		if text[ind] != '#' {
			last = max(last, l)
		}
	}
	return last, nil
}

func isDocumentMarker(line []byte) bool {
	return (bytes.HasPrefix(line, []byte("---")) || bytes.HasPrefix(line, []byte("..."))) &&
		(len(line) == 3 || line[3] == ' ' || line[3] == '\t')
}
