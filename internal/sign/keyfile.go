package sign

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/sigstore/cosign/v3/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/crypto/nacl/secretbox"
)

// loadPrivateKey is cosign.LoadPrivateKey with the key envelope opened by
// openEnvelope, whose scrypt keeps its table off the Go heap (see
// scryptKey). What it accepts and returns is cosign's:
// TestLoadPrivateKeyIsCosigns compares the two.
func loadPrivateKey(pemBytes, password []byte) (signature.SignerVerifier, error) {
	p, _ := pem.Decode(pemBytes)
	if p == nil {
		return nil, errors.New("invalid pem block")
	}
	if p.Type != cosign.CosignPrivateKeyPemType && p.Type != cosign.SigstorePrivateKeyPemType {
		return nil, fmt.Errorf("unsupported pem type: %s", p.Type)
	}
	der, err := openEnvelope(p.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	return signature.LoadDefaultSignerVerifier(pk, *cosign.GetDefaultLoadOptions(nil)...)
}

// envelope is the encrypted key's JSON, as go-securesystemslib's encrypted
// package (which cosign uses) writes it.
type envelope struct {
	KDF struct {
		Name   string       `json:"name"`
		Params scryptParams `json:"params"`
		Salt   []byte       `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

type scryptParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

// The scrypt strengths go-securesystemslib writes (legacy, standard and
// OWASP's). Only these are accepted: the parameters are in the file, and a
// file asking for more would make decrypting it as costly as it says.
var acceptedScrypt = []scryptParams{{N: 1 << 15, R: 8, P: 1}, {N: 1 << 16, R: 8, P: 1}, {N: 1 << 17, R: 8, P: 1}}

// openEnvelope decrypts an envelope as go-securesystemslib's
// encrypted.Decrypt does, with the same checks and errors.
func openEnvelope(data, password []byte) ([]byte, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	if e.KDF.Name != "scrypt" {
		return nil, fmt.Errorf("encrypted: unknown kdf name %q", e.KDF.Name)
	}
	if e.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("encrypted: unknown cipher name %q", e.Cipher.Name)
	}
	accepted := false
	for _, a := range acceptedScrypt {
		accepted = accepted || a == e.KDF.Params
	}
	if !accepted {
		return nil, errors.New("unsupported scrypt parameters")
	}
	key, err := scryptKey(password, e.KDF.Salt, e.KDF.Params.N, e.KDF.Params.R, e.KDF.Params.P, 32)
	if err != nil {
		return nil, err
	}
	var k [32]byte
	var nonce [24]byte
	if len(e.Cipher.Nonce) != len(nonce) {
		return nil, errors.New("encrypted: incorrect nonce size")
	}
	copy(k[:], key)
	copy(nonce[:], e.Cipher.Nonce)
	out, ok := secretbox.Open(nil, e.Ciphertext, &nonce, &k)
	if !ok {
		return nil, errDecryptionFailed
	}
	return out, nil
}

// errDecryptionFailed is a wrong password, or an envelope changed since
// it was written.
var errDecryptionFailed = errors.New("encrypted: decryption failed")
