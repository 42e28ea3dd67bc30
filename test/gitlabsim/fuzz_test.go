package gitlabsim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadParams feeds arbitrary bodies and content types to the parameter
// parser: it must never panic, and lists and scalars must be readable.
func FuzzReadParams(f *testing.F) {
	f.Add("application/json", `{"branch":"main","actions":[{"action":"create"}],"labels":["a","b"]}`, "page=2&labels=x,y")
	f.Add("application/x-www-form-urlencoded", "title=x&labels[]=a&labels[]=b", "")
	f.Add("", "{", "per_page=-1")
	f.Fuzz(func(t *testing.T, ct, body, query string) {
		r := httptest.NewRequest(http.MethodPost, "/api/v4/x", bytes.NewBufferString(body))
		r.URL.RawQuery = query
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		p, err := readParams(r)
		if err != nil {
			return
		}
		for k := range p {
			_ = p.str(k)
			_, _ = p.list(k)
			_, _ = p.bool(k)
			_ = p.int(k, 0)
		}
	})
}

// FuzzParseLog checks the git log parser on arbitrary output.
func FuzzParseLog(f *testing.F) {
	f.Add([]byte("abc\x00def\x00n\x00e\x002024-01-01T00:00:00Z\x00n\x00e\x002024-01-01T00:00:00Z\x00Key: v\n\x00msg\n\x1e"))
	f.Fuzz(func(t *testing.T, out []byte) {
		for _, c := range parseLog(out) {
			_ = c.Title()
		}
	})
}

// FuzzRefMatches checks the wildcard matcher of protected branches and
// branch filters against GitLab's definition: the pattern quoted, each *
// turned into .*, anchored at both ends.
func FuzzRefMatches(f *testing.F) {
	for _, s := range [][2]string{{"lotse/*", "lotse/a/b"}, {"main", "main"}, {"*-stable", "1-stable"}, {"a*b*c", "abbc"}, {"*", ""}, {"lotse/*", "lotse"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, ref string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(ref) {
			return
		}
		re := regexp.MustCompile(`(?s)\A` + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, `.*`) + `\z`)
		if got, want := refMatches(pattern, ref), re.MatchString(ref); got != want {
			t.Fatalf("refMatches(%q, %q) = %v, want %v", pattern, ref, got, want)
		}
	})
}
