package promotion

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// lotse's comments and replies are GitLab markdown, and much of what they
// show comes from outside: image names from CI, gate reasons with a
// registry's errors and a scanner's package names, ArgoCD's health
// messages, ChatOps arguments. cell and code make such text inert: it shows
// as written and renders no link, image, HTML, mention, reference, table
// cell or hidden comment.

// cell makes outside text inert for one markdown table cell, quote line or
// sentence: one line, "<" and ">" as entities, and backslash escapes before
// every character that starts markdown or a GitLab reference (GitLab does
// not turn an escaped @, #, !, ~, %, $ or & into a mention or reference).
// An @ inside a word (image@sha256:…, user@host) mentions nobody and stays.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	prev := ' '
	for i, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case strings.ContainsRune("\\`*_[]{}|~#!$%&^", r),
			r == '@' && !unicode.IsLetter(prev) && !unicode.IsDigit(prev),
			i == 0 && strings.ContainsRune("-+=", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
		prev = r
	}
	return b.String()
}

// code shows outside text, such as an image name, as an inline code span,
// inside which nothing is markdown. Text a code span cannot hold safely
// (a backtick, which ends it; a "|" or "\", which a table splits cells on
// even inside code) is shown as cell text instead.
func code(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" || strings.ContainsAny(s, "`|\\") {
		return cell(s)
	}
	return "`" + s + "`"
}

// markdown is text lotse wrote as markdown (a usage line, a list of code
// spans it made with code): a reply shows it as it is.
type markdown string

// inert makes a reply's string arguments inert (see escaped); markdown ones
// stay as they are, others (numbers, phases) print as usual.
func inert(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case string:
			out[i] = escaped(a)
		case markdown:
			out[i] = string(a)
		default:
			out[i] = a
		}
	}
	return out
}

// escaped is outside text that formats as cell text, with %q too (quoted
// first, then made inert).
type escaped string

func (e escaped) Format(f fmt.State, verb rune) {
	s := string(e)
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	io.WriteString(f, cell(s)) //nolint:errcheck // fmt's buffer
}
