package ci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/apiread"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/writeback"
)

// stageStatusJSON is one row of lotse status --format json.
type stageStatusJSON struct {
	App           string `json:"app"`
	Stage         string `json:"stage"`
	Path          string `json:"path"`
	Deployed      bool   `json:"deployed"`
	Image         string `json:"image,omitempty"`
	Digest        string `json:"digest,omitempty"`
	Tag           string `json:"tag,omitempty"`
	Since         string `json:"since,omitempty"`
	Commit        string `json:"commit,omitempty"`
	SourceProject string `json:"sourceProject,omitempty"`
	SourceCommit  string `json:"sourceCommit,omitempty"`
	Pipeline      string `json:"pipeline,omitempty"`
}

func (a *app) statusCmd() *cobra.Command {
	var (
		gf      gitopsFlags
		appName string
		format  string
		lotsed  string
	)
	cmd := &cobra.Command{
		Use:   "status [--app APP] [--format table|json]",
		Short: "Show which image each app runs in each stage",
		Long: `Read the GitOps repository's default branch and show, for each app (or APP)
and each of its stages, the image in the values file, since when (the commit
that brought it in) and the source commit it was built from (from lotse's
commit trailers).

With --url (or LOTSE_URL), lotse asks lotsed instead (its read token from
LOTSE_API_TOKEN): what lotsed saw land in each stage, from its own records,
with the promotion under way; no GitLab token needed.`,
		Example: `  lotse status --gitops-project platform/gitops
  lotse status --app shop --format json
  LOTSE_API_TOKEN=... lotse status --url https://lotsed.example.com`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef("--format: unknown format %q (want table or json)", format)
			}
			ctx := cmd.Context()
			if lotsed != "" {
				return a.lotsedStatus(ctx, lotsed, appName, format)
			}
			w, err := a.writer(ctx, &gf)
			if err != nil {
				return err
			}
			st, err := w.Status(ctx, appName)
			if err != nil {
				return inputError(err)
			}
			if format == "json" {
				rows := make([]stageStatusJSON, 0, len(st))
				for _, s := range st {
					r := stageStatusJSON{App: s.App, Stage: s.Stage, Path: s.Path, Deployed: s.Deployed, Commit: s.Commit,
						SourceProject: s.SourceProject, SourceCommit: s.SourceCommit, Pipeline: s.Pipeline}
					if s.Deployed {
						r.Image, r.Digest, r.Tag = s.Image.String(), s.Image.Digest, s.Image.Tag
					}
					if !s.Since.IsZero() {
						r.Since = s.Since.UTC().Format(time.RFC3339)
					}
					rows = append(rows, r)
				}
				b, err := json.MarshalIndent(rows, "", "  ")
				if err != nil {
					return err
				}
				printf(a.stdout, "%s\n", b)
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tSTAGE\tIMAGE\tSINCE\tSOURCE")
			for _, s := range st {
				img, since, src := "-", "-", "-"
				if s.Deployed {
					img = s.Image.String()
				}
				if !s.Since.IsZero() {
					since = s.Since.UTC().Format(time.RFC3339)
				}
				if s.SourceCommit != "" {
					src = s.SourceProject + "@" + shortSHA(s.SourceCommit)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.App, s.Stage, img, since, src)
			}
			return tw.Flush()
		},
	}
	a.addGitOpsFlags(cmd.Flags(), &gf)
	cmd.Flags().StringVar(&appName, "app", "", "only this app")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().StringVar(&lotsed, "url", a.env.get("LOTSE_URL"), "read the status from lotsed at this URL (env LOTSE_URL; token from LOTSE_API_TOKEN)")
	return cmd
}

// lotsedStatus prints GET /api/v1/status of lotsed.
func (a *app) lotsedStatus(ctx context.Context, base, appName, format string) error {
	token := a.env.get("LOTSE_API_TOKEN")
	if token == "" {
		return usagef("no API token: set LOTSE_API_TOKEN to lotsed's read token")
	}
	var apps []struct {
		App    string `json:"app"`
		Stages []struct {
			Stage         string    `json:"stage"`
			Image         string    `json:"image"`
			Since         time.Time `json:"since"`
			SourceProject string    `json:"source_project"`
			SourceCommit  string    `json:"source_commit"`
			Promotion     string    `json:"promotion"`
			Sync          string    `json:"sync"`
			OutOfBand     string    `json:"out_of_band"`
		} `json:"stages"`
	}
	if err := apiread.Get(ctx, &http.Client{Timeout: 30 * time.Second}, strings.TrimRight(base, "/")+"/api/v1/status", token,
		"lotsed status", 64<<20, false, &apps); err != nil {
		return err
	}
	found := appName == ""
	if format == "json" {
		var out []any
		for _, ap := range apps {
			if appName == "" || ap.App == appName {
				found = true
				out = append(out, ap)
			}
		}
		if !found {
			return usagef("lotsed knows no app %q", appName)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		printf(a.stdout, "%s\n", b)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tSTAGE\tIMAGE\tSINCE\tSOURCE\tPROMOTION")
	for _, ap := range apps {
		if appName != "" && ap.App != appName {
			continue
		}
		found = true
		for _, st := range ap.Stages {
			img, since, src, pr := orDash(st.Image), "-", "-", orDash(st.Promotion)
			if !st.Since.IsZero() {
				since = st.Since.UTC().Format(time.RFC3339)
			}
			if st.SourceCommit != "" {
				src = st.SourceProject + "@" + shortSHA(st.SourceCommit)
			}
			if st.Sync != "" {
				pr += " (" + st.Sync + ")"
			}
			if st.OutOfBand != "" {
				pr += "; out-of-band: " + st.OutOfBand
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ap.App, st.Stage, img, since, src, pr)
		}
	}
	if !found {
		return usagef("lotsed knows no app %q", appName)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with lotse.yaml, the promotion config of the GitOps repository",
		Args:  exactArgs(0, "a subcommand"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	validate := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a lotse.yaml; problems are printed as FILE:LINE:COLUMN: message",
		Long: `Check a lotse.yaml (default: ./lotse.yaml) and print every problem as
FILE:LINE:COLUMN: message on stderr. Exits 1 when the file has problems or
cannot be read, 2 for a bad command line.`,
		Example: `  lotse config validate
  lotse config validate gitops/lotse.yaml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			file := writeback.ConfigFile
			if len(args) == 1 {
				file = args[0]
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read lotse.yaml: %w", err)
			}
			cfg, err := gitops.ParseConfig(data, file)
			var ve *gitops.ValidationError
			if errors.As(err, &ve) {
				printf(a.stderr, "%s\n", ve.Error())
				return fmt.Errorf("%s: %d problem(s)", file, len(ve.Problems))
			}
			if err != nil {
				return err
			}
			printf(a.stdout, "%s: ok (%d apps, %d stages)\n", file, len(cfg.Apps), len(cfg.Stages))
			return nil
		},
	}
	cmd.AddCommand(validate)
	return cmd
}
