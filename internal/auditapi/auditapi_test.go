package auditapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/store"
	"github.com/lotse/lotse/internal/store/storetest"
)

const token = "s3cret-read-token"

// backend is a store of one kind and a plain connection to its database,
// as an attacker with database access has one.
type backend struct {
	name string
	open func(t *testing.T) (*store.DB, *sql.DB)
}

func backends() []backend {
	return []backend{{"sqlite", openSQLite}, {"postgres", openPostgres}}
}

func openSQLite(t *testing.T) (*store.DB, *sql.DB) {
	path := filepath.Join(t.TempDir(), "lotsed.db")
	db := openStore(t, path)
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return db, raw
}

// openPostgres makes a schema of its own in $LOTSE_TEST_POSTGRES_URL
// (scripts/postgres.sh), dropped at the end.
func openPostgres(t *testing.T) (*store.DB, *sql.DB) {
	u := storetest.PostgresURL(t)
	db := openStore(t, u)
	raw, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return db, raw
}

func openStore(t *testing.T, u string) *store.DB {
	db, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serve serves src as lotsed does: behind a bearer token.
func serve(t *testing.T, src Source) string {
	h := Handler(src, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"no or wrong bearer token"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Path != Path {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func fill(t *testing.T, db *store.DB, n int) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		r := audit.Record{At: t0.Add(time.Duration(i) * time.Hour), App: []string{"shop", "cart"}[i%2], Stage: "dev",
			Actor: "alice", Kind: "landed", Detail: fmt.Sprintf("record %d", i+1)}
		if err := db.Audit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// verify is what lotse audit verify --url does.
func verify(ctx context.Context, c *Client, f audit.Filter, heads ...audit.Head) (audit.Summary, error) {
	v := audit.NewVerifier(f.Partial())
	for _, h := range heads {
		v.ExpectHead(h)
	}
	err := c.Each(ctx, f, func(r audit.Record) error { return v.Add(r) })
	if err != nil && !errors.Is(err, audit.ErrProblem) {
		return audit.Summary{}, err
	}
	return v.Finish()
}

func TestExportAndVerify(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := b.open(t)
			fill(t, db, 7)
			c := &Client{URL: serve(t, db) + "/", Token: token, PageSize: 2}
			s, err := verify(ctx, c, audit.Filter{})
			head, _ := db.AuditHead(ctx)
			if err != nil || s.Records != 7 || s.Head != head {
				t.Fatalf("verify: %v %v, head %v", s, err, head)
			}
			// Filtered: shop's records are 1, 3, 5, 7.
			var seqs []int64
			if err := c.Each(ctx, audit.Filter{App: "shop"}, func(r audit.Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(seqs) != "[1 3 5 7]" {
				t.Errorf("shop: %v", seqs)
			}
			s, err = verify(ctx, c, audit.Filter{App: "shop"})
			if err != nil || s.NotInExport != 3 {
				t.Errorf("partial verify: %v %v", s, err)
			}
			// since: records 5 to 7 (12:00 + 4h on), chain order.
			s, err = verify(ctx, c, audit.Filter{Since: time.Date(2026, 5, 1, 16, 0, 0, 0, time.UTC)})
			if err != nil || s.First != 5 || s.Records != 3 {
				t.Errorf("since: %v %v", s, err)
			}
			// Written and read back as an export file.
			var file bytes.Buffer
			if err := c.Each(ctx, audit.Filter{}, func(r audit.Record) error { return Write(&file, r) }); err != nil {
				t.Fatal(err)
			}
			var back []audit.Record
			if err := Read(bytes.NewReader(file.Bytes()), func(r audit.Record) error { back = append(back, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if h, err := audit.Verify(back); err != nil || h != head {
				t.Errorf("export file: %v %v", h, err)
			}
		})
	}
}

// TestTampered tampers with the database as an attacker with access to it
// would (triggers off) and checks that verifying over HTTP names the record.
func TestTampered(t *testing.T) {
	for _, tc := range []struct {
		name string
		sql  []string
		want string
	}{
		{"edited", []string{`UPDATE audit SET detail = 'approved by bob' WHERE seq = 5`}, "record 5: hash does not match its content (edited)"},
		{"removed", []string{`DELETE FROM audit WHERE seq = 3`}, "sequence jumps from 2 to 4: record 3 removed"},
		{"forged appended", []string{`INSERT INTO audit (seq, at, app, kind, prev_hash, hash) VALUES (8, 1, 'shop', 'approved', '', '')`},
			"record 8: prev_hash does not match record 7"},
	} {
		for _, b := range backends() {
			t.Run(tc.name+"/"+b.name, func(t *testing.T) {
				ctx := context.Background()
				db, raw := b.open(t)
				fill(t, db, 7)
				disarm := []string{`DROP TRIGGER audit_no_update`, `DROP TRIGGER audit_no_delete`}
				if b.name == "postgres" {
					disarm = []string{`ALTER TABLE audit DISABLE TRIGGER USER`}
				}
				for _, s := range append(disarm, tc.sql...) {
					if _, err := raw.Exec(s); err != nil {
						t.Fatalf("%s: %v", s, err)
					}
				}
				c := &Client{URL: serve(t, db), Token: token, PageSize: 3}
				_, err := verify(ctx, c, audit.Filter{})
				var p *audit.Problem
				if !errors.As(err, &p) || !strings.HasPrefix(err.Error(), tc.want) {
					t.Errorf("verify: %v, want %q", err, tc.want)
				}
			})
		}
	}
}

func TestQuery(t *testing.T) {
	db, _ := openSQLite(t)
	fill(t, db, 3)
	base := serve(t, db)
	get := func(q, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+Path+q, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		q      string
		status int
		want   string
	}{
		{"", 200, `"seq":3`}, // newest first
		{"?after=0&limit=1", 200, `[{"seq":1,"at":"2026-05-01T12:00:00Z","app":"shop","stage":"dev","image":"","actor":"alice","kind":"landed","detail":"record 1","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"`},
		{"?after=3", 200, "[]\n"},
		{"?app=nobody", 200, "[]\n"},
		{"?after=-1", 400, `{"error":"after: \"-1\" is not a sequence number \u003e= 0"}`},
		{"?limit=1001", 400, `limit: \"1001\" is not a number from 1 to 1000`},
		{"?limit=0", 400, `limit`},
		{"?since=yesterday", 400, `since: \"yesterday\" is not an RFC 3339 time`},
	} {
		status, body := get(tc.q, token)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s\nwant %d %s", tc.q, status, body, tc.status, tc.want)
		}
	}
	var recs []audit.Record
	_, body := get("?stage=dev", token)
	if err := json.Unmarshal([]byte(body), &recs); err != nil || len(recs) != 3 || recs[0].Seq != 3 {
		t.Errorf("newest first: %v %+v", err, recs)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := context.Background()
	db, _ := openSQLite(t)
	fill(t, db, 2)
	base := serve(t, db)
	// A wrong token: the error says so and shows no token.
	err := (&Client{URL: base, Token: "wrong-token"}).Each(ctx, audit.Filter{}, func(audit.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: no or wrong bearer token") || strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("wrong token: %v", err)
	}
	// A server that answers the same page forever is caught.
	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recs, _ := db.AuditChain(r.Context(), 0, 2)
		writeJSON(w, 200, recs)
	}))
	defer loop.Close()
	err = (&Client{URL: loop.URL, Token: token}).Each(ctx, audit.Filter{}, func(audit.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "answered record 1 after 2: not in chain order") {
		t.Errorf("looping server: %v", err)
	}
	for _, u := range []string{"", "ftp://x", "lotsed.example.com", "http://user:pw@"} {
		err := (&Client{URL: u}).Each(ctx, audit.Filter{}, func(audit.Record) error { return nil })
		if err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{`{"seq":1}` + "\n\n" + `{"seq":2}`, ""},
		{`{"seq":1}` + "\n" + `{"seq":2,"approved":true}`, `line 2: not an audit record`},
		{`{"seq":1} {"seq":2}`, `line 1: not an audit record: more than one JSON value`},
		{`[1]`, `line 1: not an audit record`},
		{`{"seq":1,"hash":"abc"}`, `line 1: not an audit record`},
	} {
		n := 0
		err := Read(strings.NewReader(tc.in), func(audit.Record) error { n++; return nil })
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Read(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzRead feeds Read what an export file could hold: it never panics.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"seq":1,"at":"2026-01-01T00:00:00Z","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte("{}\n\n{\"seq\":-1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v := audit.NewVerifier(false)
		_ = Read(bytes.NewReader(data), v.Add)
		_, _ = v.Finish()
	})
}
