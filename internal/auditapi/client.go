package auditapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/apiread"
	"github.com/lotse/lotse/internal/audit"
)

// Path is where lotsed serves the audit log.
const Path = "/api/v1/audit"

// maxPage bounds the bytes of one page read from the server.
const maxPage = 256 << 20

// Client reads the audit chain from lotsed.
type Client struct {
	// URL is lotsed's base URL, e.g. https://lotsed.example.com (a URL
	// that ends in /api/v1/audit works too).
	URL string
	// Token is the API's read token, sent as a bearer token and never
	// shown in errors.
	Token string
	// HTTP defaults to a client with a one-minute timeout per page.
	HTTP *http.Client
	// PageSize defaults to MaxLimit.
	PageSize int
}

// Each calls fn with every record f selects in chain order, oldest first,
// reading page after page (f.Chain, f.After and f.Limit are its own). It
// stops at the first error of fn or of the server, and refuses a page that
// does not continue the chain's order, so that a wrong server cannot keep
// it going forever.
func (c *Client) Each(ctx context.Context, f audit.Filter, fn func(audit.Record) error) error {
	base, err := url.Parse(strings.TrimRight(strings.TrimSuffix(strings.TrimRight(c.URL, "/"), Path), "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("lotsed URL %q: want http(s)://host[/prefix]", redact(c.URL))
	}
	base.Path += Path
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	size := c.PageSize
	if size <= 0 || size > MaxLimit {
		size = MaxLimit
	}
	q := url.Values{}
	for k, v := range map[string]string{"app": f.App, "stage": f.Stage, "kind": f.Kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	q.Set("limit", strconv.Itoa(size))
	after := f.After
	for {
		q.Set("after", strconv.FormatInt(after, 10))
		u := *base
		u.RawQuery = q.Encode()
		page, err := c.page(ctx, hc, u.String())
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, r := range page {
			if r.Seq <= after {
				return fmt.Errorf("%s answered record %d after %d: not in chain order", u.Redacted(), r.Seq, after)
			}
			after = r.Seq
			if err := fn(r); err != nil {
				return err
			}
		}
	}
}

func (c *Client) page(ctx context.Context, hc *http.Client, u string) ([]audit.Record, error) {
	var page []audit.Record
	if err := apiread.Get(ctx, hc, u, c.Token, "read audit log", maxPage, true, &page); err != nil {
		return nil, err
	}
	return page, nil
}

func redact(raw string) string { return apiread.Redact(raw) }

// Write writes r as one line of an export: its JSON, then a newline.
func Write(w io.Writer, r audit.Record) error {
	r.At = r.At.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record %d: %w", r.Seq, err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write audit record %d: %w", r.Seq, err)
	}
	return nil
}

// maxLine bounds one line of an export.
const maxLine = 16 << 20

// Read calls fn with each record of an export (JSON lines as Write writes
// them; blank lines are skipped) in the order of the file. A line that is
// not a record, or has fields a record does not have, is an error naming
// its line number.
func Read(r io.Reader, fn func(audit.Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec audit.Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return fmt.Errorf("line %d: not an audit record: %w", n, err)
		}
		if dec.More() {
			return fmt.Errorf("line %d: not an audit record: more than one JSON value", n)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("a line longer than %d bytes: not an audit export", maxLine)
		}
		return fmt.Errorf("read audit export: %w", err)
	}
	return nil
}
