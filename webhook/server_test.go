package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/store"
)

const (
	testToken   = "gitlab-secret"
	readToken   = "read-token"
	adminToken  = "admin-token"
	testProject = "platform/gitops"
)

var testSigning = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

type noViews struct{}

func (noViews) Status(context.Context) (any, error)                  { return []AppView{}, nil }
func (noViews) Audit(context.Context, audit.Filter) (any, error)     { return []store.AuditRecord{}, nil }
func (noViews) DORA(context.Context, string, time.Time) (any, error) { return []dora.Figures{}, nil }
func (noViews) App(context.Context, string) (any, error)             { return AppPage{}, nil }

func testServer(t testing.TB, mod func(*Config)) (*Server, *store.DB, http.Handler) {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "lotsed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := &Config{WebhookSecret: testToken, APIReadToken: readToken, APIAdminToken: adminToken, MaxBody: 64 << 10,
		SignatureTolerance: 5 * time.Minute, GitOpsProject: testProject}
	if mod != nil {
		mod(cfg)
	}
	s, err := newServer(cfg, serverParts{queue: db, watch: watchOnly(testProject), views: noViews{}, metrics: newMetrics(),
		log: slog.New(slog.DiscardHandler), now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, db, s.Handler()
}

// watchOnly watches one project.
type watchOnly string

func (w watchOnly) watches(project string) bool { return strings.EqualFold(project, string(w)) }

func mrBody(project string) []byte {
	return []byte(`{"object_kind":"merge_request","project":{"path_with_namespace":"` + project + `"},"object_attributes":{"iid":1,"source_branch":"lotse/shop/dev","action":"open"}}`)
}

func post(h http.Handler, path string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func stored(t *testing.T, db *store.DB) int {
	t.Helper()
	st, err := db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range st {
		n += v
	}
	return n
}

func TestGitLabHookAuthAndIntake(t *testing.T) {
	_, db, h := testServer(t, nil)
	hdr := func(token, key string) map[string]string {
		return map[string]string{"X-Gitlab-Token": token, "X-Gitlab-Event": "Merge Request Hook", "Idempotency-Key": key, "Content-Type": "application/json"}
	}
	for name, tc := range map[string]struct {
		body   []byte
		hdr    map[string]string
		status int
		msg    string
	}{
		"no token":      {mrBody(testProject), hdr("", "k0"), 401, "401 Unauthorized"},
		"wrong token":   {mrBody(testProject), hdr("nope", "k0"), 401, "401 Unauthorized"},
		"malformed":     {[]byte(`{"object_kind":`), hdr(testToken, "k0"), 400, "malformed JSON body"},
		"not an event":  {[]byte(`{"a":1}`), hdr(testToken, "k0"), 400, "no object_kind"},
		"other project": {mrBody("team/other"), hdr(testToken, "k0"), 200, ""},
	} {
		rec := post(h, "/webhooks/gitlab", tc.body, tc.hdr)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.msg) {
			t.Errorf("%s: %d %s, want %d %q", name, rec.Code, rec.Body, tc.status, tc.msg)
		}
		if strings.Contains(rec.Body.String(), testToken) {
			t.Errorf("%s: the token leaked into the answer", name)
		}
	}
	if n := stored(t, db); n != 0 {
		t.Fatalf("%d deliveries stored for refused or ignored requests", n)
	}
	unknown := hdr(testToken, "k9")
	unknown["X-Gitlab-Event"] = "Wiki Page Hook"
	if rec := post(h, "/webhooks/gitlab", []byte(`{"object_kind":"wiki_page"}`), unknown); rec.Code != 200 {
		t.Errorf("unknown event: %d", rec.Code)
	}
	// Accepted, then the re-send with the same Idempotency-Key (and a new
	// X-Gitlab-Webhook-UUID) is stored once.
	for i := range 3 {
		h2 := hdr(testToken, "key-1")
		h2["X-Gitlab-Webhook-UUID"] = strings.Repeat(string(rune('a'+i)), 8)
		if rec := post(h, "/webhooks/gitlab", mrBody(testProject), h2); rec.Code != 200 {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if n := stored(t, db); n != 1 {
		t.Fatalf("stored %d deliveries, want 1", n)
	}
	ds, err := db.Deliveries(context.Background(), store.Queued, 10)
	if err != nil || len(ds) != 1 || ds[0].Event != "Merge Request Hook" || ds[0].Headers["X-Gitlab-Token"] != "" {
		t.Fatalf("queued = %+v, %v", ds, err)
	}
	big := bytes.Repeat([]byte("x"), 70<<10)
	if rec := post(h, "/webhooks/gitlab", big, hdr(testToken, "big")); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d", rec.Code)
	}
}

func TestSignedDeliveries(t *testing.T) {
	now := time.Now()
	_, db, h := testServer(t, func(c *Config) { c.WebhookSecret = ""; c.SigningSecret = testSigning })
	body := mrBody(testProject)
	sig, err := Sign(testSigning, "msg-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	signed := func(id, ts, sig string) map[string]string {
		return map[string]string{"X-Gitlab-Event": "Merge Request Hook", "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig}
	}
	unix := func(t time.Time) string { return jsonNumber(t.Unix()) }
	for name, tc := range map[string]struct {
		hdr    map[string]string
		body   []byte
		status int
	}{
		"valid":            {signed("msg-1", unix(now), "v0,x "+sig), body, 200},
		"tampered body":    {signed("msg-1", unix(now), sig), append(body, ' '), 401},
		"other id":         {signed("msg-2", unix(now), sig), body, 401},
		"stale":            {signed("msg-1", unix(now.Add(-10*time.Minute)), sig), body, 401},
		"no signature":     {map[string]string{"X-Gitlab-Event": "Merge Request Hook"}, body, 401},
		"token not enough": {map[string]string{"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": testToken}, body, 401},
	} {
		if rec := post(h, "/webhooks/gitlab", tc.body, tc.hdr); rec.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", name, rec.Code, rec.Body, tc.status)
		}
	}
	if n := stored(t, db); n != 1 {
		t.Fatalf("stored %d, want only the valid one", n)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestAPIAuth(t *testing.T) {
	_, _, h := testServer(t, nil)
	get := func(path, token string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 503},
		{"GET", "/api/v1/events?state=dead", "", 401},
		{"GET", "/api/v1/events?state=dead", "wrong", 401},
		{"GET", "/api/v1/events?state=dead", readToken, 200},
		{"GET", "/api/v1/events?state=nonsense", readToken, 400},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", readToken, 200},
		{"GET", "/board", adminToken, 200},
		{"POST", "/api/v1/events/1/requeue", readToken, 403},
		{"POST", "/api/v1/events/1/requeue", adminToken, 404},
		{"POST", "/api/v1/events/x/requeue", adminToken, 400},
	} {
		var code int
		if tc.method == "GET" {
			code = get(tc.path, tc.token)
		} else {
			hdr := map[string]string{}
			if tc.token != "" {
				hdr["Authorization"] = "Bearer " + tc.token
			}
			code = post(h, tc.path, nil, hdr).Code
		}
		if code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.token, code, tc.want)
		}
	}
}

func TestArgoCDHook(t *testing.T) {
	_, db, h := testServer(t, func(c *Config) { c.ArgoCDToken = "argo" })
	body := []byte(`{"app":"shop","stage":"staging","health":"Healthy","sync":"Synced"}`)
	if rec := post(h, "/webhooks/argocd", body, map[string]string{"Authorization": "Bearer nope"}); rec.Code != 401 {
		t.Errorf("bad token: %d", rec.Code)
	}
	if rec := post(h, "/webhooks/argocd", []byte(`{"health":"Healthy"}`), map[string]string{"Authorization": "Bearer argo"}); rec.Code != 400 {
		t.Errorf("no app: %d", rec.Code)
	}
	if rec := post(h, "/webhooks/argocd", body, map[string]string{"Authorization": "Bearer argo"}); rec.Code != 200 {
		t.Errorf("good: %d", rec.Code)
	}
	if n := stored(t, db); n != 1 {
		t.Errorf("stored %d", n)
	}
}

func TestConfig(t *testing.T) {
	env := map[string]string{"LOTSE_WEBHOOK_SECRET_FILE": "/secret", "LOTSE_GITLAB_URL": "https://gitlab.example", "LOTSE_GITLAB_TOKEN": "t",
		"LOTSE_WORKERS": "2"}
	files := map[string]string{"/secret": "s3cret\n", "/cfg.yaml": "gitops-project: platform/gitops\nworkers: 9\noperators: [alice, bob]\n"}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, io.ErrUnexpectedEOF
	}
	c, err := LoadConfig("/cfg.yaml", map[string]string{"listen": ":9"}, func(k string) string { return env[k] }, read)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookSecret != "s3cret" || c.Workers != 2 || c.Listen != ":9" || c.GitOpsProject != "platform/gitops" || len(c.Operators) != 2 || c.Tick != 30*time.Second {
		t.Errorf("config = %+v", c)
	}
	if _, err := LoadConfig("/cfg.yaml", map[string]string{"database-url": ""}, func(k string) string { return env[k] }, read); err == nil || !strings.Contains(err.Error(), "database-url is empty") {
		t.Errorf("empty database URL: %v", err)
	}
	delete(env, "LOTSE_WEBHOOK_SECRET_FILE")
	if _, err := LoadConfig("/cfg.yaml", nil, func(k string) string { return env[k] }, read); err == nil || !strings.Contains(err.Error(), "no webhook secret") {
		t.Errorf("no secret: %v", err)
	}
	if _, err := LoadConfig("/cfg.yaml", map[string]string{"workers": "zero"}, func(k string) string { return env[k] }, read); err == nil {
		t.Error("bad workers accepted")
	}
	if c.Retention != 168*time.Hour {
		t.Errorf("default retention %v", c.Retention)
	}
	for v, want := range map[string]string{"0": "", "72h": "", "24h": "at least 48h", "soon": "at least 48h"} {
		c, err := LoadConfig("/cfg.yaml", map[string]string{"retention": v, "webhook-secret": "x"}, func(k string) string { return env[k] }, read)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("retention %q: %v", v, err)
		}
		if v == "0" && err == nil && c.Retention != 0 {
			t.Errorf("retention 0 = %v", c.Retention)
		}
	}
	files["/bad.yaml"] = "wrokers: 3\n"
	if _, err := LoadConfig("/bad.yaml", nil, func(k string) string { return env[k] }, read); err == nil || !strings.Contains(err.Error(), `unknown setting "wrokers"`) {
		t.Errorf("typo: %v", err)
	}
	var b bytes.Buffer
	Usage(&b)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range options() {
		if !strings.Contains(b.String(), o.env()) {
			t.Errorf("--help lacks %s", o.env())
		}
		if !strings.Contains(string(readme), "`--"+o.key+"`") || !strings.Contains(string(readme), "`"+o.env()+"`") {
			t.Errorf("the README's table of lotsed's options lacks --%s / %s", o.key, o.env())
		}
	}
}

// With HandOff, accepted deliveries are stored leased to the hand-off's
// owner and handed over with their decoded body, as long as there is room;
// then they are stored queued and the workers are woken. Duplicates are
// never handed over.
func TestIntakeHandsOver(t *testing.T) {
	s, db, h := testServer(t, nil)
	ho := newHandoff("me/intake", time.Minute, 2)
	s.intake.handoff, s.handoff = ho, ho
	send := func(key string) {
		t.Helper()
		hdr := map[string]string{"X-Gitlab-Token": testToken, "X-Gitlab-Event": "Merge Request Hook", "Idempotency-Key": key}
		if rec := post(h, "/webhooks/gitlab", mrBody(testProject), hdr); rec.Code != 200 {
			t.Fatalf("%s: %d %s", key, rec.Code, rec.Body)
		}
	}
	send("a")
	send("a") // a re-send
	send("b")
	send("c") // no room left
	for _, key := range []string{"a", "b"} {
		select {
		case got := <-ho.deliveries():
			ho.took()
			if got.d.ID == 0 || got.d.State != store.Leased || got.d.LeaseOwner != "me/intake" || got.d.Key != "idem:"+key {
				t.Errorf("handed %+v", got.d)
			}
			if got.hook == nil || got.hook.Attrs.SourceBranch != "lotse/shop/dev" || got.hook.Attrs.IID != 1 {
				t.Errorf("handed hook %+v", got.hook)
			}
			stored, err := db.Delivery(context.Background(), got.d.ID)
			if err != nil || stored.State != store.Leased || stored.LeaseOwner != "me/intake" {
				t.Errorf("stored %+v, %v", stored, err)
			}
		default:
			t.Fatalf("delivery %s was not handed over", key)
		}
	}
	select {
	case got := <-ho.deliveries():
		t.Fatalf("handed over %+v beyond the room", got.d)
	default:
	}
	select {
	case <-ho.kicks():
	default:
		t.Error("the workers were not woken for the queued delivery")
	}
	queued, err := db.Deliveries(context.Background(), store.Queued, 10)
	if err != nil || len(queued) != 1 || queued[0].Key != "idem:c" {
		t.Errorf("queued = %+v, %v, want c", queued, err)
	}
	// Room again: the next one is handed over.
	send("d")
	if got := <-ho.deliveries(); got.d.Key != "idem:d" {
		t.Errorf("handed %s, want d", got.d.Key)
	}
}

// Processed deliveries older than the retention are pruned, once an hour.
func TestPruneRetention(t *testing.T) {
	_, db, _ := testServer(t, nil)
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for i, age := range []time.Duration{10 * 24 * time.Hour, 8 * 24 * time.Hour, time.Hour} {
		id, _, err := db.Enqueue(ctx, store.Delivery{Source: "gitlab", Key: fmt.Sprint(i), Body: []byte(`{}`), ReceivedAt: now.Add(-age),
			LeaseOwner: "w", LeaseUntil: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.CompleteMany(ctx, []int64{id}, "w"); err != nil {
			t.Fatal(err)
		}
	}
	s := &timer{retention: 7 * 24 * time.Hour, store: db, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	s.prune(ctx)
	if st, _ := db.Stats(ctx); st[store.Done] != 1 {
		t.Errorf("after prune: %v, want the one of an hour ago", st)
	}
	// Within the hour nothing is pruned again, whatever the age.
	s.retention = time.Minute
	s.prune(ctx)
	if st, _ := db.Stats(ctx); st[store.Done] != 1 {
		t.Errorf("pruned again within the hour: %v", st)
	}
	now = now.Add(time.Hour)
	s.prune(ctx)
	if st, _ := db.Stats(ctx); st[store.Done] != 0 {
		t.Errorf("after an hour: %v, want none", st)
	}
}

// The audit chain's head leaves the database: logged with its hash when it
// moved (and hourly), its sequence number exported as a metric.
func TestAuditHeadPublished(t *testing.T) {
	_, db, _ := testServer(t, nil)
	ctx := context.Background()
	var logs bytes.Buffer
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	m := newMetrics()
	tm := &timer{store: db, metrics: m, now: func() time.Time { return now }, log: slog.New(slog.NewJSONHandler(&logs, nil))}
	for _, kind := range []string{"landed", "approved"} {
		if err := db.Audit(ctx, store.AuditRecord{App: "shop", Kind: kind, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	tm.publishHead(ctx)
	head, _ := db.AuditHead(ctx)
	if head.Seq != 2 || !strings.Contains(logs.String(), `"head":"`+head.String()+`"`) || m.auditHead.Load() != 2 {
		t.Fatalf("head %v, metric %d, log %s", head, m.auditHead.Load(), logs.String())
	}
	logs.Reset()
	tm.publishHead(ctx) // unchanged within the hour: not logged again
	if logs.Len() != 0 {
		t.Fatalf("logged again: %s", logs.String())
	}
	now = now.Add(time.Hour)
	tm.publishHead(ctx)
	if !strings.Contains(logs.String(), head.String()) {
		t.Fatal("not published again after an hour")
	}
}
