package dora

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/apiread"
)

// Path is where lotsed serves the figures: GET /api/v1/dora takes
//
//	app    only this app
//	days   the period: the last days days (1 to 3660, default 30)
//	since  the period starts then instead (RFC 3339)
//
// and answers 200 with a JSON array of Figures, per app and stage in
// lotse.yaml's order, each with its samples; 400 {"error": ...} for a bad
// query.
const Path = "/api/v1/dora"

// DefaultDays is the period when the query names none.
const DefaultDays = 30

// maxDays bounds the period (ten years).
const maxDays = 3660

// Query selects the figures.
type Query struct {
	App   string
	Since time.Time // zero: the last Days days
	Days  int       // 0: DefaultDays
}

// ParseQuery reads GET /api/v1/dora's query; since is resolved against
// now.
func ParseQuery(q url.Values, now time.Time) (app string, since time.Time, err error) {
	app = q.Get("app")
	days := DefaultDays
	if s := q.Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDays {
			return "", time.Time{}, fmt.Errorf("days: %q is not a number from 1 to %d", s, maxDays)
		}
		days = n
	}
	since = now.AddDate(0, 0, -days)
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("since: %q is not an RFC 3339 time", s)
		}
		if t.After(now) {
			return "", time.Time{}, fmt.Errorf("since: %s is in the future", s)
		}
		since = t
	}
	return app, since, nil
}

// Client reads the figures from lotsed.
type Client struct {
	// URL is lotsed's base URL, e.g. https://lotsed.example.com.
	URL string
	// Token is the API's read token, sent as a bearer token and never
	// shown in errors.
	Token string
	// HTTP defaults to a client with a one-minute timeout.
	HTTP *http.Client
}

// maxAnswer bounds the bytes of an answer.
const maxAnswer = 64 << 20

// Figures asks lotsed for the figures q selects.
func (c *Client) Figures(ctx context.Context, q Query) ([]Figures, error) {
	base, err := url.Parse(strings.TrimRight(strings.TrimSuffix(strings.TrimRight(c.URL, "/"), Path), "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("lotsed URL %q: want http(s)://host[/prefix]", apiread.Redact(c.URL))
	}
	base.Path += Path
	v := url.Values{}
	if q.App != "" {
		v.Set("app", q.App)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	} else if q.Days > 0 {
		v.Set("days", strconv.Itoa(q.Days))
	}
	base.RawQuery = v.Encode()
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	var out []Figures
	if err := apiread.Get(ctx, hc, base.String(), c.Token, "read DORA figures", maxAnswer, false, &out); err != nil {
		return nil, err
	}
	return out, nil
}
