package promotion

import (
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

func TestJudgeScanAge(t *testing.T) {
	now := t0
	day := 24 * time.Hour
	for _, tc := range []struct {
		name   string
		facts  ScanFacts
		maxAge time.Duration
		ok     bool
		reason string
	}{
		{name: "no limit, old scan", facts: ScanFacts{Checked: true, ScannedAt: now.Add(-300 * day)}, ok: true,
			reason: "scan attestation: 0 finding(s), none at or above HIGH"},
		{name: "no limit, no scan time", facts: ScanFacts{Checked: true}, ok: true,
			reason: "scan attestation: 0 finding(s), none at or above HIGH"},
		{name: "fresh", facts: ScanFacts{Checked: true, Findings: 2, Highest: vuln.Medium, ScannedAt: now.Add(-3*time.Hour - 2*time.Minute)}, maxAge: day, ok: true,
			reason: "scan attestation: 2 finding(s), none at or above HIGH; scanned 3h 2m ago, within the stage's maxScanAge 24h"},
		{name: "exactly at the limit", facts: ScanFacts{Checked: true, ScannedAt: now.Add(-day)}, maxAge: day, ok: true,
			reason: "scan attestation: 0 finding(s), none at or above HIGH; scanned 1d 0h ago, within the stage's maxScanAge 24h"},
		{name: "a second too old", facts: ScanFacts{Checked: true, ScannedAt: now.Add(-day - time.Second)}, maxAge: day,
			reason: "scan attestation is 1d 0h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan"},
		{name: "weeks old", facts: ScanFacts{Checked: true, ScannedAt: now.Add(-9*day - 3*time.Hour - 20*time.Minute)}, maxAge: day,
			reason: "scan attestation is 9d 3h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan"},
		{name: "limit in minutes", facts: ScanFacts{Checked: true, ScannedAt: now.Add(-2 * time.Hour)}, maxAge: 90 * time.Minute,
			reason: "scan attestation is 2h 0m old, older than the stage's maxScanAge 1h30m; re-scan with lotse rescan"},
		{name: "no scan time", facts: ScanFacts{Checked: true}, maxAge: day,
			reason: "scan attestation carries no scan time (metadata.scanFinishedOn), so it cannot be shown to be within the stage's maxScanAge 24h; re-scan with lotse rescan"},
		// A runner whose clock is a little ahead: fine. An attestation
		// dated far ahead would stay fresh for as long: refused.
		{name: "slightly in the future", facts: ScanFacts{Checked: true, ScannedAt: now.Add(2 * time.Minute)}, maxAge: day, ok: true,
			reason: "scan attestation: 0 finding(s), none at or above HIGH; scanned 0s ago, within the stage's maxScanAge 24h"},
		{name: "far in the future", facts: ScanFacts{Checked: true, ScannedAt: now.Add(30 * day)}, maxAge: day,
			reason: "scan attestation is dated 2026-06-03T10:00:00Z, 30d 0h ahead of lotsed's clock; check the clock of the job that attested it and re-scan with lotse rescan"},
		// Findings and age both fail: the reason says both.
		{name: "findings and stale", facts: ScanFacts{Checked: true, Findings: 1, Highest: vuln.Critical, ScannedAt: now.Add(-2 * day)}, maxAge: day,
			reason: "scan attestation: 1 finding(s), highest CRITICAL, at or above the stage's maximum HIGH; scan attestation is 2d 0h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan"},
		{name: "findings, fresh", facts: ScanFacts{Checked: true, Findings: 1, Highest: vuln.High, ScannedAt: now.Add(-time.Minute)}, maxAge: day,
			reason: "scan attestation: 1 finding(s), highest HIGH, at or above the stage's maximum HIGH; scanned 1m ago, within the stage's maxScanAge 24h"},
		{name: "not checked", facts: ScanFacts{Reason: "no verified vuln attestation"}, maxAge: day, reason: "no verified vuln attestation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := JudgeScan(tc.facts, vuln.High, tc.maxAge, now)
			if got.OK != tc.ok || got.Reason != tc.reason || got.Checked != tc.facts.Checked {
				t.Fatalf("JudgeScan = %+v\nwant ok=%v reason %q", got, tc.ok, tc.reason)
			}
		})
	}
}

func TestHumanAgeAndShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 40 * time.Second: "40s", 12*time.Minute + 59*time.Second: "12m", 5*time.Hour + 12*time.Minute: "5h 12m",
		219*time.Hour + 59*time.Minute: "9d 3h", 1500 * time.Millisecond: "2s",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m", time.Minute: "1m", 90 * time.Second: "1m30s", 168 * time.Hour: "168h", time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// A version promoted weeks after its release: the scan attestation made at
// release time is too old for production's maxScanAge and blocks it; a
// fresh scan of the same image (lotse rescan) and an operator's retry
// pass it. Findings and age come from the same, newest scan.
func TestStaleScanBlocksUntilRescanned(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].MaxSeverity = sev(vuln.High)
	p.Stages[1].MaxScanAge = 24 * time.Hour
	released := t0.Add(-14 * 24 * time.Hour)
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.wantPhase("staging", PhaseChecking)
	r.at(time.Minute).do(GatesChecked{Stage: "staging", Image: img1, Scan: ScanFacts{Checked: true, ScannedAt: released}})
	r.wantPhase("staging", PhaseBlocked)
	want := "scan: scan attestation is 14d 0h old, older than the stage's maxScanAge 24h; re-scan with lotse rescan"
	if pr := r.s.Stage("staging").Promotion; pr.Reason != want || pr.Gates.Scan.Status != GateFailed {
		t.Fatalf("staging = %s %q (scan gate %+v), want blocked %q", pr.Phase, pr.Reason, pr.Gates.Scan, want)
	}
	if body := RenderComment(r.p, r.s, "staging", r.now); !strings.Contains(body, "lotse rescan") {
		t.Fatalf("the comment does not say how to fix it:\n%s", body)
	}
	// Time alone does not unblock it.
	r.at(48 * time.Hour).do(Tick{})
	r.wantPhase("staging", PhaseBlocked)
	// lotse rescan attests a new scan; an operator retries.
	r.do(Command{Stage: "staging", IID: 11, NoteID: 7, User: usr("olga"), Text: "/lotse retry"})
	r.wantPhase("staging", PhaseChecking)
	rescanned := t0.Add(47 * time.Hour)
	r.do(GatesChecked{Stage: "staging", Image: img1, Scan: ScanFacts{Checked: true, Findings: 1, Highest: vuln.Medium, ScannedAt: rescanned}})
	if g := r.s.Stage("staging").Promotion.Gates.Scan; g.Status != GatePassed ||
		g.Reason != "scan attestation: 1 finding(s), none at or above HIGH; scanned 1h 0m ago, within the stage's maxScanAge 24h" {
		t.Fatalf("scan gate after the rescan = %+v", g)
	}
	r.wantPhase("staging", PhaseOpening)
}

// The rescan's fresh time does not excuse its findings: a new advisory
// found by the rescan blocks as any finding does.
func TestFreshScanWithNewFindingsBlocks(t *testing.T) {
	p := plainPolicy()
	p.Stages[1].MaxSeverity = sev(vuln.High)
	p.Stages[1].MaxScanAge = 24 * time.Hour
	r := newRun(t, p)
	r.do(landed("dev", img1, "c1"))
	r.do(GatesChecked{Stage: "staging", Image: img1, Scan: ScanFacts{Checked: true, Findings: 3, Highest: vuln.Critical, ScannedAt: t0.Add(-time.Hour)}})
	r.wantPhase("staging", PhaseBlocked)
	if reason := r.s.Stage("staging").Promotion.Reason; !strings.Contains(reason, "highest CRITICAL") {
		t.Fatalf("reason = %q", reason)
	}
}
