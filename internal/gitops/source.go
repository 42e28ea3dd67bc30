package gitops

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// source indexes the bytes of a YAML file by line, counting lines the way
// yaml.v3 does so that yaml.Node positions can be turned into byte offsets.
type source struct {
	b []byte
	// starts[i] is the byte offset where line i+1 starts; line 1 starts after
	// a UTF-8 byte order mark, which yaml.v3 does not count as a column.
	starts []int
	// eol is the file's line ending, used for every line lotse adds.
	eol string
}

var utf8BOM = []byte("\xEF\xBB\xBF")

func newSource(b []byte) *source {
	s := &source{b: b, eol: "\n"}
	first := 0
	if bytes.HasPrefix(b, utf8BOM) {
		first = len(utf8BOM)
	}
	s.starts = append(s.starts, first)
	sawEOL := false
	for i := first; i < len(b); {
		n := breakLen(b, i)
		if n == 0 {
			i++
			continue
		}
		if !sawEOL && (b[i] == '\r' || b[i] == '\n') {
			s.eol, sawEOL = string(b[i:i+n]), true
		}
		i += n
		s.starts = append(s.starts, i)
	}
	return s
}

// breakLen returns the length of the line break at b[i], or 0. Like yaml.v3 it
// treats CR LF, CR, LF, NEL, LS and PS as line breaks.
func breakLen(b []byte, i int) int {
	switch {
	case i >= len(b):
		return 0
	case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
		return 2
	case b[i] == '\r', b[i] == '\n':
		return 1
	case bytes.HasPrefix(b[i:], []byte("\u0085")):
		return 2
	case bytes.HasPrefix(b[i:], []byte("\u2028")), bytes.HasPrefix(b[i:], []byte("\u2029")):
		return 3
	}
	return 0
}

// offset turns a 1-based line and column (counted in characters) into a byte
// offset.
func (s *source) offset(line, col int) (int, error) {
	if line < 1 || line > len(s.starts) || col < 1 {
		return 0, fmt.Errorf("position %d:%d is outside the file", line, col)
	}
	off := s.starts[line-1]
	end := s.lineEnd(line)
	for range col - 1 {
		if off >= end {
			return 0, fmt.Errorf("position %d:%d is past the end of its line", line, col)
		}
		_, n := utf8.DecodeRune(s.b[off:])
		off += n
	}
	return off, nil
}

// line returns the 1-based line that holds byte offset off.
func (s *source) line(off int) int {
	lo, hi := 0, len(s.starts)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if s.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + 1
}

// lineEnd returns the offset of the line break that ends line (or the end of
// the file).
func (s *source) lineEnd(line int) int {
	off := s.starts[line-1]
	for off < len(s.b) && breakLen(s.b, off) == 0 {
		off++
	}
	return off
}

// indent returns the number of leading spaces on line and whether the line is
// blank (only spaces and tabs).
func (s *source) indent(line int) (n int, blank bool) {
	off, end := s.starts[line-1], s.lineEnd(line)
	for off+n < end && s.b[off+n] == ' ' {
		n++
	}
	rest := bytes.TrimLeft(s.b[off+n:end], " \t")
	return n, len(rest) == 0
}

// text returns line without its line break.
func (s *source) text(line int) []byte {
	return s.b[s.starts[line-1]:s.lineEnd(line)]
}
