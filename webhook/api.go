package webhook

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/auditapi"
	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/store"
)

// listEvents is GET /api/v1/events?state=dead&limit=100.
func (s *Server) listEvents(c echo.Context) error {
	state := store.State(c.QueryParam("state"))
	switch state {
	case "":
		state = store.Dead
	case store.Queued, store.Leased, store.Done, store.Dead:
	default:
		return &badRequest{reason: "state must be queued, leased, done or dead"}
	}
	limit, err := intParam(c, "limit", 100)
	if err != nil {
		return err
	}
	ds, err := s.queue.Deliveries(c.Request().Context(), state, limit)
	if err != nil {
		return err
	}
	type event struct {
		ID          int64             `json:"id"`
		Source      string            `json:"source"`
		Event       string            `json:"event"`
		State       store.State       `json:"state"`
		Attempts    int               `json:"attempts"`
		LastError   string            `json:"last_error,omitempty"`
		ReceivedAt  time.Time         `json:"received_at"`
		NextAttempt time.Time         `json:"next_attempt,omitempty"`
		Headers     map[string]string `json:"headers,omitempty"`
	}
	out := make([]event, 0, len(ds))
	for _, d := range ds {
		out = append(out, event{d.ID, d.Source, d.Event, d.State, d.Attempts, d.LastError, d.ReceivedAt, d.NextAttempt, d.Headers})
	}
	return c.JSON(http.StatusOK, out)
}

// requeueEvent is POST /api/v1/events/:id/requeue (admin).
func (s *Server) requeueEvent(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return &badRequest{reason: "event id must be a number"}
	}
	if err := s.queue.Requeue(c.Request().Context(), id, s.now()); err != nil {
		return err
	}
	s.handoff.wake()
	return c.JSON(http.StatusOK, map[string]any{"id": id, "state": store.Queued})
}

func (s *Server) status(c echo.Context) error {
	v, err := s.views.Status(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// audit is GET /api/v1/audit: the hash-chained audit log (internal/audit),
// newest first, or in chain order after a sequence number for export.
func (s *Server) audit(c echo.Context) error {
	f, err := auditapi.ParseQuery(c.QueryParams())
	if err != nil {
		return &badRequest{reason: err.Error()}
	}
	v, err := s.views.Audit(c.Request().Context(), f)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// dora is GET /api/v1/dora?days=&since=&app=: the DORA figures per app
// and stage with their samples (internal/dora).
func (s *Server) dora(c echo.Context) error {
	app, since, err := dora.ParseQuery(c.QueryParams(), s.now())
	if err != nil {
		return &badRequest{reason: err.Error()}
	}
	v, err := s.views.DORA(c.Request().Context(), app, since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func intParam(c echo.Context, name string, def int) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10000 {
		return 0, &badRequest{reason: name + " must be a number from 1 to 10000"}
	}
	return n, nil
}

// freeze is POST /api/v1/freeze {"stage", "reason"} (a stop-the-line: no
// promotion into the stage, or every stage without one, is merged until it
// is lifted) and DELETE /api/v1/freeze?stage= (lift it). Admin token.
func (s *Server) freeze(c echo.Context) error {
	if s.freezer == nil {
		return echo.NewHTTPError(http.StatusNotFound, "freezes are not available")
	}
	var req struct {
		Stage  string `json:"stage"`
		Reason string `json:"reason"`
	}
	lift := c.Request().Method == http.MethodDelete
	if lift {
		req.Stage = c.QueryParam("stage")
	} else if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10)).Decode(&req); err != nil {
		return &badRequest{reason: "want a JSON body {\"stage\", \"reason\"}: " + err.Error()}
	} else if strings.TrimSpace(req.Reason) == "" {
		return &badRequest{reason: "a freeze needs a reason"}
	}
	if err := s.freezer.freeze(c.Request().Context(), req.Stage, req.Reason, lift); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"stage": req.Stage, "frozen": !lift, "reason": req.Reason})
}
