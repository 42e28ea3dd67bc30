package promotion

import "github.com/lotse/lotse/internal/vuln"

// JudgeScan compares the facts of a verified scan attestation with a
// stage's maximum severity, as the engine does for the scan gate: not
// checked, or a finding at or above max, fails. lotsed's release endpoint
// judges the first stage's scan gate with it.
func JudgeScan(f ScanFacts, max vuln.Severity) Result { return judgeScan(f, max) }
