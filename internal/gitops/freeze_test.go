package gitops

import (
	"strings"
	"testing"
	"time"
)

func TestFreezes(t *testing.T) {
	y := base + `freezes:
  - reason: year-end freeze
    stages: [production]
    from: 2026-12-20T00:00:00Z
    until: 2027-01-06T00:00:00Z
  - reason: no Friday afternoon releases
    cron: "0 14 * * 5"
    duration: 66h
`
	cfg, err := ParseConfig([]byte(y), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Freezes) != 2 {
		t.Fatalf("freezes = %+v", cfg.Freezes)
	}
	dated, weekly := cfg.Freezes[0], cfg.Freezes[1]
	if !dated.Applies("production") || dated.Applies("staging") || !weekly.Applies("staging") {
		t.Fatal("stages")
	}
	for _, tc := range []struct {
		f     Freeze
		at    string
		on    bool
		until string
	}{
		{dated, "2026-12-19T23:59:00Z", false, ""},
		{dated, "2026-12-20T00:00:00Z", true, "2027-01-06T00:00:00Z"},
		{dated, "2027-01-06T00:00:00Z", false, ""},
		{weekly, "2026-12-04T13:59:00Z", false, ""}, // a Friday
		{weekly, "2026-12-04T14:00:00Z", true, "2026-12-07T08:00:00Z"},
		{weekly, "2026-12-06T20:30:00Z", true, "2026-12-07T08:00:00Z"},
		{weekly, "2026-12-07T08:00:00Z", false, ""},
		{weekly, "2026-12-09T14:00:00Z", false, ""}, // a Wednesday
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		on, until := tc.f.ActiveAt(at)
		if on != tc.on || (on && until.Format(time.RFC3339) != tc.until) {
			t.Errorf("%s at %s: %v until %v, want %v until %s", tc.f.Reason, tc.at, on, until, tc.on, tc.until)
		}
	}
	for _, bad := range []struct{ freeze, want string }{
		{"  - {reason: x, cron: '0 14 * *', duration: 1h}", "want five fields"},
		{"  - {reason: x, cron: '0 25 * * 5', duration: 1h}", "out of range"},
		{"  - {reason: x, from: 2026-12-20T00:00:00Z}", "give from and until"},
		{"  - {reason: x, from: 2026-12-20T00:00:00Z, until: 2026-12-01T00:00:00Z}", "until must be after from"},
		{"  - {reason: x, stages: [prod], from: 2026-12-20T00:00:00Z, until: 2026-12-21T00:00:00Z}", `stage "prod" is not defined`},
		{"  - {from: 2026-12-20T00:00:00Z, until: 2026-12-21T00:00:00Z}", "reason is missing"},
	} {
		_, err := ParseConfig([]byte(base+"freezes:\n"+bad.freeze+"\n"), "lotse.yaml")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.freeze, err, bad.want)
		}
	}
}
