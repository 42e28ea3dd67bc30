package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/audit"
)

// appendN appends n records shop/dev/landed with details "d1".."dn" after
// the ones there.
func appendN(t *testing.T, db *DB, n int) {
	t.Helper()
	ctx := ctxT(t)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		r := AuditRecord{At: t0.Add(time.Duration(i) * time.Minute), App: "shop", Stage: []string{"dev", "staging"}[i%2],
			Actor: "alice", Kind: "landed", Detail: fmt.Sprintf("d%d", i+1)}
		if i%3 == 2 {
			r.App = "cart"
		}
		if err := db.Audit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

// chainOf reads the whole chain in pages of 3.
func chainOf(t *testing.T, db *DB) []AuditRecord {
	t.Helper()
	var (
		all   []AuditRecord
		after int64
	)
	for {
		page, err := db.AuditChain(ctxT(t), after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// raw opens the database behind b's URL u as an attacker with database
// access would: a plain connection, no store in between.
func raw(t *testing.T, b backend, u string) *sql.DB {
	t.Helper()
	var (
		db  *sql.DB
		err error
	)
	if b.name == "postgres" {
		db, err = sql.Open("postgres", u)
	} else {
		if err := os.MkdirAll(filepath.Dir(u), 0o700); err != nil {
			t.Fatal(err)
		}
		db, err = sql.Open("sqlite", "file:"+u+"?_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// disarm turns the append-only triggers off the way an attacker would:
// SQLite drops them, PostgreSQL disables them.
func disarm(t *testing.T, b backend, db *sql.DB) {
	t.Helper()
	stmts := []string{`DROP TRIGGER audit_no_update`, `DROP TRIGGER audit_no_delete`}
	if b.name == "postgres" {
		stmts = []string{`ALTER TABLE audit DISABLE TRIGGER USER`}
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestAuditChain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		db := open(t, b.url(t))
		if h, err := db.AuditHead(ctx); err != nil || h != (audit.Head{}) {
			t.Fatalf("AuditHead of an empty log = %v, %v", h, err)
		}
		appendN(t, db, 10)
		// Invalid UTF-8 is stored as it exports.
		if err := db.Audit(ctx, AuditRecord{App: "shop", Kind: "note", Detail: "bad \xff byte"}); err != nil {
			t.Fatal(err)
		}
		all := chainOf(t, db)
		if len(all) != 11 || all[10].Detail != "bad \uFFFD byte" {
			t.Fatalf("chain has %d records, last %+v", len(all), all[len(all)-1])
		}
		head, err := audit.Verify(all)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if h, err := db.AuditHead(ctx); err != nil || h != head || h.Seq != 11 {
			t.Errorf("AuditHead = %v, %v; Verify's head %v", h, err, head)
		}
		// A filtered page in chain order: shop's records after 4.
		got, err := db.AuditLog(ctx, AuditFilter{Chain: true, After: 4, App: "shop", Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if fmt.Sprint(seqs) != "[5 7 8]" {
			t.Errorf("shop after 4: seqs %v, want [5 7 8]", seqs)
		}
		v := audit.NewVerifier(true)
		for _, r := range got {
			if err := v.Add(r); err != nil {
				t.Fatalf("partial: %v", err)
			}
		}
		// Newest first without Chain, with the hashes.
		got, err = db.AuditLog(ctx, AuditFilter{Stage: "staging", Limit: 2})
		if err != nil || len(got) != 2 || got[0].Seq != 10 || got[0].Hash != all[9].Hash || got[1].Seq != 8 {
			t.Errorf("newest staging: %+v, %v", got, err)
		}
	})
}

func TestAuditAppendOnly(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		u := b.url(t)
		db := open(t, u)
		appendN(t, db, 3)
		stmts := []string{`UPDATE audit SET detail = 'x' WHERE seq = 2`, `DELETE FROM audit WHERE seq = 2`, `DELETE FROM audit`}
		if b.name == "postgres" {
			stmts = append(stmts, `TRUNCATE audit`)
		}
		for _, s := range stmts {
			// Through the store's own connection and through another one.
			for _, conn := range []*sql.DB{db.w, raw(t, b, u)} {
				_, err := conn.ExecContext(ctx, s)
				if err == nil || !strings.Contains(err.Error(), "the audit log is append-only") {
					t.Errorf("%s: %v, want refused as append-only", s, err)
				}
			}
		}
		if _, err := audit.Verify(chainOf(t, db)); err != nil || len(chainOf(t, db)) != 3 {
			t.Errorf("after the refused writes: %v", err)
		}
	})
}

// TestAuditTamper does what an attacker with database access would: turn
// the triggers off, then edit, remove or insert a record. Verify names it.
func TestAuditTamper(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper []string
		want   string
	}{
		{name: "detail edited", tamper: []string{`UPDATE audit SET detail = 'approved by bob' WHERE seq = 4`},
			want: "record 4: hash does not match its content (edited)"},
		{name: "time edited", tamper: []string{`UPDATE audit SET at = at - 3600000000 WHERE seq = 4`},
			want: "record 4: hash does not match its content (edited)"},
		{name: "removed", tamper: []string{`DELETE FROM audit WHERE seq = 4`},
			want: "sequence jumps from 3 to 5: record 4 removed"},
		{name: "last removed (the published head catches it)", tamper: []string{`DELETE FROM audit WHERE seq = 6`},
			want: "the published head 6 is not in the records, which end at 5"},
		// A forged record 4 chained after record 3, the rest moved up one.
		{name: "inserted", tamper: []string{
			`UPDATE audit SET seq = -(seq + 1) WHERE seq >= 4`,
			`UPDATE audit SET seq = -seq WHERE seq < 0`,
			`INSERT INTO audit (seq, at, app, stage, image, actor, kind, detail, prev_hash, hash) VALUES (4, 1000000000000, 'shop', 'production', '', 'bob', 'approved', '', '{{prev3}}', '{{forged}}')`,
		}, want: "record 5: prev_hash does not match record 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b backend) {
				u := b.url(t)
				db := open(t, u)
				appendN(t, db, 6)
				before := chainOf(t, db)
				published, err := audit.Verify(before)
				if err != nil {
					t.Fatal(err)
				}
				forged := audit.Append(audit.Head{Seq: 3, Hash: before[2].Hash},
					audit.Record{At: time.UnixMicro(1e12), App: "shop", Stage: "production", Actor: "bob", Kind: "approved"})
				conn := raw(t, b, u)
				disarm(t, b, conn)
				for _, s := range tc.tamper {
					s = strings.NewReplacer("{{prev3}}", before[2].Hash.String(), "{{forged}}", forged.Hash.String()).Replace(s)
					if _, err := conn.Exec(s); err != nil {
						t.Fatalf("%s: %v", s, err)
					}
				}
				v := audit.NewVerifier(false)
				v.ExpectHead(published)
				for _, r := range chainOf(t, db) {
					if v.Add(r) != nil {
						break
					}
				}
				_, err = v.Finish()
				if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
					t.Errorf("Verify after tampering: %v\nwant %q...", err, tc.want)
				}
			})
		})
	}
}

// TestAuditConcurrent appends from two store handles (two replicas) at
// once: PostgreSQL must still keep one chain without gaps.
func TestAuditConcurrent(t *testing.T) {
	u := postgresURL(t)
	dbs := []*DB{open(t, u), open(t, u)}
	const each = 40
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range each {
				err := dbs[w%2].Audit(context.Background(), AuditRecord{App: "shop", Actor: fmt.Sprint("writer", w), Kind: "landed", Detail: fmt.Sprint(i)})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	all := chainOf(t, dbs[1])
	head, err := audit.Verify(all)
	if err != nil || head.Seq != 8*each {
		t.Fatalf("after concurrent appends: head %v, %v (%d records)", head, err, len(all))
	}
}

// TestAuditMigration opens a database of schema 3 with audit records: they
// are chained in the order they were stored and the table is append-only.
func TestAuditMigration(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := ctxT(t)
		u := b.url(t)
		conn := raw(t, b, u)
		d := &DB{dialect: sqlite}
		if b.name == "postgres" {
			d.dialect = postgres
		}
		if _, err := conn.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		for v, m := range migrations()[:3] {
			for _, s := range strings.Split(d.render(m.sql), ";") {
				if strings.TrimSpace(s) == "" {
					continue
				}
				if _, err := conn.Exec(s); err != nil {
					t.Fatalf("migration %d: %v", v+1, err)
				}
			}
			if _, err := conn.Exec(d.q(`INSERT INTO schema_migrations (version) VALUES (?)`), v+1); err != nil {
				t.Fatal(err)
			}
		}
		// Stored out of time order: the chain follows the order of storing.
		for i, at := range []int64{3e12, 1e12, 2e12} {
			if _, err := conn.Exec(d.q(`INSERT INTO audit (at, app, kind, detail) VALUES (?, 'shop', 'landed', ?)`), at, fmt.Sprint("old", i)); err != nil {
				t.Fatal(err)
			}
		}
		db := open(t, u)
		appendN(t, db, 2)
		all := chainOf(t, db)
		if _, err := audit.Verify(all); err != nil {
			t.Fatalf("Verify after the migration: %v", err)
		}
		var details []string
		for _, r := range all {
			details = append(details, r.Detail)
		}
		if got := strings.Join(details, ","); got != "old0,old1,old2,d1,d2" {
			t.Errorf("chain order %s", got)
		}
		if _, err := db.w.ExecContext(ctx, `DELETE FROM audit WHERE seq = 1`); err == nil {
			t.Error("DELETE after the migration was not refused")
		}
	})
}
