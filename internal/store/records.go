package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/audit"
)

// LoadState returns an app's promotion state and its version; version 0
// and nil data when nothing was saved yet.
func (db *DB) LoadState(ctx context.Context, app string) (data []byte, version int64, err error) {
	err = db.r.QueryRowContext(ctx, db.q(`SELECT data, version FROM app_state WHERE app = ?`), app).Scan(&data, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load state of %s: %w", app, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, version, nil
}

// SaveState stores an app's promotion state as version+1, provided the
// stored version is still version (0: nothing stored yet); ErrStale when
// somebody saved in between: load again, recompute, save again.
func (db *DB) SaveState(ctx context.Context, app string, data []byte, version int64) error {
	if data == nil {
		data = []byte{}
	}
	now := micros(time.Now())
	var res sql.Result
	var err error
	if version == 0 {
		res, err = db.w.ExecContext(ctx, db.q(`INSERT INTO app_state (app, version, data, updated_at) VALUES (?, 1, ?, ?)
ON CONFLICT (app) DO NOTHING`), app, data, now)
	} else {
		res, err = db.w.ExecContext(ctx, db.q(`UPDATE app_state SET version = version + 1, data = ?, updated_at = ?
WHERE app = ? AND version = ?`), data, now, app, version)
	}
	if err != nil {
		return fmt.Errorf("save state of %s: %w", app, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("save state of %s: %w", app, err)
	}
	if n == 0 {
		return fmt.Errorf("save state of %s at version %d: %w", app, version, ErrStale)
	}
	return nil
}

// Once records that the effect named key is done and reports whether this
// call was the first to record it. A worker handling a redelivered event
// calls it before a non-idempotent effect (a note, a merge) and skips the
// effect when first is false. That is at most once: when the effect then
// fails, Forget the key so a retry may do it.
func (db *DB) Once(ctx context.Context, key string) (first bool, err error) {
	res, err := db.w.ExecContext(ctx, db.q(`INSERT INTO effects (effect_key, done_at) VALUES (?, ?) ON CONFLICT (effect_key) DO NOTHING`),
		key, micros(time.Now()))
	if err != nil {
		return false, fmt.Errorf("record effect %q: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record effect %q: %w", key, err)
	}
	return n == 1, nil
}

// Forget removes the record of effect key, so that the next Once for it
// is first again.
func (db *DB) Forget(ctx context.Context, key string) error {
	if _, err := db.w.ExecContext(ctx, db.q(`DELETE FROM effects WHERE effect_key = ?`), key); err != nil {
		return fmt.Errorf("forget effect %q: %w", key, err)
	}
	return nil
}

// AuditRecord is one entry of the append-only audit log, with its place in
// the hash chain (Seq, PrevHash, Hash; see package audit). On Audit, At
// defaults to now (and is kept to the microsecond) and Seq, PrevHash and
// Hash are set by the store.
type AuditRecord = audit.Record

// AuditFilter selects audit records; zero fields select everything.
type AuditFilter = audit.Filter

// Audit appends a record to the audit log: in one transaction it takes the
// chain's head (on PostgreSQL locking its row, so that replicas appending
// at once queue there; SQLite has one writer anyway), chains the record
// after it and moves the head. Strings are stored as valid UTF-8 (invalid
// bytes become U+FFFD), so that the record exports as it was hashed.
func (db *DB) Audit(ctx context.Context, r AuditRecord) error {
	// The epoch itself would be stored as 0, which reads back as the zero
	// time and no longer matches the hash: it is no real record's time.
	if r.At.IsZero() || r.At.UnixMicro() == 0 {
		r.At = time.Now()
	}
	for _, s := range []*string{&r.App, &r.Stage, &r.Image, &r.Actor, &r.Kind, &r.Detail} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		lock := ""
		if db.dialect == postgres {
			lock = " FOR UPDATE"
		}
		var (
			head audit.Head
			hash string
		)
		if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`+lock).Scan(&head.Seq, &hash); err != nil {
			return fmt.Errorf("read the chain's head: %w", err)
		}
		d, err := audit.ParseDigest(hash)
		if err != nil {
			return fmt.Errorf("read the chain's head: %w", err)
		}
		head.Hash = d
		r = audit.Append(head, r)
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO audit (seq, at, app, stage, image, actor, kind, detail, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.Seq, micros(r.At), r.App, r.Stage, r.Image, r.Actor, r.Kind, r.Detail, r.PrevHash.String(), r.Hash.String()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`), r.Seq, r.Hash.String()); err != nil {
			return fmt.Errorf("move the chain's head: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %s audit record for %s: %w", r.Kind, r.App, err)
	}
	return nil
}

// AuditLog returns the audit records f selects: newest first, or with
// f.Chain in chain order from f.After on, for paging through the chain
// (pass the last Seq of a page as the next page's After).
func (db *DB) AuditLog(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	var (
		where []string
		args  []any
	)
	if f.Chain {
		where = append(where, "seq > ?")
		args = append(args, f.After)
	}
	for _, c := range []struct{ col, val string }{{"app", f.App}, {"stage", f.Stage}, {"kind", f.Kind}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, micros(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT seq, at, app, stage, image, actor, kind, detail, prev_hash, hash FROM audit`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Chain {
		query += " ORDER BY seq LIMIT ?"
	} else {
		query += " ORDER BY at DESC, seq DESC LIMIT ?"
	}
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var (
			r          AuditRecord
			at         int64
			prev, hash string
		)
		if err := rows.Scan(&r.Seq, &at, &r.App, &r.Stage, &r.Image, &r.Actor, &r.Kind, &r.Detail, &prev, &hash); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.At = fromMicros(at)
		// A stored hash that does not parse stays zero: verifying the
		// record then names it.
		r.PrevHash, _ = audit.ParseDigest(prev)
		r.Hash, _ = audit.ParseDigest(hash)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// AuditChain returns up to limit records of the chain after record after
// (Seq > after), oldest first: AuditLog with Chain set.
func (db *DB) AuditChain(ctx context.Context, after int64, limit int) ([]AuditRecord, error) {
	return db.AuditLog(ctx, AuditFilter{Chain: true, After: after, Limit: limit})
}

// AuditHead returns the head of the audit chain, its last record's Seq and
// Hash (zero for an empty log), for publishing: a head published once must
// be found, unchanged, in every later export.
func (db *DB) AuditHead(ctx context.Context) (audit.Head, error) {
	var (
		h    audit.Head
		hash string
	)
	err := db.r.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Head{}, nil
	}
	if err != nil {
		return audit.Head{}, fmt.Errorf("read the audit chain's head: %w", err)
	}
	if h.Hash, err = audit.ParseDigest(hash); err != nil {
		return audit.Head{}, fmt.Errorf("read the audit chain's head: record %d: %w", h.Seq, err)
	}
	return h, nil
}
