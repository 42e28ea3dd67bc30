package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/dora"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// GateBadge is one gate of a promotion on the board.
type GateBadge struct {
	Name   string               `json:"name"`
	Status promotion.GateStatus `json:"status"`
	Reason string               `json:"reason,omitempty"`
}

func badges(g promotion.Gates) []GateBadge {
	var out []GateBadge
	for _, x := range []struct {
		name string
		g    promotion.Gate
	}{{"signature", g.Signature}, {"scan", g.Scan}, {"soak", g.Soak}, {"health", g.Health}} {
		if x.g.Status != promotion.GateNotRequired {
			out = append(out, GateBadge{Name: x.name, Status: x.g.Status, Reason: x.g.Reason})
		}
	}
	return out
}

// AppPage is one app's page: its stages, what ran there before, its audit
// log and its DORA figures.
type AppPage struct {
	App     AppView               `json:"app"`
	History []HistoryRow          `json:"history"`
	Audit   []store.AuditRecord   `json:"audit"`
	DORA    map[string]any        `json:"dora"`
	Records []promotion.Promotion `json:"promotions"`
}

// HistoryRow is a version that ran in a stage.
type HistoryRow struct {
	Stage        string    `json:"stage"`
	Image        string    `json:"image"`
	LandedAt     time.Time `json:"landed_at"`
	SourceCommit string    `json:"source_commit,omitempty"`
}

// App is an app's page, from lotsed's records.
func (s *views) App(ctx context.Context, app string) (any, error) {
	all, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	var page AppPage
	found := false
	for _, av := range all.([]AppView) {
		if av.App == app {
			page.App, found = av, true
		}
	}
	if !found {
		return nil, fmt.Errorf("app %q: %w", app, store.ErrNotFound)
	}
	if data, _, err := s.store.LoadState(ctx, app); err == nil && len(data) > 0 {
		var r record
		if json.Unmarshal(data, &r) == nil {
			for _, sv := range page.App.Stages {
				st := r.State.Stage(sv.Stage)
				if st == nil {
					continue
				}
				for i := len(st.History) - 1; i >= 0; i-- {
					d := st.History[i]
					page.History = append(page.History, HistoryRow{Stage: sv.Stage, Image: d.Image, LandedAt: d.LandedAt, SourceCommit: d.SourceCommit})
				}
				for _, pr := range []*promotion.Promotion{st.Promotion, st.Previous} {
					if pr != nil {
						page.Records = append(page.Records, *pr)
					}
				}
			}
		}
	}
	if page.Audit, err = s.store.AuditLog(ctx, audit.Filter{App: app, Limit: 30}); err != nil {
		return nil, err
	}
	if d, err := s.DORA(ctx, app, s.now().AddDate(0, 0, -30)); err == nil {
		if fs, ok := d.([]dora.Figures); ok {
			page.DORA = map[string]any{}
			for _, f := range fs {
				page.DORA[f.Stage+", last 30 days"] = doraSummary(f)
			}
		}
	}
	return page, nil
}

// doraSummary is a stage's DORA figures in one line.
func doraSummary(f dora.Figures) string {
	stat := func(s dora.Stat) string {
		if s.Samples == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fh (%d)", s.MedianHours, s.Samples)
	}
	rate := "-"
	if f.Deployments > 0 {
		rate = fmt.Sprintf("%.0f%% (%d/%d)", 100*f.ChangeFailureRate, f.Failures, f.Deployments)
	}
	return fmt.Sprintf("%d deployments (%.2f a day); lead time from merge %s, from first commit %s; change failure rate %s; time to restore %s",
		f.Deployments, f.PerDay, stat(f.LeadTimeFromMerge), stat(f.LeadTimeFromFirstCommit), rate, stat(f.TimeToRestore))
}

// state is a stage cell's state word and CSS class.
func state(v StageView) (word, class string) {
	switch {
	case v.OutOfBand != "":
		return "out-of-band", "bad"
	case v.Phase == promotion.PhaseTampered:
		return "tampered", "bad"
	case v.Phase == promotion.PhaseBlocked:
		return "gates failing", "bad"
	case v.Phase == promotion.PhaseMerging && len(v.Reason) >= 6 && v.Reason[:6] == "frozen":
		return "frozen", "warn"
	case v.Phase == promotion.PhaseAwaitingApproval:
		return "waiting for approvals", "warn"
	case v.Phase == promotion.PhaseChecking, v.Phase == promotion.PhaseWaiting, v.Phase == promotion.PhaseOpening, v.Phase == promotion.PhaseMerging:
		return "promoting", "warn"
	case v.Sync == promotion.SyncWaiting:
		return "merged, waiting for sync", "warn"
	case v.Sync == promotion.SyncDegraded:
		return "degraded", "bad"
	case v.Image != "":
		return "running", "ok"
	}
	return "nothing yet", "muted"
}

var pageFuncs = template.FuncMap{
	"short": shortImage,
	"since": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"state": func(v StageView) template.HTML {
		w, c := state(v)
		return template.HTML(`<span class="badge ` + c + `">` + template.HTMLEscapeString(w) + `</span>`) //nolint:gosec // fixed words
	},
	"gate": func(g GateBadge) string {
		switch g.Status {
		case promotion.GatePassed, promotion.GateSkipped:
			return "ok"
		case promotion.GateFailed:
			return "bad"
		}
		return "warn"
	},
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta http-equiv="refresh" content="30">
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.4rem .7rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.muted{color:#777;font-size:.85em}code{font-size:.85em}
.badge{display:inline-block;border-radius:.6em;padding:0 .5em;font-size:.8em;border:1px solid}
.ok{color:#1a7f37;border-color:#1a7f37}.warn{color:#9a6700;border-color:#9a6700}.bad{color:#cf222e;border-color:#cf222e}
</style></head><body>
<p class="muted">From lotsed's own records (its webhooks and its reconciliation with GitLab every tick; no GitLab call per page). Refreshes every 30 seconds. Now {{.Now}}.</p>
`

var boardPage = template.Must(template.New("board").Funcs(pageFuncs).Parse(pageHead + `<h1>lotse board</h1>
{{if not .Apps}}<p>No apps in lotse.yaml yet.</p>{{else}}
<table><tr><th>app</th>{{range (index .Apps 0).Stages}}<th>{{.Stage}}</th>{{end}}</tr>
{{range .Apps}}<tr><th><a href="board/{{.App}}">{{.App}}</a>{{if not .UpdatedAt.IsZero}}<br><span class="muted">as of {{since .UpdatedAt}}</span>{{end}}</th>
{{range .Stages}}<td>{{state .}}{{if .Image}}<br><code>{{short .Image}}</code><br><span class="muted">since {{since .Since}}{{if .SourceCommit}}, {{.SourceProject}}@{{printf "%.8s" .SourceCommit}}{{end}}</span>{{end}}
{{if .Promotion}}<br>&rarr; {{.Promotion}}{{end}}
{{range .Gates}}<br><span class="badge {{gate .}}" title="{{.Reason}}">{{.Name}}: {{.Status}}</span>{{end}}
{{if .Approvals}}<br>approvals {{.Approvals}}{{if .MRURL}} in <a href="{{.MRURL}}">the merge request</a>{{end}}{{else if .MRURL}}<br><a href="{{.MRURL}}">merge request</a>{{end}}
{{if .Reason}}<br><span class="muted">{{.Reason}}</span>{{end}}
{{if .OutOfBand}}<br><strong>out-of-band:</strong> {{.OutOfBand}}{{end}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</body></html>`))

var appPage = template.Must(template.New("app").Funcs(pageFuncs).Parse(pageHead + `<p><a href="../board">&larr; board</a></p>
<h1>{{.Page.App.App}}</h1>
<table><tr>{{range .Page.App.Stages}}<th>{{.Stage}}</th>{{end}}</tr><tr>
{{range .Page.App.Stages}}<td>{{state .}}{{if .Image}}<br><code>{{short .Image}}</code>{{end}}{{if .Promotion}}<br>&rarr; {{.Promotion}}{{end}}</td>{{end}}</tr></table>
<h2>History</h2>
{{if not .Page.History}}<p class="muted">Nothing ran before the current versions.</p>{{else}}
<table><tr><th>stage</th><th>image</th><th>landed</th><th>source</th></tr>
{{range .Page.History}}<tr><td>{{.Stage}}</td><td><code>{{short .Image}}</code></td><td>{{since .LandedAt}}</td><td>{{printf "%.12s" .SourceCommit}}</td></tr>{{end}}
</table>{{end}}
<h2>Promotions</h2>
<table><tr><th>image</th><th>phase</th><th>reason</th><th>started</th></tr>
{{range .Page.Records}}<tr><td><code>{{short .Image}}</code></td><td>{{.Phase}}</td><td>{{.Reason}}</td><td>{{since .StartedAt}}</td></tr>{{end}}
</table>
<h2>DORA</h2>
{{range $k, $v := .Page.DORA}}<p>{{$k}}: {{printf "%+v" $v}}</p>{{end}}
<h2>Audit log</h2>
<table><tr><th>when</th><th>stage</th><th>what</th><th>who</th><th>detail</th></tr>
{{range .Page.Audit}}<tr><td>{{since .At}}</td><td>{{.Stage}}</td><td>{{.Kind}}</td><td>{{.Actor}}</td><td>{{.Detail}}</td></tr>{{end}}
</table>
</body></html>`))

// board is GET /board: apps × stages as an HTML page, usable without
// JavaScript.
func (s *Server) board(c echo.Context) error {
	v, err := s.views.Status(c.Request().Context())
	if err != nil {
		return err
	}
	apps, _ := v.([]AppView)
	c.Response().Header().Set("Content-Type", "text/html; charset=utf-8")
	c.Response().WriteHeader(http.StatusOK)
	return boardPage.Execute(c.Response(), map[string]any{"Title": "lotse board", "Now": s.now().UTC().Format(time.RFC3339), "Apps": apps})
}

// appBoard is GET /board/:app: one app's stages, history, promotions,
// DORA figures and audit log.
func (s *Server) appBoard(c echo.Context) error {
	v, err := s.views.App(c.Request().Context(), c.Param("app"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Type", "text/html; charset=utf-8")
	c.Response().WriteHeader(http.StatusOK)
	return appPage.Execute(c.Response(), map[string]any{"Title": "lotse · " + c.Param("app"), "Now": s.now().UTC().Format(time.RFC3339), "Page": v})
}

// renderBoard renders the board's body for apps (tests).
func renderBoard(v any) (string, error) {
	apps, _ := v.([]AppView)
	var b strings.Builder
	err := boardPage.Execute(&b, map[string]any{"Title": "lotse board", "Apps": apps})
	return b.String(), err
}
