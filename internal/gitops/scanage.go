package gitops

import (
	"time"

	"gopkg.in/yaml.v3"
)

// maxScanAge validates gates.maxScanAge: a positive duration, only beside
// maxSeverity (hasSeverity), since the age is that of the scan the scan
// gate reads.
func (v *validator) maxScanAge(n *yaml.Node, where string, hasSeverity bool) time.Duration {
	s, ok := v.str(n, where+".maxScanAge")
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.addf(n, "%s.maxScanAge: %q is not a duration like 24h or 168h", where, s)
		return 0
	case d <= 0:
		v.addf(n, "%s.maxScanAge must be positive (leave it out for no limit)", where)
		return 0
	case !hasSeverity:
		v.addf(n, "%s.maxScanAge needs maxSeverity: it limits the age of the scan the scan gate reads", where)
		return 0
	}
	return d
}
