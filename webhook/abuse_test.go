package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lotse/lotse/internal/releaseapi"
	"github.com/lotse/lotse/internal/store"
)

// filler is a body of n bytes that costs its sender nothing: 40 of them of
// 25 MiB are sent from this process while its memory is measured.
type filler struct{ n int64 }

var fillerChunk = bytes.Repeat([]byte(`{"x":"`), 32<<10/6)

func (f *filler) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	n := copy(p, fillerChunk)
	n = int(min(int64(n), f.n))
	f.n -= int64(n)
	return n, nil
}

// rssKB reads this process's resident set size.
func rssKB() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// peakGrowth runs f and returns the largest growth of the resident set
// size, in KiB, above what it was before, sampled while f runs.
func peakGrowth(t *testing.T, f func()) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	base, err := rssKB()
	if err != nil {
		t.Skipf("cannot read the resident set size: %v", err)
	}
	var peak atomic.Int64
	sample := func() {
		if kb, err := rssKB(); err == nil {
			peak.Store(max(peak.Load(), kb-base))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	f()
	sample()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// flood sends n concurrent requests of size bytes each to url with hdr over
// real HTTP and returns their status codes (0 when the connection failed,
// as it may when lotsed answers and closes before the body is sent).
func flood(t *testing.T, url string, n int, size int64, hdr map[string]string) []int {
	t.Helper()
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, url, &filler{n: size})
			if err != nil {
				t.Error(err)
				return
			}
			req.ContentLength = size
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	return codes
}

// abuseServer is lotsed's handler behind lotsed's http.Server settings on a
// loopback port.
func abuseServer(t *testing.T, mod func(*Config)) (string, *store.DB) {
	t.Helper()
	s, db, h := testServer(t, func(c *Config) {
		c.MaxBody = 26 << 20
		c.UnverifiedBudget = 64 << 20
		c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = time.Minute, time.Minute, time.Minute
		if mod != nil {
			mod(c)
		}
	})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(s.cfg, h)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, db
}

// 40 concurrent 25 MiB deliveries with a wrong X-Gitlab-Token took lotsed
// from 80 MB to 1.1 GB: it read each body, sized from its Content-Length,
// before it looked at the token. The token is checked from the headers and
// the bodies are never read.
func TestWrongTokenFloodStaysSmall(t *testing.T) {
	url, db := abuseServer(t, nil)
	var codes []int
	grew := peakGrowth(t, func() {
		codes = flood(t, url+"/webhooks/gitlab", 40, 25<<20, map[string]string{"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"})
	})
	t.Logf("RSS grew by %d MiB at most", grew>>10)
	if grew > memoryScale*100<<10 {
		t.Errorf("40 unauthenticated 25 MiB bodies grew the resident set by %d MiB (bound %d MiB)", grew>>10, memoryScale*100)
	}
	for i, c := range codes {
		if c != 0 && c != http.StatusUnauthorized {
			t.Errorf("request %d: %d, want 401", i, c)
		}
	}
	if n := stored(t, db); n != 0 {
		t.Errorf("%d deliveries stored", n)
	}
}

// With a signing secret the body must be read to check the signature:
// badly signed 25 MiB bodies cost at most the budget of unverified reads;
// those beyond it are answered 503 without being read.
func TestBadSignatureFloodStaysWithinBudget(t *testing.T) {
	url, db := abuseServer(t, func(c *Config) { c.WebhookSecret, c.SigningSecret = "", testSigning })
	var codes []int
	grew := peakGrowth(t, func() {
		codes = flood(t, url+"/webhooks/gitlab", 40, 25<<20, map[string]string{"X-Gitlab-Event": "Push Hook", "webhook-id": "msg-1",
			"webhook-timestamp": strconv.FormatInt(time.Now().Unix(), 10), "webhook-signature": "v1,AAAA"})
	})
	t.Logf("RSS grew by %d MiB at most", grew>>10)
	if grew > memoryScale*160<<10 {
		t.Errorf("40 badly signed 25 MiB bodies grew the resident set by %d MiB (budget 64 MiB, bound %d MiB)", grew>>10, memoryScale*160)
	}
	for i, c := range codes {
		if c != 0 && c != http.StatusUnauthorized && c != http.StatusServiceUnavailable {
			t.Errorf("request %d: %d, want 401 or 503", i, c)
		}
	}
	if n := stored(t, db); n != 0 {
		t.Errorf("%d deliveries stored", n)
	}
}

// untouchable is a body that fails the test when it is read.
type untouchable struct {
	t    *testing.T
	name string
}

func (u untouchable) Read([]byte) (int, error) {
	u.t.Errorf("%s: the body was read", u.name)
	return 0, errors.New("read")
}

// Every token that is a header is checked before a byte of the body is read.
func TestTokensCheckedBeforeTheBody(t *testing.T) {
	_, _, h := testServer(t, func(c *Config) { c.ArgoCDToken = "argo" })
	_, _, hs := testServer(t, func(c *Config) { c.SigningSecret = testSigning; c.WebhookSecret = "" })
	w := newReleaseWorld(t, nil)
	stale := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	for _, tc := range []struct {
		name    string
		h       http.Handler
		path    string
		hdr     map[string]string
		status  int
		retryIn string
	}{
		{"no X-Gitlab-Token", h, "/webhooks/gitlab", nil, 401, ""},
		{"wrong X-Gitlab-Token", h, "/webhooks/gitlab", map[string]string{"X-Gitlab-Token": "nope"}, 401, ""},
		{"wrong ArgoCD token", h, "/webhooks/argocd", map[string]string{"Authorization": "Bearer nope"}, 401, ""},
		{"ArgoCD token as basic auth", h, "/webhooks/argocd", map[string]string{"Authorization": basic("argocd", "argo")}, 401, ""},
		{"unsigned in signature mode", hs, "/webhooks/gitlab", map[string]string{"X-Gitlab-Token": testToken}, 401, ""},
		{"signed without webhook-id", hs, "/webhooks/gitlab", map[string]string{"webhook-signature": "v1,AAAA",
			"webhook-timestamp": strconv.FormatInt(time.Now().Unix(), 10)}, 401, ""},
		{"stale signed", hs, "/webhooks/gitlab", map[string]string{"webhook-signature": "v1,AAAA", "webhook-id": "m", "webhook-timestamp": stale}, 401, ""},
		{"release without token", w.handler, releaseapi.Path, nil, 401, ""},
		{"release with a forged token", w.handler, releaseapi.Path, map[string]string{"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}, 401, ""},
		{"requeue without admin token", h, "/api/v1/events/1/requeue", map[string]string{"Authorization": "Bearer " + readToken}, 403, ""},
	} {
		req := httptest.NewRequest(http.MethodPost, tc.path, untouchable{t, tc.name})
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
		}
	}
}

func basic(user, pass string) string {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// gate is a body that blocks its reader until opened, and says when it was
// first read.
type gate struct {
	reading chan struct{}
	open    chan struct{}
	once    sync.Once
	rest    io.Reader
}

func newGate(body []byte) *gate {
	return &gate{reading: make(chan struct{}), open: make(chan struct{}), rest: bytes.NewReader(body)}
}

func (g *gate) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.reading) })
	<-g.open
	return g.rest.Read(p)
}

// Signed bodies being read hold the budget of unverified reads; a signed
// delivery beyond it is answered 503 with Retry-After without being read,
// and is taken again once the budget is given back.
func TestUnverifiedReadsBudget(t *testing.T) {
	_, db, h := testServer(t, func(c *Config) {
		c.WebhookSecret, c.SigningSecret = "", testSigning
		c.MaxBody, c.UnverifiedBudget = 8<<10, 20<<10
	})
	now := time.Now()
	body := mrBody(testProject)
	signedReq := func(id string, r io.Reader, size int64) *http.Request {
		sig, err := Sign(testSigning, id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/gitlab", r)
		req.ContentLength = size
		for k, v := range map[string]string{"X-Gitlab-Event": "Merge Request Hook", "webhook-id": id,
			"webhook-timestamp": strconv.FormatInt(now.Unix(), 10), "webhook-signature": sig} {
			req.Header.Set(k, v)
		}
		return req
	}
	// Two bodies of undeclared length hold 2 x max-body of the 20 KiB.
	var held []*gate
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		g := newGate(body)
		held = append(held, g)
		req := signedReq(fmt.Sprintf("held-%d", i), g, -1)
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		})
		<-g.reading
	}
	over := httptest.NewRecorder()
	h.ServeHTTP(over, signedReq("over", untouchable{t, "delivery beyond the budget"}, -1))
	if over.Code != http.StatusServiceUnavailable || over.Header().Get("Retry-After") == "" {
		t.Errorf("beyond the budget: %d, Retry-After %q; want 503 with Retry-After", over.Code, over.Header().Get("Retry-After"))
	}
	// A declared length is reserved as it is: a small body still fits.
	small := httptest.NewRecorder()
	h.ServeHTTP(small, signedReq("small", bytes.NewReader(body), int64(len(body))))
	if small.Code != http.StatusOK {
		t.Errorf("small signed delivery within the budget: %d %s", small.Code, small.Body)
	}
	// A declared length above max-body is refused without reading.
	big := httptest.NewRecorder()
	h.ServeHTTP(big, signedReq("big", untouchable{t, "declared too large"}, 9<<10))
	if big.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("declared too large: %d", big.Code)
	}
	for _, g := range held {
		close(g.open)
	}
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Errorf("held deliveries: %v", codes)
	}
	again := httptest.NewRecorder()
	h.ServeHTTP(again, signedReq("over", bytes.NewReader(body), -1))
	if again.Code != http.StatusOK {
		t.Errorf("after the budget was given back: %d %s", again.Code, again.Body)
	}
	if n := stored(t, db); n != 4 {
		t.Errorf("stored %d deliveries, want 4", n)
	}
}

// A captured signed delivery, replayed within the signature's tolerance
// under a new Idempotency-Key (which the signature does not cover), is the
// same delivery: signed deliveries are deduplicated on the signed webhook-id.
func TestSignedReplayDeduplicated(t *testing.T) {
	_, db, h := testServer(t, func(c *Config) { c.WebhookSecret, c.SigningSecret = "", testSigning })
	now := time.Now()
	body := mrBody(testProject)
	sig, err := Sign(testSigning, "msg-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"msg-1", "replayed", ""} {
		hdr := map[string]string{"X-Gitlab-Event": "Merge Request Hook", "webhook-id": "msg-1",
			"webhook-timestamp": strconv.FormatInt(now.Unix(), 10), "webhook-signature": sig}
		if key != "" {
			hdr["Idempotency-Key"] = key
		}
		if rec := post(h, "/webhooks/gitlab", body, hdr); rec.Code != 200 {
			t.Fatalf("Idempotency-Key %q: %d %s", key, rec.Code, rec.Body)
		}
	}
	if n := stored(t, db); n != 1 {
		t.Fatalf("stored %d deliveries, want 1", n)
	}
	ds, err := db.Deliveries(context.Background(), store.Queued, 10)
	if err != nil || len(ds) != 1 || ds[0].Key != "idem:msg-1" {
		t.Fatalf("queued = %+v, %v", ds, err)
	}
}

func TestDedupeKey(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		h      http.Header
		signed bool
		want   string
	}{
		{"signed: the webhook-id, not the Idempotency-Key", hdr("webhook-id", "w", "Idempotency-Key", "i"), true, "idem:w"},
		{"token: the Idempotency-Key", hdr("webhook-id", "w", "Idempotency-Key", "i"), false, "idem:i"},
		{"token: else the webhook-id", hdr("webhook-id", "w"), false, "idem:w"},
		{"neither: the body", hdr(), false, "sha256:"},
	} {
		if got := dedupeKey(tc.h, "Push Hook", []byte("{}"), tc.signed); !strings.HasPrefix(got, tc.want) || tc.want != "sha256:" && got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A browser replays basic-auth credentials with every request a page makes
// it send: they open the board page, and nothing else.
func TestBasicAuthOnlyOpensTheBoard(t *testing.T) {
	_, _, h := testServer(t, nil)
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/board", basic("me", readToken), 200},
		{"GET", "/board", basic("me", adminToken), 200},
		{"GET", "/board", basic("me", "wrong"), 401},
		{"POST", "/api/v1/events/1/requeue", basic("me", adminToken), 401},
		{"POST", "/api/v1/events/1/requeue", "Bearer " + adminToken, 404},
		{"GET", "/api/v1/status", basic("me", adminToken), 401},
		{"GET", "/api/v1/events?state=dead", basic("me", readToken), 401},
		{"GET", "/metrics", basic("me", readToken), 401},
		{"GET", "/api/v1/status", "Bearer " + readToken, 200},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.Header.Set("Authorization", tc.auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.auth, rec.Code, tc.want)
		}
		if ch := rec.Header().Get("WWW-Authenticate"); rec.Code == 401 && strings.Contains(ch, "Basic") != (tc.path == "/board") {
			t.Errorf("%s %s: challenge %q", tc.method, tc.path, ch)
		}
	}
}

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The client's address in the log comes from X-Forwarded-For only when the
// peer is a configured trusted proxy; any client can send the header.
func TestClientIPFromTrustedProxiesOnly(t *testing.T) {
	proxies, err := parseCIDRs([]string{"203.0.113.0/28", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		trusted bool
		peer    string
		xff     string
		want    string
	}{
		{"no trusted proxies", false, "198.51.100.9:4000", "192.0.2.1", "198.51.100.9"},
		{"no trusted proxies, loopback peer", false, "127.0.0.1:4000", "192.0.2.1", "127.0.0.1"},
		{"no trusted proxies, private peer", false, "10.1.2.3:4000", "192.0.2.1", "10.1.2.3"},
		{"untrusted peer", true, "198.51.100.9:4000", "192.0.2.1", "198.51.100.9"},
		{"private peer not configured", true, "10.1.2.3:4000", "192.0.2.1", "10.1.2.3"},
		{"trusted proxy", true, "203.0.113.5:4000", "192.0.2.1", "192.0.2.1"},
		{"trusted IPv6 proxy", true, "[2001:db8::1]:4000", "192.0.2.1", "192.0.2.1"},
		{"client's own XFF before the proxy's", true, "203.0.113.5:4000", "6.6.6.6, 192.0.2.1", "192.0.2.1"},
		{"chain of trusted proxies", true, "203.0.113.5:4000", "192.0.2.1, 203.0.113.6", "192.0.2.1"},
	} {
		var logs syncBuffer
		cfg := &Config{WebhookSecret: testToken, MaxBody: 64 << 10, SignatureTolerance: time.Minute}
		if tc.trusted {
			cfg.TrustedProxies = proxies
		}
		s, err := newServer(cfg, serverParts{queue: nil, watch: watchOnly(testProject), views: noViews{}, metrics: newMetrics(),
			log: slog.New(slog.NewJSONHandler(&logs, nil)), now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/gitlab", strings.NewReader("{}"))
		req.RemoteAddr = tc.peer
		req.Header.Set("X-Forwarded-For", tc.xff)
		req.Header.Set("X-Gitlab-Token", "wrong")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != 401 || !strings.Contains(logs.String(), `"remote":"`+tc.want+`"`) {
			t.Errorf("%s: %d, log %s; want remote %s", tc.name, rec.Code, logs.String(), tc.want)
		}
	}
}

func TestAbuseOptions(t *testing.T) {
	env := map[string]string{"LOTSE_WEBHOOK_SECRET": "s", "LOTSE_GITLAB_URL": "https://gitlab.example", "LOTSE_GITLAB_TOKEN": "t",
		"LOTSE_GITOPS_PROJECT": "platform/gitops"}
	load := func(flags map[string]string) (*Config, error) {
		return LoadConfig("", flags, func(k string) string { return env[k] }, os.ReadFile)
	}
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ReadTimeout != time.Minute || c.WriteTimeout != 2*time.Minute || c.IdleTimeout != time.Minute || c.UnverifiedBudget != 64<<20 || c.TrustedProxies != nil {
		t.Errorf("defaults: %+v", c)
	}
	hs := newHTTPServer(c, http.NotFoundHandler())
	if hs.ReadTimeout != c.ReadTimeout || hs.WriteTimeout != c.WriteTimeout || hs.IdleTimeout != c.IdleTimeout || hs.ReadHeaderTimeout == 0 {
		t.Errorf("http.Server %+v", hs)
	}
	c, err = load(map[string]string{"trusted-proxies": "10.0.0.0/8, 192.0.2.7,2001:db8::/32", "read-timeout": "5s"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range c.TrustedProxies {
		got = append(got, n.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.0.2.7/32 2001:db8::/32" || c.ReadTimeout != 5*time.Second {
		t.Errorf("trusted proxies %v, read timeout %v", got, c.ReadTimeout)
	}
	for k, v := range map[string]string{"trusted-proxies": "proxy.example", "read-timeout": "0", "unverified-body-budget": "12"} {
		if _, err := load(map[string]string{k: v}); err == nil {
			t.Errorf("%s %q accepted", k, v)
		}
	}
	if ip := net.ParseIP("192.0.2.7"); !c.TrustedProxies[1].Contains(ip) {
		t.Errorf("%v does not contain %v", c.TrustedProxies[1], ip)
	}
}
