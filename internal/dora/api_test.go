package dora

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		q       string
		app     string
		since   time.Time
		wantErr string
	}{
		{q: "", since: now.AddDate(0, 0, -30)},
		{q: "days=7&app=shop", app: "shop", since: now.AddDate(0, 0, -7)},
		{q: "since=2026-11-01T00:00:00Z", since: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{q: "days=0", wantErr: "days"},
		{q: "days=99999", wantErr: "days"},
		{q: "days=x", wantErr: "days"},
		{q: "since=yesterday", wantErr: "since"},
		{q: "since=2027-01-01T00:00:00Z", wantErr: "future"},
	} {
		v, _ := url.ParseQuery(tc.q)
		app, since, err := ParseQuery(v, now)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want one about %s", tc.q, err, tc.wantErr)
			}
		case err != nil || app != tc.app || !since.Equal(tc.since):
			t.Errorf("%q: %q %v %v", tc.q, app, since, err)
		}
	}
}

// The client sends the query and the token, reads the figures, and keeps
// the token out of its errors.
func TestClient(t *testing.T) {
	const token = "s3cret-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"bad token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + `"}`))
			return
		}
		if r.URL.Path != Path || r.URL.Query().Get("app") != "shop" || r.URL.Query().Get("days") != "7" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode([]Figures{{App: "shop", Stage: "production", Deployments: 3, Samples: []Sample{{Image: "i"}}}})
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/", Token: token}
	fs, err := c.Figures(context.Background(), Query{App: "shop", Days: 7})
	if err != nil || len(fs) != 1 || fs[0].Deployments != 3 || fs[0].Samples[0].Image != "i" {
		t.Fatalf("figures %+v, %v", fs, err)
	}
	c.Token = "wrong-" + token
	_, err = c.Figures(context.Background(), Query{App: "shop", Days: 7})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("err = %v (must not show the token)", err)
	}
	if _, err := (&Client{URL: "ftp://x"}).Figures(context.Background(), Query{}); err == nil {
		t.Fatal("an ftp URL was accepted")
	}
}
