package promotion

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lotse/lotse/internal/intoto"
)

// ReadRecords reads the promotion records out of cosign's verify-attestation
// output (one DSSE envelope per line, already verified), oldest first as
// cosign lists them. Envelopes of other predicate types are skipped; an
// envelope that does not decode is an error.
func ReadRecords(verified []byte) ([]Record, error) {
	sts, err := intoto.Read(verified)
	if err != nil {
		return nil, err
	}
	var out []Record
	for i, st := range sts {
		if st.PredicateType != RecordPredicateType {
			continue
		}
		n := i + 1
		var r Record
		if err := json.Unmarshal(st.Predicate, &r); err != nil {
			return nil, fmt.Errorf("attestation %d: promotion record: %w", n, err)
		}
		// The record must be about the image it is attached to.
		if !slices.ContainsFunc(st.Subject, func(sub intoto.Subject) bool { return sub.Is(r.Digest) }) {
			return nil, fmt.Errorf("attestation %d: the promotion record is about %s, not about the image it is attached to", n, orDefault(r.Digest, "no digest"))
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no promotion record among the verified attestations")
	}
	return out, nil
}
