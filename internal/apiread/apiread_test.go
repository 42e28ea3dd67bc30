package apiread

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	const token = "s3cr3t-read-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"bad token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + `"}`))
			return
		}
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"n":3}`))
		case "/extra":
			w.Write([]byte(`{"n":3,"surprise":true}`))
		case "/big":
			w.Write([]byte(`{"n":3,"pad":"` + strings.Repeat("x", 100) + `"}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	var out struct{ N int }
	if err := Get(ctx, srv.Client(), srv.URL+"/ok", token, "read x", 1<<10, true, &out); err != nil || out.N != 3 {
		t.Fatalf("ok: n=%d err=%v", out.N, err)
	}
	if err := Get(ctx, srv.Client(), srv.URL+"/extra", token, "read x", 1<<10, true, &out); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Fatalf("strict read took an unknown field: %v", err)
	}
	if err := Get(ctx, srv.Client(), srv.URL+"/extra", token, "read x", 1<<10, false, &out); err != nil {
		t.Fatalf("lenient read: %v", err)
	}
	if err := Get(ctx, srv.Client(), srv.URL+"/big", token, "read x", 20, false, &out); err == nil {
		t.Fatal("a body over the limit was read")
	}
	// A wrong token that the server echoes back never reaches the error.
	err := Get(ctx, srv.Client(), srv.URL+"/ok", "wrong-"+token, "read audit log", 1<<10, true, &out)
	if err == nil || !strings.Contains(err.Error(), "read audit log") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("401: %v", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestRedact(t *testing.T) {
	if got := Redact("https://u:pw@lotsed.example/api"); strings.Contains(got, "pw") {
		t.Fatalf("Redact kept the password: %s", got)
	}
}
