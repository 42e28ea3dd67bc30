package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/store/storetest"
)

// backend opens fresh, empty stores of one kind.
type backend struct {
	name string
	// url returns the URL of a fresh, empty database for t; every call
	// within one test returns the same one (for reopen and replica tests).
	url func(t testing.TB) string
}

func backends() []backend {
	return []backend{
		{name: "sqlite", url: sqliteURL},
		{name: "postgres", url: postgresURL},
	}
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func sqliteURL(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state", "lotsed.db")
}

// postgresURL creates a schema of its own for t, dropped at the end, and
// returns a URL whose search_path points at it.
func postgresURL(t testing.TB) string {
	t.Helper()
	return storetest.PostgresURL(t)
}

// open opens a store at u and closes it at the end of the test.
func open(t testing.TB, u string) *DB {
	t.Helper()
	db, err := Open(context.Background(), u)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// body returns n bytes that look like a GitLab webhook body.
// mrHook is GitLab's documented Merge Request Hook (about 6 KB), the body
// the benchmarks store.
func mrHook(tb testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "test", "bench", "mr-hook.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func body(n int) []byte {
	b := make([]byte, n)
	const s = `{"object_kind":"merge_request","event_type":"merge_request","user":{"name":"A"},"project":{"id":1}}`
	for i := range b {
		b[i] = s[i%len(s)]
	}
	return b
}
