package promotion

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ReadRecords reads the promotion records out of cosign's verify-attestation
// output (one DSSE envelope per line, already verified), oldest first as
// cosign lists them. Envelopes of other predicate types are skipped; an
// envelope that does not decode is an error.
func ReadRecords(verified []byte) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(verified))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
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
		var st struct {
			PredicateType string          `json:"predicateType"`
			Predicate     json.RawMessage `json:"predicate"`
			Subject       []subject       `json:"subject"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("attestation %d: statement: %w", n, err)
		}
		if st.PredicateType != RecordPredicateType {
			continue
		}
		var r Record
		if err := json.Unmarshal(st.Predicate, &r); err != nil {
			return nil, fmt.Errorf("attestation %d: promotion record: %w", n, err)
		}
		// The record must be about the image it is attached to.
		if !slices.ContainsFunc(st.Subject, func(sub subject) bool { return sub.is(r.Digest) }) {
			return nil, fmt.Errorf("attestation %d: the promotion record is about %s, not about the image it is attached to", n, orDefault(r.Digest, "no digest"))
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no promotion record among the verified attestations")
	}
	return out, nil
}

// subject is an in-toto statement's subject.
type subject struct {
	Digest map[string]string `json:"digest"`
}

// is reports whether the subject has the digest (sha256:...).
func (s subject) is(digest string) bool {
	d := s.Digest["sha256"]
	return d != "" && "sha256:"+d == digest
}
