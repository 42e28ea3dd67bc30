package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkIntake drives POST /webhooks/gitlab in process against a real
// SQLite store: authentication, validation, durable deduplicated enqueue.
func BenchmarkIntake(b *testing.B) {
	body, err := os.ReadFile("../test/bench/mr-hook.json")
	if err != nil {
		b.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte(`"path_with_namespace":"gitlabhq/gitlab-test"`), []byte(`"path_with_namespace":"platform/gitops"`))
	_, _, h := testServer(b, nil)
	var seq atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/webhooks/gitlab", bytes.NewReader(body))
			req.Header.Set("X-Gitlab-Token", testToken)
			req.Header.Set("X-Gitlab-Event", "Merge Request Hook")
			req.Header.Set("Idempotency-Key", strconv.FormatInt(seq.Add(1), 10))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
}
