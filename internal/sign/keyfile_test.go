package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	"golang.org/x/crypto/scrypt"
)

// scryptKey derives what x/crypto's scrypt derives, and refuses what it
// refuses.
func TestScryptKeyIsXCrypto(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	check := func(password, salt []byte, N, r, p, keyLen int) {
		t.Helper()
		want, werr := scrypt.Key(password, salt, N, r, p, keyLen)
		got, err := scryptKey(password, salt, N, r, p, keyLen)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("N=%d r=%d p=%d: error %v, x/crypto's %v", N, r, p, err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("N=%d r=%d p=%d keyLen=%d: key %x, x/crypto's %x", N, r, p, keyLen, got, want)
		}
	}
	for range 60 {
		password := make([]byte, rng.IntN(40))
		salt := make([]byte, rng.IntN(40))
		for _, b := range [][]byte{password, salt} {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		check(password, salt, 2<<rng.IntN(10), 1+rng.IntN(8), 1+rng.IntN(3), 1+rng.IntN(80))
	}
	// cosign's standard strength, and RFC 7914's second test vector.
	check([]byte("correct horse"), []byte("battery staple"), 1<<16, 8, 1, 32)
	check([]byte("password"), []byte("NaCl"), 1024, 8, 16, 64)
	// What both refuse.
	for _, c := range [][3]int{{0, 8, 1}, {1, 8, 1}, {3, 8, 1}, {1024, 0, 1}, {1024, 8, 0}, {1024, 1 << 29, 2}} {
		check([]byte("pw"), []byte("salt"), c[0], c[1], c[2], 32)
	}
}

func FuzzScryptKey(f *testing.F) {
	f.Add([]byte("password"), []byte("NaCl"), uint8(3), uint8(2), uint8(1), uint8(32))
	f.Fuzz(func(t *testing.T, password, salt []byte, logN, r, p, keyLen uint8) {
		N, rr, pp, kl := 1<<(logN%9), 1+int(r%4), 1+int(p%2), 1+int(keyLen%64)
		want, werr := scrypt.Key(password, salt, N, rr, pp, kl)
		got, err := scryptKey(password, salt, N, rr, pp, kl)
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("N=%d r=%d p=%d: %x, %v; x/crypto's %x, %v", N, rr, pp, got, err, want, werr)
		}
	})
}

// The 64 MiB table of a cosign key's scrypt is not allocated on the Go
// heap (x/crypto's is).
func TestScryptKeyTableOffHeap(t *testing.T) {
	allocated := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := allocated()
	if _, err := scryptKey([]byte("pw"), []byte("salt"), 1<<16, 8, 1, 32); err != nil {
		t.Fatal(err)
	}
	if got := allocated() - before; got > 1<<20 {
		t.Errorf("scryptKey allocated %d bytes on the heap, want under 1 MiB", got)
	}
	before = allocated()
	if _, err := scrypt.Key([]byte("pw"), []byte("salt"), 1<<16, 8, 1, 32); err != nil {
		t.Fatal(err)
	}
	if got := allocated() - before; got < 64<<20 {
		t.Errorf("x/crypto's scrypt allocated %d bytes: this test no longer measures the heap", got)
	}
}

// encryptedKey is a PEM private key as cosign writes one, encrypted with
// go-securesystemslib at the given strength.
func encryptedKey(t *testing.T, pk crypto.PrivateKey, pemType string, password []byte, strength encrypted.KDFParameterStrength) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	env, err := encrypted.EncryptWithCustomKDFParameters(der, password, strength)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: env})
}

// editEnvelope rewrites the JSON envelope of an encrypted PEM key.
func editEnvelope(t *testing.T, key []byte, edit func(map[string]any)) []byte {
	t.Helper()
	p, _ := pem.Decode(key)
	var m map[string]any
	if err := json.Unmarshal(p.Bytes, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: p.Type, Bytes: b})
}

// loadPrivateKey accepts the keys cosign accepts, decrypted to the same
// key, and refuses what cosign refuses with cosign's error.
func TestLoadPrivateKeyIsCosigns(t *testing.T) {
	pw := []byte("correct horse")
	generated, _, err := GenerateKeyPair(pw)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	legacy := encryptedKey(t, ec, cosign.CosignPrivateKeyPemType, pw, encrypted.Legacy)
	owasp := encryptedKey(t, ed, cosign.SigstorePrivateKeyPemType, pw, encrypted.OWASP)

	for name, key := range map[string][]byte{"generated": generated, "legacy P-384": legacy, "OWASP Ed25519": owasp} {
		want, err := cosign.LoadPrivateKey(key, pw, nil)
		if err != nil {
			t.Fatalf("%s: cosign: %v", name, err)
		}
		got, err := loadPrivateKey(key, pw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wpub, _ := want.PublicKey()
		gpub, _ := got.PublicKey()
		if !gpub.(interface{ Equal(crypto.PublicKey) bool }).Equal(wpub) {
			t.Errorf("%s: the decrypted key is not cosign's", name)
		}
		msg := []byte("payload")
		sig, err := got.SignMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("%s: sign: %v", name, err)
		}
		if err := want.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
			t.Errorf("%s: cosign's key does not verify the signature: %v", name, err)
		}
		if wt, gt := fmt.Sprintf("%T", want), fmt.Sprintf("%T", got); wt != gt {
			t.Errorf("%s: signer %s, cosign's %s", name, gt, wt)
		}
	}

	bad := map[string][]byte{
		"wrong password": generated,
		"not PEM":        []byte("not a key"),
		"public key":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}),
		"not JSON":       pem.EncodeToMemory(&pem.Block{Type: cosign.SigstorePrivateKeyPemType, Bytes: []byte("{")}),
		"costlier scrypt": editEnvelope(t, generated, func(m map[string]any) {
			m["kdf"].(map[string]any)["params"] = map[string]any{"N": 1 << 24, "r": 8, "p": 1}
		}),
		"other kdf":    editEnvelope(t, generated, func(m map[string]any) { m["kdf"].(map[string]any)["name"] = "argon2" }),
		"other cipher": editEnvelope(t, generated, func(m map[string]any) { m["cipher"].(map[string]any)["name"] = "aes" }),
		"short nonce":  editEnvelope(t, generated, func(m map[string]any) { m["cipher"].(map[string]any)["nonce"] = "AAAA" }),
		"tampered": editEnvelope(t, generated, func(m map[string]any) {
			c, err := base64.StdEncoding.DecodeString(m["ciphertext"].(string))
			if err != nil {
				t.Fatal(err)
			}
			c[10] ^= 1
			m["ciphertext"] = base64.StdEncoding.EncodeToString(c)
		}),
	}
	for name, key := range bad {
		password := pw
		if name == "wrong password" {
			password = []byte("wrong")
		}
		_, werr := cosign.LoadPrivateKey(key, password, nil)
		_, err := loadPrivateKey(key, password)
		if err == nil || werr == nil {
			t.Errorf("%s: error %v, cosign's %v; want both to refuse", name, err, werr)
			continue
		}
		if err.Error() != werr.Error() {
			t.Errorf("%s: error %q, cosign's %q", name, err, werr)
		}
	}
	if _, err := LoadKey(generated, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "decryption failed (is COSIGN_PASSWORD right?)") {
		t.Errorf("LoadKey with a wrong password: %v", err)
	}
	// The password hint is for a wrong password only.
	if _, err := LoadKey(bad["costlier scrypt"], pw); err == nil || strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Errorf("LoadKey with a costlier scrypt: %v", err)
	}
}

// cosign's standard strength: lotse's scrypt against x/crypto's.
func BenchmarkScryptKey(b *testing.B) {
	for _, c := range []struct {
		name string
		key  func(password, salt []byte, N, r, p, keyLen int) ([]byte, error)
	}{{"lotse", scryptKey}, {"x-crypto", scrypt.Key}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.key([]byte("pw"), []byte("salt"), 1<<16, 8, 1, 32); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
