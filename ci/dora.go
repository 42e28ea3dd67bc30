package ci

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/dora"
)

// doraCmd is lotse dora: lotsed's DORA figures per app and stage.
func (a *app) doraCmd() *cobra.Command {
	var (
		url, since, appName string
		asJSON              bool
	)
	cmd := &cobra.Command{
		Use:   "dora",
		Short: "Print lotsed's DORA figures per app and stage",
		Long: `Read lotsed's GET /api/v1/dora and print, per app and stage, the deployments
and deployments per day, the median lead time for changes from the source MR's
merge and from its first commit, the change failure rate (rolled back,
degraded, or followed by a fix within lotsed's --dora-fix-window) and the
median time to restore, each with its number of samples. --json prints the
figures with every sample they were computed from.`,
		Example: `  LOTSE_URL=https://lotsed.example.com LOTSE_API_TOKEN=... lotse dora
  lotse dora --app shop --since 90d --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return usagef("no lotsed URL: pass --url or set LOTSE_URL")
			}
			token := a.env.get("LOTSE_API_TOKEN")
			if token == "" {
				return usagef("no API token: set LOTSE_API_TOKEN to lotsed's read token")
			}
			q := dora.Query{App: appName}
			if since != "" {
				t, err := parseSince(since, a.now())
				if err != nil {
					return err
				}
				q.Since = t
			}
			fs, err := (&dora.Client{URL: url, Token: token}).Figures(cmd.Context(), q)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(fs)
			}
			return dora.WriteTable(a.stdout, fs)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&url, "url", a.env.get("LOTSE_URL"), "lotsed's base URL (env LOTSE_URL); the token comes from LOTSE_API_TOKEN")
	fs.StringVar(&since, "since", "", "the period starts at TIME (RFC 3339 or YYYY-MM-DD) or DURATION ago (like 24h or 90d); default: the last 30 days")
	fs.StringVar(&appName, "app", "", "only this app")
	fs.BoolVar(&asJSON, "json", false, "print the figures and their samples as JSON")
	return cmd
}
