package dora

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func at(days int, d time.Duration) time.Time { return t0.AddDate(0, 0, days).Add(d) }

// history is a scripted production history around the period
// [t0, t0+10d] (see the comments for what each contributes).
func history() []Deployment {
	h := time.Hour
	return []Deployment{
		// A: before the period; only the deployment before B.
		{Image: "A", LandedAt: at(-2, 0), RunningAt: at(-2, 0)},
		// B: ran 1h after landing; merged 3h, first commit 25h before it ran.
		{Image: "B", LandedAt: at(1, 0), RunningAt: at(1, h), MergedAt: at(0, 22*h), FirstCommitAt: at(0, 0)},
		// C: lead 1.5h and 24.5h; degraded 1.5h after it ran; D restores it 1h later.
		{Image: "C", LandedAt: at(3, 0), RunningAt: at(3, 30*time.Minute), MergedAt: at(3, -h), FirstCommitAt: at(2, 0),
			FailedAt: at(3, 2*h), Failure: FailDegraded},
		// D: the rollback to B: a deployment, no lead time.
		{Image: "B", Rollback: true, LandedAt: at(3, 3*h), RunningAt: at(3, 3*h)},
		// E: lead 1h, first commit unknown; F lands 6h later (within the fix window).
		{Image: "E", LandedAt: at(5, 0), RunningAt: at(5, 15*time.Minute), MergedAt: at(5, -45*time.Minute)},
		// F: the fix: lead 1h and 5h; restores E 6h after E ran.
		{Image: "F", LandedAt: at(5, 6*h), RunningAt: at(5, 6*h+15*time.Minute), MergedAt: at(5, 5*h+15*time.Minute), FirstCommitAt: at(5, h+15*time.Minute)},
		// G: superseded by H before ArgoCD synced it: never ran.
		{Image: "G", LandedAt: at(7, 0), MergedAt: at(6, 0), Failure: "", FailedAt: time.Time{}},
		// H: lead 2h and 24h; rolled back by I, which ran 59h after H.
		{Image: "H", LandedAt: at(7, h), RunningAt: at(7, 2*h), MergedAt: at(7, 0), FirstCommitAt: at(6, 2*h)},
		// I: the rollback to F; degraded, not restored yet.
		{Image: "F", Rollback: true, LandedAt: at(9, 12*h), RunningAt: at(9, 13*h), FailedAt: at(9, 20*h), Failure: FailDegraded},
		// J: lands after the period and has not run.
		{Image: "J", LandedAt: at(10, time.Hour)},
	}
}

func TestCompute(t *testing.T) {
	period := Options{Since: t0, Until: at(10, 0)}
	withWindow := period
	withWindow.FixWindow = 24 * time.Hour
	tests := []struct {
		name     string
		ds       []Deployment
		o        Options
		want     Figures // without Since, Until, FixWindowHours and Samples
		failures map[string]string
	}{
		{
			name: "fix window 24h", ds: history(), o: withWindow,
			want: Figures{Deployments: 8, PerDay: 0.8, Failures: 4, ChangeFailureRate: 0.5,
				LeadTimeFromMerge:       Stat{Samples: 5, MedianHours: 1.5},
				LeadTimeFromFirstCommit: Stat{Samples: 4, MedianHours: 24.25},
				TimeToRestore:           Stat{Samples: 3, MedianHours: 6}},
			failures: map[string]string{"C": FailDegraded, "E": FailFixed, "H": FailRolledBack, "F@" + at(9, 12*time.Hour).String(): FailDegraded},
		},
		{
			name: "no fix window", ds: history(), o: period,
			want: Figures{Deployments: 8, PerDay: 0.8, Failures: 3, ChangeFailureRate: 0.375,
				LeadTimeFromMerge:       Stat{Samples: 5, MedianHours: 1.5},
				LeadTimeFromFirstCommit: Stat{Samples: 4, MedianHours: 24.25},
				TimeToRestore:           Stat{Samples: 2, MedianHours: 30}},
			failures: map[string]string{"C": FailDegraded, "H": FailRolledBack, "F@" + at(9, 12*time.Hour).String(): FailDegraded},
		},
		{
			name: "the last five days", ds: history(), o: Options{Since: at(5, 0), Until: at(10, 0), FixWindow: 24 * time.Hour},
			want: Figures{Deployments: 5, PerDay: 1, Failures: 3, ChangeFailureRate: 0.6,
				LeadTimeFromMerge:       Stat{Samples: 3, MedianHours: 1},
				LeadTimeFromFirstCommit: Stat{Samples: 2, MedianHours: 14.5},
				TimeToRestore:           Stat{Samples: 2, MedianHours: 32.5}},
			failures: map[string]string{"E": FailFixed, "H": FailRolledBack, "F@" + at(9, 12*time.Hour).String(): FailDegraded},
		},
		{
			name: "nothing deployed", o: withWindow,
			want: Figures{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(tt.ds, tt.o)
			if !got.Since.Equal(tt.o.Since) || !got.Until.Equal(tt.o.Until) || got.FixWindowHours != tt.o.FixWindow.Hours() {
				t.Errorf("period = %v..%v window %v", got.Since, got.Until, got.FixWindowHours)
			}
			if len(got.Samples) != got.Deployments {
				t.Errorf("%d samples for %d deployments", len(got.Samples), got.Deployments)
			}
			samples := got.Samples
			got.Since, got.Until, got.FixWindowHours, got.Samples = time.Time{}, time.Time{}, 0, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("figures =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, s := range samples {
				key := s.Image
				if s.Rollback {
					key += "@" + s.LandedAt.String()
				}
				if s.Failure != tt.failures[key] {
					t.Errorf("sample %s: failure %q, want %q", key, s.Failure, tt.failures[key])
				}
			}
		})
	}
}

// The samples say what each deployment contributed: H's lead times, its
// failure and its restore by the rollback I.
func TestSamples(t *testing.T) {
	f := Compute(history(), Options{Since: t0, Until: at(10, 0), FixWindow: 24 * time.Hour})
	var h, g, i Sample
	for _, s := range f.Samples {
		switch {
		case s.Image == "H":
			h = s
		case s.Image == "G":
			g = s
		case s.Image == "F" && s.Rollback:
			i = s
		}
	}
	if h.LeadFromMergeHours == nil || *h.LeadFromMergeHours != 2 || h.LeadFromFirstCommitHours == nil || *h.LeadFromFirstCommitHours != 24 ||
		!h.FailedAt.Equal(at(7, 2*time.Hour)) || !h.RestoredAt.Equal(at(9, 13*time.Hour)) || h.RestoreHours == nil || *h.RestoreHours != 59 {
		t.Errorf("H = %+v", h)
	}
	if g.LeadFromMergeHours != nil || g.Failure != "" || !g.RunningAt.IsZero() {
		t.Errorf("G (never ran) = %+v", g)
	}
	if i.LeadFromMergeHours != nil || i.RestoreHours != nil || !i.RestoredAt.IsZero() || !i.FailedAt.Equal(at(9, 20*time.Hour)) {
		t.Errorf("I (rollback, degraded, open) = %+v", i)
	}
}

func TestWriteTable(t *testing.T) {
	f := Compute(history(), Options{Since: t0, Until: at(10, 0), FixWindow: 24 * time.Hour})
	f.App, f.Stage = "shop", "production"
	empty := Figures{App: "shop", Stage: "dev"}
	var b strings.Builder
	if err := WriteTable(&b, []Figures{f, empty}); err != nil {
		t.Fatal(err)
	}
	want := `APP   STAGE       DEPLOYMENTS  PER DAY  LEAD TIME FROM MERGE  FROM FIRST COMMIT  CHANGE FAILURE RATE  TIME TO RESTORE
shop  production  8            0.80     1.5h (5)              24.2h (4)          50% (4/8)            6.0h (3)
shop  dev         0            0.00     -                     -                  -                    -
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
