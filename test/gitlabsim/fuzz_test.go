package gitlabsim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
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
