package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/store"
)

// gatherWait is how long an idle worker waits after a new delivery before it
// leases: deliveries arriving meanwhile share its transactions.
const gatherWait = 20 * time.Millisecond

// leaseBatch is how many deliveries a worker takes at once: completing them
// together costs one disk flush instead of one each.
const leaseBatch = 32

// storePoll is how often a worker looks in the store at the latest, for
// retries that came due and leases that ran out.
const storePoll = 500 * time.Millisecond

// leaseTTL is how long a worker owns a delivery before another may take it.
const leaseTTL = 30 * time.Second

// deliveryQueue is what the workers need of the store's queue.
type deliveryQueue interface {
	Lease(ctx context.Context, owner string, max int, ttl time.Duration, now time.Time) ([]store.Delivery, error)
	Renew(ctx context.Context, ids []int64, owner string, until time.Time) (int, error)
	CompleteMany(ctx context.Context, ids []int64, owner string) (int, error)
	Fail(ctx context.Context, id int64, owner string, cause string, retryAt time.Time, maxAttempts int) (dead bool, err error)
}

// processor handles one delivery.
type processor interface {
	process(ctx context.Context, d store.Delivery, hook *gitlabHook) error
}

// workers take deliveries from the hand-off and the store, have them
// processed, and mark them done, failed (retried later with a backoff) or
// dead.
type workers struct {
	queue       deliveryQueue
	handoff     *handoff
	proc        processor
	owner       string // this process; worker i leases as owner/i
	n           int
	ttl         time.Duration // how long a lease lasts; renewed while a delivery is worked on
	maxAttempts int
	metrics     *metrics
	now         func() time.Time
	log         *slog.Logger
}

// run runs the n workers until ctx is done.
func (w *workers) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.n {
		wg.Go(func() { w.loop(ctx, i) })
	}
	wg.Wait()
}

// owners are every lease owner of this process: the workers and the
// hand-off.
func (w *workers) owners() []string {
	out := []string{w.handoff.owner}
	for i := range w.n {
		out = append(out, w.workerOwner(i))
	}
	return out
}

// workerOwner is who worker i leases deliveries from the store to.
func (w *workers) workerOwner(i int) string { return fmt.Sprintf("%s/%d", w.owner, i) }

func (w *workers) loop(ctx context.Context, i int) {
	owner := w.workerOwner(i)
	idle := time.NewTimer(0)
	defer idle.Stop()
	// fromStore: the store may hold deliveries for us (queued, due for a
	// retry, or leases expired): at start, when woken, at least every
	// storePoll (a busy hand-off must not starve them), and while leases
	// come back full.
	fromStore := true
	var looked time.Time
	for ctx.Err() == nil {
		select {
		case <-w.handoff.kicks():
			fromStore = true
		default:
		}
		if fromStore || w.now().Sub(looked) >= storePoll {
			looked = w.now()
			ds, err := w.queue.Lease(ctx, owner, leaseBatch, w.ttl, looked)
			if err != nil && ctx.Err() == nil {
				w.log.ErrorContext(ctx, "lease deliveries", "err", err)
			}
			fromStore = len(ds) == leaseBatch
			if len(ds) > 0 {
				hs := make([]handed, len(ds))
				for i, d := range ds {
					hs[i].d = d
				}
				w.batch(ctx, owner, hs)
				continue
			}
		}
		if hs := w.taken(nil); len(hs) > 0 {
			w.batch(ctx, w.handoff.owner, hs)
			continue
		}
		idle.Reset(storePoll)
		select {
		case <-ctx.Done():
			return
		case h := <-w.handoff.deliveries():
			w.batch(ctx, w.handoff.owner, w.taken(&h))
		case <-w.handoff.kicks():
			// Let a few more queued deliveries arrive, so that one lease
			// serves them all.
			select {
			case <-ctx.Done():
				return
			case <-time.After(gatherWait):
			}
			fromStore = true
		case <-idle.C:
			fromStore = true
		}
	}
}

// taken takes first (when not nil) and what else the intake has handed
// over, up to a batch, leaving out deliveries whose lease ran out while
// they waited (a worker may have leased them from the store since).
func (w *workers) taken(first *handed) []handed {
	var hs []handed
	now := w.now()
	take := func(h handed) {
		w.handoff.took()
		if now.Before(h.d.LeaseUntil) {
			hs = append(hs, h)
		}
	}
	if first != nil {
		take(*first)
	}
	for len(hs) < leaseBatch {
		select {
		case h := <-w.handoff.deliveries():
			take(h)
		default:
			return hs
		}
	}
	return hs
}

// batch processes hs, leased to owner, and marks those done that are.
// While it works, it renews the leases of those still to do, so that a
// slow GitLab does not hand them to another worker meanwhile.
func (w *workers) batch(ctx context.Context, owner string, hs []handed) {
	var (
		mu   sync.Mutex
		left = make([]int64, len(hs))
	)
	for i, h := range hs {
		left[i] = h.d.ID
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(w.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				ids := slices.Clone(left)
				mu.Unlock()
				if _, err := w.queue.Renew(ctx, ids, owner, w.now().Add(w.ttl)); err != nil && ctx.Err() == nil {
					w.log.WarnContext(ctx, "renew leases", "err", err)
				}
			}
		}
	}()
	var done []int64
	for _, h := range hs {
		if w.handle(ctx, owner, h) {
			done = append(done, h.d.ID)
		}
		mu.Lock()
		left = left[1:] // handled: completed below, or failed and released
		mu.Unlock()
	}
	close(stop)
	<-renewed
	// One write for the batch, committed with the intake's deliveries.
	if n, err := w.queue.CompleteMany(ctx, done, owner); err != nil && ctx.Err() == nil {
		w.log.WarnContext(ctx, "complete deliveries", "ids", done, "err", err)
	} else if n < len(done) {
		w.log.WarnContext(ctx, "deliveries completed after their lease was lost", "lost", len(done)-n)
	}
}

// handle processes one delivery; true means it is done (the caller marks
// it), false that the failure was recorded for a retry or parked as dead.
func (w *workers) handle(ctx context.Context, owner string, h handed) bool {
	d := h.d
	start := w.now()
	err := w.proc.process(ctx, d, h.hook)
	w.metrics.processedIn(d.Event, w.now().Sub(start))
	if ctx.Err() != nil {
		return false // shutting down: the lease expires and another worker retries
	}
	if err == nil {
		w.metrics.delivery("processed", d.Event)
		return true
	}
	max := w.maxAttempts
	var pe *permanentError
	if errors.As(err, &pe) {
		max = d.Attempts // retrying cannot help: park it now
	}
	backoff := time.Duration(1<<min(d.Attempts, 8)) * time.Second
	dead, ferr := w.queue.Fail(ctx, d.ID, owner, err.Error(), w.now().Add(backoff), max)
	if ferr != nil {
		w.log.WarnContext(ctx, "record failure", "id", d.ID, "err", ferr)
	}
	if dead {
		w.metrics.delivery("dead", d.Event)
		w.log.ErrorContext(ctx, "delivery parked as dead", "id", d.ID, "event", d.Event, "attempts", d.Attempts, "err", err)
		return false
	}
	w.metrics.delivery("failed", d.Event)
	w.log.WarnContext(ctx, "delivery failed, will retry", "id", d.ID, "event", d.Event, "attempt", d.Attempts, "err", err)
	return false
}

// pruner deletes processed deliveries.
type pruner interface {
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// auditHeads reads the head of the audit chain.
type auditHeads interface {
	AuditHead(ctx context.Context) (audit.Head, error)
}

// timer sends ticks to every app (soak times, merge retries), prunes
// processed deliveries older than the retention at most once an hour, and
// publishes the audit chain's head when it moved and at least once an hour
// (a log line with its hash, and a metric), so that a rewrite of the whole
// chain can be told from outside the database.
type timer struct {
	every     time.Duration
	retention time.Duration
	store     interface {
		pruner
		auditHeads
	}
	tick      func(ctx context.Context)
	metrics   *metrics
	now       func() time.Time
	log       *slog.Logger
	lastPrune time.Time
	head      audit.Head
	published time.Time
}

func (t *timer) run(ctx context.Context) {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			t.prune(ctx)
			t.tick(ctx)
			t.publishHead(ctx)
		}
	}
}

func (t *timer) publishHead(ctx context.Context) {
	h, err := t.store.AuditHead(ctx)
	if err != nil {
		t.log.WarnContext(ctx, "read the audit chain's head", "err", err)
		return
	}
	now := t.now()
	if h == t.head && now.Sub(t.published) < time.Hour {
		return
	}
	t.head, t.published = h, now
	t.metrics.auditHead.Store(h.Seq)
	t.log.InfoContext(ctx, "audit chain head", "head", h.String())
}

func (t *timer) prune(ctx context.Context) {
	now := t.now()
	if t.retention <= 0 || now.Sub(t.lastPrune) < time.Hour {
		return
	}
	t.lastPrune = now
	n, err := t.store.Prune(ctx, now.Add(-t.retention))
	if err != nil {
		t.log.WarnContext(ctx, "prune deliveries", "err", err)
		return
	}
	if n > 0 {
		t.log.InfoContext(ctx, "pruned processed deliveries", "count", n, "older_than", t.retention.String())
	}
}
