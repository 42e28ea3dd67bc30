package gitlabsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// call is one authenticated API request being served.
type call struct {
	s      *Sim
	w      http.ResponseWriter
	r      *http.Request
	user   *user
	job    *jobToken // set when authenticated with a CI job token
	params params
	base   string
	class  string
}

// route is one REST endpoint.
type route struct {
	class   string // endpoint class for faults and request records
	jobOK   bool   // CI_JOB_TOKEN accepted (api.md §7)
	handler func(c *call)
}

func (s *Sim) handle(pattern, class string, jobOK bool, h func(c *call)) {
	rt := route{class: class, jobOK: jobOK, handler: h}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { s.serveAPI(w, r, rt) })
}

// inRepo adapts a handler of the call's project: it runs h with the project
// locked once the caller may read its repository, and answers 404 or 403
// otherwise.
func inRepo(h func(c *call, p *project)) func(c *call) {
	return func(c *call) {
		p := c.repoProject()
		if p == nil {
			return
		}
		defer p.mu.Unlock()
		h(c, p)
	}
}

// serveAPI authenticates, applies faults, records and dispatches a REST request.
func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request, rt route) {
	rec := RequestRecord{Method: r.Method, Path: r.URL.EscapedPath(), Class: rt.class, At: s.now()}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status = sw.status()
		s.recordRequest(rec)
	}()

	f := s.faults.match(rt.class, r.Method)
	if f != nil && !f.After {
		rec.Fault = true
		s.writeFault(sw, f)
		return
	}

	r = withEventUUID(r)
	c := &call{s: s, w: sw, r: r, base: s.BaseURL(), class: rt.class}
	if !s.authenticate(c, rt) {
		return
	}
	p, err := readParams(r)
	if err != nil {
		c.errorJSON(http.StatusBadRequest, "error", err.Error())
		return
	}
	c.params = p
	if f != nil && f.After {
		// Perform the request for real, then answer with the fault.
		rec.Fault = true
		buf := &bufferWriter{header: http.Header{}}
		c.w = buf
		rt.handler(c)
		rec.WriteStatus = buf.code
		s.writeFault(sw, f)
		return
	}
	rt.handler(c)
}

// authenticate resolves the caller; it writes 401 and returns false when that fails.
func (s *Sim) authenticate(c *call, rt route) bool {
	r := c.r
	tok := r.Header.Get("PRIVATE-TOKEN")
	if tok == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
			tok = strings.TrimSpace(a[7:])
		}
	}
	jt := r.Header.Get("JOB-TOKEN")
	if jt == "" {
		jt = r.URL.Query().Get("job_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case tok != "":
		u, ok := s.tokens[tok]
		if !ok {
			break
		}
		c.user = u
		return true
	case jt != "":
		j, ok := s.jobTokens[jt]
		if !ok || !rt.jobOK {
			break
		}
		c.user = j.User
		c.job = j
		return true
	}
	writeJSON(c.w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
	return false
}

// ---- responses ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (c *call) json(status int, v any) { writeJSON(c.w, status, v) }

// message answers {"message": msg}.
func (c *call) message(status int, msg any) { c.json(status, map[string]any{"message": msg}) }

// errorJSON answers {key: msg} ("error" for Grape parameter validation).
func (c *call) errorJSON(status int, key, msg string) { c.json(status, map[string]any{key: msg}) }

func (c *call) unauthorized() { c.message(http.StatusUnauthorized, "401 Unauthorized") }
func (c *call) forbidden(reason string) {
	if reason == "" {
		c.message(http.StatusForbidden, "403 Forbidden")
		return
	}
	c.message(http.StatusForbidden, "403 Forbidden - "+reason)
}
func (c *call) notFound(what string) { c.message(http.StatusNotFound, "404 "+what+" Not Found") }
func (c *call) notAllowed()          { c.message(http.StatusMethodNotAllowed, "405 Method Not Allowed") }
func (c *call) badRequest(msg any)   { c.message(http.StatusBadRequest, msg) }
func (c *call) missing(names ...string) {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + " is missing"
	}
	c.errorJSON(http.StatusBadRequest, "error", strings.Join(parts, ", "))
}

// requireParams answers 400 and returns false when any named parameter is absent.
func (c *call) requireParams(names ...string) bool {
	var miss []string
	for _, n := range names {
		if !c.params.has(n) {
			miss = append(miss, n)
		}
	}
	if len(miss) > 0 {
		c.missing(miss...)
		return false
	}
	return true
}

// sortListed orders a listing as GitLab does for order_by (created_at, the
// default, or updated_at) and sort (desc, the default, or asc); equal times
// go by id. at gives an item's creation and update times and id.
func sortListed[T any](c *call, items []T, at func(T) (created, updated time.Time, id int)) {
	byUpdated := c.params.str("order_by") == "updated_at"
	asc := c.params.str("sort") == "asc"
	sort.SliceStable(items, func(i, j int) bool {
		ca, ua, ia := at(items[i])
		cb, ub, ib := at(items[j])
		a, b := ca, cb
		if byUpdated {
			a, b = ua, ub
		}
		if a.Equal(b) {
			if asc {
				return ia < ib
			}
			return ia > ib
		}
		if asc {
			return a.Before(b)
		}
		return a.After(b)
	})
}

// paginate slices n items per the page/per_page parameters, writes GitLab's
// pagination headers and returns the [lo, hi) window.
func (c *call) paginate(n int) (lo, hi int) {
	page, perPage := c.pageParams()
	lo = min((page-1)*perPage, n)
	hi = min(lo+perPage, n)
	totalPages := max((n+perPage-1)/perPage, 1)
	next := 0
	if hi < n {
		next = page + 1
	}
	c.pageHeaders(page, perPage, next, n, totalPages)
	return lo, hi
}

func (c *call) pageParams() (page, perPage int) {
	page = c.params.int("page", 1)
	perPage = c.params.int("per_page", 20)
	if page < 1 {
		page = 1
	}
	if perPage < 1 {
		perPage = 20
	}
	if perPage > 100 {
		perPage = 100
	}
	return page, perPage
}

// pageHeaders writes x-page and friends; total < 0 leaves out x-total and
// x-total-pages (as the commits API does).
func (c *call) pageHeaders(page, perPage, next, total, totalPages int) {
	h := c.w.Header()
	h.Set("X-Page", strconv.Itoa(page))
	h.Set("X-Per-Page", strconv.Itoa(perPage))
	h.Set("X-Next-Page", "")
	h.Set("X-Prev-Page", "")
	if next > 0 {
		h.Set("X-Next-Page", strconv.Itoa(next))
	}
	if page > 1 {
		h.Set("X-Prev-Page", strconv.Itoa(page-1))
	}
	if total >= 0 {
		h.Set("X-Total", strconv.Itoa(total))
		h.Set("X-Total-Pages", strconv.Itoa(totalPages))
	}
	link := func(p int, rel string) string {
		u := *c.r.URL
		q := u.Query()
		q.Set("page", strconv.Itoa(p))
		q.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = q.Encode()
		return fmt.Sprintf("<%s%s>; rel=\"%s\"", c.base, u.RequestURI(), rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1, "prev"))
	}
	if next > 0 {
		links = append(links, link(next, "next"))
	}
	links = append(links, link(1, "first"))
	if total >= 0 {
		links = append(links, link(totalPages, "last"))
	}
	h.Set("Link", strings.Join(links, ", "))
}

// ---- parameters ----

// params holds request parameters from the query string and a JSON or form body.
type params map[string]any

func readParams(r *http.Request) (params, error) {
	p := params{}
	for k, v := range r.URL.Query() {
		p.setValues(k, v)
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return p, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("parse form: %w", err)
		}
		for k, v := range vals {
			p.setValues(k, v)
		}
	default:
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("invalid JSON body: %w", err)
		}
		for k, v := range m {
			p[k] = v
		}
	}
	return p, nil
}

func (p params) setValues(k string, v []string) {
	k = strings.TrimSuffix(k, "[]")
	if len(v) == 1 {
		p[k] = v[0]
		return
	}
	a := make([]any, len(v))
	for i, s := range v {
		a[i] = s
	}
	p[k] = a
}

func (p params) has(k string) bool {
	v, ok := p[k]
	return ok && v != nil
}

func (p params) str(k string) string {
	switch v := p[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (p params) bool(k string) (val, ok bool) {
	switch v := p[k].(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	case json.Number:
		return v.String() != "0", true
	}
	return false, false
}

func (p params) boolOr(k string, def bool) bool {
	if v, ok := p.bool(k); ok {
		return v
	}
	return def
}

func (p params) int(k string, def int) int {
	switch v := p[k].(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return int(n)
		}
	case string:
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	case float64:
		return int(v)
	}
	return def
}

// list returns a list parameter given as array or comma-separated string.
func (p params) list(k string) ([]string, bool) {
	v, ok := p[k]
	if !ok || v == nil {
		return nil, false
	}
	var out []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			out = append(out, splitComma(fmt.Sprint(e))...)
		}
	default:
		out = splitComma(p.str(k))
	}
	return out, true
}

func splitComma(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func (p params) time(k string) time.Time {
	t, _ := time.Parse(time.RFC3339, p.str(k))
	return t
}

// ---- writers ----

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// bufferWriter swallows a response (for faults injected after the write).
type bufferWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

// apiTime formats like GitLab's REST API: 2012-09-20T11:50:22.000Z.
type apiTime time.Time

func (t apiTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000Z07:00") + `"`), nil
}

func tptr(t time.Time) *apiTime {
	if t.IsZero() {
		return nil
	}
	a := apiTime(t)
	return &a
}

// hookTime formats like GitLab's webhook payloads: 2013-12-03 17:23:34 UTC.
func hookTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
