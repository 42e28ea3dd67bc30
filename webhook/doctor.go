package webhook

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/doctor"
)

// doctorReporter computes the doctor report of the GitOps project as
// lotsed's GitLab user sees it.
type doctorReporter interface {
	Report(ctx context.Context) doctor.Report
}

// doctorCheck runs doctor.Check with lotsed's own client and settings. A
// report is kept for doctorCacheFor, and one is computed at a time, so that
// polling the endpoint cannot turn into a flood of GitLab requests.
type doctorCheck struct {
	gl   doctor.Client
	opts doctor.Options
	now  func() time.Time

	mu   sync.Mutex
	last doctor.Report
	at   time.Time
}

const (
	doctorCacheFor = 30 * time.Second
	doctorTimeout  = time.Minute
)

func newDoctorCheck(cfg *Config, gl doctor.Client, now func() time.Time) *doctorCheck {
	return &doctorCheck{gl: gl, now: now, opts: doctor.Options{Project: cfg.GitOpsProject, LotsedURL: cfg.PublicURL,
		BotUsername: cfg.BotUser, PublicKey: cfg.PublicKey}}
}

// Report returns a report at most doctorCacheFor old.
func (d *doctorCheck) Report(ctx context.Context) doctor.Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.at.IsZero() && d.now().Sub(d.at) < doctorCacheFor {
		return d.last
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	r := doctor.Check(ctx, d.gl, d.opts)
	if ctx.Err() == nil {
		d.last, d.at = r, d.now()
	}
	return r
}

// doctorReport serves GET /api/v1/doctor: the report as JSON, 200 whether
// or not it found problems (its "ok" says).
func (s *Server) doctorReport(c echo.Context) error {
	if s.doctor == nil {
		return echo.NewHTTPError(http.StatusNotFound, "the doctor is not configured")
	}
	return c.JSON(http.StatusOK, s.doctor.Report(c.Request().Context()))
}
