package gitops

import (
	"fmt"
	"strconv"
	"strings"
)

// segment is one step of a values path: a mapping key, or a list index when
// index >= 0.
type segment struct {
	key   string
	index int
}

func (s segment) isIndex() bool { return s.index >= 0 }

// parsePath parses a dotted values path such as image.tag.
//
// Keys are separated by dots. A key that contains a dot, a bracket, a double
// quote or a backslash is written in double quotes with backslash escapes for
// the quote and the backslash: ingress.annotations."nginx.ingress.kubernetes.io/rewrite-target".
// A key may be followed by list indexes: containers[0].image. The path starts
// with a key because a values file is a mapping.
func parsePath(p string) ([]segment, error) {
	if p == "" {
		return nil, fmt.Errorf("bad path %q: empty", p)
	}
	var segs []segment
	i := 0
	for {
		// One key, then any number of [N].
		var key string
		if i < len(p) && p[i] == '"' {
			var b strings.Builder
			j := i + 1
			for ; j < len(p) && p[j] != '"'; j++ {
				if p[j] == '\\' {
					j++
					if j == len(p) || (p[j] != '"' && p[j] != '\\') {
						return nil, fmt.Errorf("bad path %q: only \\\" and \\\\ may be escaped in a quoted key (offset %d)", p, j-1)
					}
				}
				b.WriteByte(p[j])
			}
			if j == len(p) {
				return nil, fmt.Errorf("bad path %q: unterminated quoted key at offset %d", p, i)
			}
			key, i = b.String(), j+1
		} else {
			j := i
			for j < len(p) && !strings.ContainsRune(`.[]"\`, rune(p[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("bad path %q: empty key at offset %d", p, i)
			}
			key, i = p[i:j], j
		}
		if strings.ContainsFunc(key, isControl) {
			return nil, fmt.Errorf("bad path %q: key %q contains a control character", p, key)
		}
		segs = append(segs, segment{key: key, index: -1})
		for i < len(p) && p[i] == '[' {
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("bad path %q: unterminated index at offset %d", p, i)
			}
			digits := p[i+1 : i+j]
			n, err := strconv.Atoi(digits)
			if err != nil || n < 0 || digits != strconv.Itoa(n) {
				return nil, fmt.Errorf("bad path %q: index %q at offset %d is not a non-negative integer", p, digits, i)
			}
			segs = append(segs, segment{index: n})
			i += j + 1
		}
		if i == len(p) {
			return segs, nil
		}
		if p[i] != '.' {
			return nil, fmt.Errorf("bad path %q: unexpected %q at offset %d", p, p[i], i)
		}
		i++
		if i == len(p) {
			return nil, fmt.Errorf("bad path %q: ends with a dot", p)
		}
	}
}

// formatPath writes segs in the syntax parsePath reads.
func formatPath(segs []segment) string {
	var b strings.Builder
	for i, s := range segs {
		if s.isIndex() {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if s.key == "" || strings.ContainsAny(s.key, `.[]"\`) {
			b.WriteByte('"')
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s.key))
			b.WriteByte('"')
		} else {
			b.WriteString(s.key)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
