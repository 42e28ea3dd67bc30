// Package storetest gives a test a PostgreSQL database of its own on the
// server that scripts/postgres.sh starts (make test runs it).
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/lib/pq" // PostgreSQL driver "postgres"
)

// PostgresEnv names the PostgreSQL server the tests use.
const PostgresEnv = "LOTSE_TEST_POSTGRES_URL"

// PostgresURL creates a schema of its own for t on the server PostgresEnv
// names, drops it when t ends, and returns a URL whose search_path is that
// schema. Without the variable it skips t.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip(PostgresEnv + " is not set (eval \"$(scripts/postgres.sh)\")")
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("open %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "t_" + hex.EncodeToString(rnd[:])
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
