package vuln

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/intoto"
)

// Attested is one scan as a vuln attestation records it: cosign's vuln
// predicate (trivy --format cosign-vuln, lotse release, lotse rescan)
// around a trivy report.
type Attested struct {
	// ScannedAt is when the scan was made: metadata.scanFinishedOn, else
	// metadata.scanStartedOn; zero when the predicate gives neither.
	ScannedAt time.Time
	Findings  int      // findings in the report
	Highest   Severity // the highest of their severities; meaningless when Findings is 0
}

// ErrNoVulnAttestation is returned by NewestAttested when the output holds
// no vuln predicate.
var ErrNoVulnAttestation = errors.New("no vuln predicate in the attestations")

// ParseAttested reads cosign's verify-attestation output (one DSSE
// envelope per line, as lotse verify and lotsed's gates get it) and returns
// the scans of its vuln predicates in the order given. Envelopes of other
// predicate types are skipped; a line that is not an envelope, or a vuln
// statement that does not parse, is an error.
func ParseAttested(out []byte) ([]Attested, error) {
	sts, err := intoto.Read(out)
	if err != nil {
		return nil, err
	}
	var scans []Attested
	for i, st := range sts {
		if !strings.Contains(st.PredicateType, "vuln") {
			continue
		}
		var pred struct {
			Scanner struct {
				Result struct {
					Results []struct {
						Vulnerabilities []struct {
							Severity string `json:"Severity"`
						} `json:"Vulnerabilities"`
					} `json:"Results"`
				} `json:"result"`
			} `json:"scanner"`
			Metadata struct {
				ScanStartedOn  string `json:"scanStartedOn"`
				ScanFinishedOn string `json:"scanFinishedOn"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(st.Predicate, &pred); err != nil {
			return nil, fmt.Errorf("attestation %d: vuln predicate: %w", i+1, err)
		}
		var a Attested
		if a.ScannedAt, err = scanTime(pred.Metadata.ScanFinishedOn, pred.Metadata.ScanStartedOn); err != nil {
			return nil, fmt.Errorf("attestation %d: %w", i+1, err)
		}
		for _, r := range pred.Scanner.Result.Results {
			for _, v := range r.Vulnerabilities {
				a.Findings++
				// An unknown severity word counts as UNKNOWN, the lowest.
				if s, err := ParseSeverity(v.Severity); err == nil && s > a.Highest {
					a.Highest = s
				}
			}
		}
		scans = append(scans, a)
	}
	return scans, nil
}

// scanTime is finished, else started; Go's zero time (as trivy writes an
// unset time) counts as unset. A time that does not parse is an error: a
// scan gate must not guess.
func scanTime(finished, started string) (time.Time, error) {
	for _, f := range []struct{ name, v string }{{"scanFinishedOn", finished}, {"scanStartedOn", started}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f.v)
		if err != nil {
			return time.Time{}, fmt.Errorf("metadata.%s %q is not an RFC 3339 time", f.name, f.v)
		}
		if !t.IsZero() {
			return t.UTC(), nil
		}
	}
	return time.Time{}, nil
}

// Newest returns the scan that counts among several attestations of one
// image: the newest by ScannedAt, its findings and its time together. Scans
// without a time count only when none has one. Among scans equally new (or
// all without a time) the worst counts: highest severity, then most
// findings. ok is false when scans is empty.
func Newest(scans []Attested) (best Attested, ok bool) {
	for i, s := range scans {
		if i == 0 || newer(s, best) {
			best = s
		}
	}
	return best, len(scans) > 0
}

// newer reports whether a counts rather than b.
func newer(a, b Attested) bool {
	switch {
	case !a.ScannedAt.Equal(b.ScannedAt):
		return a.ScannedAt.After(b.ScannedAt)
	case a.severity() != b.severity():
		return a.severity() > b.severity()
	}
	return a.Findings > b.Findings
}

// severity is Highest, or -1 without findings.
func (a Attested) severity() int {
	if a.Findings == 0 {
		return -1
	}
	return int(a.Highest)
}

// NewestAttested parses cosign's verify-attestation output and returns the
// scan that counts (see Newest) and how many vuln attestations there were.
func NewestAttested(out []byte) (Attested, int, error) {
	scans, err := ParseAttested(out)
	if err != nil {
		return Attested{}, 0, err
	}
	a, ok := Newest(scans)
	if !ok {
		return Attested{}, 0, ErrNoVulnAttestation
	}
	return a, len(scans), nil
}
