package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/store"
)

// Queue is what the intake and the API need of the store.
type Queue interface {
	Enqueue(ctx context.Context, d store.Delivery) (id int64, duplicate bool, err error)
	Deliveries(ctx context.Context, state store.State, limit int) ([]store.Delivery, error)
	Requeue(ctx context.Context, id int64, now time.Time) error
	Stats(ctx context.Context) (map[store.State]int, error)
}

// Server is lotsed's HTTP side.
type Server struct {
	cfg      *Config
	log      *slog.Logger
	queue    Queue
	gitlab   *gitlabAuth
	now      func() time.Time
	kick     chan struct{}
	projects atomic.Pointer[map[string]bool]
	ready    atomic.Bool
	metrics  *metrics
	views    Views
	handoff  *handoff
}

// handoff carries deliveries from the intake straight to the workers of
// this process: stored already leased to owner, so that a worker needs
// neither a Lease transaction nor to read the body back. It holds at most
// cap(slots) deliveries; when it is full, the intake stores deliveries as
// queued and the workers lease them from the store.
type handoff struct {
	owner string
	ttl   time.Duration
	slots chan struct{}
	ch    chan handed
}

// handed is a delivery the intake hands to a worker, with its body decoded
// when it is a GitLab delivery.
type handed struct {
	d    store.Delivery
	hook *gitlabHook
}

// HandOff makes the intake hand up to n deliveries at a time to the
// workers reading Handed, leased to owner for ttl. Without it every
// delivery is stored queued.
func (s *Server) HandOff(owner string, ttl time.Duration, n int) {
	s.handoff = &handoff{owner: owner, ttl: ttl, slots: make(chan struct{}, n), ch: make(chan handed, n)}
}

// Handed delivers the deliveries the intake hands over (nil without
// HandOff). Receivers own their leases; each receive frees a place.
func (s *Server) Handed() <-chan handed {
	if s.handoff == nil {
		return nil
	}
	return s.handoff.ch
}

// Took tells the intake that a worker took a handed delivery.
func (s *Server) Took() {
	<-s.handoff.slots
}

// reserve takes a place in the hand-off; false when there is none.
func (h *handoff) reserve() bool {
	if h == nil {
		return false
	}
	select {
	case h.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Views are the read models the API and the board show; the worker side
// provides them.
type Views interface {
	Status(ctx context.Context) (any, error)
	Audit(ctx context.Context, app string, limit int) (any, error)
	DORA(ctx context.Context, since time.Time) (any, error)
}

// NewServer builds the HTTP side over a queue.
func NewServer(cfg *Config, q Queue, views Views, log *slog.Logger, now func() time.Time) (*Server, error) {
	ga, err := newGitLabAuth(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: log, queue: q, gitlab: ga, now: now, kick: make(chan struct{}, 1), metrics: newMetrics(), views: views}, nil
}

// SetProjects sets the GitLab projects whose deliveries are kept.
func (s *Server) SetProjects(projects []string) {
	m := make(map[string]bool, len(projects))
	for _, p := range projects {
		m[strings.ToLower(p)] = true
	}
	s.projects.Store(&m)
}

// SetReady marks the service ready (store open, config read).
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

func (s *Server) kickWorkers() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Kicks delivers a signal whenever a new delivery was stored.
func (s *Server) Kicks() <-chan struct{} { return s.kick }

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		if !s.ready.Load() {
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	e.POST("/webhooks/gitlab", s.gitlabHook)
	e.POST("/webhooks/argocd", s.argocdHook)

	read := s.requireToken(false)
	admin := s.requireToken(true)
	e.GET("/metrics", s.metricsHandler, read)
	e.GET("/board", s.board, read)
	api := e.Group("/api/v1")
	api.GET("/events", s.listEvents, read)
	api.POST("/events/:id/requeue", s.requeueEvent, admin)
	api.GET("/status", s.status, read)
	api.GET("/audit", s.audit, read)
	api.GET("/dora", s.dora, read)
	return e
}

// requireToken admits requests with the admin token, or with the read token
// when admin is false. Without configured tokens nothing is admitted.
func (s *Server) requireToken(admin bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			t := bearer(c.Request())
			if t == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="lotsed", Basic realm="lotsed"`)
				return refuse("no bearer token")
			}
			if s.cfg.APIAdminToken != "" && equal(t, s.cfg.APIAdminToken) {
				return next(c)
			}
			if s.cfg.APIReadToken != "" && equal(t, s.cfg.APIReadToken) {
				if admin {
					return echo.NewHTTPError(http.StatusForbidden, "this needs the admin token")
				}
				return next(c)
			}
			return refuse("wrong token")
		}
	}
}

// errorHandler is the one place that maps errors to HTTP statuses. Bodies
// carry the reason for the caller's mistakes and nothing about internals.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	var br *badRequest
	var ae *authError
	switch {
	case errors.As(err, &ae):
		status, msg = http.StatusUnauthorized, "401 Unauthorized"
		s.log.WarnContext(c.Request().Context(), "request refused", "path", c.Path(), "reason", ae.reason, "remote", c.RealIP())
	case errors.As(err, &br):
		status, msg = http.StatusBadRequest, br.reason
	case errors.Is(err, store.ErrNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.As(err, &he):
		status = he.Code
		if m, ok := he.Message.(string); ok {
			msg = m
		} else {
			msg = http.StatusText(status)
		}
	default:
		s.log.ErrorContext(c.Request().Context(), "request failed", "path", c.Path(), "err", err)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, map[string]string{"message": msg})
}
