// Package apiread reads lotsed's JSON read API (status, audit, DORA) for
// lotse's commands: one GET with the read token, lotsed's error message on
// failure, the token never in an error.
package apiread

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Get reads u with the bearer token into out (JSON, at most limit bytes;
// unknown fields refused when strict). what names the read in errors, like
// "read audit log".
func Get(ctx context.Context, hc *http.Client, u, token, what string, limit int64, strict bool, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		// url.Error names the URL, which holds no token.
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		msg := strings.Join(strings.Fields(string(b)), " ")
		var e struct{ Error, Message string }
		if json.Unmarshal(b, &e) == nil && (e.Error != "" || e.Message != "") {
			msg = e.Error + e.Message
		}
		if token != "" {
			msg = strings.ReplaceAll(msg, token, "***")
		}
		return fmt.Errorf("%s: %s answered %s: %.200s", what, Redact(u), resp.Status, msg)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", what, Redact(u), err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: %s: %w", what, Redact(u), err)
	}
	return nil
}

// Redact drops a password from a URL for messages.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
