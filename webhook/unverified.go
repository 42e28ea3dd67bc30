package webhook

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
)

// A signed delivery's sender is known only once its whole body has been read
// and the signature over it checked. Until then its body is an anonymous
// caller's memory: unverifiedReads bounds it, in bytes, over all the
// requests being read at the same time, and readUnverified never sizes a
// buffer from what the caller declares.

// unverifiedReads is a budget of bytes of unauthenticated bodies in memory.
type unverifiedReads struct {
	mu   sync.Mutex
	left int64
}

func newUnverifiedReads(budget int64) *unverifiedReads { return &unverifiedReads{left: budget} }

// take reserves n bytes; false, and nothing reserved, when fewer are left.
func (u *unverifiedReads) take(n int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n > u.left {
		return false
	}
	u.left -= n
	return true
}

func (u *unverifiedReads) give(n int64) {
	u.mu.Lock()
	u.left += n
	u.mu.Unlock()
}

// unverifiedRetry is the Retry-After of a delivery refused because the
// budget is spent, in seconds.
const unverifiedRetry = 5

// chunkSize is the size of the parts an unauthenticated body is read in: it
// costs what it sent, never what it declared.
const chunkSize = 16 << 10

// readUnverified reads the body of a request whose sender is not known yet,
// at most limit bytes, in parts of chunkSize. It first reserves, from u, the
// declared Content-Length (the server reads no more than that) or limit when
// none is declared; when the budget does not hold it, it answers 503 with
// Retry-After at once and reads nothing. release gives the reservation back;
// call it when the body is verified or dropped.
func readUnverified(c echo.Context, u *unverifiedReads, limit int64) (parts [][]byte, release func(), err error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
	}
	n := limit
	if r.ContentLength >= 0 {
		n = r.ContentLength
	}
	if !u.take(n) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(unverifiedRetry))
		return nil, nil, echo.NewHTTPError(http.StatusServiceUnavailable, "too many unauthenticated bodies being read; try again later")
	}
	release = func() { u.give(n) }
	parts, err = readParts(http.MaxBytesReader(c.Response(), r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		release()
		return nil, nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
	case err != nil:
		release()
		return nil, nil, &badRequest{reason: "read body: " + err.Error()}
	}
	return parts, release, nil
}

// readParts reads r to its end in parts of chunkSize.
func readParts(r io.Reader) ([][]byte, error) {
	var parts [][]byte
	for {
		buf := make([]byte, chunkSize)
		n := 0
		for n < len(buf) {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				if n > 0 {
					parts = append(parts, buf[:n])
				}
				return parts, nil
			}
			if err != nil {
				return nil, err
			}
		}
		parts = append(parts, buf)
	}
}

// join concatenates parts into one allocation of their total size.
func join(parts [][]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
