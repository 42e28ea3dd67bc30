package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/store"
)

// Queue is what the API needs of the store's queue.
type Queue interface {
	Deliveries(ctx context.Context, state store.State, limit int) ([]store.Delivery, error)
	Requeue(ctx context.Context, id int64, now time.Time) error
	Stats(ctx context.Context) (map[store.State]int, error)
}

// Views are the read models the API and the board show.
type Views interface {
	Status(ctx context.Context) (any, error)
	Audit(ctx context.Context, f audit.Filter) (any, error)
	DORA(ctx context.Context, app string, since time.Time) (any, error)
	App(ctx context.Context, app string) (any, error)
}

// Server is lotsed's HTTP side: the intake's routes, the API, the board and
// the metrics.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	queue   Queue
	intake  *intake
	views   Views
	metrics *metrics
	handoff *handoff
	now     func() time.Time
	ready   atomic.Bool

	releases *releases // nil: POST /api/v1/releases is off

	doctor doctorReporter // nil: GET /api/v1/doctor answers 404

	freezer freezer // nil: /api/v1/freeze answers 404
}

// freezer sets and lifts stop-the-line freezes.
type freezer interface {
	freeze(ctx context.Context, stage, reason string, lift bool) error
}

// serverParts are what a Server is built from; serve wires them.
type serverParts struct {
	queue interface {
		Enqueuer
		Queue
	}
	handoff *handoff // nil: a hand-off of no places, every delivery is queued
	watch   watcher
	views   Views
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	releases *releases
}

// newServer builds the HTTP side.
func newServer(cfg *Config, p serverParts) (*Server, error) {
	ga, err := newGitLabAuth(cfg)
	if err != nil {
		return nil, err
	}
	if p.handoff == nil {
		p.handoff = newHandoff("", 0, 0)
	}
	if p.queue != nil {
		p.metrics.watchQueue(p.queue)
	}
	in := &intake{cfg: cfg, log: p.log, queue: p.queue, auth: ga, reads: newUnverifiedReads(max(cfg.UnverifiedBudget, cfg.MaxBody)),
		handoff: p.handoff, watch: p.watch, metrics: p.metrics, now: p.now}
	return &Server{cfg: cfg, log: p.log, queue: p.queue, intake: in, views: p.views, metrics: p.metrics, handoff: p.handoff, now: p.now,
		releases: p.releases}, nil
}

// SetReady marks the service ready (store open, config read).
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	// The client's address in the log: X-Forwarded-For only from the
	// proxies configured as trusted, else the connection's peer.
	e.IPExtractor = echo.ExtractIPDirect()
	if len(s.cfg.TrustedProxies) > 0 {
		trust := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range s.cfg.TrustedProxies {
			trust = append(trust, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(trust...)
	}
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c echo.Context) error {
		if !s.ready.Load() {
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	e.POST("/webhooks/gitlab", s.intake.gitlabHook)
	e.POST("/webhooks/argocd", s.intake.argocdHook)

	read := s.requireToken(false, false)
	admin := s.requireToken(true, false)
	e.GET("/metrics", s.metricsHandler, read)
	e.GET("/board", s.board, s.requireToken(false, true))
	e.GET("/board/:app", s.appBoard, s.requireToken(false, true))
	api := e.Group("/api/v1")
	api.GET("/events", s.listEvents, read)
	api.POST("/events/:id/requeue", s.requeueEvent, admin)
	api.GET("/status", s.status, read)
	api.GET("/audit", s.audit, read)
	api.GET("/dora", s.dora, read)
	api.GET("/doctor", s.doctorReport, read)
	api.POST("/releases", s.release) // authenticated by the pipeline's ID token
	api.POST("/freeze", s.freeze, admin)
	api.DELETE("/freeze", s.freeze, admin)
	return e
}

// requireToken admits requests with the admin token, or with the read token
// when admin is false. Without configured tokens nothing is admitted. The
// token is the bearer token; browser is true only for the board's page,
// which also takes it as the basic-auth password: a browser replays those
// credentials on every request a page makes it send, so nothing that
// changes things, and no API, takes them.
func (s *Server) requireToken(admin, browser bool) echo.MiddlewareFunc {
	challenge := `Bearer realm="lotsed"`
	if browser {
		challenge += `, Basic realm="lotsed"`
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			t := bearer(c.Request())
			if t == "" && browser {
				t = basicPassword(c.Request())
			}
			deny := func(reason string) error {
				c.Response().Header().Set("WWW-Authenticate", challenge)
				return refuse("%s", reason)
			}
			if t == "" {
				return deny("no bearer token")
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
			return deny("wrong token")
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
