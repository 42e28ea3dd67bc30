package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lotse/lotse/internal/audit"
)

// migration is one schema step.
type migration struct {
	// sql runs on both dialects, one statement per ";".
	sql string
	// run, when set, runs after sql in the same transaction: steps that
	// need Go, or statements with ";" inside (triggers).
	run func(ctx context.Context, db *DB, tx *sql.Tx) error
}

// migrations returns the schema steps, applied in order, each once;
// append, never edit. In the SQL, {{id}} is the auto-increment primary key
// and {{blob}} the binary type of the dialect; timestamps are BIGINT
// microseconds since the epoch.
func migrations() []migration {
	return []migration{
		// 1: queue, promotion state, effects, audit log, landings.
		{sql: `
CREATE TABLE deliveries (
	id           {{id}},
	source       TEXT NOT NULL,
	event        TEXT NOT NULL DEFAULT '',
	dedupe_key   TEXT,
	headers      TEXT NOT NULL DEFAULT '{}',
	body         {{blob}} NOT NULL,
	received_at  BIGINT NOT NULL,
	state        TEXT NOT NULL DEFAULT 'queued',
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt BIGINT NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT '',
	lease_owner  TEXT NOT NULL DEFAULT '',
	lease_until  BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX deliveries_dedupe ON deliveries (source, dedupe_key);
-- Lease and Deliveries read queued/leased/dead rows by state, in id order.
CREATE INDEX deliveries_state ON deliveries (state, id);

CREATE TABLE app_state (
	app        TEXT PRIMARY KEY,
	version    BIGINT NOT NULL,
	data       {{blob}},
	updated_at BIGINT NOT NULL
);

CREATE TABLE effects (
	effect_key TEXT PRIMARY KEY,
	done_at    BIGINT NOT NULL
);

CREATE TABLE audit (
	id     {{id}},
	at     BIGINT NOT NULL,
	app    TEXT NOT NULL DEFAULT '',
	stage  TEXT NOT NULL DEFAULT '',
	image  TEXT NOT NULL DEFAULT '',
	actor  TEXT NOT NULL DEFAULT '',
	kind   TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_app ON audit (app, at);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE landings (
	id            {{id}},
	app           TEXT NOT NULL,
	stage         TEXT NOT NULL,
	image         TEXT NOT NULL,
	source_commit TEXT NOT NULL DEFAULT '',
	committed_at  BIGINT NOT NULL DEFAULT 0,
	landed_at     BIGINT NOT NULL,
	is_rollback   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX landings_once ON landings (app, stage, image, landed_at);
CREATE INDEX landings_stage ON landings (stage, landed_at);
`},
		// 2: bodies and headers in their own table. A delivery's row is
		// rewritten when it is leased and when it is done; with the body in
		// it SQLite rewrote the body (overflow pages, into the WAL) each time.
		{sql: `
CREATE TABLE delivery_bodies (
	id      BIGINT PRIMARY KEY,
	headers TEXT NOT NULL DEFAULT '{}',
	body    {{blob}} NOT NULL
);
INSERT INTO delivery_bodies (id, headers, body) SELECT id, headers, body FROM deliveries;
ALTER TABLE deliveries DROP COLUMN headers;
ALTER TABLE deliveries DROP COLUMN body;
`},
		// 3: bodies compressed: encoding '' is the body as received, 's2'
		// is s2-compressed (klauspost/compress).
		{sql: `
ALTER TABLE delivery_bodies ADD COLUMN encoding TEXT NOT NULL DEFAULT '';
`},
		// 4: the audit log becomes a hash chain (package audit): seq,
		// prev_hash and hash (hex) per record, the chain's head in a row of
		// its own that appenders lock, the records there chained in id
		// order, and triggers that refuse UPDATE and DELETE.
		{sql: `
ALTER TABLE audit ADD COLUMN seq BIGINT;
ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE TABLE audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  BIGINT NOT NULL,
	hash TEXT NOT NULL
);
`, run: chainAudit},
		// 5: deployments as the promotion engine saw them (Deploy
		// actions): the facts of the DORA figures and the id of the
		// GitLab deployment that mirrors each.
		{sql: `
CREATE TABLE deployments (
	id              {{id}},
	app             TEXT NOT NULL,
	stage           TEXT NOT NULL,
	deploy_key      TEXT NOT NULL,
	image           TEXT NOT NULL,
	source_project  TEXT NOT NULL DEFAULT '',
	source_commit   TEXT NOT NULL DEFAULT '',
	is_rollback     INTEGER NOT NULL DEFAULT 0,
	status          TEXT NOT NULL DEFAULT '',
	landed_at       BIGINT NOT NULL,
	running_at      BIGINT NOT NULL DEFAULT 0,
	failed_at       BIGINT NOT NULL DEFAULT 0,
	failure         TEXT NOT NULL DEFAULT '',
	canceled_at     BIGINT NOT NULL DEFAULT 0,
	ref             TEXT NOT NULL DEFAULT '',
	source_mr       BIGINT NOT NULL DEFAULT 0,
	committed_at    BIGINT NOT NULL DEFAULT 0,
	merged_at       BIGINT NOT NULL DEFAULT 0,
	first_commit_at BIGINT NOT NULL DEFAULT 0,
	gitlab_id       BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX deployments_once ON deployments (app, stage, deploy_key);
CREATE INDEX deployments_landed ON deployments (app, stage, landed_at);
`},
		// 6: landings go: the DORA figures and the board read
		// deployments, and nothing read the raw landing log.
		{sql: `DROP TABLE landings;`},
	}
}

// chainAudit chains the audit records already stored, in the order they
// were stored (id), sets the head and makes the table append-only.
func chainAudit(ctx context.Context, db *DB, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, at, app, stage, image, actor, kind, detail FROM audit ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	type row struct {
		id int64
		r  audit.Record
	}
	var all []row
	for rows.Next() {
		var (
			x  row
			at int64
		)
		if err := rows.Scan(&x.id, &at, &x.r.App, &x.r.Stage, &x.r.Image, &x.r.Actor, &x.r.Kind, &x.r.Detail); err != nil {
			rows.Close()
			return fmt.Errorf("read audit records: %w", err)
		}
		x.r.At = fromMicros(at)
		all = append(all, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit records: %w", err)
	}
	var head audit.Head
	for _, x := range all {
		r := x.r
		// As Audit stores them: valid UTF-8, so that they export as hashed.
		for _, s := range []*string{&r.App, &r.Stage, &r.Image, &r.Actor, &r.Kind, &r.Detail} {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
		r = audit.Append(head, r)
		if _, err := tx.ExecContext(ctx, db.q(`UPDATE audit SET seq = ?, app = ?, stage = ?, image = ?, actor = ?, kind = ?, detail = ?,
prev_hash = ?, hash = ? WHERE id = ?`),
			r.Seq, r.App, r.Stage, r.Image, r.Actor, r.Kind, r.Detail, r.PrevHash.String(), r.Hash.String(), x.id); err != nil {
			return fmt.Errorf("chain audit record %d: %w", x.id, err)
		}
		head = audit.Head{Seq: r.Seq, Hash: r.Hash}
	}
	stmts := []string{
		`CREATE UNIQUE INDEX audit_seq ON audit (seq)`,
		`CREATE INDEX audit_app_seq ON audit (app, seq)`,
		db.q(`INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)`),
	}
	if db.dialect == postgres {
		stmts = append(stmts,
			`ALTER TABLE audit ALTER COLUMN seq SET NOT NULL`,
			`CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the audit log is append-only: % on audit refused', TG_OP;
END
$$`,
			`CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only()`,
			`CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()`,
		)
	} else {
		stmts = append(stmts,
			`CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit refused'); END`,
			`CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit refused'); END`,
		)
	}
	for _, stmt := range stmts {
		var args []any
		if strings.Contains(stmt, "INSERT INTO audit_head") {
			args = []any{head.Seq, head.Hash.String()}
		}
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return fmt.Errorf("make the audit log a chain: %w", err)
		}
	}
	return nil
}

// migrationLock is the PostgreSQL advisory lock key that serializes
// migrations of replicas starting together ("lotse" in ASCII).
const migrationLock = 0x6c6f747365

func (db *DB) render(stmt string) string {
	id, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if db.dialect == postgres {
		id, blob = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BYTEA"
	}
	return strings.NewReplacer("{{id}}", id, "{{blob}}", blob).Replace(stmt)
}

// migrate applies the migrations not yet applied, all in one transaction.
func (db *DB) migrate(ctx context.Context) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if db.dialect == postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
				return fmt.Errorf("take migration lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		steps := migrations()
		if have > len(steps) {
			return fmt.Errorf("database schema version %d is newer than this lotsed knows (%d)", have, len(steps))
		}
		for v := have + 1; v <= len(steps); v++ {
			// SQLite's driver runs one statement per Exec; split on ";".
			for _, stmt := range strings.Split(db.render(steps[v-1].sql), ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			if run := steps[v-1].run; run != nil {
				if err := run(ctx, db, tx); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO schema_migrations (version) VALUES (?)`), v); err != nil {
				return fmt.Errorf("record migration %d: %w", v, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate %s schema: %w", db.dialect, err)
	}
	return nil
}
