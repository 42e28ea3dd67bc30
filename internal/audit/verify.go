package audit

import "fmt"

// Verifier recomputes a chain record by record, so that an export of any
// length is checked without holding it. Feed it the records in the order
// of the export (oldest first) with Add, then call Finish.
//
// A complete Verifier (NewVerifier(false)) checks a whole chain: it starts
// at record 1 with a zero PrevHash, every record's Hash matches its
// content and its PrevHash is the Hash of the record before it, and no
// sequence number is missing or repeated. That is an unfiltered export.
//
// A partial Verifier (NewVerifier(true)) checks a selection of the chain,
// an export filtered by app, stage or time: every record's own Hash, the
// order, and the link between records whose sequence numbers are adjacent.
// Sequence numbers missing between them are counted as not in the
// selection rather than reported as removed: a partial check proves that
// the records it has are unaltered, not that none is missing.
type Verifier struct {
	partial bool
	n       int
	first   int64
	last    Head
	missing int64
	gaps    int
	expect  []expected
	err     *Problem
}

// NewVerifier returns a Verifier of a whole chain, or of a selection of one
// when partial is true.
func NewVerifier(partial bool) *Verifier { return &Verifier{partial: partial} }

// ExpectHead makes Finish fail unless the records contain head: a head
// published earlier (logged or exported by lotsed) must still be in the
// chain with the same hash. This catches a chain rewritten from some record
// on, or cut short, which the chain alone cannot show.
func (v *Verifier) ExpectHead(h Head) { v.expect = append(v.expect, expected{head: h}) }

type expected struct {
	head Head
	seen bool
}

// Add checks the next record and returns the first Problem of the chain,
// once found (and on every later call).
func (v *Verifier) Add(r Record) error {
	if v.err != nil {
		return v.err
	}
	if p := v.check(r); p != nil {
		v.err = p
		return p
	}
	if v.n == 0 {
		v.first = r.Seq
	}
	v.n++
	v.last = Head{Seq: r.Seq, Hash: r.Hash}
	for i := range v.expect {
		h := v.expect[i].head
		if h.Seq != r.Seq {
			continue
		}
		v.expect[i].seen = true
		if h.Hash != r.Hash {
			v.err = problem(HeadMismatch, r.Seq, "record %d: hash %s... is not the published head's %s... (the chain was rewritten at or before record %d)",
				r.Seq, short(r.Hash), short(h.Hash), r.Seq)
			return v.err
		}
	}
	return nil
}

func (v *Verifier) check(r Record) *Problem {
	switch {
	case r.Seq < 1:
		return problem(Malformed, r.Seq, "record %d: sequence numbers start at 1", r.Seq)
	case r.At.Nanosecond()%1000 != 0:
		return problem(Malformed, r.Seq, "record %d: time %s is finer than microseconds (not as lotsed stores it)", r.Seq, r.At.Format("2006-01-02T15:04:05.999999999Z07:00"))
	}
	if v.n == 0 {
		if r.Seq == 1 && !r.PrevHash.IsZero() {
			return problem(Relinked, 1, "record 1: prev_hash is not zero (the start of the chain was rewritten)")
		}
		if r.Seq > 1 && !v.partial {
			return problem(Removed, 1, "the chain starts at record %d: %s, or not in this export", r.Seq, removed(1, r.Seq-1))
		}
	} else {
		prev := v.last.Seq
		switch {
		case r.Seq == prev:
			return problem(Inserted, r.Seq, "record %d appears twice (a record was inserted)", r.Seq)
		case r.Seq < prev:
			return problem(Inserted, r.Seq, "record %d follows record %d (out of order: a record was inserted or moved)", r.Seq, prev)
		case r.Seq > prev+1 && !v.partial:
			return problem(Removed, prev+1, "sequence jumps from %d to %d: %s", prev, r.Seq, removed(prev+1, r.Seq-1))
		case r.Seq == prev+1 && r.PrevHash != v.last.Hash:
			return problem(Relinked, r.Seq, "record %d: prev_hash does not match record %d (a record was removed or inserted before it, or record %d was replaced)",
				r.Seq, prev, prev)
		}
	}
	if Hash(r.PrevHash, r) != r.Hash {
		return problem(Edited, r.Seq, "record %d: hash does not match its content (edited)", r.Seq)
	}
	if v.n > 0 && r.Seq > v.last.Seq+1 {
		v.missing += r.Seq - v.last.Seq - 1
		v.gaps++
	}
	return nil
}

// Summary is what Finish found in a chain that verified.
type Summary struct {
	// Records is how many records were checked.
	Records int
	// First is the first record's Seq (0 without records).
	First int64
	// Head is the last record's: the head of the chain, or of the
	// selection when partial.
	Head Head
	// NotInExport counts the sequence numbers between First and Head.Seq
	// that a partial check did not see, in Gaps runs.
	NotInExport int64
	Gaps        int
}

func (s Summary) String() string {
	if s.Records == 0 {
		return "no records"
	}
	out := fmt.Sprintf("%d records (%d to %d), head %s", s.Records, s.First, s.Head.Seq, s.Head)
	if s.NotInExport > 0 {
		out += fmt.Sprintf("; %s in %s not in this export", count(s.NotInExport, "record"), count(int64(s.Gaps), "gap"))
	}
	return out
}

// Finish returns the summary of the records added, or the first Problem:
// the one Add returned, or a published head (ExpectHead) that is not among
// them.
func (v *Verifier) Finish() (Summary, error) {
	if v.err != nil {
		return Summary{}, v.err
	}
	for _, e := range v.expect {
		h := e.head
		switch {
		case e.seen || h.Seq == 0 && h.Hash.IsZero():
			continue
		case h.Seq > v.last.Seq:
			return Summary{}, problem(HeadMismatch, h.Seq, "the published head %d is not in the records, which end at %d: records after %d were removed (or the export is older than the head)",
				h.Seq, v.last.Seq, v.last.Seq)
		default:
			return Summary{}, problem(HeadMismatch, h.Seq, "the published head %d is not in the records (records %d to %d, partial)", h.Seq, v.first, v.last.Seq)
		}
	}
	return Summary{Records: v.n, First: v.first, Head: v.last, NotInExport: v.missing, Gaps: v.gaps}, nil
}

// Verify checks a whole chain (an unfiltered export, oldest first) and
// returns its head, or the first Problem.
func Verify(records []Record) (Head, error) {
	v := NewVerifier(false)
	for _, r := range records {
		if err := v.Add(r); err != nil {
			return Head{}, err
		}
	}
	s, err := v.Finish()
	return s.Head, err
}

func count(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func short(d Digest) string { return d.String()[:16] }
