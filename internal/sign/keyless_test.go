package sign

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/lotse/lotse/internal/sign/sigstoretest"
)

const (
	gitlab    = "https://gitlab.com"
	mainID    = "https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/main"
	evilID    = mainID + "-evil"
	otherID   = "https://gitlab.com/team/other//.gitlab-ci.yml@refs/heads/main"
	otherIssr = "https://gitlab.example.com"
)

// keylessWorld is a private Sigstore, its trusted_root.json and a loopback
// registry.
type keylessWorld struct {
	ss          *sigstoretest.Sigstore
	trustedRoot string
	host        string
}

func newKeylessWorld(t *testing.T) keylessWorld {
	t.Helper()
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ss.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, tr, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return keylessWorld{ss: ss, trustedRoot: path, host: strings.TrimPrefix(srv.URL, "http://")}
}

// image pushes a fresh image and returns its digest reference.
func (w keylessWorld) image(t *testing.T, tag string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	return push(t, w.host, tag, img)
}

func (w keylessWorld) opts(k Keyless) VerifyOptions {
	k.TrustedRoot = w.trustedRoot
	return VerifyOptions{Options: Options{}, Keyless: &k}
}

// Keyless signatures verify for exactly the configured identity and
// issuer, and only when they chain to the trusted root.
func TestKeylessVerify(t *testing.T) {
	ctx := context.Background()
	w := newKeylessWorld(t)
	signed := func(tag, identity, issuer string) string {
		ref := w.image(t, tag)
		if err := w.ss.Sign(ref, identity, issuer); err != nil {
			t.Fatalf("sign %s as %s: %v", tag, identity, err)
		}
		return ref
	}
	main := signed("main", mainID, gitlab)
	evil := signed("evil", evilID, gitlab)
	other := signed("other", otherID, gitlab)
	otherIssuer := signed("issuer", mainID, otherIssr)
	unsigned := w.image(t, "unsigned")

	// The same identity from a CA the trusted root does not name (an
	// attacker's own Fulcio), logged in the trusted Rekor; and from
	// another Sigstore altogether.
	rogue, err := w.ss.Rogue()
	if err != nil {
		t.Fatal(err)
	}
	untrusted := w.image(t, "untrusted")
	if err := rogue.Sign(untrusted, mainID, gitlab); err != nil {
		t.Fatal(err)
	}
	elsewhere, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	foreign := w.image(t, "foreign")
	if err := elsewhere.Sign(foreign, mainID, gitlab); err != nil {
		t.Fatal(err)
	}
	flawed := map[sigstoretest.Flaw]string{}
	for f, tag := range map[sigstoretest.Flaw]string{sigstoretest.NoTlogEntry: "notlog", sigstoretest.NoSCT: "nosct", sigstoretest.Expired: "expired"} {
		flawed[f] = w.image(t, tag)
		if err := w.ss.SignFlawed(flawed[f], mainID, gitlab, f); err != nil {
			t.Fatal(err)
		}
	}

	// Signed with a key: no certificate, no identity.
	k := writeKeys(t)
	keySigned := w.image(t, "key")
	if err := Sign(ctx, keySigned, Options{Key: k.priv, Offline: true}); err != nil {
		t.Fatal(err)
	}

	exact := Keyless{Issuer: gitlab, Identity: mainID}
	re := Keyless{Issuer: gitlab, IdentityRegexp: `https://gitlab\.com/team/app//\.gitlab-ci\.yml@refs/heads/main`}
	for _, c := range []struct {
		name  string
		image string
		k     Keyless
		ok    bool
	}{
		{"exact identity and issuer", main, exact, true},
		{"signed by main-evil, main required", evil, exact, false},
		{"signed by main, main-evil required", main, Keyless{Issuer: gitlab, Identity: evilID}, false},
		{"a prefix of the signer's identity", main, Keyless{Issuer: gitlab, Identity: strings.TrimSuffix(mainID, "/main")}, false},
		{"identity with regexp characters is literal", main, Keyless{Issuer: gitlab, Identity: "https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/.*"}, false},
		{"identity that looks like a flag", main, Keyless{Issuer: gitlab, Identity: "--help"}, false},
		{"another project", other, exact, false},
		{"another issuer", otherIssuer, exact, false},
		{"issuer compared exactly", main, Keyless{Issuer: gitlab + "/", Identity: mainID}, false},
		{"issuer not a prefix", main, Keyless{Issuer: "https://gitlab.co", Identity: mainID}, false},
		{"certificate from an untrusted CA", untrusted, exact, false},
		{"another Sigstore", foreign, exact, false},
		{"no transparency-log entry", flawed[sigstoretest.NoTlogEntry], exact, false},
		{"no SCT", flawed[sigstoretest.NoSCT], exact, false},
		{"logged after the certificate expired", flawed[sigstoretest.Expired], exact, false},
		{"signed with a key", keySigned, exact, false},
		{"unsigned", unsigned, exact, false},

		{"regexp, full identity", main, re, true},
		{"regexp is anchored at the end", evil, re, false},
		{"regexp .*@refs/heads/main", main, Keyless{Issuer: gitlab, IdentityRegexp: `.*@refs/heads/main`}, true},
		{"regexp .*@refs/heads/main does not accept main-evil", evil, Keyless{Issuer: gitlab, IdentityRegexp: `.*@refs/heads/main`}, false},
		{"regexp is anchored at the start", main, Keyless{Issuer: gitlab, IdentityRegexp: `gitlab\.com/team/app//\.gitlab-ci\.yml@refs/heads/main`}, false},
		{"regexp alternatives are anchored as a whole", evil, Keyless{Issuer: gitlab, IdentityRegexp: `nothing|.*@refs/heads/main`}, false},
		{"regexp does not widen the issuer", otherIssuer, re, false},
		{"regexp, another project", other, Keyless{Issuer: gitlab, IdentityRegexp: `https://gitlab\.com/team/app//.*`}, false},
	} {
		// Refused for the right reason (cosign's words).
		why := map[string]string{
			"signed by main-evil, main required":                  "expected SAN value",
			"another issuer":                                      "expected issuer value",
			"identity that looks like a flag":                     `expected SAN value "--help"`,
			"certificate from an untrusted CA":                    "leaf certificate verification failed",
			"no transparency-log entry":                           "not enough verified log entries",
			"no SCT":                                              "signed certificate timestamp",
			"logged after the certificate expired":                "outside certificate validity",
			"regexp .*@refs/heads/main does not accept main-evil": `expected SAN value to match regex "^(?:.*@refs/heads/main)$"`,
		}[c.name]
		t.Run(c.name, func(t *testing.T) {
			out, err := Verify(ctx, c.image, w.opts(c.k))
			if c.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				d := c.image[strings.Index(c.image, "@")+1:]
				if !strings.Contains(string(out), d) {
					t.Errorf("verified payload does not name %s:\n%s", d, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("verified %s with %+v", c.image, c.k)
			}
			if !strings.Contains(err.Error(), why) {
				t.Errorf("refused for another reason than %q: %v", why, err)
			}
		})
	}

	// A key does not stand in for an identity, nor an identity for a key.
	if _, err := Verify(ctx, main, VerifyOptions{Options: Options{}, Key: k.pub}); err == nil {
		t.Error("a keyless signature verified with a public key")
	}

	// A signature by the right identity among wrong ones is found.
	both := signed("both", evilID, gitlab)
	if err := w.ss.Sign(both, mainID, gitlab); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, both, w.opts(exact)); err != nil {
		t.Errorf("image signed by main and main-evil: %v", err)
	}
}

// Signatures in cosign's format before bundles (cosign 2) are held to the
// same rules, against the same trusted root.
func TestKeylessVerifyLegacy(t *testing.T) {
	ctx := context.Background()
	w := newKeylessWorld(t)
	main, evil := w.image(t, "main"), w.image(t, "evil")
	if err := w.ss.SignLegacy(main, mainID, gitlab); err != nil {
		t.Fatal(err)
	}
	if err := w.ss.SignLegacy(evil, evilID, gitlab); err != nil {
		t.Fatal(err)
	}
	rogue, err := w.ss.Rogue()
	if err != nil {
		t.Fatal(err)
	}
	untrusted := w.image(t, "untrusted")
	if err := rogue.SignLegacy(untrusted, mainID, gitlab); err != nil {
		t.Fatal(err)
	}
	exact := Keyless{Issuer: gitlab, Identity: mainID}
	out, err := Verify(ctx, main, w.opts(exact))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if d := main[strings.Index(main, "@")+1:]; !strings.Contains(string(out), d) {
		t.Errorf("verified payload does not name %s:\n%s", d, out)
	}
	for _, c := range []struct {
		name  string
		image string
		k     Keyless
	}{
		{"signed by main-evil, main required", evil, exact},
		{"signed by main, main-evil required", main, Keyless{Issuer: gitlab, Identity: evilID}},
		{"regexp .*@refs/heads/main does not accept main-evil", evil, Keyless{Issuer: gitlab, IdentityRegexp: `.*@refs/heads/main`}},
		{"another issuer", main, Keyless{Issuer: otherIssr, Identity: mainID}},
		{"certificate from an untrusted CA", untrusted, exact},
	} {
		if _, err := Verify(ctx, c.image, w.opts(c.k)); err == nil {
			t.Errorf("%s: verified", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// Attestations are held to the same identity rules, per type.
func TestKeylessVerifyAttestation(t *testing.T) {
	ctx := context.Background()
	w := newKeylessWorld(t)
	pred := []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.74.0","result":{"SchemaVersion":2}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`)
	attested := func(tag, identity, issuer string) string {
		ref := w.image(t, tag)
		if err := w.ss.Attest(ref, identity, issuer, string(Vuln), pred); err != nil {
			t.Fatalf("attest %s as %s: %v", tag, identity, err)
		}
		return ref
	}
	main := attested("main", mainID, gitlab)
	evil := attested("evil", evilID, gitlab)
	otherIssuer := attested("issuer", mainID, otherIssr)
	// Signed by main but with no vuln attestation.
	signedOnly := w.image(t, "signed")
	if err := w.ss.Sign(signedOnly, mainID, gitlab); err != nil {
		t.Fatal(err)
	}

	exact := Keyless{Issuer: gitlab, Identity: mainID}
	for _, c := range []struct {
		name  string
		image string
		typ   AttestationType
		k     Keyless
		ok    bool
	}{
		{"exact identity and issuer", main, Vuln, exact, true},
		{"another type", main, CycloneDX, exact, false},
		{"attested by main-evil, main required", evil, Vuln, exact, false},
		{"attested by main, main-evil required", main, Vuln, Keyless{Issuer: gitlab, Identity: evilID}, false},
		{"another issuer", otherIssuer, Vuln, exact, false},
		{"only a signature", signedOnly, Vuln, exact, false},
		{"regexp .*@refs/heads/main", main, Vuln, Keyless{Issuer: gitlab, IdentityRegexp: `.*@refs/heads/main`}, true},
		{"regexp .*@refs/heads/main does not accept main-evil", evil, Vuln, Keyless{Issuer: gitlab, IdentityRegexp: `.*@refs/heads/main`}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := VerifyAttestation(ctx, c.image, c.typ, w.opts(c.k))
			if c.ok {
				if err != nil {
					t.Fatalf("VerifyAttestation: %v", err)
				}
				if !strings.Contains(string(out), "payload") {
					t.Errorf("no envelope in output:\n%s", out)
				}
				return
			}
			if err == nil {
				t.Fatalf("verified %s attestation of %s with %+v", c.typ, c.image, c.k)
			}
		})
	}
}

// What reaches cosign: the identity as an exact identity, the regexp
// anchored, the trusted root when given; never the tlog switched off.
func TestKeylessArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		o    VerifyOptions
		want []string
		err  string
	}{
		{"exact", VerifyOptions{Keyless: &Keyless{Issuer: gitlab, Identity: mainID, TrustedRoot: "tr.json"}},
			[]string{"--certificate-identity=" + mainID, "--certificate-oidc-issuer=" + gitlab, "--trusted-root=tr.json", "--offline=true"}, ""},
		{"regexp", VerifyOptions{Keyless: &Keyless{Issuer: gitlab, IdentityRegexp: `a|b`}},
			[]string{"--certificate-identity-regexp=^(?:a|b)$", "--certificate-oidc-issuer=" + gitlab}, ""},
		{"key", VerifyOptions{Key: "k.pub", Options: Options{Offline: true}},
			[]string{"--key", "k.pub", "--insecure-ignore-tlog=true"}, ""},
		{"values that look like flags", VerifyOptions{Keyless: &Keyless{Issuer: "--insecure-ignore-sct", Identity: "--insecure-ignore-tlog"}},
			[]string{"--certificate-identity=--insecure-ignore-tlog", "--certificate-oidc-issuer=--insecure-ignore-sct"}, ""},
		{"nothing", VerifyOptions{}, nil, "nothing to verify against"},
		{"key and keyless", VerifyOptions{Key: "k.pub", Keyless: &Keyless{Issuer: gitlab, Identity: mainID}}, nil, "not both"},
		{"no issuer", VerifyOptions{Keyless: &Keyless{Identity: mainID}}, nil, "OIDC issuer"},
		{"no identity", VerifyOptions{Keyless: &Keyless{Issuer: gitlab}}, nil, "identity"},
		{"identity and regexp", VerifyOptions{Keyless: &Keyless{Issuer: gitlab, Identity: mainID, IdentityRegexp: ".*"}}, nil, "not both"},
		{"bad regexp", VerifyOptions{Keyless: &Keyless{Issuer: gitlab, IdentityRegexp: "("}}, nil, "regular expression"},
		{"regexp closing the group", VerifyOptions{Keyless: &Keyless{Issuer: gitlab, IdentityRegexp: "x)|.*@refs/heads/main|(?:y"}}, nil, "regular expression"},
		{"keyless offline", VerifyOptions{Options: Options{Offline: true}, Keyless: &Keyless{Issuer: gitlab, Identity: mainID}}, nil, "transparency-log"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.o.args()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("args() = %q, %v; want error with %q", got, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("args() = %q, want %q", got, c.want)
			}
			if slices.Contains(got, "--insecure-ignore-sct") || (c.o.Keyless != nil && slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "--insecure-ignore-tlog") })) {
				t.Errorf("args() = %q switch a check off", got)
			}
		})
	}
}

// Whatever regexp Check accepts, lotse's anchors hold: the anchored
// expression is ^, the user's expression as one group, $ (it cannot close
// the group and put an alternative outside the anchors).
func FuzzAnchoredIdentityRegexp(f *testing.F) {
	for _, s := range []string{`.*@refs/heads/main`, `x)|.*|(y`, `a|b`, `(?m)a$`, `\Q)|(`, `)(`, `(?s).*`, `^`, `$`, `a)|(?:b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, re string) {
		k := Keyless{Issuer: gitlab, IdentityRegexp: re}
		if k.Check() != nil {
			return
		}
		anchored := regexp.MustCompile(k.AnchoredIdentityRegexp())
		user := regexp.MustCompile(re)
		// Every match of the anchored expression is the whole input and a
		// match of the user's expression; a suffix never changes that.
		for _, s := range []string{mainID, evilID, "", "x", "main-evil", re} {
			if anchored.MatchString(s) {
				loc := anchored.FindStringIndex(s)
				if loc[0] != 0 || loc[1] != len(s) {
					t.Fatalf("%q matches %q only in part: %v", k.AnchoredIdentityRegexp(), s, loc)
				}
				if !user.MatchString(s) {
					t.Fatalf("%q matches %q, %q does not", k.AnchoredIdentityRegexp(), s, re)
				}
			}
		}
		p, err := syntax.Parse(k.AnchoredIdentityRegexp(), syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if p.Op != syntax.OpConcat || p.Sub[0].Op != syntax.OpBeginText || p.Sub[len(p.Sub)-1].Op != syntax.OpEndText {
			t.Fatalf("%q is not ^...$ at the top: %v", k.AnchoredIdentityRegexp(), p)
		}
	})
}
