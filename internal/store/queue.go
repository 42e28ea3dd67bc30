package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
)

// State is where a delivery is in its life.
type State string

// The states of a delivery.
const (
	// Queued waits for a worker (from NextAttempt on).
	Queued State = "queued"
	// Leased is being worked on by LeaseOwner until LeaseUntil; after that
	// any worker may claim it again.
	Leased State = "leased"
	// Done was processed.
	Done State = "done"
	// Dead failed too often and waits for an operator's Requeue.
	Dead State = "dead"
)

// States lists every state, in the order of a delivery's life.
func States() []State { return []State{Queued, Leased, Done, Dead} }

// Delivery is one received webhook.
type Delivery struct {
	ID int64
	// Source is who sent it: "gitlab" or "argocd".
	Source string
	// Event is the event type, e.g. X-Gitlab-Event "Merge Request Hook".
	Event string
	// Key deduplicates: a second delivery with the same Source and Key is
	// not stored. GitLab's Idempotency-Key (or webhook-id when signing is
	// on). Empty means no deduplication.
	Key string
	// Headers are the non-secret request headers worth keeping. Enqueue
	// drops Authorization, Cookie, X-Gitlab-Token and signature headers
	// should a caller pass them.
	Headers map[string]string
	Body    []byte
	// ReceivedAt defaults to now on Enqueue.
	ReceivedAt time.Time

	State       State
	Attempts    int
	NextAttempt time.Time
	LastError   string
	// LeaseOwner and LeaseUntil, when set on Enqueue, store the delivery
	// already leased to LeaseOwner (its first attempt) rather than queued:
	// the receiving process hands it to a worker in memory and saves a
	// Lease transaction and reading the body back.
	LeaseOwner string
	LeaseUntil time.Time
}

// Tuning of the group commit.
const (
	// maxBatch is the most deliveries one writer commits in a transaction.
	maxBatch = 512
	// rowsPerInsert is the most rows of one INSERT statement (8 parameters
	// each, far below both dialects' limits).
	rowsPerInsert = 128
	// enqueueBuffer is how many enqueues may wait for a writer.
	enqueueBuffer = 4096
	// When the last batch had lingerAfter deliveries or more, the writer
	// waits up to lingerMax for lingerFor before it commits the next.
	lingerAfter = 4
	lingerFor   = 32
	lingerMax   = time.Millisecond
	// batchTimeout bounds one batch's transaction, so that a database that
	// stops answering fails the waiting callers instead of wedging them.
	batchTimeout = 30 * time.Second
)

// secretHeader tells the headers that are never stored, whatever the
// caller passes.
func secretHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "cookie", "x-gitlab-token", "webhook-signature", "x-hub-signature", "x-hub-signature-256":
		return true
	}
	return false
}

// enqueueReq is one Enqueue or CompleteMany call waiting for its batch to
// commit: the writers commit both kinds together.
type enqueueReq struct {
	// complete, when set, makes this a CompleteMany of ids by owner.
	complete *completion
	d        Delivery
	headers  string
	// body is d.Body as stored, in encoding.
	body     []byte
	encoding string
	// gone is the caller's ctx.Done(): a request whose caller left before
	// its batch started is not stored.
	gone <-chan struct{}
	// why is the caller's ctx.Err(): why it left.
	why  func() error
	done chan enqueueRes

	id  int64
	dup bool
}

type enqueueRes struct {
	id  int64
	dup bool
	err error
}

type completion struct {
	ids   []int64
	owner string
	n     int // how many were marked done
}

// writerCount is how many goroutines group-commit enqueues: SQLite has one
// writer at a time anyway; PostgreSQL commits several transactions in
// parallel (its WAL flush covers all that wait). Measured end to end (make
// bench: lotsed, PostgreSQL and the load generator on two cores), 4
// writers took 5,500 deliveries/s, 8 took 4,800 and 16 took 4,300: beyond
// a few, the backends only compete for the CPU.
func (db *DB) writerCount() int {
	if db.dialect == postgres {
		return 4
	}
	return 1
}

func (db *DB) startWriters(ctx context.Context) {
	db.enq = make(chan *enqueueReq, enqueueBuffer)
	db.quit = make(chan struct{})
	// The writers outlive Open's ctx; Close stops them.
	wctx := context.WithoutCancel(ctx)
	for range db.writerCount() {
		db.writers.Add(1)
		go db.writeLoop(wctx)
	}
}

// Enqueue stores a delivery as queued and returns its id once it is
// committed (and on disk: SQLite synchronous=FULL, PostgreSQL
// synchronous_commit as configured, on by default). A delivery whose Source
// and Key were stored before is not stored again: Enqueue returns the first
// one's id and duplicate=true.
//
// Concurrent calls are committed together: a writer goroutine takes every
// call that waits, inserts them in one transaction and answers each after
// the commit. When ctx ends before the answer, Enqueue returns ctx's error
// and the delivery may or may not have been stored; a retry with the same
// Key is safe.
func (db *DB) Enqueue(ctx context.Context, d Delivery) (id int64, duplicate bool, err error) {
	if d.Source == "" {
		return 0, false, errors.New("enqueue: delivery has no source")
	}
	if d.Body == nil {
		d.Body = []byte{}
	}
	if d.ReceivedAt.IsZero() {
		d.ReceivedAt = time.Now()
	}
	if d.NextAttempt.IsZero() {
		d.NextAttempt = d.ReceivedAt
	}
	headers := "{}"
	if len(d.Headers) > 0 {
		kept := make(map[string]string, len(d.Headers))
		for k, v := range d.Headers {
			if !secretHeader(k) {
				kept[k] = v
			}
		}
		b, err := json.Marshal(kept)
		if err != nil {
			return 0, false, fmt.Errorf("enqueue: encode headers: %w", err)
		}
		headers = string(b)
	}
	if (d.LeaseOwner == "") != d.LeaseUntil.IsZero() {
		return 0, false, errors.New("enqueue: a leased delivery needs both LeaseOwner and LeaseUntil")
	}
	r := &enqueueReq{d: d, headers: headers}
	// Compressed by the caller's goroutine, in parallel, so that the one
	// writer has a third of the bytes to write.
	r.body, r.encoding = encodeBody(d.Body)
	res, err := db.hand(ctx, r)
	if err != nil {
		return 0, false, fmt.Errorf("enqueue %s delivery: %w", d.Source, err)
	}
	return res.id, res.dup, nil
}

// hand gives r to the writers and waits for its batch to commit.
func (db *DB) hand(ctx context.Context, r *enqueueReq) (enqueueRes, error) {
	r.gone, r.why, r.done = ctx.Done(), ctx.Err, make(chan enqueueRes, 1)
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return enqueueRes{}, ErrClosed
	}
	db.handing.Add(1)
	db.closeMu.Unlock()
	select {
	case db.enq <- r:
		db.handing.Done()
	case <-ctx.Done():
		db.handing.Done()
		return enqueueRes{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res, res.err
	case <-ctx.Done():
		return enqueueRes{}, fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// writeLoop group-commits enqueues until Close, then commits what is left.
func (db *DB) writeLoop(ctx context.Context) {
	defer db.writers.Done()
	batch := make([]*enqueueReq, 0, maxBatch)
	linger := time.NewTimer(0)
	<-linger.C
	prev := 0 // the last batch's size
	for {
		select {
		case r := <-db.enq:
			batch = append(batch, r)
		case <-db.quit:
			// Close waited for every hand-over in progress: what is in the
			// channel now is all there will be.
			for {
				select {
				case r := <-db.enq:
					batch = append(batch, r)
					if len(batch) == maxBatch {
						db.commitBatch(ctx, batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						db.commitBatch(ctx, batch)
					}
					return
				}
			}
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-db.enq:
				batch = append(batch, r)
			default:
				break more
			}
		}
		if prev >= lingerAfter && len(batch) < lingerFor {
			// Busy: wait a little for more, so that commits (and disk
			// flushes) are fewer and each carries more deliveries.
			linger.Reset(lingerMax)
		gather:
			for len(batch) < lingerFor {
				select {
				case r := <-db.enq:
					batch = append(batch, r)
				case <-linger.C:
					break gather
				}
			}
			if !linger.Stop() {
				select {
				case <-linger.C:
				default:
				}
			}
		}
		prev = len(batch)
		db.commitBatch(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// commitBatch inserts batch in one transaction and answers every request.
// When the transaction fails, each request is retried in its own so that
// one bad delivery does not fail the others.
func (db *DB) commitBatch(ctx context.Context, batch []*enqueueReq) {
	live := make([]*enqueueReq, 0, len(batch))
	for _, r := range batch {
		select {
		case <-r.gone:
			r.done <- enqueueRes{err: fmt.Errorf("caller gone before commit: %w", r.why())}
		default:
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	err := db.inTx(ctx, func(tx *sql.Tx) error { return db.insertBatch(ctx, tx, live) })
	if err == nil {
		for _, r := range live {
			r.done <- enqueueRes{id: r.id, dup: r.dup}
		}
		return
	}
	if len(live) == 1 {
		live[0].done <- enqueueRes{err: err}
		return
	}
	for _, r := range live {
		one := []*enqueueReq{r}
		if err := db.inTx(ctx, func(tx *sql.Tx) error { return db.insertBatch(ctx, tx, one) }); err != nil {
			r.done <- enqueueRes{err: err}
			continue
		}
		r.done <- enqueueRes{id: r.id, dup: r.dup}
	}
}

type dedupeKey struct{ source, key string }

// insertBatch inserts the requests in tx and sets their id and dup. Keyed
// deliveries go in multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING
// statements, in key order (so concurrent PostgreSQL writers take index
// locks in one order and never deadlock); repeats within the batch get the
// first one's id; unkeyed ones are inserted one by one.
func (db *DB) insertBatch(ctx context.Context, tx *sql.Tx, batch []*enqueueReq) error {
	first := make(map[dedupeKey]*enqueueReq, len(batch))
	var keyed, unkeyed, repeats []*enqueueReq
	for _, r := range batch {
		if r.complete != nil {
			if err := db.completeIn(ctx, tx, r.complete); err != nil {
				return err
			}
			continue
		}
		r.id, r.dup = 0, false
		if r.d.Key == "" {
			unkeyed = append(unkeyed, r)
			continue
		}
		k := dedupeKey{r.d.Source, r.d.Key}
		if _, ok := first[k]; ok {
			repeats = append(repeats, r)
			continue
		}
		first[k] = r
		keyed = append(keyed, r)
	}
	slices.SortFunc(keyed, func(a, b *enqueueReq) int {
		if c := strings.Compare(a.d.Source, b.d.Source); c != 0 {
			return c
		}
		return strings.Compare(a.d.Key, b.d.Key)
	})

	for rest := keyed; len(rest) > 0; {
		chunk := rest[:chunkLen(len(rest))]
		rest = rest[len(chunk):]
		args := make([]any, 0, 9*len(chunk))
		for _, r := range chunk {
			args = append(args, r.d.Source, r.d.Event, r.d.Key, micros(r.d.ReceivedAt), micros(r.d.NextAttempt))
			args = appendLease(args, r.d)
		}
		rows, err := tx.StmtContext(ctx, db.batch.insert[chunkIndex(len(chunk))]).QueryContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		for rows.Next() {
			var (
				id          int64
				source, key string
			)
			if err := rows.Scan(&id, &source, &key); err != nil {
				rows.Close()
				return fmt.Errorf("insert deliveries: read ids: %w", err)
			}
			if r := first[dedupeKey{source, key}]; r != nil {
				r.id = id
			}
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		var fresh []*enqueueReq
		for _, r := range chunk {
			if r.id != 0 {
				fresh = append(fresh, r)
			}
		}
		if err := db.insertBodies(ctx, tx, fresh); err != nil {
			return err
		}
		for _, r := range chunk {
			if r.id != 0 {
				continue
			}
			// Stored before: answer with the first delivery's id.
			err := tx.StmtContext(ctx, db.batch.findKey).QueryRowContext(ctx, r.d.Source, r.d.Key).Scan(&r.id)
			if err != nil {
				return fmt.Errorf("look up duplicate delivery %s/%s: %w", r.d.Source, r.d.Key, err)
			}
			r.dup = true
		}
	}
	for _, r := range unkeyed {
		args := appendLease([]any{r.d.Source, r.d.Event, micros(r.d.ReceivedAt), micros(r.d.NextAttempt)}, r.d)
		err := tx.QueryRowContext(ctx, db.q(insertCols+`(?, ?, NULL, ?, ?, ?, ?, ?, ?) RETURNING id`), args...).Scan(&r.id)
		if err != nil {
			return fmt.Errorf("insert delivery: %w", err)
		}
	}
	if err := db.insertBodies(ctx, tx, unkeyed); err != nil {
		return err
	}
	for _, r := range repeats {
		r.id, r.dup = first[dedupeKey{r.d.Source, r.d.Key}].id, true
	}
	return nil
}

// appendLease appends the state, attempts, lease_owner and lease_until a
// new delivery is stored with: queued, or leased (its first attempt).
func appendLease(args []any, d Delivery) []any {
	if d.LeaseOwner == "" {
		return append(args, string(Queued), 0, "", 0)
	}
	return append(args, string(Leased), 1, d.LeaseOwner, micros(d.LeaseUntil))
}

// insertBodies stores the headers and bodies of newly inserted deliveries.
func (db *DB) insertBodies(ctx context.Context, tx *sql.Tx, rs []*enqueueReq) error {
	for len(rs) > 0 {
		chunk := rs[:chunkLen(len(rs))]
		rs = rs[len(chunk):]
		args := make([]any, 0, 4*len(chunk))
		for _, r := range chunk {
			args = append(args, r.id, r.headers, r.encoding, r.body)
		}
		if _, err := tx.StmtContext(ctx, db.batch.bodies[chunkIndex(len(chunk))]).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert delivery bodies: %w", err)
		}
	}
	return nil
}

// The statements of the group commit are prepared once, for chunks of 1,
// 2, 4, ... rowsPerInsert rows: parsing a new multi-row statement for each
// batch cost SQLite more than running it.
const chunkSizes = 8 // 1 << (chunkSizes-1) == rowsPerInsert

const insertCols = `INSERT INTO deliveries (source, event, dedupe_key, received_at, next_attempt, state, attempts, lease_owner, lease_until) VALUES `

// batchStmts are the prepared statements of the write path; index i of
// each array takes 1<<i rows (or ids).
type batchStmts struct {
	insert, bodies, complete [chunkSizes]*sql.Stmt
	findKey                  *sql.Stmt
}

// chunkLen is the longest prepared chunk that n rows fill: the largest
// power of two <= min(n, rowsPerInsert).
func chunkLen(n int) int {
	c := rowsPerInsert
	for c > n {
		c /= 2
	}
	return c
}

// chunkIndex is the index in batchStmts of a chunk of n = 1<<i rows.
func chunkIndex(n int) int {
	i := 0
	for 1<<i < n {
		i++
	}
	return i
}

func (db *DB) prepareBatch(ctx context.Context) error {
	rows := func(n int, row string) string {
		return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	}
	prep := func(query string) (*sql.Stmt, error) {
		st, err := db.w.PrepareContext(ctx, db.q(query))
		if err != nil {
			return nil, fmt.Errorf("prepare %.60q: %w", query, err)
		}
		return st, nil
	}
	var err error
	for i := range chunkSizes {
		n := 1 << i
		if db.batch.insert[i], err = prep(insertCols + rows(n, "(?, ?, ?, ?, ?, ?, ?, ?, ?)") +
			" ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id, source, dedupe_key"); err != nil {
			return err
		}
		if db.batch.bodies[i], err = prep(`INSERT INTO delivery_bodies (id, headers, encoding, body) VALUES ` + rows(n, "(?, ?, ?, ?)")); err != nil {
			return err
		}
		if db.batch.complete[i], err = prep(`UPDATE deliveries SET state = 'done', lease_owner = '', lease_until = 0
WHERE state = 'leased' AND lease_owner = ? AND id IN (` + rows(n, "?") + `)`); err != nil {
			return err
		}
	}
	db.batch.findKey, err = prep(`SELECT id FROM deliveries WHERE source = ? AND dedupe_key = ?`)
	return err
}

// deliveryCols are the columns scanDelivery reads, in its order: the
// delivery (d) and its body (b) joined by deliveryFrom.
const (
	deliveryCols = `d.id, d.source, d.event, COALESCE(d.dedupe_key, ''), b.headers, b.encoding, b.body, d.received_at, d.state, d.attempts, d.next_attempt, d.last_error, d.lease_owner, d.lease_until`
	deliveryFrom = `deliveries d JOIN delivery_bodies b ON b.id = d.id`
	// metaCols are deliveryCols without the body, for UPDATE ... RETURNING.
	metaCols = `id, source, event, COALESCE(dedupe_key, ''), '{}', '', NULL, received_at, state, attempts, next_attempt, last_error, lease_owner, lease_until`
)

func scanDelivery(rows *sql.Rows) (Delivery, error) {
	var (
		d                          Delivery
		headers, encoding, state   string
		body                       []byte
		received, next, leaseUntil int64
	)
	err := rows.Scan(&d.ID, &d.Source, &d.Event, &d.Key, &headers, &encoding, &body, &received, &state,
		&d.Attempts, &next, &d.LastError, &d.LeaseOwner, &leaseUntil)
	if err != nil {
		return Delivery{}, fmt.Errorf("read delivery: %w", err)
	}
	if err := setHeaders(&d, headers); err != nil {
		return Delivery{}, err
	}
	if err := setBody(&d, encoding, body); err != nil {
		return Delivery{}, err
	}
	d.State = State(state)
	d.ReceivedAt, d.NextAttempt, d.LeaseUntil = fromMicros(received), fromMicros(next), fromMicros(leaseUntil)
	return d, nil
}

// Bodies of at least compressMin bytes are stored s2-compressed (GitLab's
// JSON shrinks to about a third) when that saves space.
const compressMin = 512

// encodeBody is body as stored and its encoding: "" (as is) or "s2".
func encodeBody(body []byte) ([]byte, string) {
	if len(body) < compressMin {
		return body, ""
	}
	if c := s2.Encode(nil, body); len(c) < len(body) {
		return c, "s2"
	}
	return body, ""
}

// setBody sets d.Body from its stored form.
func setBody(d *Delivery, encoding string, body []byte) error {
	switch encoding {
	case "":
		if body == nil {
			body = []byte{}
		}
		d.Body = body
	case "s2":
		b, err := s2.Decode(nil, body)
		if err != nil {
			return fmt.Errorf("read delivery %d: body: %w", d.ID, err)
		}
		d.Body = b
	default:
		return fmt.Errorf("read delivery %d: body in unknown encoding %q (stored by a newer lotsed?)", d.ID, encoding)
	}
	return nil
}

func setHeaders(d *Delivery, headers string) error {
	d.Headers = nil
	if headers != "" && headers != "{}" {
		if err := json.Unmarshal([]byte(headers), &d.Headers); err != nil {
			return fmt.Errorf("read delivery %d: headers: %w", d.ID, err)
		}
	}
	return nil
}

func collectDeliveries(rows *sql.Rows, err error) ([]Delivery, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// fillBodies reads the headers and bodies of ds.
func (db *DB) fillBodies(ctx context.Context, ds []Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	byID := make(map[int64]*Delivery, len(ds))
	args := make([]any, len(ds))
	marks := make([]string, len(ds))
	for i := range ds {
		byID[ds[i].ID] = &ds[i]
		args[i], marks[i] = ds[i].ID, "?"
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT id, headers, encoding, body FROM delivery_bodies WHERE id IN (`+strings.Join(marks, ", ")+`)`), args...)
	if err != nil {
		return fmt.Errorf("read delivery bodies: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id                int64
			headers, encoding string
			body              []byte
		)
		if err := rows.Scan(&id, &headers, &encoding, &body); err != nil {
			return fmt.Errorf("read delivery bodies: %w", err)
		}
		if d := byID[id]; d != nil {
			if err := setBody(d, encoding, body); err != nil {
				return err
			}
			if err := setHeaders(d, headers); err != nil {
				return err
			}
		}
	}
	return rows.Err()
}

// Lease claims up to max deliveries for owner until now+ttl: queued ones
// that are due (NextAttempt <= now) and leased ones whose lease expired,
// oldest first, and counts an attempt on each. On PostgreSQL rows locked
// by another replica's Lease are skipped (FOR UPDATE SKIP LOCKED), so no
// two callers ever get the same delivery while its lease runs. owner must
// be unique per worker (e.g. host/pid/worker).
func (db *DB) Lease(ctx context.Context, owner string, max int, ttl time.Duration, now time.Time) ([]Delivery, error) {
	if owner == "" {
		return nil, errors.New("lease: empty owner")
	}
	if max <= 0 {
		return nil, nil
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("lease: ttl %v is not positive", ttl)
	}
	lock := ""
	if db.dialect == postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	query := `UPDATE deliveries SET state = 'leased', lease_owner = ?, lease_until = ?, attempts = attempts + 1
WHERE id IN (SELECT id FROM deliveries
	WHERE state IN ('queued', 'leased')
	AND ((state = 'queued' AND next_attempt <= ?) OR (state = 'leased' AND lease_until <= ?))
	ORDER BY id LIMIT ?` + lock + `)
RETURNING ` + metaCols
	n := micros(now)
	out, err := collectDeliveries(db.w.QueryContext(ctx, db.q(query), owner, micros(now.Add(ttl)), n, n, max))
	if err != nil {
		return nil, fmt.Errorf("lease deliveries: %w", err)
	}
	if err := db.fillBodies(ctx, out); err != nil {
		return nil, fmt.Errorf("lease deliveries: %w", err)
	}
	slices.SortFunc(out, func(a, b Delivery) int { return cmpInt64(a.ID, b.ID) })
	return out, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// leaseMiss tells why an owner-checked update of delivery id touched no
// row: ErrNotFound or ErrLeaseLost.
func (db *DB) leaseMiss(ctx context.Context, id int64) error {
	var n int
	err := db.w.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM deliveries WHERE id = ?`), id).Scan(&n)
	if err != nil {
		return fmt.Errorf("look up delivery %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("delivery %d: %w", id, ErrNotFound)
	}
	return fmt.Errorf("delivery %d: %w", id, ErrLeaseLost)
}

// Complete marks a leased delivery done. Only its lease owner may:
// ErrLeaseLost otherwise (also when the lease expired and another worker
// claimed it), ErrNotFound when there is no such delivery.
func (db *DB) Complete(ctx context.Context, id int64, owner string) error {
	n, err := db.CompleteMany(ctx, []int64{id}, owner)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("complete: %w", db.leaseMiss(ctx, id))
	}
	return nil
}

// CompleteMany marks several deliveries leased by owner as done in one
// transaction (one disk flush for the lot). It returns how many it marked;
// deliveries whose lease was lost are left alone.
//
// Completions are committed by the writers that commit Enqueue's
// deliveries, in the same transactions: under load they cost no disk flush
// of their own.
func (db *DB) CompleteMany(ctx context.Context, ids []int64, owner string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	c := &completion{ids: ids, owner: owner}
	if _, err := db.hand(ctx, &enqueueReq{complete: c}); err != nil {
		return 0, fmt.Errorf("complete %d deliveries: %w", len(ids), err)
	}
	return c.n, nil
}

// completeIn runs c in tx.
func (db *DB) completeIn(ctx context.Context, tx *sql.Tx, c *completion) error {
	c.n = 0
	for ids := c.ids; len(ids) > 0; {
		chunk := ids[:chunkLen(len(ids))]
		ids = ids[len(chunk):]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, c.owner)
		for _, id := range chunk {
			args = append(args, id)
		}
		res, err := tx.StmtContext(ctx, db.batch.complete[chunkIndex(len(chunk))]).ExecContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("complete %d deliveries: %w", len(c.ids), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("complete %d deliveries: %w", len(c.ids), err)
		}
		c.n += int(n)
	}
	return nil
}

// ReleaseLeases puts the deliveries leased to owners (to anyone when no
// owner is given) back in the queue, due at now, and returns how many.
// Their attempts stay counted. For a process that stops: what it held is
// free at once rather than when the leases run out; and for a database
// only this process uses (SQLite) at start, where every lease left is that
// of a process that died.
func (db *DB) ReleaseLeases(ctx context.Context, now time.Time, owners ...string) (int64, error) {
	query := `UPDATE deliveries SET state = 'queued', next_attempt = ?, lease_owner = '', lease_until = 0 WHERE state = 'leased'`
	args := []any{micros(now)}
	if len(owners) > 0 {
		query += ` AND lease_owner IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(owners)), ", ") + `)`
		for _, o := range owners {
			args = append(args, o)
		}
	}
	res, err := db.w.ExecContext(ctx, db.q(query), args...)
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return n, nil
}

// Fail records a failed attempt on a leased delivery: it goes back to
// queued, due at retryAt, or, once it has been attempted maxAttempts times
// (maxAttempts > 0), to dead; dead tells which. Only the lease owner may:
// ErrLeaseLost otherwise, ErrNotFound when there is no such delivery.
func (db *DB) Fail(ctx context.Context, id int64, owner string, cause string, retryAt time.Time, maxAttempts int) (dead bool, err error) {
	limit := maxAttempts
	if limit <= 0 {
		limit = int(^uint32(0) >> 1)
	}
	var state string
	err = db.w.QueryRowContext(ctx, db.q(`UPDATE deliveries
SET state = CASE WHEN attempts >= ? THEN 'dead' ELSE 'queued' END,
	next_attempt = ?, last_error = ?, lease_owner = '', lease_until = 0
WHERE id = ? AND state = 'leased' AND lease_owner = ?
RETURNING state`), limit, micros(retryAt), cause, id, owner).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("fail: %w", db.leaseMiss(ctx, id))
	}
	if err != nil {
		return false, fmt.Errorf("fail delivery %d: %w", id, err)
	}
	return State(state) == Dead, nil
}

// Renew extends the leases owner holds on ids until until; it returns how
// many it still held (a lease that ran out and was taken by another owner
// is not renewed).
func (db *DB) Renew(ctx context.Context, ids []int64, owner string, until time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := []any{micros(until), owner}
	marks := make([]string, len(ids))
	for i, id := range ids {
		marks[i] = "?"
		args = append(args, id)
	}
	res, err := db.w.ExecContext(ctx, db.q(`UPDATE deliveries SET lease_until = ? WHERE state = 'leased' AND lease_owner = ? AND id IN (`+
		strings.Join(marks, ", ")+`)`), args...)
	if err != nil {
		return 0, fmt.Errorf("renew leases: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Deliveries lists up to limit deliveries in state (all states when state
// is ""), oldest first; limit <= 0 means 100.
func (db *DB) Deliveries(ctx context.Context, state State, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	var (
		rows *sql.Rows
		err  error
	)
	if state == "" {
		rows, err = db.r.QueryContext(ctx, db.q(`SELECT `+deliveryCols+` FROM `+deliveryFrom+` ORDER BY d.id LIMIT ?`), limit)
	} else {
		rows, err = db.r.QueryContext(ctx, db.q(`SELECT `+deliveryCols+` FROM `+deliveryFrom+` WHERE d.state = ? ORDER BY d.id LIMIT ?`), string(state), limit)
	}
	out, err := collectDeliveries(rows, err)
	if err != nil {
		return nil, fmt.Errorf("list %s deliveries: %w", state, err)
	}
	return out, nil
}

// Delivery returns one delivery; ErrNotFound when there is none.
func (db *DB) Delivery(ctx context.Context, id int64) (Delivery, error) {
	out, err := collectDeliveries(db.r.QueryContext(ctx, db.q(`SELECT `+deliveryCols+` FROM `+deliveryFrom+` WHERE d.id = ?`), id))
	if err != nil {
		return Delivery{}, fmt.Errorf("read delivery %d: %w", id, err)
	}
	if len(out) == 0 {
		return Delivery{}, fmt.Errorf("delivery %d: %w", id, ErrNotFound)
	}
	return out[0], nil
}

// Requeue puts a dead delivery back in the queue, due at now, with its
// attempts reset (its LastError stays until the next attempt).
// ErrNotFound when there is no such delivery, ErrNotDead when it is not
// dead.
func (db *DB) Requeue(ctx context.Context, id int64, now time.Time) error {
	res, err := db.w.ExecContext(ctx, db.q(`UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt = ?
WHERE id = ? AND state = 'dead'`), micros(now), id)
	if err != nil {
		return fmt.Errorf("requeue delivery %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("requeue delivery %d: %w", id, err)
	} else if n == 1 {
		return nil
	}
	var state string
	err = db.w.QueryRowContext(ctx, db.q(`SELECT state FROM deliveries WHERE id = ?`), id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("requeue delivery %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("requeue delivery %d: %w", id, err)
	}
	return fmt.Errorf("requeue delivery %d (%s): %w", id, state, ErrNotDead)
}

// Stats counts the deliveries in each state; every state is in the map.
func (db *DB) Stats(ctx context.Context) (map[State]int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM deliveries GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	defer rows.Close()
	out := make(map[State]int, 4)
	for _, s := range States() {
		out[s] = 0
	}
	for rows.Next() {
		var (
			s string
			n int
		)
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("count deliveries: %w", err)
		}
		out[State(s)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	return out, nil
}

// Prune deletes done deliveries received before before and returns how
// many. A pruned delivery's Key no longer deduplicates: keep them longer
// than GitLab may resend (its Recent events go back two days).
func (db *DB) Prune(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM delivery_bodies WHERE id IN
	(SELECT id FROM deliveries WHERE state = 'done' AND received_at < ?)`), micros(before)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM deliveries WHERE state = 'done' AND received_at < ?`), micros(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}
