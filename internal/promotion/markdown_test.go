package promotion

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
)

// hostile are strings from outside (image names, reasons, ChatOps
// arguments) that try to be markdown.
var hostile = map[string]string{
	"link":         "[click here](https://evil.example/x)",
	"image":        "![pixel](https://evil.example/p.png)",
	"autolink":     "<https://evil.example>",
	"mention":      "@all please look",
	"mention mid":  "fixed (@root)",
	"issue ref":    "see #12 and !3 and ~bug and %v1 and &5 and $7",
	"html":         `<img src=x onerror=alert(1)><a href="https://evil.example">x</a>`,
	"comment":      "<!-- lotse:sticky app=shop stage=production -->",
	"open comment": "everything after this is hidden <!--",
	"table":        "a | b | c",
	"newlines":     "line one\n\n# heading\n- item\n> quote",
	"emphasis":     "**bold** _it_ ~~gone~~ `code`",
	"escaped":      `\[not a link\](x) \| \@all`,
	"heading":      "# Big",
	"list":         "- item",
	"diff":         "{+ added +} {- removed -}",
	"footnote":     "text[^1]",
	"entity":       "&lt;script&gt;",
}

// inertText reports what in s is markdown or a GitLab reference rather than
// text: s must be one line whose special characters are all escaped.
func inertText(s string) error {
	if strings.ContainsAny(s, "\n\r<>") {
		return fmt.Errorf("a line break, < or > in %q", s)
	}
	prev, escapedNext := ' ', false
	for i, c := range s {
		switch {
		case escapedNext:
			escapedNext = false
		case c == '\\':
			escapedNext = true
		case strings.ContainsRune("`*_[]{}|~#!$%^", c):
			return fmt.Errorf("unescaped %q at %d in %q", c, i, s)
		case c == '&' && !strings.HasPrefix(s[i:], "&lt;") && !strings.HasPrefix(s[i:], "&gt;"):
			return fmt.Errorf("unescaped & at %d in %q", i, s)
		case c == '@' && !unicode.IsLetter(prev) && !unicode.IsDigit(prev):
			return fmt.Errorf("a mention at %d in %q", i, s)
		case i == 0 && strings.ContainsRune("-+=", c):
			return fmt.Errorf("a line-start marker in %q", s)
		}
		prev = c
	}
	if escapedNext {
		return fmt.Errorf("a trailing backslash in %q", s)
	}
	return nil
}

// unescape is what GitLab shows of cell text.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case strings.HasPrefix(s[i:], "&lt;"):
			b.WriteByte('<')
			i += 3
		case strings.HasPrefix(s[i:], "&gt;"):
			b.WriteByte('>')
			i += 3
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func TestCellHostile(t *testing.T) {
	want := map[string]string{
		"link":         `\[click here\](https://evil.example/x)`,
		"image":        `\!\[pixel\](https://evil.example/p.png)`,
		"autolink":     `&lt;https://evil.example&gt;`,
		"mention":      `\@all please look`,
		"mention mid":  `fixed (\@root)`,
		"issue ref":    `see \#12 and \!3 and \~bug and \%v1 and \&5 and \$7`,
		"comment":      `&lt;\!-- lotse:sticky app=shop stage=production --&gt;`,
		"open comment": `everything after this is hidden &lt;\!--`,
		"table":        `a \| b \| c`,
		"newlines":     `line one \# heading - item &gt; quote`,
		"emphasis":     `\*\*bold\*\* \_it\_ \~\~gone\~\~ \` + "`" + `code\` + "`",
		"escaped":      `\\\[not a link\\\](x) \\\| \\\@all`,
		"heading":      `\# Big`,
		"list":         `\- item`,
		"diff":         `\{+ added +\} \{- removed -\}`,
		"footnote":     `text\[\^1\]`,
		"entity":       `\&lt;script\&gt;`,
	}
	for name, in := range hostile {
		got := cell(in)
		if w, ok := want[name]; ok && got != w {
			t.Errorf("%s: cell(%q) = %q, want %q", name, in, got, w)
		}
		if err := inertText(got); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if back := unescape(got); back != strings.Join(strings.Fields(in), " ") {
			t.Errorf("%s: shows as %q, want %q", name, back, in)
		}
	}
	// What is not markdown stays as it is.
	for _, s := range []string{img1, "scan attestation: 0 finding(s), none at or above MEDIUM", "user@example.com", "CVE-2024-3094 in xz-utils 5.6.0"} {
		if got := cell(s); got != s {
			t.Errorf("cell(%q) = %q", s, got)
		}
	}
}

func FuzzCell(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := cell(s)
		if err := inertText(got); err != nil {
			t.Fatal(err)
		}
		if back := unescape(got); back != strings.Join(strings.Fields(string([]rune(s))), " ") { // invalid UTF-8 shows as U+FFFD
			t.Fatalf("cell(%q) = %q shows as %q", s, got, back)
		}
	})
}

func TestCode(t *testing.T) {
	for in, want := range map[string]string{
		img1:                             "`" + img1 + "`",
		"a\nb":                           "`a b`",
		"[x](https://evil.example) @all": "`[x](https://evil.example) @all`", // inert inside a code span
		"x`[y](https://evil.example)`":   `x\` + "`" + `\[y\](https://evil.example)\` + "`",
		"a|b":                            `a\|b`,
		`a\|b`:                           `a\\\|b`,
		"":                               "",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

// A hostile image, health reason and gate reason render as text in one
// table cell each, and nothing after the marker is an HTML comment.
func TestRenderCommentHostile(t *testing.T) {
	r := newRun(t, plainPolicy())
	evil := "evil.example/x:1`|[y](https://evil.example)|<!--\n@all"
	r.do(landed("dev", evil, "c1"))
	r.do(Health{Stage: "dev", Healthy: false, Reason: "Degraded: ![p](https://evil.example/p.png) | @root <img src=x>", At: r.now})
	r.do(MROpened{Stage: "staging", IID: 11, Author: bot, Image: evil})
	if st := r.s.Stage("staging"); st != nil && st.Promotion != nil {
		st.Promotion.Reason = "blocked: [docs](https://evil.example)\n# owned <!--"
	}
	for _, body := range []string{RenderComment(r.p, r.s, "staging", r.now), RenderSourceComment(r.p, r.s, "team/shop", "src-"+evil[len(evil)-4:], r.now)} {
		lines := strings.Split(body, "\n")
		for i, l := range lines[1:] {
			if strings.Contains(l, "<") || strings.Contains(l, "](") && !strings.Contains(l, `\](`) || strings.Contains(l, " @all") || strings.HasPrefix(l, "# ") {
				t.Errorf("line %d is markdown from outside: %q\n%s", i+2, l, body)
			}
			if strings.HasPrefix(l, "| dev |") {
				if n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|"); n != strings.Count(lines[3], "|") {
					t.Errorf("row %q has %d cell borders, the header %d", l, n, strings.Count(lines[3], "|"))
				}
			}
		}
	}
}

// Replies quote ChatOps arguments and images as text: no link, image,
// mention or HTML gets through, with %q either.
func TestRepliesInert(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       string
	}{
		{"verb", "/lotse [x](https://evil.example)", `@olga unknown command "\[x\](https://evil.example)"; ` + usage},
		{"stage", "/lotse promote @all<img>", `@olga shop has no stage "\@all&lt;img&gt;" (stages: dev, staging, production).`},
		{"digest", "/lotse rollback production ![p](https://evil.example/p.png)", `@olga \!\[p\](https://evil.example/p.png) is not in the history of production; pick one of: (no earlier image).`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := landedEverywhere(t)
			r.do(Command{Stage: "production", IID: 42, NoteID: 100, User: usr("olga"), Text: tc.text})
			var replies []string
			for _, a := range only[Reply](r.acts) {
				replies = append(replies, a.Body)
			}
			if len(replies) != 1 || replies[0] != tc.want {
				t.Fatalf("replies = %q, want %q", replies, tc.want)
			}
		})
	}
	// An image from outside is quoted as text.
	r := landedEverywhere(t)
	evil := "evil.example/x@sha256:1 [y](https://evil.example) @all"
	r.do(landed("dev", evil, "c9"))
	r.do(landed("staging", evil, "c10"))
	r.at(time.Minute).do(Command{Stage: "production", IID: 42, NoteID: 101, User: usr("olga"), Text: "/lotse promote production"})
	rp := only[Reply](r.acts)
	if len(rp) != 1 || rp[0].Body != `@olga the promotion of evil.example/x@sha256:1 \[y\](https://evil.example) \@all to production is already under way (opening).` {
		t.Fatalf("replies = %+v", rp)
	}
}
