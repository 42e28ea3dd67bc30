package releaseapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReleasePostsAndDecodes(t *testing.T) {
	var got Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/prefix"+Path || r.Header.Get("Authorization") != "Bearer tok" ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s %v", r.Method, r.URL.Path, r.Header)
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(Response{App: "shop", Stage: "dev", Changed: true, Commit: "abc", Gates: []Gate{{Name: "signature", OK: true}}})
	}))
	defer srv.Close()
	res, err := (&Client{URL: srv.URL + "/prefix/", Token: "tok"}).Release(context.Background(), Request{App: "shop", Image: "r@sha256:1", Stage: "dev"})
	if err != nil || !res.Changed || res.Commit != "abc" || len(res.Gates) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if got != (Request{App: "shop", Image: "r@sha256:1", Stage: "dev"}) {
		t.Errorf("sent %+v", got)
	}
}

func TestReleaseErrors(t *testing.T) {
	for _, tc := range []struct {
		status   int
		body     string
		attempts int32
		want     string
	}{
		{422, `{"message":"a gate of stage dev failed","reasons":["signature: no"]}`, 1, "lotsed answered 422: a gate of stage dev failed: signature: no"},
		{403, `{"message":"the token is of project team/other"}`, 1, "lotsed answered 403: the token is of project team/other"},
		{401, `{"message":"invalid ID token: expired"}`, 1, "invalid ID token: expired"},
		{503, `{"message":"GitLab's ID token keys cannot be read"}`, 3, "lotsed answered 503"},
		{502, `<html>bad gateway</html>`, 3, "lotsed answered 502: <html>bad gateway</html>"},
	} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}))
		_, err := (&Client{URL: srv.URL, Token: "s3cret-token", Backoff: time.Millisecond}).Release(context.Background(), Request{App: "shop"})
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.Status != tc.status || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d: %v", tc.status, err)
		}
		if n.Load() != tc.attempts {
			t.Errorf("%d: %d attempts, want %d", tc.status, n.Load(), tc.attempts)
		}
	}
}

func TestReleaseUnreachableAndBadURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := (&Client{URL: url + "/?token=s3cret-token", Token: "s3cret-token", Attempts: 2, Backoff: time.Millisecond}).Release(context.Background(), Request{})
	if err == nil || strings.Contains(err.Error(), "s3cret-token") {
		t.Errorf("unreachable: %v", err)
	}
	for _, u := range []string{"", "lotsed.example.com", "ftp://x", "https://user:pw@lotsed.example.com"} {
		if _, err := (&Client{URL: u}).Release(context.Background(), Request{}); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}
