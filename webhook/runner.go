package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// stateStore keeps each app's record with optimistic locking: SaveState
// fails with store.ErrStale when someone saved since the load.
type stateStore interface {
	LoadState(ctx context.Context, app string) (data []byte, version int64, err error)
	SaveState(ctx context.Context, app string, data []byte, version int64) error
}

// performer carries out one action with the snapshot the event is
// processed with and returns what it learned as events.
type performer interface {
	perform(ctx context.Context, snap *snapshot, app string, a promotion.Action) ([]promotion.Event, error)
}

// actionTimeout bounds one action: a gate check against a registry, a
// GitLab call and its retries. A stuck action fails (and is retried) while
// the app's lock is held, instead of holding it forever.
const actionTimeout = 2 * time.Minute

// maxActionsInRow bounds one apply: the engine's actions and the events they
// report back always come to rest; more means a loop.
const maxActionsInRow = 1000

// runner drives the promotion engine for one app at a time: load the record,
// run Next, save the state with the new actions in the outbox in one write,
// then carry out the outbox head by head, feeding what each action reports
// back into the engine. It knows nothing of HTTP or of deliveries.
type runner struct {
	states  stateStore
	effects performer
	now     func() time.Time
	log     *slog.Logger
	locks   appLocks
	// shared, when set, is the app's lock across the processes that share
	// the store (several replicas on PostgreSQL): without it two replicas
	// would carry out one outbox head at once, and two writes of one
	// promotion branch look to each other like someone else's commits.
	shared appLocker
}

// appLocker takes an app's lock across every process sharing the store.
type appLocker interface {
	LockApp(ctx context.Context, app string) (*store.AppLock, error)
}

// apply runs events through the engine for p.App and then empties the
// outbox. An action that fails stays at the head of the outbox: the error is
// returned, and the next apply for the app (a retried delivery or a tick)
// carries it out first.
func (r *runner) apply(ctx context.Context, snap *snapshot, p promotion.Policy, events []promotion.Event) error {
	defer r.locks.lock(p.App)()
	held := func(context.Context) error { return nil }
	if r.shared != nil {
		l, err := r.shared.LockApp(ctx, p.App)
		if err != nil {
			return fmt.Errorf("app %s: %w", p.App, err)
		}
		defer l.Unlock()
		held = l.Held
	}
	if err := r.step(ctx, p, events, nil); err != nil {
		return err
	}
	for range maxActionsInRow {
		rec, _, err := r.load(ctx, p.App)
		if err != nil {
			return err
		}
		if len(rec.Outbox) == 0 {
			return nil
		}
		head := rec.Outbox[0]
		a, err := decodeAction(head)
		if err != nil {
			return &permanentError{fmt.Errorf("app %s: %w", p.App, err)}
		}
		// Another replica may hold the app once this one's lock is gone:
		// then this one stops, and the action is carried out by whoever
		// holds the lock (or by this one's retry).
		if err := held(ctx); err != nil {
			return fmt.Errorf("app %s: %w", p.App, err)
		}
		actx, cancel := context.WithTimeout(ctx, actionTimeout)
		follow, err := r.effects.perform(actx, snap, p.App, a)
		cancel()
		r.log.DebugContext(ctx, "action", "app", p.App, "action", head.Type, "follow", len(follow), "err", err)
		if err != nil {
			return fmt.Errorf("%s: %w", head.Type, err)
		}
		if err := r.step(ctx, p, follow, &head); err != nil {
			return err
		}
	}
	return fmt.Errorf("app %s: more than %d actions in a row: giving up", p.App, maxActionsInRow)
}

// step applies events to the stored state and pops done (the outbox head
// just carried out), retrying when another writer saved in between.
func (r *runner) step(ctx context.Context, p promotion.Policy, events []promotion.Event, done *envelope) error {
	for range 20 {
		rec, ver, err := r.load(ctx, p.App)
		if err != nil {
			return err
		}
		if done != nil && len(rec.Outbox) > 0 && rec.Outbox[0].key() == done.key() {
			rec.Outbox = rec.Outbox[1:]
		}
		for _, e := range events {
			st, acts, err := promotion.Next(p, rec.State, e, r.now())
			if err != nil {
				r.log.WarnContext(ctx, "event refused by the state machine", "app", p.App, "event", fmt.Sprintf("%T", e), "err", err)
				continue
			}
			if _, tick := e.(promotion.Tick); !tick || len(acts) > 0 {
				r.log.DebugContext(ctx, "event", "app", p.App, "event", fmt.Sprintf("%T", e), "actions", len(acts))
			}
			rec.State = st
			for _, a := range acts {
				env, err := encodeAction(a)
				if err != nil {
					return &permanentError{err}
				}
				rec.Outbox = append(rec.Outbox, env)
			}
		}
		err = r.save(ctx, p.App, rec, ver)
		if errors.Is(err, store.ErrStale) {
			continue
		}
		return err
	}
	return fmt.Errorf("state of %s kept changing under us", p.App)
}

// load reads an app's record; the zero record when none was saved.
func (r *runner) load(ctx context.Context, app string) (record, int64, error) {
	data, ver, err := r.states.LoadState(ctx, app)
	if err != nil {
		return record{}, 0, err
	}
	var rec record
	if len(data) > 0 {
		if err := json.Unmarshal(data, &rec); err != nil {
			return record{}, 0, &permanentError{fmt.Errorf("stored state of %s: %w", app, err)}
		}
	}
	return rec, ver, nil
}

func (r *runner) save(ctx context.Context, app string, rec record, ver int64) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", app, err)
	}
	return r.states.SaveState(ctx, app, data, ver)
}

// appLocks serialise the runs of one app within this process; the store's
// optimistic locking keeps replicas apart.
type appLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (l *appLocks) lock(app string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*sync.Mutex{}
	}
	m := l.m[app]
	if m == nil {
		m = &sync.Mutex{}
		l.m[app] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// permanentError is a failure retrying cannot mend: an undecodable delivery
// or outbox entry, a stored state that does not parse. The delivery is
// parked as dead at once, with the reason.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
