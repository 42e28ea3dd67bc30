package promotion

import (
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

// JudgeScan compares the facts of a verified scan attestation with a
// stage's maximum severity and maximum scan age (0: any age) at now, as
// the engine does for the scan gate: not checked, a finding at or above
// max, or a scan older than maxAge (or of unknown time) fails. lotsed's
// release endpoint judges the first stage's scan gate with it.
func JudgeScan(f ScanFacts, max vuln.Severity, maxAge time.Duration, now time.Time) Result {
	return judgeScan(f, max, maxAge, now.UTC())
}
