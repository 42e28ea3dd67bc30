package webhook

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// A scripted history through the runner, with the deployments recorded in
// a real SQLite store and a fixed clock, gives exact figures in
// GET /api/v1/dora's view.
func TestDORAFromRecordedDeployments(t *testing.T) {
	ctx := context.Background()
	w := newTestWorld(t)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.runner.effects.(*effects).deployLog = db
	w.gl.commits[7] = []gitlab.Commit{{SHA: "a", AuthoredAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}}

	start := w.now // 2026-12-04 10:00; MR !7 merged 2026-12-03 16:00
	if err := w.apply(landedIn("dev", img1, "c1")); err != nil {
		t.Fatal(err)
	}
	w.now = start.Add(time.Hour)
	if err := w.apply(promotion.Health{Stage: "dev", Degraded: true, Reason: "CrashLoopBackOff", Images: []string{img1}}); err != nil {
		t.Fatal(err)
	}
	w.now = start.Add(3 * time.Hour)
	if err := w.apply(landedIn("dev", img2, "c2")); err != nil {
		t.Fatal(err)
	}

	v := &views{config: &configSource{read: func(context.Context) (*snapshot, error) { return w.snap, nil }}, store: db,
		now: func() time.Time { return w.now }, fixWindow: 24 * time.Hour}
	got, err := v.DORA(ctx, "shop", w.now.AddDate(0, 0, -2))
	if err != nil {
		t.Fatal(err)
	}
	fs := got.([]dora.Figures)
	if len(fs) != 3 || fs[0].Stage != "dev" || fs[1].Stage != "staging" || fs[2].Stage != "production" {
		t.Fatalf("figures = %+v", fs)
	}
	dev := fs[0]
	want := dora.Figures{App: "shop", Stage: "dev", Deployments: 2, PerDay: 1, Failures: 1, ChangeFailureRate: 0.5,
		LeadTimeFromMerge:       dora.Stat{Samples: 2, MedianHours: 19.5}, // 18h and 21h
		LeadTimeFromFirstCommit: dora.Stat{Samples: 2, MedianHours: 49.5}, // 48h and 51h
		TimeToRestore:           dora.Stat{Samples: 1, MedianHours: 2}}    // degraded 11:00, img2 ran 13:00
	samples := dev.Samples
	dev.Samples, dev.Since, dev.Until, dev.FixWindowHours = nil, time.Time{}, time.Time{}, 0
	if dev.App != want.App || dev.Stage != want.Stage || dev.Deployments != want.Deployments || dev.PerDay != want.PerDay ||
		dev.Failures != want.Failures || dev.ChangeFailureRate != want.ChangeFailureRate || dev.LeadTimeFromMerge != want.LeadTimeFromMerge ||
		dev.LeadTimeFromFirstCommit != want.LeadTimeFromFirstCommit || dev.TimeToRestore != want.TimeToRestore {
		t.Fatalf("dev =\n%+v\nwant\n%+v", dev, want)
	}
	if len(samples) != 2 || samples[0].Image != img1 || samples[0].Failure != dora.FailDegraded || samples[1].Failure != "" {
		t.Fatalf("samples = %+v", samples)
	}
	if fs[2].Deployments != 0 || fs[2].Samples == nil {
		t.Fatalf("production = %+v", fs[2])
	}

	var bad *badRequest
	if _, err := v.DORA(ctx, "nope", w.now); !errors.As(err, &bad) {
		t.Fatalf("unknown app: %v", err)
	}
}
