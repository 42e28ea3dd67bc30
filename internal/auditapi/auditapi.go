// Package auditapi carries the audit chain (package audit) over HTTP and in
// export files: the GET /api/v1/audit endpoint (Handler, ParseQuery), the
// client that pages through it (Client) and the JSON-lines export format
// (Write, Read).
//
// GET /api/v1/audit takes, in the query:
//
//	app, stage, kind  only records with this app, stage, kind
//	since             only records at or after this time (RFC 3339)
//	after             a sequence number: the records after it (seq > after)
//	                  in chain order, oldest first; without it the newest
//	                  come first (the board's view)
//	limit             at most this many records, 1 to 1000 (default 200)
//
// and answers 200 with a JSON array of records (audit.Record: seq, at,
// app, stage, image, actor, kind, detail, prev_hash, hash), [] when none;
// 400 with {"error": "..."} for a bad query. A client pages through the
// chain with after=0, then after=the last seq of each page, until a page
// is empty.
package auditapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lotse/lotse/internal/audit"
)

// Page sizes of GET /api/v1/audit.
const (
	DefaultLimit = 200
	MaxLimit     = 1000
)

// Source reads the audit log; *store.DB is one.
type Source interface {
	AuditLog(ctx context.Context, f audit.Filter) ([]audit.Record, error)
}

// ParseQuery reads the query of GET /api/v1/audit into a filter.
func ParseQuery(q url.Values) (audit.Filter, error) {
	f := audit.Filter{App: q.Get("app"), Stage: q.Get("stage"), Kind: q.Get("kind"), Limit: DefaultLimit}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return audit.Filter{}, fmt.Errorf("since: %q is not an RFC 3339 time", s)
		}
		f.Since = t
	}
	if q.Has("after") {
		n, err := strconv.ParseInt(q.Get("after"), 10, 64)
		if err != nil || n < 0 {
			return audit.Filter{}, fmt.Errorf("after: %q is not a sequence number >= 0", q.Get("after"))
		}
		f.Chain, f.After = true, n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return audit.Filter{}, fmt.Errorf("limit: %q is not a number from 1 to %d", s, MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// Handler serves GET /api/v1/audit from src (behind the API's token
// check). log (nil: none) takes the errors of src, which the answer does
// not show.
func Handler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		f, err := ParseQuery(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		recs, err := src.AuditLog(r.Context(), f)
		if err != nil {
			log.ErrorContext(r.Context(), "read audit log", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "reading the audit log failed"})
			return
		}
		if recs == nil {
			recs = []audit.Record{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
