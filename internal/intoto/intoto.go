// Package intoto reads the in-toto statements out of the DSSE envelopes
// that cosign verify-attestation prints, one envelope a line. It reads what
// cosign verified; it verifies nothing itself.
package intoto

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Statement is one attestation's in-toto statement.
type Statement struct {
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	Subject       []Subject       `json:"subject"`

	// EnvelopeDigest and StatementDigest are the SHA-256 of the envelope
	// as cosign printed it and of the statement's bytes (the payload),
	// "sha256:<hex>": what a record names an attestation by.
	EnvelopeDigest  string `json:"-"`
	StatementDigest string `json:"-"`
}

// Subject is what a statement is about: an artifact by its digests.
type Subject struct {
	Digest map[string]string `json:"digest"`
}

// Is reports whether the subject has the digest (sha256:...).
func (s Subject) Is(digest string) bool {
	d := s.Digest["sha256"]
	return d != "" && "sha256:"+d == digest
}

// maxLine bounds one envelope: an SBOM of a large image is a few MB, its
// envelope a third more.
const maxLine = 64 << 20

// Read returns the statements of cosign's verify-attestation output, in
// its order. Empty lines are skipped; a line that is not a DSSE envelope
// with a base64 payload holding a JSON statement is an error naming the
// line's position among the envelopes (1-based).
func Read(out []byte) ([]Statement, error) {
	var sts []Statement
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), maxLine)
	for n := 1; sc.Scan(); {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var env struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(line, &env); err != nil {
			return nil, fmt.Errorf("attestation %d: %w", n, err)
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			return nil, fmt.Errorf("attestation %d: payload: %w", n, err)
		}
		var st Statement
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("attestation %d: statement: %w", n, err)
		}
		st.EnvelopeDigest, st.StatementDigest = digest(line), digest(raw)
		sts = append(sts, st)
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("attestations: %w", err)
	}
	return sts, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
