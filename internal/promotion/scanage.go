package promotion

import (
	"fmt"
	"strings"
	"time"
)

// scanClockSkew is how far in lotsed's future a scan time may lie before
// the scan gate distrusts it: a little drift between the CI runner's clock
// and lotsed's is normal, an attestation dated days ahead would stay
// "fresh" for days and is refused.
const scanClockSkew = 5 * time.Minute

// scanAge judges the age of a scan made at scannedAt against the stage's
// maxAge at now. With maxAge 0 it says nothing. Otherwise text is the
// scan's age ("scanned 3h 2m ago, within the stage's maxScanAge 24h") or,
// when stale is true, why the scan is not fresh enough: older than maxAge,
// of unknown time, or from the future.
func scanAge(scannedAt time.Time, maxAge time.Duration, now time.Time) (text string, stale bool) {
	if maxAge <= 0 {
		return "", false
	}
	limit := shortDuration(maxAge)
	if scannedAt.IsZero() {
		return "scan attestation carries no scan time (metadata.scanFinishedOn), so it cannot be shown to be within the stage's maxScanAge " + limit +
			"; re-scan with lotse rescan", true
	}
	age := now.Sub(scannedAt)
	switch {
	case age < -scanClockSkew:
		return fmt.Sprintf("scan attestation is dated %s, %s ahead of lotsed's clock; check the clock of the job that attested it and re-scan with lotse rescan",
			scannedAt.UTC().Format(time.RFC3339), humanAge(-age)), true
	case age > maxAge:
		return fmt.Sprintf("scan attestation is %s old, older than the stage's maxScanAge %s; re-scan with lotse rescan", humanAge(age), limit), true
	case age < 0:
		age = 0
	}
	return fmt.Sprintf("scanned %s ago, within the stage's maxScanAge %s", humanAge(age), limit), false
}

func ageSuffix(text string) string {
	if text == "" {
		return ""
	}
	return "; " + text
}

// humanAge is an age in its two largest units: 9d 3h, 5h 12m, 12m, 40s.
func humanAge(d time.Duration) string {
	d = d.Round(time.Second)
	days, hours, mins := int64(d/(24*time.Hour)), int64(d/time.Hour)%24, int64(d/time.Minute)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm", mins)
	}
	return fmt.Sprintf("%ds", int64(d/time.Second))
}

// shortDuration writes a duration as lotse.yaml would give it: 24h, 1h30m,
// 90s; not 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
