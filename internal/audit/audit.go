// Package audit is the tamper-evident form of lotsed's audit log: a hash
// chain over its records, and the check that recomputes it.
//
// Every record carries a sequence number (1, 2, 3, ... without gaps, per
// database, that is per GitOps project), the hash of the record before it
// (PrevHash; all zero for record 1) and its own Hash:
//
//	Hash = SHA-256(Encode(PrevHash, record))
//
// Editing a record's content breaks its own hash; removing or inserting a
// record breaks the sequence or the next record's PrevHash. Somebody who can
// write the database can recompute the whole chain after an edit, so the
// chain's head (the last record's Seq and Hash, see [Head]) is published
// outside the database (lotsed logs it and exports it as a metric): a
// rewritten chain no longer contains a head published before.
//
// The package does no I/O.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record is one entry of the audit log as it is hashed, stored and
// exported. The JSON field names are those of GET /api/v1/audit and of
// lotse audit export.
type Record struct {
	// Seq is the record's place in the chain, from 1.
	Seq int64 `json:"seq"`
	// At is when it happened. The chain keeps microseconds: finer digits
	// are not part of the record.
	At    time.Time `json:"at"`
	App   string    `json:"app"`
	Stage string    `json:"stage"`
	Image string    `json:"image"`
	// Actor is who caused it: a GitLab user, or lotse itself.
	Actor string `json:"actor"`
	// Kind names what happened, e.g. "landed", "promoted", "approved",
	// "gate-failed", "rollback".
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// PrevHash is the Hash of record Seq-1; zero for record 1.
	PrevHash Digest `json:"prev_hash"`
	// Hash is Hash(PrevHash, record).
	Hash Digest `json:"hash"`
}

// Digest is a SHA-256 hash. Its text form (JSON too) is 64 lower-case hex
// digits.
type Digest [sha256.Size]byte

// String returns the digest as 64 lower-case hex digits.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zero bytes (the PrevHash of record 1).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it takes exactly 64
// lower-case hex digits, so that one digest has one text form.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest parses 64 lower-case hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("digest %.80q: want %d hex digits, got %d characters", s, 2*len(d), len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return d, fmt.Errorf("digest %.80q: want lower-case hex digits", s)
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %.80q: %w", s, err)
	}
	return d, nil
}

// domain starts every encoding, so that a record's hash cannot be mistaken
// for the hash of anything else (and a future v2 for v1).
const domain = "lotse.audit.v1\x00"

// Encode returns the canonical encoding of r after prev, the bytes Hash
// hashes. It is binary and length-prefixed, so no two different records
// (or prevs) have the same encoding whatever their strings contain:
//
//	"lotse.audit.v1" 0x00          15 bytes, the domain
//	prev                           32 bytes
//	seq                            8 bytes, big-endian two's complement
//	at                             8 bytes, big-endian two's complement:
//	                               microseconds since 1970-01-01T00:00:00Z
//	                               (time zone and finer digits dropped)
//	app, stage, image, actor,      each: its length in bytes (8 bytes,
//	kind, detail                   big-endian) then its bytes, as they are
//
// r.PrevHash and r.Hash are not part of it.
func Encode(prev Digest, r Record) []byte {
	n := len(domain) + len(prev) + 8 + 8 + 6*8 +
		len(r.App) + len(r.Stage) + len(r.Image) + len(r.Actor) + len(r.Kind) + len(r.Detail)
	b := make([]byte, 0, n)
	b = append(b, domain...)
	b = append(b, prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixMicro()))
	for _, s := range [...]string{r.App, r.Stage, r.Image, r.Actor, r.Kind, r.Detail} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// Hash returns the hash of r chained after prev: SHA-256(Encode(prev, r)).
func Hash(prev Digest, r Record) Digest {
	return sha256.Sum256(Encode(prev, r))
}

// Head is the end of a chain: the last record's Seq and Hash. The head of
// an empty chain is the zero Head. Its text form is "SEQ:HASH".
type Head struct {
	Seq  int64
	Hash Digest
}

// String returns "SEQ:HASH".
func (h Head) String() string { return strconv.FormatInt(h.Seq, 10) + ":" + h.Hash.String() }

// ParseHead parses "SEQ:HASH" as Head.String writes it.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	if !ok {
		return Head{}, fmt.Errorf("head %.100q: want SEQ:HASH", s)
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 0 {
		return Head{}, fmt.Errorf("head %.100q: sequence number %.30q is not a number >= 0", s, seq)
	}
	d, err := ParseDigest(hash)
	if err != nil {
		return Head{}, fmt.Errorf("head %.100q: %w", s, err)
	}
	return Head{Seq: n, Hash: d}, nil
}

// Append returns r chained after head: Seq head.Seq+1, PrevHash head.Hash,
// At in UTC and cut to microseconds, and its Hash.
func Append(head Head, r Record) Record {
	r.Seq = head.Seq + 1
	r.At = r.At.UTC().Truncate(time.Microsecond)
	r.PrevHash = head.Hash
	r.Hash = Hash(r.PrevHash, r)
	return r
}

// Fault is the kind of a Problem.
type Fault int

// The faults Verify finds.
const (
	// Edited: a record's Hash does not match its content.
	Edited Fault = iota + 1
	// Relinked: a record's PrevHash is not the Hash of the record before
	// it: that one was replaced, or a record was removed or inserted.
	Relinked
	// Removed: sequence numbers are missing.
	Removed
	// Inserted: a sequence number appears twice, or goes backwards.
	Inserted
	// Malformed: a record that lotsed cannot have written (Seq < 1, a time
	// finer than microseconds, record 1 with a PrevHash).
	Malformed
	// HeadMismatch: a published head is not in the records.
	HeadMismatch
)

// Problem is the first thing wrong with a chain: what, and at which record.
type Problem struct {
	Fault Fault
	// Seq is the record it is about; for Removed the first missing one.
	Seq int64
	Msg string
}

func (p *Problem) Error() string { return p.Msg }

// ErrProblem is matched by every *Problem (errors.Is).
var ErrProblem = errors.New("audit chain is broken")

// Is makes errors.Is(err, ErrProblem) true for a *Problem.
func (p *Problem) Is(target error) bool { return target == ErrProblem }

func problem(f Fault, seq int64, format string, args ...any) *Problem {
	return &Problem{Fault: f, Seq: seq, Msg: fmt.Sprintf(format, args...)}
}

func removed(from, to int64) string {
	if from == to {
		return fmt.Sprintf("record %d removed", from)
	}
	return fmt.Sprintf("records %d to %d removed", from, to)
}
