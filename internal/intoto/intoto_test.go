package intoto

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func env(statement string) string {
	return `{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(statement)) + `","signatures":[{"sig":"x"}]}`
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		out   string
		types []string
		preds []string
		err   string
	}{
		{name: "two", out: env(`{"predicateType":"a","predicate":{"x":1}}`) + "\n\n" + env(`{"predicateType":"b","predicate":"s"}`) + "\n",
			types: []string{"a", "b"}, preds: []string{`{"x":1}`, `"s"`}},
		{name: "empty"},
		{name: "no predicate", out: env(`{"predicateType":"a"}`), types: []string{"a"}, preds: []string{""}},
		{name: "not JSON", out: env(`{"predicateType":"a"}`) + "\n  \nnope", err: "attestation 2: "},
		{name: "bad base64", out: `{"payload":"%%"}`, err: "attestation 1: payload: "},
		{name: "statement not JSON", out: env(`[`), err: "attestation 1: statement: "},
		{name: "statement of the wrong shape", out: env(`{"predicateType":7}`), err: "attestation 1: statement: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts, err := Read([]byte(tc.out))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sts) != len(tc.types) {
				t.Fatalf("got %d statements, want %d", len(sts), len(tc.types))
			}
			for i, st := range sts {
				if st.PredicateType != tc.types[i] || string(st.Predicate) != tc.preds[i] {
					t.Errorf("statement %d = %s %s", i, st.PredicateType, st.Predicate)
				}
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(env(`{"predicateType":"a","predicate":{}}`)))
	f.Add([]byte("\n" + env(`{}`) + "\n" + `{"payload":"e30="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sts, err := Read(b)
		if err != nil && sts != nil {
			t.Fatalf("statements and an error")
		}
	})
}

// Each statement carries the digests a record names it by: of the envelope
// line as cosign printed it (trimmed), and of the statement's bytes.
func TestReadDigests(t *testing.T) {
	stmt := `{"predicateType":"a","predicate":{}}`
	line := env(stmt)
	sts, err := Read([]byte("  " + line + "  \n"))
	if err != nil || len(sts) != 1 {
		t.Fatalf("Read = %v, %v", sts, err)
	}
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return "sha256:" + hex.EncodeToString(h[:])
	}
	if sts[0].EnvelopeDigest != sum(line) || sts[0].StatementDigest != sum(stmt) {
		t.Errorf("digests = %s %s, want %s %s", sts[0].EnvelopeDigest, sts[0].StatementDigest, sum(line), sum(stmt))
	}
}
