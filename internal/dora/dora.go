// Package dora computes the four DORA figures of one app in one stage from
// the deployments lotsed recorded (the promotion engine's Deploy actions),
// and carries them over HTTP (GET /api/v1/dora, Client).
//
// Definitions, over the deployments that landed from Since to Until (both
// included):
//
//   - deployment frequency: the deployments (every landing in the stage,
//     rollbacks included) and their number per day;
//   - lead time for changes: from the source MR's merge, and from the MR's
//     first commit, to the time the version ran in the stage (ArgoCD
//     reported a manual-sync stage synced and healthy; landing elsewhere);
//     rollbacks and versions that never ran give no sample;
//   - change failure rate: failed deployments / deployments, where a
//     deployment failed when ArgoCD reported it degraded, when the next
//     deployment of the stage rolled it back, or when it ran and the next
//     deployment (a fix) landed within FixWindow of it; each counts once;
//   - time to restore: from the failure (the degraded report, else the
//     time the failed version ran) to the time the next version ran in the
//     stage; a failure not restored yet gives no sample.
//
// Medians of an even number of samples are the mean of the middle two.
package dora

import (
	"slices"
	"sort"
	"time"
)

// Failure causes of a sample.
const (
	FailDegraded   = "degraded"    // ArgoCD reported it Degraded
	FailRolledBack = "rolled-back" // the next deployment rolled it back
	FailFixed      = "fixed"       // the next deployment landed within the fix window
)

// Deployment is one recorded deployment of a version in a stage.
type Deployment struct {
	Image        string
	SourceCommit string
	Rollback     bool
	LandedAt     time.Time
	RunningAt    time.Time // the first time it ran; zero: never
	FailedAt     time.Time // the first time it failed; zero: never
	Failure      string    // the cause of that failure: degraded, rolled-back
	// MergedAt and FirstCommitAt: the source MR's merge and its first
	// commit; zero: unknown.
	MergedAt, FirstCommitAt time.Time
}

// Options are the period and the fix window.
type Options struct {
	Since, Until time.Time
	// FixWindow: a deployment that ran and was followed by the next one
	// within this time counts as failed (fixed forward); 0 turns it off.
	FixWindow time.Duration
}

// Stat is a median over samples, in hours.
type Stat struct {
	Samples     int     `json:"samples"`
	MedianHours float64 `json:"median_hours"`
}

// Sample is one deployment of the period and what it contributed.
type Sample struct {
	Image        string    `json:"image"`
	SourceCommit string    `json:"source_commit,omitempty"`
	Rollback     bool      `json:"rollback,omitempty"`
	LandedAt     time.Time `json:"landed_at"`
	RunningAt    time.Time `json:"running_at,omitzero"`
	// LeadFromMergeHours and LeadFromFirstCommitHours are nil when they
	// give no sample.
	LeadFromMergeHours       *float64  `json:"lead_time_from_merge_hours,omitempty"`
	LeadFromFirstCommitHours *float64  `json:"lead_time_from_first_commit_hours,omitempty"`
	Failure                  string    `json:"failure,omitempty"` // degraded, rolled-back, fixed
	FailedAt                 time.Time `json:"failed_at,omitzero"`
	RestoredAt               time.Time `json:"restored_at,omitzero"`
	RestoreHours             *float64  `json:"time_to_restore_hours,omitempty"`
}

// Figures are the DORA figures of one app in one stage.
type Figures struct {
	App                     string    `json:"app"`
	Stage                   string    `json:"stage"`
	Since                   time.Time `json:"since"`
	Until                   time.Time `json:"until"`
	FixWindowHours          float64   `json:"fix_window_hours"`
	Deployments             int       `json:"deployments"`
	PerDay                  float64   `json:"deployments_per_day"`
	LeadTimeFromMerge       Stat      `json:"lead_time_from_merge"`
	LeadTimeFromFirstCommit Stat      `json:"lead_time_from_first_commit"`
	Failures                int       `json:"failures"`
	ChangeFailureRate       float64   `json:"change_failure_rate"`
	TimeToRestore           Stat      `json:"time_to_restore"`
	Samples                 []Sample  `json:"samples"`
}

// Compute returns the figures of the deployments ds of one app in one
// stage (in any order; all of them, also those before and after the
// period: the deployment after one tells whether it failed and when it
// was restored). App and Stage are left to the caller.
func Compute(ds []Deployment, o Options) Figures {
	ds = slices.Clone(ds)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].LandedAt.Before(ds[j].LandedAt) })
	f := Figures{Since: o.Since.UTC(), Until: o.Until.UTC(), FixWindowHours: o.FixWindow.Hours(), Samples: []Sample{}}
	var merge, first, restore []float64
	for i, d := range ds {
		if d.LandedAt.Before(o.Since) || d.LandedAt.After(o.Until) {
			continue
		}
		f.Deployments++
		s := Sample{Image: d.Image, SourceCommit: d.SourceCommit, Rollback: d.Rollback, LandedAt: d.LandedAt.UTC(), RunningAt: d.RunningAt.UTC()}
		if !d.Rollback && !d.RunningAt.IsZero() {
			if h, ok := hoursBetween(d.MergedAt, d.RunningAt); ok {
				s.LeadFromMergeHours, merge = &h, append(merge, h)
			}
			if h, ok := hoursBetween(d.FirstCommitAt, d.RunningAt); ok {
				s.LeadFromFirstCommitHours, first = &h, append(first, h)
			}
		}
		var next *Deployment
		if i+1 < len(ds) {
			next = &ds[i+1]
		}
		s.Failure, s.FailedAt = failure(d, next, o.FixWindow)
		if s.Failure != "" {
			f.Failures++
			for _, later := range ds[i+1:] {
				if !later.RunningAt.IsZero() {
					s.RestoredAt = later.RunningAt.UTC()
					h := max(0, later.RunningAt.Sub(s.FailedAt).Hours())
					s.RestoreHours, restore = &h, append(restore, h)
					break
				}
			}
		}
		f.Samples = append(f.Samples, s)
	}
	if days := o.Until.Sub(o.Since).Hours() / 24; days > 0 {
		f.PerDay = float64(f.Deployments) / days
	}
	if f.Deployments > 0 {
		f.ChangeFailureRate = float64(f.Failures) / float64(f.Deployments)
	}
	f.LeadTimeFromMerge = stat(merge)
	f.LeadTimeFromFirstCommit = stat(first)
	f.TimeToRestore = stat(restore)
	return f
}

// failure says whether d failed, why and since when.
func failure(d Deployment, next *Deployment, window time.Duration) (string, time.Time) {
	ran := d.RunningAt
	if ran.IsZero() {
		ran = d.LandedAt
	}
	switch {
	case d.Failure == FailDegraded && !d.FailedAt.IsZero():
		return FailDegraded, d.FailedAt.UTC()
	case next != nil && next.Rollback:
		return FailRolledBack, ran.UTC()
	case next != nil && window > 0 && !d.Rollback && !d.RunningAt.IsZero() && next.LandedAt.Sub(d.LandedAt) <= window:
		return FailFixed, ran.UTC()
	}
	return "", time.Time{}
}

// hoursBetween is to - from in hours, when from is known and not after to.
func hoursBetween(from, to time.Time) (float64, bool) {
	if from.IsZero() || to.Before(from) {
		return 0, false
	}
	return to.Sub(from).Hours(), true
}

func stat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Samples: n, MedianHours: m}
}
