package gitops

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// yaml11Special matches plain scalars that YAML 1.1 parsers do not read as
// strings: booleans, nulls, numbers (including octal, binary, sexagesimal and
// underscores), and dates. Helm reads values files with a YAML 1.1 parser, so
// a tag such as 1.10, on or 0777 has to be quoted even where yaml.v3 (YAML
// 1.2) would read it back as a string.
var yaml11Special = regexp.MustCompile(`(?i)^(?:` +
	`y|yes|n|no|true|false|on|off|null|~|=|<<` +
	`|[-+]?(?:0b[01_]+|0x[0-9a-f_]+|0o[0-7_]+|[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?(?:e[-+]?[0-9]+)?|\.[0-9_]+(?:e[-+]?[0-9]+)?|\.inf)` +
	`|\.nan` +
	`|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?` +
	`)$`)

// plainSafe reports whether s can be written as a plain scalar that every
// YAML parser reads back as the string s, in block context or, when flow is
// set, inside a flow collection.
func plainSafe(s string, flow bool) bool {
	if s == "" || s != strings.TrimSpace(s) || yaml11Special.MatchString(s) {
		return false
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	if strings.ContainsRune("-?:,[]{}#&*!|>'\"%@`", rune(s[0])) ||
		strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.HasSuffix(s, ":") ||
		(flow && strings.ContainsAny(s, ",[]{}:")) {
		return false
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil || len(n.Content) != 1 {
		return false
	}
	v := n.Content[0]
	return v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Style == 0 && v.Value == s
}

// singleQuotable reports whether s can be written in single quotes on one line.
func singleQuotable(s string) bool {
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// doubleQuote writes s as a double-quoted YAML scalar. Go's escapes for valid
// UTF-8 (\n, \t, \", \\, \xNN, \uNNNN, \UNNNNNNNN, ...) are all YAML escapes
// with the same meaning.
func doubleQuote(s string) string { return strconv.Quote(s) }

// renderScalar writes s in the style of the scalar it replaces, so a quoted
// value stays quoted the same way, and falls back to double quotes whenever
// that style cannot hold s as a string.
func renderScalar(s string, old yaml.Style, flow bool) string {
	switch {
	case old&yaml.DoubleQuotedStyle != 0:
		return doubleQuote(s)
	case old&yaml.SingleQuotedStyle != 0:
		if singleQuotable(s) {
			return "'" + strings.ReplaceAll(s, "'", "''") + "'"
		}
		return doubleQuote(s)
	case plainSafe(s, flow):
		return s
	}
	return doubleQuote(s)
}
