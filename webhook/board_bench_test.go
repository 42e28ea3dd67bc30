package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// BenchmarkStatus1000Apps serves GET /api/v1/status's read model for 1,000
// apps × 4 stages with a landing in every stage, from SQLite; no GitLab.
func BenchmarkStatus1000Apps(b *testing.B) {
	ctx := context.Background()
	var y strings.Builder
	y.WriteString("version: 1\ngitlab: {project: platform/gitops}\napps:\n")
	for i := range 1000 {
		fmt.Fprintf(&y, "  - {name: app%d, sourceProject: team/app%d, image: r.example.com/team/app%d, values: 'apps/{app}/{stage}.yaml', set: {image: reference}}\n", i, i, i)
	}
	y.WriteString("stages:\n  - {name: dev, promotion: commit}\n  - {name: test, promotion: merge-request}\n  - {name: staging, promotion: merge-request}\n  - {name: production, promotion: approval, approvals: 2}\n")
	cfg, err := gitops.ParseConfig([]byte(y.String()), "lotse.yaml")
	if err != nil {
		b.Fatal(err)
	}
	snap := snapshotOf(cfg, nil, gateKeys{})
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "lotsed.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	for i := range 1000 {
		app := fmt.Sprintf("app%d", i)
		st := promotion.State{App: app, Stages: map[string]*promotion.StageState{}}
		for j, stage := range []string{"dev", "test", "staging", "production"} {
			img := fmt.Sprintf("r.example.com/team/%s@sha256:%064d", app, j)
			st.Stages[stage] = &promotion.StageState{Current: &promotion.Deployment{Image: img, SourceProject: "team/" + app,
				SourceCommit: fmt.Sprintf("%040d", i), Commit: fmt.Sprintf("%040d", j), LandedAt: at}}
		}
		data, _ := json.Marshal(record{State: st})
		if err := db.SaveState(ctx, app, data, 0); err != nil {
			b.Fatal(err)
		}
	}
	src := &configSource{gitopsProject: "platform/gitops", read: func(context.Context) (*snapshot, error) { return snap, nil }}
	v := &views{config: src, store: db, now: time.Now}
	b.ResetTimer()
	for b.Loop() {
		out, err := v.Status(ctx)
		if err != nil || len(out.([]AppView)) != 1000 {
			b.Fatal(err)
		}
	}
}
