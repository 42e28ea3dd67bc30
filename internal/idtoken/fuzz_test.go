package idtoken_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/lotse/lotse/internal/idtoken"
)

// FuzzVerify feeds arbitrary tokens to a verifier of a real JWKS: it must
// never panic, every error must be of exactly one class, and a token that
// passes must carry the issuer, audience and project it was checked for.
func FuzzVerify(f *testing.F) {
	t := testing.TB(f)
	k, other := rsaKey(t, 0), rsaKey(t, 1)
	g := newGitLab(t, jose.JSONWebKey{Key: &k.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})
	base := claims(g.srv.URL)
	valid := sign(t, jose.RS256, k, "k", base)
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(sign(t, jose.RS256, other, "k", base))
	f.Add(sign(t, jose.HS256, []byte(strings.Repeat("k", 64)), "k", base))
	f.Add(raw(map[string]any{"alg": "none"}, base, nil))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("..")
	f.Add("e30.e30.e30")
	f.Add("eyJhbGciOiJSUzI1NiJ9.bnVsbA.AAAA")
	f.Add(sign(t, jose.RS256, k, "k", with(base, "exp", 1e300, "project_id", "99999999999999999999")))
	v, err := idtoken.New(idtoken.Config{Issuer: g.srv.URL, Audience: audience, HTTP: g.srv.Client(), Now: (&clock{t: t0}).Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err != nil {
			if errors.Is(err, idtoken.ErrInvalid) == errors.Is(err, idtoken.ErrKeysUnavailable) {
				t.Fatalf("error of no or both classes: %v", err)
			}
			if c != nil {
				t.Fatal("claims with an error")
			}
			return
		}
		if c.Issuer != g.srv.URL || c.ProjectID == 0 || !contains(c.Audience, audience) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func contains(a []string, s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}
