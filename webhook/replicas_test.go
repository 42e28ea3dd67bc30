package webhook

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/store/storetest"
)

// overlapProbe carries out every action slowly and counts how many it is
// carrying out for one app at once, over every runner that shares it.
type overlapProbe struct {
	now, most atomic.Int32
	done      atomic.Int32
}

func (o *overlapProbe) perform(ctx context.Context, _ *snapshot, _ string, _ promotion.Action) ([]promotion.Event, error) {
	n := o.now.Add(1)
	defer o.now.Add(-1)
	for {
		m := o.most.Load()
		if n <= m || o.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	o.done.Add(1)
	return nil, nil
}

// Two replicas on one PostgreSQL database apply events for one app at the
// same moment (GitLab sends each event to both hooks): they must never carry
// out the app's actions at once. Before the app's lock was shared through
// the database, each replica's lock was its own, both carried out the
// same outbox head, and two writes of one promotion branch each found the
// other's commit on it (TestTwoReplicasOnPostgres, now and then).
func TestReplicasApplyOneAtATime(t *testing.T) {
	u := storetest.PostgresURL(t)
	ctx := context.Background()
	w := newTestWorld(t)
	p, _ := w.snap.policy("shop")
	probe := &overlapProbe{}
	var runners []*runner
	for range 2 {
		db, err := store.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		runners = append(runners, &runner{states: db, shared: db, effects: probe, now: func() time.Time { return w.now },
			log: slog.New(slog.DiscardHandler)})
	}
	for i := range 5 {
		ev := landedIn("dev", img1, "c"+string(rune('1'+i)))
		var wg sync.WaitGroup
		for _, r := range runners {
			wg.Go(func() {
				if err := r.apply(ctx, w.snap, p, []promotion.Event{ev}); err != nil {
					t.Errorf("apply: %v", err)
				}
			})
		}
		wg.Wait()
	}
	if probe.done.Load() == 0 {
		t.Fatal("no action was carried out")
	}
	if m := probe.most.Load(); m != 1 {
		t.Errorf("the two replicas carried out %d actions of one app at once", m)
	}
}
