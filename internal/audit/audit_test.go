package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// chain returns n records chained from record 1.
func chain(n int) []Record {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var (
		out  []Record
		head Head
	)
	for i := range n {
		r := Append(head, Record{
			At: t0.Add(time.Duration(i) * time.Minute), App: "shop", Stage: []string{"dev", "staging", "production"}[i%3],
			Image: "registry.example.com/shop@sha256:0123", Actor: "alice", Kind: "landed", Detail: "MR !" + string(rune('0'+i%10)),
		})
		out = append(out, r)
		head = Head{Seq: r.Seq, Hash: r.Hash}
	}
	return out
}

// rehash recomputes r's Hash over its (changed) content, as an attacker
// who knows the algorithm would.
func rehash(r Record) Record {
	r.Hash = Hash(r.PrevHash, r)
	return r
}

// without returns rs without the records with the given seqs.
func without(rs []Record, seqs ...int64) []Record {
	var out []Record
	for _, r := range rs {
		drop := false
		for _, s := range seqs {
			drop = drop || r.Seq == s
		}
		if !drop {
			out = append(out, r)
		}
	}
	return out
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]Record) []Record
		// want is the start of the Problem's message, "" for none.
		want  string
		fault Fault
		seq   int64
	}{
		{name: "intact", edit: func(rs []Record) []Record { return rs }},
		{name: "empty", edit: func([]Record) []Record { return nil }},
		{name: "detail edited", edit: func(rs []Record) []Record { rs[16].Detail = "MR !99"; return rs },
			want: "record 17: hash does not match its content (edited)", fault: Edited, seq: 17},
		{name: "time edited by a microsecond", edit: func(rs []Record) []Record { rs[4].At = rs[4].At.Add(time.Microsecond); return rs },
			want: "record 5: hash does not match its content (edited)", fault: Edited, seq: 5},
		{name: "time zone changed only", edit: func(rs []Record) []Record {
			rs[4].At = rs[4].At.In(time.FixedZone("CET", 3600))
			return rs
		}},
		{name: "time finer than microseconds", edit: func(rs []Record) []Record { rs[4].At = rs[4].At.Add(time.Nanosecond); return rs },
			want: "record 5: time 2026-05-01T12:04:00.000000001Z is finer than microseconds", fault: Malformed, seq: 5},
		{name: "field moved to another field", edit: func(rs []Record) []Record {
			rs[2].Stage, rs[2].Image = rs[2].Stage+rs[2].Image, ""
			return rs
		}, want: "record 3: hash does not match", fault: Edited, seq: 3},
		{name: "edited and rehashed", edit: func(rs []Record) []Record { rs[16].Actor = "mallory"; rs[16] = rehash(rs[16]); return rs },
			want: "record 18: prev_hash does not match record 17", fault: Relinked, seq: 18},
		{name: "hash edited", edit: func(rs []Record) []Record { rs[9].Hash[0] ^= 1; return rs },
			want: "record 10: hash does not match its content (edited)", fault: Edited, seq: 10},
		{name: "one removed", edit: func(rs []Record) []Record { return without(rs, 13) },
			want: "sequence jumps from 12 to 14: record 13 removed", fault: Removed, seq: 13},
		{name: "three removed", edit: func(rs []Record) []Record { return without(rs, 13, 14, 15) },
			want: "sequence jumps from 12 to 16: records 13 to 15 removed", fault: Removed, seq: 13},
		{name: "first removed", edit: func(rs []Record) []Record { return without(rs, 1) },
			want: "the chain starts at record 2: record 1 removed, or not in this export", fault: Removed, seq: 1},
		{name: "removed and renumbered", edit: func(rs []Record) []Record {
			rs = without(rs, 13)
			for i := 12; i < len(rs); i++ {
				rs[i].Seq--
				rs[i] = rehash(rs[i])
			}
			return rs
		}, want: "record 13: prev_hash does not match record 12", fault: Relinked, seq: 13},
		{name: "forged record inserted with a taken seq", edit: func(rs []Record) []Record {
			f := Append(Head{Seq: 12, Hash: rs[11].Hash}, Record{At: rs[11].At, App: "shop", Kind: "approved", Actor: "mallory"})
			return append(rs[:13:13], append([]Record{f}, rs[13:]...)...)
		}, want: "record 13 appears twice (a record was inserted)", fault: Inserted, seq: 13},
		{name: "forged record inserted and the rest renumbered", edit: func(rs []Record) []Record {
			f := Append(Head{Seq: 12, Hash: rs[11].Hash}, Record{At: rs[11].At, App: "shop", Kind: "approved", Actor: "mallory"})
			rest := append([]Record(nil), rs[12:]...)
			for i := range rest {
				rest[i].Seq++
			}
			return append(rs[:12:12], append([]Record{f}, rest...)...)
		}, want: "record 14: prev_hash does not match record 13", fault: Relinked, seq: 14},
		{name: "records swapped", edit: func(rs []Record) []Record { rs[5], rs[6] = rs[6], rs[5]; return rs },
			want: "sequence jumps from 5 to 7: record 6 removed", fault: Removed, seq: 6},
		{name: "forged record appended with a bad hash", edit: func(rs []Record) []Record {
			return append(rs, Record{Seq: 21, PrevHash: rs[19].Hash, At: rs[19].At, Kind: "approved"})
		}, want: "record 21: hash does not match its content (edited)", fault: Edited, seq: 21},
		{name: "start rewritten", edit: func(rs []Record) []Record { rs[0].PrevHash[31] = 1; rs[0] = rehash(rs[0]); return rs },
			want: "record 1: prev_hash is not zero", fault: Relinked, seq: 1},
		{name: "seq zero", edit: func(rs []Record) []Record { rs[0].Seq = 0; return rs },
			want: "record 0: sequence numbers start at 1", fault: Malformed, seq: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.edit(chain(20))
			head, err := Verify(rs)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				want := Head{}
				if len(rs) > 0 {
					want = Head{Seq: rs[len(rs)-1].Seq, Hash: rs[len(rs)-1].Hash}
				}
				if head != want {
					t.Errorf("head %v, want %v", head, want)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) || !errors.Is(err, ErrProblem) {
				t.Fatalf("Verify: %v, want a *Problem", err)
			}
			if !strings.HasPrefix(p.Error(), tc.want) || p.Fault != tc.fault || p.Seq != tc.seq {
				t.Errorf("Verify: %q (fault %d, seq %d),\nwant %q... (fault %d, seq %d)", p, p.Fault, p.Seq, tc.want, tc.fault, tc.seq)
			}
		})
	}
}

func TestVerifyPartial(t *testing.T) {
	full := chain(20)
	// What an export filtered to stage dev holds: every third record.
	var dev []Record
	for _, r := range full {
		if r.Stage == "dev" {
			dev = append(dev, r)
		}
	}
	for _, tc := range []struct {
		name  string
		rs    []Record
		heads []Head
		want  string // "" for ok
		sum   string
	}{
		{name: "filtered", rs: dev, sum: "7 records (1 to 19), head 19:" + full[18].Hash.String() + "; 12 records in 6 gaps not in this export"},
		{name: "since (no start)", rs: full[5:], sum: "15 records (6 to 20), head 20:" + full[19].Hash.String()},
		{name: "adjacent records still linked", rs: func() []Record {
			rs := append([]Record(nil), full[5:]...)
			rs[3].Actor = "mallory"
			rs[3] = rehash(rs[3])
			return rs
		}(), want: "record 10: prev_hash does not match record 9"},
		{name: "edited", rs: func() []Record { rs := append([]Record(nil), dev...); rs[2].Detail = "x"; return rs }(),
			want: "record 7: hash does not match its content (edited)"},
		{name: "out of order", rs: []Record{dev[2], dev[1]}, want: "record 4 follows record 7"},
		{name: "published head present", rs: dev, heads: []Head{{Seq: 10, Hash: full[9].Hash}}},
		{name: "published head in a gap", rs: dev, heads: []Head{{Seq: 11, Hash: full[10].Hash}},
			want: "the published head 11 is not in the records (records 1 to 19, partial)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(true)
			for _, h := range tc.heads {
				v.ExpectHead(h)
			}
			for _, r := range tc.rs {
				if err := v.Add(r); err != nil {
					break
				}
			}
			s, err := v.Finish()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Finish: %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Fatalf("Finish: %v, want %q...", err, tc.want)
			case tc.sum != "" && s.String() != tc.sum:
				t.Errorf("summary %q,\nwant    %q", s, tc.sum)
			}
		})
	}
}

func TestExpectHead(t *testing.T) {
	full := chain(20)
	// The attacker edits record 8 and recomputes the chain from there on:
	// the chain alone verifies, the published head 15 does not.
	forged := append([]Record(nil), full...)
	forged[7].Detail = "approved by nobody"
	for i := 7; i < len(forged); i++ {
		forged[i] = Append(Head{Seq: forged[i-1].Seq, Hash: forged[i-1].Hash}, forged[i])
	}
	if _, err := Verify(forged); err != nil {
		t.Fatalf("the rewritten chain should verify on its own: %v", err)
	}
	published := Head{Seq: 15, Hash: full[14].Hash}
	for _, tc := range []struct {
		name string
		rs   []Record
		head Head
		want string
	}{
		{name: "intact", rs: full, head: published},
		{name: "empty head", rs: full, head: Head{}},
		{name: "rewritten", rs: forged, head: published, want: "record 15: hash " + forged[14].Hash.String()[:16] + "... is not the published head's"},
		{name: "cut short", rs: full[:12], head: published,
			want: "the published head 15 is not in the records, which end at 12: records after 12 were removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(false)
			v.ExpectHead(tc.head)
			for _, r := range tc.rs {
				_ = v.Add(r)
			}
			_, err := v.Finish()
			if (err == nil) != (tc.want == "") || err != nil && !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Finish: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHeadText(t *testing.T) {
	h := Head{Seq: 42, Hash: Hash(Digest{}, Record{Seq: 42})}
	got, err := ParseHead(h.String())
	if err != nil || got != h {
		t.Fatalf("ParseHead(%q) = %v, %v", h, got, err)
	}
	for _, bad := range []string{"", "42", "42:", "-1:" + h.Hash.String(), "x:" + h.Hash.String(),
		"42:" + strings.ToUpper(h.Hash.String()), "42:" + h.Hash.String()[:63], "42:" + h.Hash.String() + "0"} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

// TestJSON pins the export's field names and that a record survives the
// round trip through JSON with its hash intact.
func TestJSON(t *testing.T) {
	r := chain(1)[0]
	r.At = r.At.Add(123456 * time.Microsecond)
	r = rehash(r)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"at":"2026-05-01T12:00:00.123456Z","app":"shop","stage":"dev","image":"registry.example.com/shop@sha256:0123","actor":"alice","kind":"landed","detail":"MR !0","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"` + r.Hash.String() + `"}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify([]Record{back}); err != nil {
		t.Errorf("after the round trip: %v", err)
	}
}

// TestEncodeGolden pins the canonical encoding: changing it breaks every
// chain already stored.
func TestEncodeGolden(t *testing.T) {
	r := Record{Seq: 1, At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), App: "a", Stage: "bc", Kind: "k"}
	got := Encode(Digest{}, r)
	var want bytes.Buffer
	want.WriteString("lotse.audit.v1\x00")
	want.Write(make([]byte, 32))
	want.Write([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	us := r.At.UnixMicro()
	for i := 7; i >= 0; i-- {
		want.WriteByte(byte(us >> (8 * i)))
	}
	for _, s := range []string{"a", "bc", "", "", "k", ""} {
		want.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(s))})
		want.WriteString(s)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("Encode\n%x\nwant\n%x", got, want.Bytes())
	}
	// Computed independently (Python hashlib over the bytes above).
	if h := Hash(Digest{}, r).String(); h != "f7d922174dc14107c4d9ccd58b4e961b954cfe7f915877a7b05a8c938a28572e" {
		t.Errorf("Hash = %s, want the golden f7d92217...", h)
	}
}

// FuzzEncode checks that the encoding is injective: two records (or prevs)
// encode the same only when they are the same, whatever their strings hold.
func FuzzEncode(f *testing.F) {
	f.Add(int64(1), int64(0), "a", "b", "", "", "", "", int64(1), int64(0), "ab", "", "", "", "", "", byte(0))
	f.Add(int64(7), int64(1e15), "shop", "dev", "img", "alice", "landed", "x\x00y", int64(7), int64(1e15), "shop", "dev", "img", "alice", "landed", "x\x00y", byte(1))
	f.Fuzz(func(t *testing.T, s1, at1 int64, a1, b1, c1, d1, e1, g1 string, s2, at2 int64, a2, b2, c2, d2, e2, g2 string, p byte) {
		r1 := Record{Seq: s1, At: time.UnixMicro(at1), App: a1, Stage: b1, Image: c1, Actor: d1, Kind: e1, Detail: g1}
		r2 := Record{Seq: s2, At: time.UnixMicro(at2), App: a2, Stage: b2, Image: c2, Actor: d2, Kind: e2, Detail: g2}
		var p1, p2 Digest
		p2[p%32] = p
		same := p1 == p2 && s1 == s2 && at1 == at2 && a1 == a2 && b1 == b2 && c1 == c2 && d1 == d2 && e1 == e2 && g1 == g2
		if got := bytes.Equal(Encode(p1, r1), Encode(p2, r2)); got != same {
			t.Fatalf("records equal %v, encodings equal %v:\n%+v\n%+v", same, got, r1, r2)
		}
	})
}

// FuzzVerify feeds Verify an export as an attacker could write it: lines of
// JSON. It must never panic, and whatever it accepts must be a chain: every
// record's hash matches, each links to the one before, seqs run from 1.
func FuzzVerify(f *testing.F) {
	var good bytes.Buffer
	for _, r := range chain(4) {
		b, _ := json.Marshal(r)
		good.Write(append(b, '\n'))
	}
	f.Add(good.Bytes())
	f.Add([]byte(`{"seq":1,"at":"2026-01-01T00:00:00Z","hash":"00"}`))
	f.Add([]byte("{}\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rs []Record
		for line := range bytes.Lines(data) {
			var r Record
			if json.Unmarshal(line, &r) != nil {
				return
			}
			rs = append(rs, r)
		}
		head, err := Verify(rs)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p.Msg == "" {
				t.Fatalf("Verify: %v, not a *Problem", err)
			}
			return
		}
		var prev Head
		for i, r := range rs {
			if r.Seq != int64(i+1) || r.PrevHash != prev.Hash || Hash(r.PrevHash, r) != r.Hash {
				t.Fatalf("Verify accepted a broken chain at %d: %+v", i, r)
			}
			prev = Head{Seq: r.Seq, Hash: r.Hash}
		}
		if head != prev {
			t.Fatalf("head %v, want %v", head, prev)
		}
		// And any one-byte change to an accepted record's detail is caught.
		if len(rs) > 0 {
			rs[0].Detail += "x"
			if _, err := Verify(rs); err == nil {
				t.Fatal("an edited record verified")
			}
		}
	})
}

// FuzzDigestText checks that a digest has exactly one text form.
func FuzzDigestText(f *testing.F) {
	f.Add("0000000000000000000000000000000000000000000000000000000000000000")
	f.Add("ABCDEF")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("ParseDigest(%q) = %s: a second text form", s, d)
		}
	})
}
