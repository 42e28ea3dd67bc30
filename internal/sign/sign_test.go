package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/test/fixture"
)

type keys struct{ priv, pub, otherPub string }

func writeKeys(t *testing.T) keys {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("COSIGN_PASSWORD", "correct horse")
	priv, pub, err := GenerateKeyPair([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := GenerateKeyPair([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	k := keys{filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub"), filepath.Join(dir, "other.pub")}
	for p, b := range map[string][]byte{k.priv: priv, k.pub: pub, k.otherPub: other} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func push(t *testing.T, host, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(host + "/team/app:" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(d.String()).String()
}

// twoImages puts two distinct images into a loopback registry and returns
// their digest references.
func twoImages(t *testing.T) (string, string) {
	t.Helper()
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	alp, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	return push(t, host, "deb", deb), push(t, host, "alp", alp)
}

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	k := writeKeys(t)
	signed, unsigned := twoImages(t)
	opts := Options{Key: k.priv, Offline: true}
	if err := Sign(ctx, signed, opts); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	out, err := Verify(ctx, signed, VerifyOptions{Options: opts, Key: k.pub})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	d := signed[strings.Index(signed, "@")+1:]
	if !strings.Contains(string(out), d) {
		t.Errorf("verified payload does not name %s:\n%s", d, out)
	}
	if _, err := Verify(ctx, signed, VerifyOptions{Options: opts, Key: k.otherPub}); err == nil {
		t.Error("a signature verified with the wrong public key")
	}
	if _, err := Verify(ctx, unsigned, VerifyOptions{Options: opts, Key: k.pub}); err == nil {
		t.Error("an unsigned image verified")
	}
	if err := Sign(ctx, strings.Split(signed, "@")[0]+":deb", opts); err == nil {
		t.Error("signing a tag was accepted")
	}
}

func TestAttestVerify(t *testing.T) {
	ctx := context.Background()
	k := writeKeys(t)
	img, other := twoImages(t)
	pred := filepath.Join(t.TempDir(), "vuln.json")
	if err := os.WriteFile(pred, []byte(`{"SchemaVersion":2,"Results":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Key: k.priv, Offline: true}
	if err := Attest(ctx, img, Vuln, pred, opts); err != nil {
		t.Fatalf("Attest: %v", err)
	}
	out, err := VerifyAttestation(ctx, img, Vuln, VerifyOptions{Options: opts, Key: k.pub})
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	if !strings.Contains(string(out), "payload") {
		t.Errorf("no envelope in output:\n%s", out)
	}
	if _, err := VerifyAttestation(ctx, img, CycloneDX, VerifyOptions{Options: opts, Key: k.pub}); err == nil {
		t.Error("an attestation of another type verified")
	}
	if _, err := VerifyAttestation(ctx, other, Vuln, VerifyOptions{Options: opts, Key: k.pub}); err == nil {
		t.Error("an image without attestation verified")
	}
	if _, err := VerifyAttestation(ctx, img, Vuln, VerifyOptions{Options: opts, Key: k.otherPub}); err == nil {
		t.Error("an attestation verified with the wrong key")
	}
}

func TestOptionErrors(t *testing.T) {
	ctx := context.Background()
	if err := Sign(ctx, "r.invalid/a@sha256:"+strings.Repeat("0", 64), Options{}); err == nil || !strings.Contains(err.Error(), "no signing key") {
		t.Errorf("Sign without key = %v", err)
	}
	if err := Sign(ctx, "r.invalid/a@sha256:"+strings.Repeat("0", 64), Options{IDToken: "x", Offline: true}); err == nil || !strings.Contains(err.Error(), "keyless") {
		t.Errorf("keyless offline = %v", err)
	}
	if _, err := Verify(ctx, "r.invalid/a:1", VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "nothing to verify against") {
		t.Errorf("Verify without key = %v", err)
	}
	for in, want := range map[string]AttestationType{"cyclonedx": CycloneDX, "vuln": Vuln, "slsaprovenance": SLSAProvenance, "spdx": SPDX} {
		if got, err := ParseAttestationType(in); err != nil || got != want {
			t.Errorf("ParseAttestationType(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseAttestationType("sbom"); err == nil {
		t.Error("ParseAttestationType(sbom) accepted")
	}
}

// A key decrypted once signs and attests through its Ref; what it signs
// verifies with the public key; closed, it is gone.
func TestLoadedKey(t *testing.T) {
	ctx := context.Background()
	k := writeKeys(t)
	img, _ := twoImages(t)
	pem, err := os.ReadFile(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(pem, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Errorf("wrong password: %v", err)
	}
	key, err := LoadKey(pem, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGN_PASSWORD", "not needed any more")
	opts := Options{Key: key.Ref(), Offline: true}
	if err := Sign(ctx, img, opts); err != nil {
		t.Fatalf("Sign with the loaded key: %v", err)
	}
	pred := filepath.Join(t.TempDir(), "vuln.json")
	if err := os.WriteFile(pred, []byte(`{"SchemaVersion":2,"Results":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Attest(ctx, img, Vuln, pred, opts); err != nil {
		t.Fatalf("Attest with the loaded key: %v", err)
	}
	vo := VerifyOptions{Options: Options{Offline: true}, Key: k.pub}
	if _, err := Verify(ctx, img, vo); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if _, err := VerifyAttestation(ctx, img, Vuln, vo); err != nil {
		t.Errorf("VerifyAttestation: %v", err)
	}
	key.Close()
	if err := Sign(ctx, img, opts); err == nil || !strings.Contains(err.Error(), "no such key") {
		t.Errorf("Sign after Close: %v", err)
	}
}

// An SBOM's attestation embeds the document byte for byte (cosign would
// parse it and write it again, numbers as floats); cosign's
// verify-attestation checks it like one cosign made. With cosign's legacy
// bundle format asked for, cosign's own attest runs.
func TestAttestDocumentVerify(t *testing.T) {
	ctx := context.Background()
	k := writeKeys(t)
	img, _ := twoImages(t)
	doc := []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"metadata":{"component":{"name":"app","properties":[{"name":"size","value":"9007199254740993"}]}},"components":[{"name":"zlib","version":"1.3","x-big":9007199254740993,"note":"ü <&>"}]}`)
	pred := filepath.Join(t.TempDir(), "sbom.cdx.json")
	if err := os.WriteFile(pred, append(doc, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Key: k.priv, Offline: true}
	if err := Attest(ctx, img, CycloneDX, pred, opts); err != nil {
		t.Fatalf("Attest: %v", err)
	}
	out, err := VerifyAttestation(ctx, img, CycloneDX, VerifyOptions{Options: opts, Key: k.pub})
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	var env struct{ Payload []byte }
	if err := json.Unmarshal(bytes.SplitN(bytes.TrimSpace(out), []byte("\n"), 2)[0], &env); err != nil {
		t.Fatalf("envelope: %v\n%s", err, out)
	}
	var st struct {
		Type          string          `json:"_type"`
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Fatal(err)
	}
	repo, digest, _ := strings.Cut(img, "@sha256:")
	if st.Type != "https://in-toto.io/Statement/v0.1" || st.PredicateType != "https://cyclonedx.org/bom" ||
		len(st.Subject) != 1 || st.Subject[0].Name != repo || st.Subject[0].Digest["sha256"] != digest {
		t.Errorf("statement: %s %s %+v", st.Type, st.PredicateType, st.Subject)
	}
	if !bytes.Equal(st.Predicate, bytes.TrimSpace(doc)) {
		t.Errorf("attested predicate differs from the document:\n%s\nwant\n%s", st.Predicate, doc)
	}
	if _, err := VerifyAttestation(ctx, img, CycloneDX, VerifyOptions{Options: opts, Key: k.otherPub}); err == nil {
		t.Error("verified with the wrong key")
	}
	notJSON := filepath.Join(t.TempDir(), "sbom.txt")
	os.WriteFile(notJSON, []byte("not json"), 0o644) //nolint:errcheck // read below
	if err := Attest(ctx, img, SPDX, notJSON, opts); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("a predicate that is not JSON: %v", err)
	}

	t.Setenv("COSIGN_NEW_BUNDLE_FORMAT", "false")
	img2, _ := twoImages(t)
	if err := Attest(ctx, img2, CycloneDX, pred, opts); err != nil {
		t.Fatalf("Attest, legacy bundle format: %v", err)
	}
	if _, err := VerifyAttestation(ctx, img2, CycloneDX, VerifyOptions{Options: opts, Key: k.pub}); err != nil {
		t.Fatalf("VerifyAttestation, legacy bundle format: %v", err)
	}
}
