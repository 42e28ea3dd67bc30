package e2e

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

// freshDatabase creates an empty database on the server of base and returns
// its URL.
func freshDatabase(t *testing.T, base string) string {
	t.Helper()
	db, err := sql.Open("postgres", base)
	must(t, err)
	defer db.Close()
	name := fmt.Sprintf("lotse_e2e_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d, err := sql.Open("postgres", base)
		if err == nil {
			d.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			d.Close()
		}
	})
	u, err := url.Parse(base)
	must(t, err)
	u.Path = "/" + name
	return strings.Replace(u.String(), "postgresql://", "postgres://", 1)
}
