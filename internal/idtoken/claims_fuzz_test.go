package idtoken

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseClaims feeds arbitrary (as if verified) payloads to the claims
// parser and checks: never a panic, errors are ErrInvalid+ErrMalformed, and
// the checks that follow never panic either.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(`{"iss":"https://g","aud":["a"],"exp":1700000000,"project_id":"20","ref_protected":"true","runner_id":1}`))
	f.Add([]byte(`{"aud":"a","exp":1.5e9,"iat":null,"project_id":20,"job_id":"","ref_protected":false}`))
	f.Add([]byte(`{"exp":"soon","aud":{},"user_id":"-1","environment_protected":"maybe"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"exp":1e400}`))
	v := &Verifier{cfg: Config{Issuer: "https://g", Audience: "a", Now: func() time.Time { return time.Unix(1700000000, 0) }}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := parseClaims(payload)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if err := v.check(c); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("check error %v", err)
		}
	})
}
